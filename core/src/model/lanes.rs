//! Eight float32 lanes, the vector the CPU kernels ([`super::spans`],
//! [`crate::batch::logprobs`]) are written over: one kernel body, compiled once for a plain
//! array (whatever the target vectorises it to) and once for an AVX2 register inside a
//! `#[target_feature(enable = "avx2,fma")]` function.

/// Lanes per vector.
pub(crate) const LANES: usize = 8;

/// Eight float32 lanes and the operations the kernels take. `max` is `if a > b { a } else { b }`
/// lane by lane (AVX's `maxps`): a NaN in `b` is kept, a NaN in `a` is not.
pub(crate) trait F32x8: Copy {
    /// All lanes `x`.
    fn splat(x: f32) -> Self;
    /// The lanes of `x`.
    fn load(x: &[f32; LANES]) -> Self;
    /// Writes the lanes to `x`.
    fn store(self, x: &mut [f32; LANES]);
    /// `self × b + c`, fused where the instruction set has it.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lane-wise sum.
    fn add(self, b: Self) -> Self;
    /// Lane-wise difference.
    fn sub(self, b: Self) -> Self;
    /// Lane-wise product.
    fn mul(self, b: Self) -> Self;
    /// Lane-wise `if self > b { self } else { b }`.
    fn max(self, b: Self) -> Self;
    /// Lane-wise `2^n` for integer-valued `n` in −126..=127, given as `n + 1.5 × 2^23` (the
    /// float whose low mantissa bits hold `n`).
    fn pow2_rounded(self) -> Self;
    /// The sum of the lanes.
    fn sum(self) -> f32;
    /// The largest lane (by [`F32x8::max`]).
    #[inline(always)]
    fn max_lane(self) -> f32 {
        let mut lanes = [0f32; LANES];
        self.store(&mut lanes);
        lanes
            .into_iter()
            .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
    }

    /// `e^x` lane-wise for `x ≤ 0` to within about 2 ulp (Cephes' expf: `x = n·ln 2 + r`, a
    /// degree-6 polynomial on `|r| ≤ ln 2 / 2`, `2^n` built in the exponent bits); below −87.3
    /// it returns `e^−87.3`; NaN stays NaN.
    #[inline(always)]
    fn exp(self) -> Self {
        const ROUND: f32 = 12_582_912.0; // 1.5 × 2^23: adding it rounds to an integer
        let s = Self::splat;
        let x = s(-87.3).max(self);
        let t = x.mul_add(s(std::f32::consts::LOG2_E), s(ROUND));
        let n = t.sub(s(ROUND));
        let r = n.mul_add(s(2.121_944_4e-4), n.mul_add(s(-0.693_359_4), x));
        let p = s(1.987_569_1e-4).mul_add(r, s(1.398_199_9e-3));
        let p = p.mul_add(r, s(8.333_452e-3));
        let p = p.mul_add(r, s(4.166_579_6e-2));
        let p = p.mul_add(r, s(1.666_666_5e-1));
        let p = p.mul_add(r, s(0.5));
        let e = p.mul(r).mul_add(r, r).add(s(1.0));
        e.mul(t.pow2_rounded())
    }
}

/// Bits of `1.5 × 2^23`, which [`F32x8::pow2_rounded`] subtracts.
const ROUND_BITS: i32 = 0x4b40_0000;

/// The portable lanes: a plain array, vectorised by the compiler for the target.
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; LANES]);

impl Portable {
    #[inline(always)]
    fn zip(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Portable(std::array::from_fn(|i| f(self.0[i], b.0[i])))
    }
}

impl F32x8 for Portable {
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Portable([x; LANES])
    }
    #[inline(always)]
    fn load(x: &[f32; LANES]) -> Self {
        Portable(*x)
    }
    #[inline(always)]
    fn store(self, x: &mut [f32; LANES]) {
        *x = self.0;
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // Unfused: a fused multiply-add without the instruction is a slow library call.
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self.zip(b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        self.zip(b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        self.zip(b, |x, y| x * y)
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        self.zip(b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn pow2_rounded(self) -> Self {
        Portable(self.0.map(|t| {
            let n = (t.to_bits() as i32).wrapping_sub(ROUND_BITS);
            f32::from_bits(((n + 127) as u32) << 23)
        }))
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        let [a, b, c, d, e, f, g, h] = self.0;
        ((a + e) + (c + g)) + ((b + f) + (d + h))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;

/// Whether this CPU runs the [`Avx2`] lanes: it has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{F32x8, LANES, ROUND_BITS};
    use std::arch::x86_64::*;

    /// An AVX2 register. Its operations are only sound on a CPU with AVX2 and FMA; they are
    /// written to be inlined into a `#[target_feature(enable = "avx2,fma")]` function that is
    /// called only after `is_x86_feature_detected!` found both.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256);

    // SAFETY (every block below): the intrinsics need AVX2 and FMA, which the callers of
    // these lanes have checked for (see the type's docs); loads and stores go through
    // references to exactly eight floats.
    impl F32x8 for Avx2 {
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Avx2(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        fn load(x: &[f32; LANES]) -> Self {
            Avx2(unsafe { _mm256_loadu_ps(x.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, x: &mut [f32; LANES]) {
            unsafe { _mm256_storeu_ps(x.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Avx2(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            Avx2(unsafe { _mm256_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            Avx2(unsafe { _mm256_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            // maxps returns its second operand unless the first is greater.
            Avx2(unsafe { _mm256_max_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn pow2_rounded(self) -> Self {
            Avx2(unsafe {
                let n = _mm256_sub_epi32(_mm256_castps_si256(self.0), _mm256_set1_epi32(ROUND_BITS));
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127))))
            })
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            unsafe {
                let x = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
                let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
                _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{F32x8, Portable, LANES};

    fn lanes<V: F32x8>(v: V) -> [f32; LANES] {
        let mut x = [0f32; LANES];
        v.store(&mut x);
        x
    }

    /// Both kinds of lanes give the same operations (to rounding) and exp within 2.5e-7.
    fn check<V: F32x8>() {
        let a = [1.0f32, -2.0, 3.5, f32::NAN, 0.0, -0.5, 7.0, -9.0];
        let b = [0.5f32, 4.0, -1.0, 2.0, f32::NAN, -0.5, 1.0, 10.0];
        let (va, vb) = (V::load(&a), V::load(&b));
        let max = lanes(va.max(vb));
        for i in 0..LANES {
            let want = if a[i] > b[i] { a[i] } else { b[i] };
            assert!(max[i] == want || (max[i].is_nan() && want.is_nan()), "max lane {i}");
        }
        let finite = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5];
        assert_eq!(V::load(&finite).sum(), 36.5);
        assert_eq!(V::load(&finite).max_lane(), 8.5);
        let mut worst = 0f64;
        for i in 0..=25_000 {
            let x: [f32; LANES] = std::array::from_fn(|l| -87.0 * (i * LANES + l) as f32 / 200_000.0);
            for (&x, got) in x.iter().zip(lanes(V::load(&x).exp())) {
                let want = (x as f64).exp();
                worst = worst.max(((got as f64 - want) / want).abs());
            }
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        let e = lanes(V::load(&[f32::NAN, 0.0, f32::NEG_INFINITY, -100.0, 1.0, -1.0, -2.0, -3.0]).exp());
        assert!(e[0].is_nan());
        assert_eq!(e[1], 1.0);
        assert!(e[2] > 0.0 && e[2] < 1.3e-38 && e[3] == e[2], "{e:?}");
    }

    #[test]
    fn portable_lanes() {
        check::<Portable>();
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_lanes() {
        if super::avx2_available() {
            check::<super::Avx2>();
        }
    }
}
