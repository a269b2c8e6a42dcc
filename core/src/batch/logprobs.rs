//! Target log-probabilities and greedy tokens from a block of logits: the part of scoring that
//! reads the whole vocabulary at each scored position.
//!
//! A position's log-probability of a token is `logit[token] − logsumexp(logits)` (log_softmax
//! without materialising it), and its greedy token is the first index of its largest logit.
//! On the CPU one pass over each row, a block at a time, gives both: the block's maximum, then
//! `Σ e^(x − max)` over the block while it is in the L1 cache, rescaled when a later block
//! raises the maximum. libtorch's `logsumexp`, gather and `argmax` read a row three times
//! between them: on one thread (the `logprobs` benchmark) they take 250 µs per position of
//! GPT-2's 50,257-token vocabulary against 41 here, and 1.34 µs against 0.51 at stories260K's
//! 512. On other devices libtorch's operators run.

use crate::error::{Error, Result, TorchContext};
#[cfg(target_arch = "x86_64")]
use crate::model::lanes::Avx2;
use crate::model::lanes::{F32x8, Portable, LANES};
use tch::{Device, Kind, Tensor};

/// Logits per block: 2 KB of float32, read from memory once and then from the L1 cache.
const BLOCK: usize = 512;

/// For entries `(rows[e], targets[e])` of `logits` `(positions, vocab)`: the log-probability
/// `logits[r, t] − logsumexp(logits[r])` and the greedy token `argmax(logits[r])` (its first
/// largest logit) of each. A row of `logits` with a NaN or infinite logsumexp (a NaN or `+inf`
/// logit, or every logit `−inf`) is an error, as is an entry outside them.
///
/// ```
/// use evalkit_core::batch::logprobs::log_probs;
/// use tch::Tensor;
/// let logits = Tensor::from_slice(&[0f32, 0.0, 3.0, 1.0, 2.0, 2.0]).view([2, 3]);
/// let (lp, greedy) = log_probs(&logits, &[0, 1, 1], &[2, 0, 2]).unwrap();
/// let lse0 = (2f64 + 3f64.exp()).ln();
/// assert!((lp[0] as f64 - (3.0 - lse0)).abs() < 1e-6);
/// assert_eq!(greedy, [2, 1, 1]); // the first of row 1's two largest logits
/// ```
pub fn log_probs(logits: &Tensor, rows: &[i64], targets: &[i64]) -> Result<(Vec<f32>, Vec<i64>)> {
    let (positions, vocab) = check_entries(logits, rows, targets)?;
    if logits.device() != Device::Cpu {
        return with_libtorch(logits, rows, targets);
    }
    let logits = logits.f_to_kind(Kind::Float).op("logits to float32")?.contiguous();
    let flat = floats(&logits, positions * vocab);
    let stats = row_stats(flat, vocab, tch::get_num_threads().max(1) as usize);
    if stats.iter().any(|(lse, _)| !lse.is_finite()) {
        return Err(non_finite());
    }
    Ok(rows
        .iter()
        .zip(targets)
        .map(|(&r, &t)| {
            let (lse, argmax) = stats[r as usize];
            (
                (flat[r as usize * vocab + t as usize] as f64 - lse) as f32,
                argmax as i64,
            )
        })
        .unzip())
}

/// [`log_probs`] with libtorch's operators (`logsumexp`, a gather, `argmax`) on the logits'
/// device: the path on GPUs, and the baseline of the CPU pass.
///
/// ```
/// use evalkit_core::batch::logprobs::{log_probs, log_probs_libtorch};
/// let logits = tch::Tensor::randn([4, 100], tch::kind::FLOAT_CPU);
/// let (a, b) = (log_probs(&logits, &[0, 3], &[7, 9])?, log_probs_libtorch(&logits, &[0, 3], &[7, 9])?);
/// assert_eq!(a.1, b.1);
/// assert!(a.0.iter().zip(&b.0).all(|(x, y)| (x - y).abs() < 1e-5));
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn log_probs_libtorch(logits: &Tensor, rows: &[i64], targets: &[i64]) -> Result<(Vec<f32>, Vec<i64>)> {
    check_entries(logits, rows, targets)?;
    with_libtorch(logits, rows, targets)
}

/// [`log_probs_libtorch`] of entries already checked ([`check_entries`]).
fn with_libtorch(logits: &Tensor, rows: &[i64], targets: &[i64]) -> Result<(Vec<f32>, Vec<i64>)> {
    let dev = logits.device();
    let lse = logits.f_logsumexp([-1], false).op("logsumexp")?;
    if !bool::try_from(lse.isfinite().all()).op("checking logits")? {
        return Err(non_finite());
    }
    let r = Tensor::from_slice(rows).to_device(dev);
    let t = Tensor::from_slice(targets).to_device(dev);
    let picked = logits.f_index(&[Some(&r), Some(&t)]).op("gathering target logits")?;
    let lp = (picked - lse.index_select(0, &r)).to_device(Device::Cpu);
    let am = logits.argmax(-1, false).index_select(0, &r).to_device(Device::Cpu);
    Ok((
        Vec::<f32>::try_from(&lp).op("reading log-probs")?,
        Vec::<i64>::try_from(&am).op("reading argmax")?,
    ))
}

/// The logits' `(positions, vocab)`, once every entry is checked to lie within them.
fn check_entries(logits: &Tensor, rows: &[i64], targets: &[i64]) -> Result<(usize, usize)> {
    let &[positions, vocab] = &logits.size()[..] else {
        return Err(Error::Unsupported(format!(
            "logits of shape {:?}, expected (positions, vocab)",
            logits.size()
        )));
    };
    if rows.len() != targets.len() {
        return Err(Error::Unsupported(format!(
            "{} rows for {} target tokens",
            rows.len(),
            targets.len()
        )));
    }
    let outside = |x: i64, n: i64| x < 0 || x >= n;
    if let Some((r, t)) = rows
        .iter()
        .zip(targets)
        .find(|&(&r, &t)| outside(r, positions) || outside(t, vocab))
    {
        return Err(Error::Unsupported(format!(
            "entry (row {r}, token {t}) is outside logits of shape ({positions}, {vocab})"
        )));
    }
    Ok((positions as usize, vocab as usize))
}

fn non_finite() -> Error {
    Error::NonFinite {
        evaluation: String::new(),
        what: "NaN or infinite logits at a scored position".into(),
        rows: vec![],
    }
}

/// The first `len` floats of `t`, a contiguous float32 CPU tensor, borrowed from it.
fn floats(t: &Tensor, len: usize) -> &[f32] {
    assert!(
        t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() >= len,
        "a contiguous float32 CPU tensor of at least {len} elements"
    );
    if len == 0 {
        return &[];
    }
    // SAFETY: `t` holds at least `len` contiguous float32 values in CPU memory (asserted), and
    // the slice borrows `t`, which no one writes while it is read.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, len) }
}

/// `(logsumexp, first index of the largest value)` of each `vocab`-long row of `logits`, rows
/// split over `threads` of libtorch's threads ([`crate::threads::parallel`]). The logsumexp is
/// NaN where the row holds a NaN or `+inf`, `−inf` where it holds only `−inf`.
pub(crate) fn row_stats(logits: &[f32], vocab: usize, threads: usize) -> Vec<(f64, usize)> {
    let rows = logits.len().checked_div(vocab).unwrap_or(0);
    let mut out = vec![(f64::NAN, 0usize); rows];
    if rows == 0 {
        return out;
    }
    let per = rows.div_ceil(threads.max(1) * 4);
    let kernel = Kernel::best();
    crate::threads::parallel_parts(out.chunks_mut(per).collect(), threads, |i, chunk| {
        for (j, slot) in chunk.iter_mut().enumerate() {
            let r = i * per + j;
            *slot = kernel.row(&logits[r * vocab..(r + 1) * vocab]);
        }
    });
    out
}

/// Which lanes the row pass runs on.
#[derive(Clone, Copy)]
enum Kernel {
    /// AVX2 with fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// What the target was compiled for.
    Portable,
}

impl Kernel {
    fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if crate::model::lanes::avx2_available() {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    fn row(self, x: &[f32]) -> (f64, usize) {
        match self {
            // SAFETY: `Avx2` is only chosen where the CPU has AVX2 and FMA (`best`).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { row_avx2(x) },
            Kernel::Portable => row::<Portable>(x),
        }
    }
}

/// [`row`] on AVX2 registers, compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(x: &[f32]) -> (f64, usize) {
    row::<Avx2>(x)
}

/// `(logsumexp, first index of the largest value)` of `x` in one pass of [`BLOCK`]s: each
/// block's maximum, then its `Σ e^(x − max)` in float32 lanes, added to a float64 total that
/// is rescaled by `e^(old max − new max)` when a block raises the maximum. A NaN or `+inf`
/// makes a term NaN (`inf − inf`), and so the result.
#[inline(always)]
fn row<L: F32x8>(x: &[f32]) -> (f64, usize) {
    let (mut max, mut total, mut argmax) = (f32::NEG_INFINITY, 0f64, 0usize);
    for (b, block) in x.chunks(BLOCK).enumerate() {
        let (whole, tail) = block.split_at(block.len() / LANES * LANES);
        // Plain loops, not iterator closures: a closure does not inherit `row_avx2`'s target
        // features, and unless the optimiser happens to inline it first (it does at
        // opt-level 3, not at 2) every intrinsic in it stays a function call.
        let lane = |i: usize| -> &[f32; LANES] { whole[i * LANES..][..LANES].try_into().expect("eight floats") };
        let mut mv = L::splat(f32::NEG_INFINITY);
        for i in 0..whole.len() / LANES {
            mv = L::load(lane(i)).max(mv);
        }
        let mut m = mv.max_lane();
        for &v in tail {
            if v > m {
                m = v;
            }
        }
        // Strictly greater: on a tie the earlier block keeps the argmax, as libtorch's does.
        if m > max {
            argmax = b * BLOCK + block.iter().position(|&v| v == m).expect("the maximum is a value");
            total *= (max as f64 - m as f64).exp();
            max = m;
        }
        // While every value so far is −inf, shift by 0 (not −inf, whose −inf − −inf is NaN):
        // their terms are then about 1e-38 each, and the rescale above zeroes them when a
        // finite maximum comes (a row of only −inf ends at −inf, an error).
        let shift = if max == f32::NEG_INFINITY { 0.0 } else { max };
        let by = L::splat(shift);
        let mut sv = L::splat(0.0);
        for i in 0..whole.len() / LANES {
            sv = L::load(lane(i)).sub(by).exp().add(sv);
        }
        let mut sum = sv.sum() as f64;
        for &v in tail {
            sum += (v as f64 - shift as f64).exp();
        }
        total += sum;
    }
    (max as f64 + total.ln(), argmax)
}

#[cfg(test)]
mod tests {
    use super::{log_probs, row, Portable};
    use tch::{Kind, Tensor};

    /// logsumexp and first argmax in float64, the plain way.
    fn reference(x: &[f32]) -> (f64, usize) {
        let m = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let s: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
        let arg = x.iter().position(|&v| v as f64 == m).unwrap_or(0);
        (m + s.ln(), arg)
    }

    fn rows() -> Vec<Vec<f32>> {
        let mut out = vec![];
        for n in [1usize, 7, 8, 9, 511, 512, 513, 1500, 50_257] {
            let v = Tensor::randn([n as i64], (Kind::Float, tch::Device::Cpu)) * 4.0;
            out.push(Vec::<f32>::try_from(&v).expect("floats"));
        }
        // The largest value in a later block than an equal one, and rising block by block.
        let mut tie = vec![0f32; 1200];
        tie[3] = 5.0;
        tie[700] = 5.0;
        out.push(tie);
        out.push((0..2000).map(|i| i as f32 / 10.0).collect());
        out.push(vec![-1e30; 600]);
        // Whole blocks of −inf before the first finite value.
        let mut masked = vec![f32::NEG_INFINITY; 1100];
        masked.extend((0..300).map(|i| (i % 17) as f32 - 8.0));
        out.push(masked);
        out
    }

    fn check(f: impl Fn(&[f32]) -> (f64, usize)) {
        for x in rows() {
            let (lse, arg) = f(&x);
            let (want, want_arg) = reference(&x);
            assert!(
                (lse - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{} values: {lse} against {want}",
                x.len()
            );
            assert_eq!(arg, want_arg, "{} values", x.len());
        }
        let mut nan = vec![0f32; 1000];
        nan[900] = f32::NAN;
        assert!(f(&nan).0.is_nan());
        let mut inf = vec![0f32; 1000];
        inf[10] = f32::INFINITY;
        assert!(f(&inf).0.is_nan());
        assert_eq!(f(&[f32::NEG_INFINITY; 9]).0, f64::NEG_INFINITY);
        let mut low = vec![f32::NEG_INFINITY; 20];
        low[13] = -3.0;
        assert_eq!(f(&low), (-3.0, 13));
    }

    #[test]
    fn rows_portable() {
        check(row::<Portable>);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rows_avx2() {
        if crate::model::lanes::avx2_available() {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            check(|x| unsafe { super::row_avx2(x) });
        }
    }

    /// The CPU pass against libtorch's operators on the same logits, entries repeating rows.
    #[test]
    fn cpu_pass_equals_libtorch() {
        let logits = Tensor::randn([37, 1000], (Kind::Float, tch::Device::Cpu)) * 3.0;
        let rows: Vec<i64> = (0..60).map(|i| (i * 7) % 37).collect();
        let targets: Vec<i64> = (0..60).map(|i| (i * 131) % 1000).collect();
        let (lp, am) = log_probs(&logits, &rows, &targets).expect("log-probs");
        let (want_lp, want_am) = super::log_probs_libtorch(&logits, &rows, &targets).expect("libtorch");
        assert_eq!(am, want_am);
        for (a, b) in lp.iter().zip(&want_lp) {
            assert!((a - b).abs() <= 2e-5 * (1.0 + b.abs()), "{a} against {b}");
        }
        let bad = logits.copy();
        let _ = bad.get(5).get(9).fill_(f64::NAN);
        let err = log_probs(&bad, &[5], &[0]).expect_err("a NaN logit");
        assert!(err.to_string().contains("non-finite"), "{err}");
        for (rows, targets) in [
            (&[37i64][..], &[0i64][..]),
            (&[0], &[1000]),
            (&[-1], &[0]),
            (&[0, 1], &[0]),
        ] {
            let err = log_probs(&logits, rows, targets).expect_err("entries outside the logits");
            assert!(
                err.to_string().contains("outside") || err.to_string().contains("rows for"),
                "{err}"
            );
        }
        // A NaN in a row no entry reads is an error all the same, as on other devices.
        let err = log_probs(&bad, &[0], &[0]).expect_err("a NaN logit in another row");
        assert!(err.to_string().contains("non-finite"), "{err}");
    }
}
