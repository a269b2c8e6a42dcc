//! Attention over key spans on the CPU: each query attends one or two contiguous spans of
//! the keys (its context, then its own segment), computed directly on the packed token row
//! with no padding, gathers or masks.
//!
//! This is the CPU float32 path of [`super::packed::PackedBatch::attend`] for small head
//! sizes. There, libtorch's flash attention spends its time on tiling and softmax bookkeeping
//! rather than arithmetic (stories260K's heads are 8 wide), and padding the packed rows to
//! rectangles for it costs as much again. Here each (query, head) takes two passes over its
//! keys — scores, then `softmax · values` — vectorised along the keys (AVX2 when the CPU has
//! it), with the queries split over libtorch's own threads ([`crate::threads`]).

use crate::error::{Error, Result, TorchContext};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// The head sizes this path runs. From 32 wide libtorch's kernel is faster (the
/// `packed_attention` benchmark: 8 wide 1.8 ms against 4.0 ms, 16 wide 4.1 against 5.2, 32
/// wide 10.5 against 8.1, one thread).
pub(crate) const HEAD_DIMS: [usize; 2] = [8, 16];

/// The keys one query attends: `first` and then `second` (empty for a context token), as
/// half-open ranges of token indices in the packed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spans {
    /// The first span (a context's tokens up to the query's own position, or all of them).
    pub(crate) first: (u32, u32),
    /// The second span (a segment's tokens up to the query), `(0, 0)` when none.
    pub(crate) second: (u32, u32),
}

impl Spans {
    fn keys(&self) -> usize {
        (self.first.1 - self.first.0 + self.second.1 - self.second.0) as usize
    }
}

/// Whether this path runs attention of `q` (`(1, heads, tokens, head_dim)`): on the CPU,
/// float32, heads [`HEAD_DIMS`] wide.
pub(crate) fn applies(q: &Tensor) -> bool {
    let dim = q.size().last().copied().unwrap_or(0) as usize;
    q.device() == Device::Cpu && q.kind() == Kind::Float && HEAD_DIMS.contains(&dim)
}

/// Attention of `q` `(1, heads, T, d)` over `k`, `v` `(1, kv_heads, T, d)` (float32, on the
/// CPU, `d` one of [`HEAD_DIMS`]) where token `t` attends the keys of `spans[t]`; returns
/// `(1, T, heads × d)`. `scale` defaults to `1/sqrt(d)`.
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, spans: &[Spans], scale: Option<f64>) -> Result<Tensor> {
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    let bad_shape = || {
        Error::Unsupported(format!(
            "span attention: queries {qs:?}, keys {ks:?}, values {vs:?} and {} spans; expected \
             (1, heads, T, d), (1, kv_heads, T, d) twice and T spans, d in {HEAD_DIMS:?}, \
             kv_heads dividing heads",
            spans.len()
        ))
    };
    let [1, heads, tokens, dim] = qs[..] else {
        return Err(bad_shape());
    };
    let kv_heads = ks.get(1).copied().unwrap_or(0);
    if ks != vs
        || ks != [1, kv_heads, tokens, dim]
        || spans.len() != tokens as usize
        || !applies(q)
        || !applies(k)
        || !applies(v)
        || heads == 0
        || kv_heads == 0
        || heads % kv_heads != 0
    {
        return Err(bad_shape());
    }
    let inside = |(a, b): (u32, u32)| a <= b && b as i64 <= tokens;
    if let Some((t, bad)) = spans
        .iter()
        .enumerate()
        .find(|(_, s)| !inside(s.first) || !inside(s.second) || s.keys() == 0)
    {
        return Err(Error::Unsupported(format!(
            "span attention: token {t} attends {bad:?}, empty or outside its {tokens} tokens"
        )));
    }
    let scale = scale.unwrap_or(1.0 / (dim as f64).sqrt()) as f32;
    // Queries (T, heads, d); keys transposed (kv_heads, d, T) so scores vectorise along the
    // keys; values (kv_heads, T, d) so each key adds one contiguous row to the output.
    let flat = |x: Tensor, what: &str| -> Result<Vec<f32>> { Vec::<f32>::try_from(x.contiguous().view([-1])).op(what) };
    let qv = flat(q.squeeze_dim(0).transpose(0, 1), "reading queries")?;
    let kt = flat(k.squeeze_dim(0).transpose(1, 2), "reading keys")?;
    let vv = flat(v.squeeze_dim(0), "reading values")?;
    let shape = Shape {
        heads: heads as usize,
        rep: (heads / kv_heads) as usize,
        tokens: tokens as usize,
        dim: dim as usize,
        scale,
    };
    let threads = tch::get_num_threads().max(1) as usize;
    let inputs = Inputs {
        q: &qv,
        kt: &kt,
        v: &vv,
        spans,
    };
    let out = compute(&shape, inputs, threads, best_kernel());
    Tensor::from_slice(&out)
        .f_view([1, tokens, heads * dim])
        .op("span attention output")
}

/// The sizes of one attention call.
struct Shape {
    heads: usize,
    /// Query heads per key head.
    rep: usize,
    tokens: usize,
    /// One of [`HEAD_DIMS`].
    dim: usize,
    scale: f32,
}

/// The flattened operands: queries `(T, heads, d)`, keys transposed `(kv_heads, d, T)`,
/// values `(kv_heads, T, d)`, and each query's spans.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    q: &'a [f32],
    kt: &'a [f32],
    v: &'a [f32],
    spans: &'a [Spans],
}

/// Which instructions the inner loops use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX2 with fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// What the target was compiled for.
    Portable,
}

fn best_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernel::Avx2;
        }
    }
    Kernel::Portable
}

/// The attention output `(T, heads × d)`, row-major: contiguous runs of queries of about equal
/// work, a few per thread, on `threads` of libtorch's threads.
fn compute(s: &Shape, x: Inputs<'_>, threads: usize, kernel: Kernel) -> Vec<f32> {
    let spans = x.spans;
    let width = s.heads * s.dim;
    let mut out = vec![0f32; s.tokens * width];
    let runs = if threads == 1 { 1 } else { 4 * threads };
    let total: usize = spans.iter().map(Spans::keys).sum();
    let mut bounds = vec![0usize];
    let mut acc = 0;
    for (t, sp) in spans.iter().enumerate() {
        acc += sp.keys();
        if bounds.len() < runs && acc * runs >= total * bounds.len() {
            bounds.push(t + 1);
        }
    }
    bounds.push(s.tokens);
    bounds.dedup();
    let mut chunks = vec![];
    let mut rest = out.as_mut_slice();
    for pair in bounds.windows(2) {
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut((pair[1] - pair[0]) * width);
        rest = tail;
        chunks.push(Mutex::new((pair[0], chunk)));
    }
    crate::threads::parallel(chunks.len(), threads, |i| {
        // Each run is taken by exactly one thread, so the lock is never contended.
        let mut guard = chunks[i].lock().unwrap_or_else(|p| p.into_inner());
        let (from, chunk) = &mut *guard;
        match s.dim {
            8 => run_dim::<8>(s, x, *from, chunk, kernel),
            _ => run_dim::<16>(s, x, *from, chunk, kernel),
        }
    });
    drop(chunks);
    out
}

/// Runs queries `from..` (as many as `out` holds rows) with `kernel`.
fn run_dim<const D: usize>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32], kernel: Kernel) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen where the CPU has AVX2 and FMA (`best_kernel`).
        Kernel::Avx2 => unsafe { queries_avx2::<D>(s, x, from, out) },
        Kernel::Portable => queries::<D, false>(s, x, from, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn queries_avx2<const D: usize>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32]) {
    queries::<D, true>(s, x, from, out)
}

/// `a × b + c`, fused where the instruction is there (`FMA`), else two operations (a fused
/// multiply-add without the instruction is a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Keys scored at once: one vector register of eight lanes.
const LANES: usize = 8;

#[inline(always)]
fn queries<const D: usize, const FMA: bool>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32]) {
    let Inputs { q, kt, v, spans } = x;
    let mut scores: Vec<f32> = vec![];
    for (row, o) in out.chunks_exact_mut(s.heads * D).enumerate() {
        let t = from + row;
        let sp = spans[t];
        let n = sp.keys();
        scores.clear();
        scores.resize(n, 0.0);
        let parts = [sp.first, sp.second];
        for h in 0..s.heads {
            let kv = h / s.rep;
            let qh: [f32; D] = std::array::from_fn(|d| q[(t * s.heads + h) * D + d] * s.scale);
            // Scores, eight keys at a time summed over the dimensions in one register.
            let mut off = 0;
            for &(a, b) in &parts {
                let (a, b) = (a as usize, b as usize);
                let dst = &mut scores[off..off + b - a];
                let key = |d: usize| &kt[(kv * D + d) * s.tokens + a..(kv * D + d) * s.tokens + b];
                let full = (b - a) / LANES * LANES;
                for j in (0..full).step_by(LANES) {
                    let mut acc = [0f32; LANES];
                    for (d, &qd) in qh.iter().enumerate() {
                        let k = &key(d)[j..j + LANES];
                        for (x, &y) in acc.iter_mut().zip(k) {
                            *x = madd::<FMA>(qd, y, *x);
                        }
                    }
                    dst[j..j + LANES].copy_from_slice(&acc);
                }
                for (j, x) in dst.iter_mut().enumerate().skip(full) {
                    *x = qh
                        .iter()
                        .enumerate()
                        .fold(0.0, |acc, (d, &qd)| madd::<FMA>(qd, key(d)[j], acc));
                }
                off += b - a;
            }
            let max = lane_max(&scores);
            let sum = exp_shifted(&mut scores, max);
            // softmax · values: each key adds its weighted row, alternate keys into two
            // accumulators so consecutive additions do not wait on each other.
            let (mut even, mut odd) = ([0f32; D], [0f32; D]);
            let mut off = 0;
            for &(a, b) in &parts {
                let (a, b) = (a as usize, b as usize);
                let rows = &v[(kv * s.tokens + a) * D..(kv * s.tokens + b) * D];
                let weights = &scores[off..off + b - a];
                let mut pairs = rows.chunks_exact(2 * D);
                for (w, pair) in weights.chunks_exact(2).zip(&mut pairs) {
                    for ((x, y), (&r0, &r1)) in even
                        .iter_mut()
                        .zip(odd.iter_mut())
                        .zip(pair[..D].iter().zip(&pair[D..]))
                    {
                        *x = madd::<FMA>(w[0], r0, *x);
                        *y = madd::<FMA>(w[1], r1, *y);
                    }
                }
                if let (Some(&w), Some(r)) = (weights.chunks_exact(2).remainder().first(), pairs.remainder().get(..D)) {
                    for (x, &y) in even.iter_mut().zip(r) {
                        *x = madd::<FMA>(w, y, *x);
                    }
                }
                off += b - a;
            }
            let inv = 1.0 / sum;
            for ((x, e), o) in o[h * D..(h + 1) * D].iter_mut().zip(even).zip(odd) {
                *x = (e + o) * inv;
            }
        }
    }
}

/// The largest of `x` (NaN-propagating in the sense that a NaN score makes the output NaN
/// through [`exp_shifted`]); eight lanes so it vectorises.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &y) in lanes.iter_mut().zip(c) {
            *l = if y > *l { y } else { *l };
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &y| if y > m { y } else { m });
    for l in lanes {
        m = if l > m { l } else { m };
    }
    m
}

/// Replaces each `x` by `exp(x − max)` and returns their sum (eight lanes).
#[inline(always)]
fn exp_shifted(x: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        for (l, y) in lanes.iter_mut().zip(c.iter_mut()) {
            *y = exp(*y - max);
            *l += *y;
        }
    }
    let mut sum = 0.0;
    for y in chunks.into_remainder() {
        *y = exp(*y - max);
        sum += *y;
    }
    sum + lanes.iter().sum::<f32>()
}

/// `e^x` for `x ≤ 0` to within about 2 ulp (Cephes' expf: `x = n·ln 2 + r`, a degree-6
/// polynomial on `|r| ≤ ln 2 / 2`, the power of two built in the exponent bits), branch-free
/// so that loops over it vectorise. Below −87.3 it returns `e^−87.3`; NaN stays NaN.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 × 2^23: adding it rounds to an integer
    let x = if x < -87.3 { -87.3 } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let k = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    e * f32::from_bits(((k + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::{best_kernel, compute, exp, Kernel, Shape, Spans};

    /// A context of 30 tokens, then segments of 9 and 7 tokens over it.
    fn layout() -> Vec<Spans> {
        let mut spans: Vec<Spans> = (0..30)
            .map(|p| Spans {
                first: (0, p + 1),
                second: (0, 0),
            })
            .collect();
        for (start, len) in [(30u32, 9u32), (39, 7)] {
            spans.extend((0..len).map(|p| Spans {
                first: (0, 30),
                second: (start, start + p + 1),
            }));
        }
        spans
    }

    /// Every kernel and thread count against attention written out in f64, with grouped heads.
    #[test]
    fn kernels_and_splits_equal_plain_attention() {
        let spans = layout();
        for dim in super::HEAD_DIMS {
            let (heads, kv_heads, tokens) = (4, 2, spans.len());
            let s = Shape {
                heads,
                rep: heads / kv_heads,
                tokens,
                dim,
                scale: 0.7,
            };
            let mut seed = 12345u64 + dim as u64;
            let mut random = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
                    })
                    .collect()
            };
            let (q, kt, v) = (
                random(tokens * heads * dim),
                random(kv_heads * dim * tokens),
                random(kv_heads * tokens * dim),
            );
            let mut want = vec![0f64; tokens * heads * dim];
            for (t, sp) in spans.iter().enumerate() {
                for h in 0..heads {
                    let kv = h / s.rep;
                    let keys: Vec<usize> = (sp.first.0..sp.first.1)
                        .chain(sp.second.0..sp.second.1)
                        .map(|j| j as usize)
                        .collect();
                    let scores: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            (0..dim)
                                .map(|d| q[(t * heads + h) * dim + d] as f64 * kt[(kv * dim + d) * tokens + j] as f64)
                                .sum::<f64>()
                                * 0.7
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = weights.iter().sum();
                    for d in 0..dim {
                        want[(t * heads + h) * dim + d] = keys
                            .iter()
                            .zip(&weights)
                            .map(|(&j, w)| w * v[(kv * tokens + j) * dim + d] as f64)
                            .sum::<f64>()
                            / sum;
                    }
                }
            }
            for (kernel, threads) in [
                (Kernel::Portable, 1),
                (Kernel::Portable, 3),
                (best_kernel(), 1),
                (best_kernel(), 2),
            ] {
                let x = super::Inputs {
                    q: &q,
                    kt: &kt,
                    v: &v,
                    spans: &spans,
                };
                let got = compute(&s, x, threads, kernel);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, &w)| (g as f64 - w).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst < 1e-5,
                    "{dim} wide, {kernel:?} on {threads} threads: max difference {worst}"
                );
            }
        }
    }

    #[test]
    fn bad_spans_and_shapes_are_errors() {
        let spans = layout();
        let t = spans.len() as i64;
        let x = |h: i64, d: i64| tch::Tensor::zeros([1, h, t, d], (tch::Kind::Float, tch::Device::Cpu));
        assert!(super::attend(&x(4, 8), &x(2, 8), &x(2, 8), &spans, None).is_ok());
        let e = super::attend(&x(4, 8), &x(2, 16), &x(2, 16), &spans, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys [1, 2, 46, 16]"), "{e}");
        assert!(super::attend(&x(4, 32), &x(2, 32), &x(2, 32), &spans, None).is_err());
        assert!(super::attend(&x(3, 8), &x(2, 8), &x(2, 8), &spans, None).is_err());
        let mut reversed = spans.clone();
        reversed[3].first = (3, 1);
        let e = super::attend(&x(4, 8), &x(2, 8), &x(2, 8), &reversed, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("token 3"), "{e}");
        let mut outside = spans;
        outside[40].second = (39, 47);
        assert!(super::attend(&x(4, 8), &x(2, 8), &x(2, 8), &outside, None).is_err());
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }
}
