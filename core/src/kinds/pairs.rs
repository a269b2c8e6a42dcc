//! What multiple choice and loglikelihood share: lowering a row's (context, continuation)
//! pairs to score requests — one request per distinct context of the row, so choices after
//! the same context share its forward pass — and reading each pair's score back.

use super::task::RowFailure;
use super::RowError;
use crate::request::{encode_pairs, ContinuationScore, ScoreRequest};
use crate::tokenizer::Tokenizer;

/// Where each pair of a row went: (request, continuation within it).
pub(crate) type Slots = Vec<(usize, usize)>;

/// Lowers the pairs `contexts[j]` + `continuations[j]`, appending a request per distinct
/// context; a continuation that encodes to no tokens, or to more than the model's `max_len`
/// (the context is cut from the left to fit, the continuation cannot be), is a row error.
pub(crate) fn lower_pairs(
    tok: &Tokenizer,
    max_len: usize,
    contexts: &[String],
    continuations: &[String],
    requests: &mut Vec<ScoreRequest>,
) -> Result<Slots, RowFailure> {
    let mut slots = vec![];
    let mut by_context: Vec<(&str, usize)> = vec![];
    let pairs: Vec<(&str, &str)> = contexts
        .iter()
        .zip(continuations)
        .map(|(c, k)| (c.as_str(), k.as_str()))
        .collect();
    let encoded = encode_pairs(tok, &pairs)?;
    for ((ctx, cont), (c_ids, k_ids)) in contexts.iter().zip(continuations).zip(encoded) {
        if k_ids.is_empty() {
            return Err(RowError::new(format!("continuation {cont:?} encodes to no tokens")).into());
        }
        if k_ids.len() > max_len {
            return Err(RowError::new(format!(
                "a continuation of {} tokens is longer than the model's max length {max_len}: it cannot be scored",
                k_ids.len()
            ))
            .into());
        }
        let r = match by_context.iter().find(|(c, _)| c == ctx) {
            Some(&(_, r)) => r,
            None => {
                requests.push(ScoreRequest {
                    context: c_ids,
                    continuations: vec![],
                });
                by_context.push((ctx, requests.len() - 1));
                requests.len() - 1
            }
        };
        requests[r].continuations.push(k_ids);
        slots.push((r, requests[r].continuations.len() - 1));
    }
    Ok(slots)
}

/// The scores of a row's pairs, in pair order.
pub(crate) struct PairScores {
    /// Summed log-likelihood of each continuation.
    pub loglikelihoods: Vec<f64>,
    /// Whether each continuation is the model's greedy one.
    pub greedy: Vec<bool>,
    /// Tokens of each continuation.
    pub num_tokens: Vec<usize>,
    /// Whether any pair's input was truncated.
    pub truncated: bool,
}

/// Reads back the scores of `slots`.
pub(crate) fn read_pairs(slots: &Slots, requests: &[ScoreRequest], scores: &[Vec<ContinuationScore>]) -> PairScores {
    let conts: Vec<&[i64]> = slots
        .iter()
        .map(|&(r, c)| requests[r].continuations[c].as_slice())
        .collect();
    let sc: Vec<&ContinuationScore> = slots.iter().map(|&(r, c)| &scores[r][c]).collect();
    PairScores {
        loglikelihoods: sc.iter().map(|s| s.loglikelihood()).collect(),
        greedy: sc.iter().zip(&conts).map(|(s, c)| s.is_greedy(c)).collect(),
        num_tokens: conts.iter().map(|c| c.len()).collect(),
        truncated: sc.iter().any(|s| s.truncated),
    }
}

/// The token row (context then continuation) of pair `slot`, with its action mask.
pub(crate) fn pair_tokens(slot: (usize, usize), requests: &[ScoreRequest]) -> (Vec<i64>, Vec<bool>) {
    let (r, c) = slot;
    let ctx = &requests[r].context;
    let tokens: Vec<i64> = ctx.iter().chain(&requests[r].continuations[c]).copied().collect();
    let mask = (0..tokens.len()).map(|p| p >= ctx.len()).collect();
    (tokens, mask)
}
