//! Attention over key spans on the CPU: each query attends one or two contiguous spans of
//! the keys (its context, then its own segment), computed directly on the packed token row
//! with no padding or gathers, and no mask beyond the lanes of a vector.
//!
//! This is the CPU float32 path of [`super::packed::PackedBatch::attend`] for small head
//! sizes. There, libtorch's flash attention spends its time on tiling and softmax bookkeeping
//! rather than arithmetic (stories260K's heads are 8 wide), and padding the packed rows to
//! rectangles for it costs as much again. Here attention takes two passes over the keys —
//! scores, then `softmax · values` — with the queries split over libtorch's own threads
//! ([`crate::threads`]): on AVX-512, sixteen queries of a request per vector, each key
//! broadcast to them ([`avx512`]); else one query at a time, eight keys per vector
//! ([`super::lanes`]: AVX2 when the CPU has it).

#[cfg(target_arch = "x86_64")]
use super::lanes::Avx2;
use super::lanes::{F32x8, Portable, LANES};
use crate::error::{Error, Result, TorchContext};
use tch::{Device, Kind, Tensor};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Zeros after each transposed key row of the eight-lane kernel: a span's last whole vector
/// reads past the span's end.
const PAD: usize = LANES;

/// The head sizes this path runs. From 32 wide libtorch's kernel is faster (the
/// `packed_attention` benchmark, one thread, AVX2: 8 wide 1.6 ms against 4.2 ms, 16 wide 3.1
/// against 5.4; 32 wide, on the first version of this kernel, 10.5 against 8.1). On an
/// AVX-512 Xeon the eight-lane kernel took 2.14 and 5.27 ms against libtorch's 3.35 and 4.1;
/// the AVX-512 one takes 0.97 and 1.93.
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

/// Whether this path runs attention of `q` (`(1, heads, queries, head_dim)`): on the CPU,
/// float32, heads [`HEAD_DIMS`] wide.
pub(crate) fn applies(q: &Tensor) -> bool {
    let dim = q.size().last().copied().unwrap_or(0) as usize;
    q.device() == Device::Cpu && q.kind() == Kind::Float && HEAD_DIMS.contains(&dim)
}

/// Attention of `q` `(1, heads, Q, d)` over `k`, `v` `(1, kv_heads, T, d)` (float32, on the
/// CPU, `d` one of [`HEAD_DIMS`]) where query `i` attends the keys of `spans[i]`; returns
/// `(1, Q, heads × d)`. The queries are those of all `T` tokens, or of some of them (a last
/// layer that only needs the positions a score reads). `scale` defaults to `1/sqrt(d)`.
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, spans: &[Spans], scale: Option<f64>) -> Result<Tensor> {
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    let bad_shape = || {
        Error::Unsupported(format!(
            "span attention: queries {qs:?}, keys {ks:?}, values {vs:?} and {} spans; expected \
             (1, heads, Q, d), (1, kv_heads, T, d) twice and Q spans, d in {HEAD_DIMS:?}, \
             kv_heads dividing heads",
            spans.len()
        ))
    };
    let [1, heads, queries, dim] = qs[..] else {
        return Err(bad_shape());
    };
    let (kv_heads, tokens) = (ks.get(1).copied().unwrap_or(0), ks.get(2).copied().unwrap_or(0));
    if ks != vs
        || ks != [1, kv_heads, tokens, dim]
        || spans.len() != queries as usize
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
            "span attention: query {t} attends {bad:?}, empty or outside the {tokens} tokens"
        )));
    }
    let scale = scale.unwrap_or(1.0 / (dim as f64).sqrt()) as f32;
    let kernel = best_kernel();
    let flat = |x: Tensor, what: &str| -> Result<Vec<f32>> { Vec::<f32>::try_from(x.contiguous().view([-1])).op(what) };
    let threads = tch::get_num_threads().max(1) as usize;
    let shape = Shape {
        heads: heads as usize,
        rep: (heads / kv_heads) as usize,
        tokens: tokens as usize,
        queries: queries as usize,
        dim: dim as usize,
        scale,
    };
    let out = match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => {
            // Queries transposed (heads, d, Q), so that a tile's queries lie in a vector;
            // keys and values (kv_heads, T, d), each key's dimensions broadcast in turn.
            let qt = flat(q.squeeze_dim(0).transpose(1, 2), "reading queries")?;
            let kf = flat(k.squeeze_dim(0), "reading keys")?;
            let vf = flat(v.squeeze_dim(0), "reading values")?;
            // SAFETY: `Avx512` is only chosen where the CPU has AVX-512F (`best_kernel`).
            unsafe {
                match dim {
                    8 => avx512::compute::<8>(&shape, &qt, &kf, &vf, spans, threads),
                    _ => avx512::compute::<16>(&shape, &qt, &kf, &vf, spans, threads),
                }
            }
        }
        Kernel::Eight(lanes) => {
            // Queries (Q, heads, d); keys transposed (kv_heads, d, T + PAD) and zero-padded so
            // scores vectorise along the keys with whole chunks; values (kv_heads, T, d).
            let kt = k.squeeze_dim(0).transpose(1, 2).constant_pad_nd([0, PAD as i64]);
            let qv = flat(q.squeeze_dim(0).transpose(0, 1), "reading queries")?;
            let kt = flat(kt, "reading keys")?;
            let vv = flat(v.squeeze_dim(0), "reading values")?;
            let inputs = Inputs {
                q: &qv,
                kt: &kt,
                v: &vv,
                spans,
            };
            compute(&shape, inputs, threads, lanes)
        }
    };
    Tensor::from_slice(&out)
        .f_view([1, queries, heads * dim])
        .op("span attention output")
}

/// The sizes of one attention call.
struct Shape {
    heads: usize,
    /// Query heads per key head.
    rep: usize,
    /// Keys (and values).
    tokens: usize,
    /// Queries, each with its spans.
    queries: usize,
    /// One of [`HEAD_DIMS`].
    dim: usize,
    scale: f32,
}

/// The flattened operands of the eight-lane kernels: queries `(Q, heads, d)`, keys transposed
/// `(kv_heads, d, T + PAD)` (zeros after the `T` keys), values `(kv_heads, T, d)`; and each
/// query's spans.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    q: &'a [f32],
    kt: &'a [f32],
    v: &'a [f32],
    spans: &'a [Spans],
}

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX-512 (foundation): sixteen queries per vector ([`avx512`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// One query at a time, eight keys per vector ([`queries`]).
    Eight(Lanes),
}

/// Which instructions the eight-lane kernel's inner loops use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lanes {
    /// AVX2 with fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// What the target was compiled for.
    Portable,
}

fn best_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        if super::lanes::avx2_available() {
            return Kernel::Eight(Lanes::Avx2);
        }
    }
    Kernel::Eight(Lanes::Portable)
}

/// The attention output `(Q, heads × d)`, row-major, of the eight-lane kernel: contiguous runs
/// of queries of about equal work, a few per thread, on `threads` of libtorch's threads.
fn compute(s: &Shape, x: Inputs<'_>, threads: usize, kernel: Lanes) -> Vec<f32> {
    let spans = x.spans;
    let width = s.heads * s.dim;
    let mut out = vec![0f32; s.queries * width];
    let bounds = even_runs(spans.iter().map(Spans::keys), threads);
    let mut chunks = vec![];
    let mut rest = out.as_mut_slice();
    for pair in bounds.windows(2) {
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut((pair[1] - pair[0]) * width);
        rest = tail;
        chunks.push((pair[0], chunk));
    }
    crate::threads::parallel_parts(chunks, threads, |_, (from, chunk)| match s.dim {
        8 => run_dim::<8>(s, x, *from, chunk, kernel),
        _ => run_dim::<16>(s, x, *from, chunk, kernel),
    });
    out
}

/// Where runs of consecutive items of about equal cost start — a few per thread, or one on
/// one thread — then the number of items: the bounds of the runs, each run a part for
/// [`crate::threads::parallel_parts`].
fn even_runs(costs: impl Iterator<Item = usize> + Clone, threads: usize) -> Vec<usize> {
    let runs = if threads == 1 { 1 } else { 4 * threads };
    let total: usize = costs.clone().sum();
    let mut bounds = vec![0usize];
    let (mut acc, mut items) = (0, 0);
    for (i, cost) in costs.enumerate() {
        acc += cost;
        items = i + 1;
        if bounds.len() < runs && acc * runs >= total * bounds.len() {
            bounds.push(i + 1);
        }
    }
    bounds.push(items);
    bounds.dedup();
    bounds
}

/// Runs queries `from..` (as many as `out` holds rows) with `kernel`.
fn run_dim<const D: usize>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32], kernel: Lanes) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen where the CPU has AVX2 and FMA (`best_kernel`).
        Lanes::Avx2 => unsafe { queries_avx2::<D>(s, x, from, out) },
        Lanes::Portable => queries::<D, Portable>(s, x, from, out),
    }
}

/// [`queries`] on AVX2 registers, compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn queries_avx2<const D: usize>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32]) {
    queries::<D, Avx2>(s, x, from, out)
}

/// Eight floats of `x` from `at` as an array reference (a panic past its end).
#[inline(always)]
fn eight(x: &[f32], at: usize) -> &[f32; LANES] {
    x[at..at + LANES].try_into().expect("eight lanes")
}

/// `acc += w × r`: one key's value row `r` (`D` floats, up to two vectors) weighted by `w`.
#[inline(always)]
fn add_row<const D: usize, V: F32x8>(acc: &mut [V; 2], w: f32, r: &[f32]) {
    let w = V::splat(w);
    for (p, acc) in acc.iter_mut().enumerate().take(D / LANES) {
        *acc = w.mul_add(V::load(eight(r, p * LANES)), *acc);
    }
}

/// The attention of queries `from..` (as many as `out` holds rows) on lanes `V`.
#[inline(always)]
fn queries<const D: usize, V: F32x8>(s: &Shape, x: Inputs<'_>, from: usize, out: &mut [f32]) {
    let Inputs { q, kt, v, spans } = x;
    let stride = s.tokens + PAD;
    let kv_heads = s.heads / s.rep;
    assert_eq!(kt.len(), kv_heads * D * stride, "keys (kv_heads, d, T + PAD)");
    assert_eq!(v.len(), kv_heads * s.tokens * D, "values (kv_heads, T, d)");
    let mut scores: Vec<f32> = vec![];
    for (row, o) in out.chunks_exact_mut(s.heads * D).enumerate() {
        let t = from + row;
        assert!(t < s.queries, "query {t} of {}", s.queries);
        let sp = spans[t];
        let parts = [sp.first, sp.second].map(|(a, b)| (a as usize, b as usize));
        for &(a, b) in &parts {
            assert!(a <= b && b <= s.tokens, "query {t} attends {a}..{b} of {}", s.tokens);
        }
        let n = sp.keys();
        // Whole chunks of eight: a span's last chunk reads past its end and writes scores past
        // it, which the next span's scores overwrite; the lanes past `n` are set to −∞.
        let padded = n.div_ceil(LANES) * LANES;
        scores.clear();
        scores.resize(padded + LANES, 0.0);
        for h in 0..s.heads {
            let kv = h / s.rep;
            // Loops and functions rather than closures here: a closure does not inherit
            // `queries_avx2`'s target features, so unless it is inlined first its intrinsics
            // stay calls (as they did at opt-level 2).
            let mut qh = [V::splat(0.0); D];
            for (d, qd) in qh.iter_mut().enumerate() {
                *qd = V::splat(q[(t * s.heads + h) * D + d] * s.scale);
            }
            let keys = &kt[kv * D * stride..(kv + 1) * D * stride];
            // Scores, eight keys at a time summed over the dimensions in one register.
            let mut off = 0;
            for &(a, b) in &parts {
                for j in (a..b).step_by(LANES) {
                    let mut acc = V::splat(0.0);
                    for (d, qd) in qh.iter().enumerate() {
                        // SAFETY: j < b ≤ tokens (asserted above), so these eight floats end
                        // by d·stride + tokens − 1 + LANES < (d + 1)·stride ≤ keys.len().
                        let k = unsafe { &*keys.as_ptr().add(d * stride + j).cast::<[f32; LANES]>() };
                        acc = qd.mul_add(V::load(k), acc);
                    }
                    let at = off + j - a;
                    acc.store((&mut scores[at..at + LANES]).try_into().expect("eight lanes"));
                }
                off += b - a;
            }
            scores[n..padded].fill(f32::NEG_INFINITY);
            let scores = &mut scores[..padded];
            let mut max = V::splat(f32::NEG_INFINITY);
            for c in scores.chunks_exact(LANES) {
                max = max.max(V::load(c.try_into().expect("eight lanes")));
            }
            // A NaN score may be lost from the maximum; it still makes its exponential NaN.
            let max = V::splat(max.max_lane());
            let mut sum = V::splat(0.0);
            for c in scores.chunks_exact_mut(LANES) {
                let c: &mut [f32; LANES] = c.try_into().expect("eight lanes");
                let e = V::load(c).sub(max).exp();
                e.store(c);
                sum = sum.add(e);
            }
            // softmax · values: each key adds its weighted row, keys in turn into four
            // accumulators so that consecutive additions do not wait on each other.
            let mut acc = [[V::splat(0.0); 2]; 4];
            let mut off = 0;
            for &(a, b) in &parts {
                let rows = &v[(kv * s.tokens + a) * D..(kv * s.tokens + b) * D];
                let weights = &scores[off..off + b - a];
                let mut quads = rows.chunks_exact(4 * D);
                let mut ws = weights.chunks_exact(4);
                for (w, quad) in (&mut ws).zip(&mut quads) {
                    for ((acc, &w), r) in acc.iter_mut().zip(w).zip(quad.chunks_exact(D)) {
                        add_row::<D, V>(acc, w, r);
                    }
                }
                for ((&w, r), acc) in ws
                    .remainder()
                    .iter()
                    .zip(quads.remainder().chunks_exact(D))
                    .zip(&mut acc)
                {
                    add_row::<D, V>(acc, w, r);
                }
                off += b - a;
            }
            let inv = V::splat(1.0 / sum.sum());
            let [a0, a1, a2, a3] = acc;
            let out = o[h * D..(h + 1) * D].chunks_exact_mut(LANES);
            for ((((o, x0), x1), x2), x3) in out.zip(a0).zip(a1).zip(a2).zip(a3) {
                let total = x0.add(x1).add(x2.add(x3));
                total.mul(inv).store(o.try_into().expect("eight lanes"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{best_kernel, compute, Inputs, Kernel, Lanes, Shape, Spans, PAD};

    /// The kernels this CPU runs, the portable one first.
    fn kernels() -> Vec<Kernel> {
        let mut all = vec![Kernel::Eight(Lanes::Portable)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if super::super::lanes::avx2_available() {
                all.push(Kernel::Eight(Lanes::Avx2));
            }
            if has!("avx512f") {
                all.push(Kernel::Avx512);
            }
        }
        assert_eq!(all.last(), Some(&best_kernel()), "the best kernel is the last one here");
        all
    }

    /// Rows of `width` (a head's dimensions × tokens), each followed by [`PAD`] zeros.
    fn padded(rows: &[f32], width: usize) -> Vec<f32> {
        rows.chunks_exact(width)
            .flat_map(|row| row.iter().copied().chain([0.0; PAD]))
            .collect()
    }

    /// `kernel`'s attention of queries `q` `(Q, heads, d)` over keys `kt` transposed
    /// `(kv_heads, d, T)` and values `v` `(kv_heads, T, d)`, each put in the kernel's layout.
    fn run(kernel: Kernel, s: &Shape, x: Inputs<'_>, threads: usize) -> Vec<f32> {
        let (tokens, dim) = (s.tokens, s.dim);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                // Queries (heads, d, Q), keys (kv_heads, T, d).
                let qt: Vec<f32> = (0..s.heads)
                    .flat_map(|h| (0..dim).flat_map(move |d| (0..s.queries).map(move |i| (i, h, d))))
                    .map(|(i, h, d)| x.q[(i * s.heads + h) * dim + d])
                    .collect();
                let k: Vec<f32> =
                    x.kt.chunks_exact(dim * tokens)
                        .flat_map(|head| (0..tokens).flat_map(move |j| (0..dim).map(move |d| head[d * tokens + j])))
                        .collect();
                // SAFETY: `kernels` lists `Avx512` only where the CPU has AVX-512F.
                unsafe {
                    match dim {
                        8 => super::avx512::compute::<8>(s, &qt, &k, x.v, x.spans, threads),
                        _ => super::avx512::compute::<16>(s, &qt, &k, x.v, x.spans, threads),
                    }
                }
            }
            Kernel::Eight(lanes) => {
                // Each dimension's row of keys padded with PAD zeros.
                let kt = padded(x.kt, tokens);
                compute(s, Inputs { kt: &kt, ..x }, threads, lanes)
            }
        }
    }

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
        // Also a context of 32 tokens (whole vectors of 8 and 16 keys) then a segment over it,
        // and a query whose first span is empty; and head counts of 3 and 6.
        let mut whole: Vec<Spans> = (0..32)
            .map(|p| Spans {
                first: (0, p + 1),
                second: (0, 0),
            })
            .collect();
        whole.extend((0..5).map(|p| Spans {
            first: (0, 32),
            second: (32, 32 + p + 1),
        }));
        whole.push(Spans {
            first: (5, 5),
            second: (30, 34),
        });
        // And spans no packed batch makes, which the AVX-512 kernel's tiles must still take:
        // a second span inside the others' first spans, second spans with a gap between them,
        // and queries of no context (empty first spans) sharing a tile.
        let mut odd: Vec<Spans> = (0..20)
            .map(|p| Spans {
                first: (0, p + 1),
                second: (0, 0),
            })
            .collect();
        for (first, second) in [((0, 5), (10, 12)), ((0, 10), (20, 22)), ((0, 10), (30, 31))] {
            odd.push(Spans { first, second });
        }
        odd.extend((0..6).map(|p| Spans {
            first: (23, 23),
            second: (23, 23 + p + 1),
        }));
        odd.extend((0..7).map(|_| Spans {
            first: (0, 36),
            second: (0, 0),
        }));
        let cases = [
            (layout(), 4, 2),
            (layout(), 3, 1),
            (whole.clone(), 3, 3),
            (whole, 6, 2),
            (odd, 2, 1),
        ];
        for (spans, dim, (heads, kv_heads)) in cases
            .iter()
            .flat_map(|(spans, h, kv)| super::HEAD_DIMS.map(|dim| (spans, dim, (*h, *kv))))
        {
            let tokens = spans.len();
            let s = Shape {
                heads,
                rep: heads / kv_heads,
                tokens,
                queries: tokens,
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
            let runs = kernels().into_iter().flat_map(|k| [(k, 1), (k, 2), (k, 3)]);
            for (kernel, threads) in runs {
                let x = Inputs {
                    q: &q,
                    kt: &kt,
                    v: &v,
                    spans,
                };
                let got = run(kernel, &s, x, threads);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(&g, &w)| (g as f64 - w).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst < 1e-5,
                    "{dim} wide, {heads} heads over {kv_heads}, {kernel:?} on {threads} threads: max difference {worst}"
                );
                // Some of the queries (every third, and the last) over all the keys: the
                // rows of those queries.
                let some: Vec<usize> = (0..tokens).filter(|t| t % 3 == 1 || *t == tokens - 1).collect();
                let row = heads * dim;
                let q_some: Vec<f32> = some.iter().flat_map(|&t| q[t * row..(t + 1) * row].to_vec()).collect();
                let spans_some: Vec<Spans> = some.iter().map(|&t| spans[t]).collect();
                let x = Inputs {
                    q: &q_some,
                    spans: &spans_some,
                    ..x
                };
                let got = run(
                    kernel,
                    &Shape {
                        queries: some.len(),
                        ..s
                    },
                    x,
                    threads,
                );
                for (i, &t) in some.iter().enumerate() {
                    for (g, w) in got[i * row..(i + 1) * row].iter().zip(&want[t * row..(t + 1) * row]) {
                        assert!(
                            (*g as f64 - w).abs() < 1e-5,
                            "query {t} of some, {kernel:?}: {g} against {w}"
                        );
                    }
                }
            }
        }
    }

    /// A NaN key, or a NaN value, reaches exactly the queries that attend it, although the
    /// whole-vector reads of the others' spans (or a tile's keys, for all its queries) load it
    /// too: one in the first segment, one in the context.
    #[test]
    fn a_nan_key_or_value_reaches_only_its_queries() {
        for dim in super::HEAD_DIMS {
            // Inside the first segment (30..39), seen by its tokens 36..39.
            nan_reaches_only_its_queries(dim, 36, |t| (36..39).contains(&t));
            // Inside the context (0..30), seen by its tokens from 20 and by every segment's.
            nan_reaches_only_its_queries(dim, 20, |t| t >= 20);
        }
    }

    fn nan_reaches_only_its_queries(dim: usize, nan: usize, sees: impl Fn(usize) -> bool) {
        let spans = layout();
        let (heads, kv_heads, tokens) = (2, 1, spans.len());
        let s = Shape {
            heads,
            rep: 2,
            tokens,
            queries: tokens,
            dim,
            scale: 0.5,
        };
        let q = vec![0.25f32; tokens * heads * dim];
        let clean_keys = vec![0f32; kv_heads * dim * tokens];
        let clean_values: Vec<f32> = (0..tokens * dim).map(|i| i as f32 / 100.0).collect();
        let mut nan_keys = clean_keys.clone();
        for d in 0..dim {
            nan_keys[d * tokens + nan] = f32::NAN;
        }
        let mut nan_values = clean_values.clone();
        nan_values[nan * dim] = f32::NAN; // one dimension of its value
        for (what, kt, v, nan_dims) in [
            ("key", &nan_keys, &clean_values, 0..dim),
            ("value", &clean_keys, &nan_values, 0..1),
        ] {
            for kernel in kernels() {
                let x = Inputs {
                    q: &q,
                    kt,
                    v,
                    spans: &spans,
                };
                let got = run(kernel, &s, x, 1);
                for (t, row) in got.chunks_exact(heads * dim).enumerate() {
                    for (i, x) in row.iter().enumerate() {
                        let poisoned = sees(t) && nan_dims.contains(&(i % dim));
                        assert_eq!(
                            x.is_nan(),
                            poisoned,
                            "NaN {what}, {dim} wide, {kernel:?}, token {t}: {row:?}"
                        );
                        assert!(poisoned || x.is_finite(), "NaN {what}, {kernel:?}, token {t}: {row:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn runs_split_items_by_cost() {
        assert_eq!(super::even_runs([5, 1, 1, 1, 1, 1].into_iter(), 1), [0, 6]);
        // Eight runs on two threads: a run ends once its share of the cost is reached (the
        // costly first item covers four shares, so the next runs take an item each), the last
        // run takes the rest.
        assert_eq!(
            super::even_runs([8, 1, 1, 1, 1, 1, 1, 1, 1].into_iter(), 2),
            [0, 1, 2, 3, 4, 5, 6, 7, 9]
        );
        assert_eq!(
            super::even_runs([1; 16].into_iter(), 2),
            [0, 2, 4, 6, 8, 10, 12, 14, 16]
        );
        assert_eq!(super::even_runs(std::iter::empty(), 2), [0]);
    }

    #[test]
    fn bad_spans_and_shapes_are_errors() {
        let spans = layout();
        let t = spans.len() as i64;
        let x = |h: i64, d: i64| tch::Tensor::zeros([1, h, t, d], (tch::Kind::Float, tch::Device::Cpu));
        assert!(super::attend(&x(4, 8), &x(2, 8), &x(2, 8), &spans, None).is_ok());
        // Fewer queries than keys, each with its spans; not as many spans as queries.
        let q5 = tch::Tensor::zeros([1, 4, 5, 8], (tch::Kind::Float, tch::Device::Cpu));
        let y = super::attend(&q5, &x(2, 8), &x(2, 8), &spans[40..45], None).expect("five queries");
        assert_eq!(y.size(), [1, 5, 32]);
        assert!(super::attend(&q5, &x(2, 8), &x(2, 8), &spans[40..44], None).is_err());
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
        assert!(e.contains("query 3"), "{e}");
        let mut outside = spans;
        outside[40].second = (39, 47);
        assert!(super::attend(&x(4, 8), &x(2, 8), &x(2, 8), &outside, None).is_err());
    }
}
