//! The span kernel on AVX-512 registers: sixteen keys per vector, and the values transposed like
//! the keys, so that `softmax · values` is sixteen keys per fused multiply-add in one
//! accumulator per dimension (rather than one broadcast weight per key and dimension row).
//!
//! A span's last vector is read under a mask: lanes past the span are neither loaded from the
//! values nor weighted, so a NaN in another token's value never reaches this query. Scores
//! are computed in whole vectors past a span's end (the key rows are zero-padded, [`PAD`]);
//! those lanes are left out of the maximum and zeroed after the exponential. The
//! exponentials are not stored: each weights its values as it is computed (one pass for the
//! softmax's sum and `softmax · values`, 3% faster than storing them on the
//! `packed_attention` benchmark).

use super::{Inputs, Shape, PAD};
use std::arch::x86_64::*;

/// Lanes of an AVX-512 float vector.
const W: usize = 16;

/// The attention of queries `from..` (as many as `out` holds rows): keys and values both
/// transposed `(kv_heads, d, T + PAD)`. Each query's heads run `G` at a time (they attend
/// the same spans), so that their chains of dependent instructions — scores, maximum,
/// exponentials, weighted values, sums — interleave.
///
/// # Safety
/// The CPU must have AVX-512F (`is_x86_feature_detected!("avx512f")`). Every other condition
/// the raw reads and writes rely on is asserted here or in [`heads`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn queries<const D: usize, const G: usize>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32]) {
    let Inputs { q, kt, v: vt, spans } = x;
    let stride = s.tokens + PAD;
    let kv_heads = s.heads / s.rep;
    assert_eq!(kt.len(), kv_heads * D * stride, "keys (kv_heads, d, T + PAD)");
    assert_eq!(vt.len(), kv_heads * D * stride, "values (kv_heads, d, T + PAD)");
    assert!(
        D.is_multiple_of(8) && G > 0,
        "heads a multiple of 8 wide, at least one at a time"
    );
    assert!(
        s.rep > 0 && s.heads.is_multiple_of(s.rep),
        "query heads a whole multiple of the key heads"
    );
    assert_eq!(q.len(), s.queries * s.heads * D, "queries (Q, heads, d)");
    assert_eq!(spans.len(), s.queries, "spans per query");
    assert_eq!(out.len() % (s.heads * D), 0, "whole output rows");
    assert!(from + out.len() / (s.heads * D) <= s.queries, "rows within the queries");
    let rows = out.len() / (s.heads * D);
    let mut scores: Vec<f32> = vec![];
    // Heads outermost: consecutive queries mostly attend the same keys, so a head's keys and
    // values stay in the L1 cache from one query to the next (all heads of a long span at
    // once would not fit it).
    let mut h0 = 0;
    while h0 < s.heads {
        let g = G.min(s.heads - h0);
        for row in 0..rows {
            let t = from + row;
            let sp = spans[t];
            let parts = [
                (sp.first.0 as usize, sp.first.1 as usize),
                (sp.second.0 as usize, sp.second.1 as usize),
            ];
            for &(a, b) in &parts {
                assert!(a <= b && b <= s.tokens, "query {t} attends {a}..{b} of {}", s.tokens);
            }
            let n = sp.keys();
            // One row of `padded + W` scores per head of a group.
            let len = n.div_ceil(W) * W + W;
            if scores.len() < G * len {
                scores.resize(G * len, 0.0);
            }
            let o = &mut out[row * s.heads * D..(row + 1) * s.heads * D];
            if g == G {
                heads::<D, G>(s, x, t, h0, &parts, n, &mut scores, &mut o[h0 * D..(h0 + G) * D]);
            } else {
                for h in h0..h0 + g {
                    heads::<D, 1>(s, x, t, h, &parts, n, &mut scores, &mut o[h * D..(h + 1) * D]);
                }
            }
        }
        h0 += g;
    }
}

/// Heads `h0..h0 + G` of query `t` (a row of `q`), which attends the key ranges `parts` (`n`
/// keys in all), into `o` (`G × D` floats); `scores` holds at least `G` rows of `n` rounded up
/// to [`W`], plus `W`.
///
/// # Safety
/// The CPU must have AVX-512F, and the operands must be as [`queries`] asserts them: `t` below
/// the queries, each range of `parts` within the tokens (the keys), the query heads a multiple
/// of the key heads.
#[inline]
#[target_feature(enable = "avx512f")]
// The inner loop of `queries`, split out to run with one or `G` heads: it takes the loop's
// state as it is rather than a struct made for the call.
#[allow(clippy::too_many_arguments)]
unsafe fn heads<const D: usize, const G: usize>(
    s: &Shape,
    x: Inputs<'_>,
    t: usize,
    h0: usize,
    parts: &[(usize, usize); 2],
    n: usize,
    scores: &mut [f32],
    o: &mut [f32],
) {
    let Inputs { q, kt, v: vt, .. } = x;
    let stride = s.tokens + PAD;
    let padded = n.div_ceil(W) * W;
    let len = padded + W;
    assert!(scores.len() >= G * len && o.len() == G * D && h0 + G <= s.heads);
    // SAFETY (every pointer below): head h0 + g < heads reads key/value head
    // (h0 + g) / rep < kv_heads, whose D rows of stride `tokens + PAD` lie within `kt`/`vt`;
    // a read at j < b ≤ tokens of row d ends by d·stride + tokens + 15 < (d + 1)·stride. The
    // query's D floats end by (t·heads + h0 + G)·D ≤ q.len() since t < queries. Score row g is
    // `scores[g·len..(g + 1)·len]`, and its stores end by off + ⌈(b − a)/W⌉·W ≤ n + W − 1 < len.
    // All score accesses go through `sc` (no reborrow of `scores` after it is taken).
    // (Plain loops rather than `array::from_fn`, which is not inlined here.)
    let (mut keys, mut vals, mut qs) = ([kt.as_ptr(); G], [vt.as_ptr(); G], [q.as_ptr(); G]);
    let mut sc = [scores.as_mut_ptr(); G];
    for g in 0..G {
        keys[g] = kt.as_ptr().add((h0 + g) / s.rep * D * stride);
        vals[g] = vt.as_ptr().add((h0 + g) / s.rep * D * stride);
        qs[g] = q.as_ptr().add((t * s.heads + h0 + g) * D);
        sc[g] = sc[g].add(g * len);
    }
    // Scores, sixteen keys at a time, stored for the second pass, and their maximum over the
    // span's lanes; a span's last vector spills past the span (those lanes are stored, then
    // overwritten by the next span's scores or never read, and left out of the maximum).
    let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); G];
    let mut off = 0;
    for &(a, b) in parts {
        for j in (a..b).step_by(W) {
            let mask = lanes(b - j);
            let mut acc = [_mm512_setzero_ps(); G];
            for d in 0..D {
                for g in 0..G {
                    let qd = _mm512_set1_ps(*qs[g].add(d) * s.scale);
                    acc[g] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(keys[g].add(d * stride + j)), acc[g]);
                }
            }
            for g in 0..G {
                _mm512_storeu_ps(sc[g].add(off + j - a), acc[g]);
                max[g] = _mm512_mask_max_ps(max[g], mask, max[g], acc[g]);
            }
        }
        off += b - a;
    }
    // A NaN score may be lost from the maximum; it still makes its exponential NaN.
    for m in &mut max {
        *m = _mm512_set1_ps(_mm512_reduce_max_ps(*m));
    }
    // softmax · values in one pass: each vector of scores is read back where it was stored,
    // exponentiated, its lanes past the span zeroed, summed, and weights its values: per
    // dimension, sixteen keys at a time. The values' lanes past a span are not read (a NaN
    // there never reaches this query).
    let mut sum = [_mm512_setzero_ps(); G];
    let mut acc = [[_mm512_setzero_ps(); D]; G];
    let mut off = 0;
    for &(a, b) in parts {
        for j in (a..b).step_by(W) {
            let mask = lanes(b - j);
            for g in 0..G {
                let e = exp(_mm512_sub_ps(_mm512_loadu_ps(sc[g].add(off + j - a)), max[g]));
                let p = _mm512_maskz_mov_ps(mask, e);
                sum[g] = _mm512_add_ps(sum[g], p);
                for (d, acc) in acc[g].iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(mask, vals[g].add(d * stride + j)), *acc);
                }
            }
        }
        off += b - a;
    }
    for g in 0..G {
        let inv = _mm256_set1_ps(1.0 / _mm512_reduce_add_ps(sum[g]));
        for (e, acc) in acc[g].chunks_exact(8).enumerate() {
            let acc: &[__m512; 8] = acc.try_into().expect("eight accumulators");
            _mm256_storeu_ps(o.as_mut_ptr().add(g * D + e * 8), _mm256_mul_ps(sums8(acc), inv));
        }
    }
}

/// The mask of a span's vector with `left` keys still in the span: all sixteen lanes, or the
/// first `left`.
#[inline]
fn lanes(left: usize) -> __mmask16 {
    if left >= W {
        u16::MAX
    } else {
        (1u16 << left) - 1
    }
}

/// The lane sums of eight vectors, in order, as one eight-lane vector.
///
/// # Safety
/// The CPU must have AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sums8(x: &[__m512; 8]) -> __m256 {
    // Halves added (16 → 8 lanes each), then pairwise horizontal adds down to one lane each.
    let mut h = [_mm256_setzero_ps(); 8];
    for (h, x) in h.iter_mut().zip(x) {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*x)));
        *h = _mm256_add_ps(_mm512_castps512_ps256(*x), high);
    }
    let a = _mm256_hadd_ps(h[0], h[1]);
    let b = _mm256_hadd_ps(h[2], h[3]);
    let c = _mm256_hadd_ps(h[4], h[5]);
    let d = _mm256_hadd_ps(h[6], h[7]);
    // Per 128-bit half: [x0 x1 x2 x3] partial sums of vectors 0..4 (ab) and 4..8 (cd).
    let ab = _mm256_hadd_ps(a, b);
    let cd = _mm256_hadd_ps(c, d);
    let lo = _mm256_permute2f128_ps::<0x20>(ab, cd);
    let hi = _mm256_permute2f128_ps::<0x31>(ab, cd);
    _mm256_add_ps(lo, hi)
}

/// `e^x` lane-wise for `x ≤ 0`: the eight-lane kernel's exp ([`super::super::lanes`]:
/// Cephes' expf) on sixteen lanes; below −87.3 it returns `e^−87.3`; NaN stays NaN.
///
/// # Safety
/// The CPU must have AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp(x: __m512) -> __m512 {
    const ROUND: f32 = 12_582_912.0; // 1.5 × 2^23: adding it rounds to an integer
    let s = |v: f32| _mm512_set1_ps(v);
    let x = _mm512_max_ps(s(-87.3), x);
    let t = _mm512_fmadd_ps(x, s(std::f32::consts::LOG2_E), s(ROUND));
    let n = _mm512_sub_ps(t, s(ROUND));
    let r = _mm512_fmadd_ps(n, s(2.121_944_4e-4), _mm512_fmadd_ps(n, s(-0.693_359_4), x));
    let p = _mm512_fmadd_ps(s(1.987_569_1e-4), r, s(1.398_199_9e-3));
    let p = _mm512_fmadd_ps(p, r, s(8.333_452e-3));
    let p = _mm512_fmadd_ps(p, r, s(4.166_579_6e-2));
    let p = _mm512_fmadd_ps(p, r, s(1.666_666_5e-1));
    let p = _mm512_fmadd_ps(p, r, s(0.5));
    let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), s(1.0));
    // 2^n from the rounded value's low bits: (bits − bits(ROUND) + 127) << 23.
    let bits = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4b40_0000));
    let pow2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(bits, _mm512_set1_epi32(127))));
    _mm512_mul_ps(e, pow2)
}
