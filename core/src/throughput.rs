//! The forward-pass floor: what an evaluation's work would cost on the model at its raw speed.
//!
//! [`RawThroughput::measure`] times the model itself, in this process, on random tokens: the
//! body at several batch shapes (the best tokens per second is kept; as one packed batch of
//! contexts where the model packs, the path scoring takes, else as a padded batch), and the
//! output head with the log-softmax normaliser and the greedy token, as scoring reads them, at
//! a block of positions (seconds per position). An evaluation needs `tokens_forwarded` tokens
//! through the body and `tokens_scored` positions through the head (the counts with prefix
//! sharing and the head only where a score is read), so its floor is `forwarded / body rate +
//! scored × head cost`, and its efficiency is floor ÷ the seconds it took. Generation decodes one token
//! per step and so runs below the body's batched rate: its efficiency reads lower by nature.
//!
//! Packed scoring carries only the positions it reads through the last layer past its keys and
//! values ([`crate::model::Model::hidden_states_packed_at`]); those it does not (`pruned`) cost
//! less. So the body is also timed that way at the best shape, each row's last position kept
//! (the kept positions' share taken out at the full rate), and the pruned tokens count at that
//! rate: the floor holds the same work as the evaluation.

use crate::batch::TokenCounts;
use crate::error::{Result, TorchContext};
use crate::model::packed::{PackedBatch, PackedRequest};
use crate::model::Model;
use serde::Serialize;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// The raw speed of a model's body and head (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct RawThroughput {
    /// Tokens per second through the body at the best shape measured.
    pub body_tokens_per_second: f64,
    /// That shape: rows per batch.
    pub body_batch: usize,
    /// That shape: tokens per row.
    pub body_seq: usize,
    /// Tokens per second of pruned tokens: a pass at that shape with each row's last position
    /// alone carried through the last layer past its keys and values, those positions' share
    /// taken out at the body rate. At least the body rate, and the body rate where the model
    /// does not pack.
    pub body_pruned_tokens_per_second: f64,
    /// Seconds per position of the head, its logsumexp and argmax.
    pub head_seconds_per_position: f64,
    /// How long the measurement took.
    pub seconds: f64,
}

impl RawThroughput {
    /// The floor of work that forwards `tokens.forwarded` tokens (`tokens.pruned` of them
    /// through part of the last layer) and scores `tokens.scored` positions.
    ///
    /// ```
    /// use evalkit_core::throughput::RawThroughput;
    /// use evalkit_core::batch::TokenCounts;
    /// let raw = RawThroughput {
    ///     body_tokens_per_second: 1000.0,
    ///     body_batch: 8,
    ///     body_seq: 128,
    ///     body_pruned_tokens_per_second: 1250.0,
    ///     head_seconds_per_position: 1e-3,
    ///     seconds: 1.0,
    /// };
    /// let tokens = TokenCounts { forwarded: 2000, scored: 500, pruned: 1250 };
    /// // 750 tokens at 1000/s, 1250 at 1250/s, 500 positions at 1 ms
    /// assert!((raw.floor_seconds(&tokens) - 2.25).abs() < 1e-12);
    /// ```
    pub fn floor_seconds(&self, tokens: &TokenCounts) -> f64 {
        let pruned = tokens.pruned.min(tokens.forwarded);
        (tokens.forwarded - pruned) as f64 / self.body_tokens_per_second
            + pruned as f64 / self.body_pruned_tokens_per_second
            + tokens.scored as f64 * self.head_seconds_per_position
    }

    /// Measures `model` within about `budget` of timing: body shapes from small to large
    /// (sequences of 64, 128 and 256 tokens where the model takes them, 4 to 64 rows), each
    /// timed after a warm-up pass, skipping shapes that would not fit in what is left of the
    /// budget, the best one timed twice more, and pruned (each row's last position kept) three
    /// times; then the head on 512 positions (the fastest of at least three passes).
    pub fn measure<M: Model + ?Sized>(model: &M, budget: Duration) -> Result<RawThroughput> {
        let _guard = tch::no_grad_guard();
        let dev = model.device();
        let start = Instant::now();
        let mut best: Option<(f64, usize, usize)> = None;
        let (mut hidden_size, mut hidden_kind) = (0, Kind::Float);
        let seqs: Vec<usize> = [64usize, 128, 256]
            .into_iter()
            .filter(|&s| s <= model.max_len())
            .collect();
        let seqs = if seqs.is_empty() {
            vec![model.max_len().max(1)]
        } else {
            seqs
        };
        let mut shapes: Vec<(usize, usize)> = seqs
            .iter()
            .flat_map(|&s| [4usize, 8, 16, 32, 64].map(|b| (b, s)))
            .collect();
        shapes.sort_by_key(|&(b, s)| (b * s, s));
        for (b, s) in shapes {
            let expected = best.map_or(0.0, |(tps, _, _)| 2.0 * (b * s) as f64 / tps);
            if best.is_some() && start.elapsed().as_secs_f64() + expected > budget.as_secs_f64() {
                continue;
            }
            let (tps, size, kind) = body_rate(model, b, s, 1, false)?;
            tracing::debug!("raw body: {b} rows of {s} tokens at {tps:.0} tokens/s");
            (hidden_size, hidden_kind) = (size, kind);
            if best.is_none_or(|(t, _, _)| tps > t) {
                best = Some((tps, b, s));
            }
        }
        // The best shape is timed twice more where the budget allows, keeping the fastest: a
        // single sample slowed by the machine's noise would leave the floor too lenient.
        if let Some((tps, b, s)) = best {
            if start.elapsed().as_secs_f64() + 3.0 * (b * s) as f64 / tps <= budget.as_secs_f64() {
                let again = body_rate(model, b, s, 2, false)?.0;
                best = Some((tps.max(again), b, s));
            }
        }
        let (body_tokens_per_second, body_batch, body_seq) = best.expect("at least one shape is timed");
        let body_pruned_tokens_per_second = if model.packs() {
            // Always measured (an unmeasured rate would leave the floor lenient), three times
            // where the budget allows.
            let (b, s) = (body_batch, body_seq);
            let fits =
                start.elapsed().as_secs_f64() + 4.0 * (b * s) as f64 / body_tokens_per_second <= budget.as_secs_f64();
            let pass_seconds = (b * s) as f64 / body_rate(model, b, s, if fits { 3 } else { 1 }, true)?.0;
            pruned_rate(pass_seconds, b, s, body_tokens_per_second)
        } else {
            body_tokens_per_second
        };
        let p = 512i64;
        let h = Tensor::randn([p, hidden_size.max(1)], (hidden_kind, dev));
        // What scoring runs at each position: the head, then the log-probability of a token
        // and the greedy token (logsumexp and argmax) read back.
        let (rows, targets): (Vec<i64>, Vec<i64>) = (0..p).map(|i| (i, 0)).unzip();
        let head = || crate::batch::logprobs::log_probs(&model.head(&h)?, &rows, &targets);
        head()?;
        // After that warm-up, the fastest of at least three passes (and a tenth of a second):
        // one pass of a large head takes a third of a second on 2 cores, and a single sample
        // swung 2× between runs.
        let fastest = fastest_pass(3, || head().map(drop))?;
        Ok(RawThroughput {
            body_tokens_per_second,
            body_batch,
            body_seq,
            body_pruned_tokens_per_second,
            head_seconds_per_position: fastest / p as f64,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// The rate of pruned tokens from a pass of `b` rows of `s` tokens that took `pass_seconds`
/// with each row's last position kept: those `b` positions at the full `body_rate`, the rest
/// at the rate returned. Never below `body_rate` (a pruned token does less work; a slower
/// reading is the machine's noise); the pass's whole rate where it ran faster than its kept
/// positions alone would (noise again, read the strict way); `body_rate` when the pass leaves
/// nothing to prune.
fn pruned_rate(pass_seconds: f64, b: usize, s: usize, body_rate: f64) -> f64 {
    let pruned = (b * s).saturating_sub(b) as f64;
    let seconds = pass_seconds - b as f64 / body_rate;
    if pruned == 0.0 {
        body_rate
    } else if seconds > 0.0 {
        (pruned / seconds).max(body_rate)
    } else {
        ((b * s) as f64 / pass_seconds).max(body_rate)
    }
}

/// The body's tokens per second on `b` random rows of `s` tokens (one packed batch of `b`
/// contexts where the model packs, the path scoring takes, with each row's last position
/// alone kept through the last layer when `pruned`; else the padded batch): a warm-up pass,
/// then the fastest of `samples` timings. Also returns the hidden size and dtype.
fn body_rate<M: Model + ?Sized>(
    model: &M,
    b: usize,
    s: usize,
    samples: usize,
    pruned: bool,
) -> Result<(f64, i64, Kind)> {
    let dev = model.device();
    let vocab = model.vocab_size().max(2) as i64;
    let ids = Tensor::randint(vocab, [b as i64, s as i64], (Kind::Int64, dev));
    let mask = Tensor::ones([b as i64, s as i64], (Kind::Int64, dev));
    let packed = if model.packs() {
        let rows = Vec::<Vec<i64>>::try_from(&ids.to_device(tch::Device::Cpu)).op("reading random ids")?;
        let requests: Vec<PackedRequest<'_>> = rows
            .iter()
            .map(|r| PackedRequest {
                context: r,
                segments: &[],
            })
            .collect();
        Some(PackedBatch::with_window(&requests, dev, model.attention_window())?)
    } else {
        None
    };
    let last: Vec<usize> = (1..=b).map(|r| r * s - 1).collect();
    let kept = match &packed {
        Some(batch) if pruned => Some(batch.keep(&last)?),
        _ => None,
    };
    let pass = || match (&packed, &kept) {
        (Some(batch), Some(kept)) => model.hidden_states_packed_at(batch, kept),
        (Some(batch), None) => model.hidden_states_packed(batch),
        (None, _) => model.hidden_states(&ids, &mask, None),
    };
    let h = pass()?; // warm-up
    let mut tps: f64 = 0.0;
    for _ in 0..samples.max(1) {
        tps = tps.max(timed(b * s, &pass)?);
    }
    Ok((tps, h.size().last().copied().unwrap_or(0), h.kind()))
}

/// Tokens per second of `pass` on `tokens` tokens: its fastest pass among at least one and
/// enough for a tenth of a second. The fastest rather than the mean, as the machine's noise
/// only ever slows a pass: a mean over a disturbed tenth of a second read stories260K's body
/// at 78 thousand tokens/s where its undisturbed passes run at 140, and so made the floor
/// lenient.
fn timed(tokens: usize, pass: &impl Fn() -> Result<Tensor>) -> Result<f64> {
    Ok(tokens as f64 / fastest_pass(1, || sync(&pass()?))?.max(1e-9))
}

/// The seconds of `pass`'s fastest run among at least `min_runs`, run for at least a tenth of
/// a second.
fn fastest_pass(min_runs: usize, mut pass: impl FnMut() -> Result<()>) -> Result<f64> {
    let (mut runs, t0, mut fastest) = (0, Instant::now(), f64::INFINITY);
    while runs < min_runs || t0.elapsed() < Duration::from_millis(100) {
        let t = Instant::now();
        pass()?;
        fastest = fastest.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    Ok(fastest)
}

/// Waits for the device to finish `t` (reads one value back).
fn sync(t: &Tensor) -> Result<()> {
    let _ = t
        .f_flatten(0, -1)
        .op("flatten")?
        .f_get(0)
        .op("reading back")?
        .f_double_value(&[])
        .op("reading back")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::pruned_rate;

    #[test]
    fn pruned_rate_takes_the_kept_positions_out() {
        // 4 rows of 64: 4 kept tokens at 1000/s (4 ms), the other 252 in 126 ms: 2000/s.
        assert!((pruned_rate(0.13, 4, 64, 1000.0) - 2000.0).abs() < 1e-9);
        // Slower than the whole body (noise): the body's rate.
        assert_eq!(pruned_rate(0.5, 4, 64, 1000.0), 1000.0);
        // Faster than the kept positions alone allow: the pass's whole rate.
        assert!((pruned_rate(0.004, 4, 64, 1000.0) - 64_000.0).abs() < 1e-6);
        // Rows of one token: nothing pruned.
        assert_eq!(pruned_rate(0.004, 4, 1, 1000.0), 1000.0);
    }
}
