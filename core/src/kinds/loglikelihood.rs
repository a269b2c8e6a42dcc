//! Loglikelihood (LAMBADA style): one continuation scored after its context; `acc` is whether
//! every continuation token is the model's argmax, `perplexity` = exp(−mean loglikelihood).

use super::execute::score_requests;
use super::pairs::{lower_pairs, pair_tokens, read_pairs, Slots};
use super::prompt::Prompt;
use super::task::{Finished, Kind, RowFailure, Task};
use super::{Env, RowError, TaskKind};
use crate::error::Result;
use crate::fingerprint::Fnv;
use crate::metrics::Metric;
use crate::request::{ContinuationScore, ScoreRequest};
use crate::schedule::{BatchSettings, ExecStats};
use serde_json::json;
use std::collections::BTreeMap;

/// A context and the continuation scored after it (no delimiter is added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlItem {
    /// Context.
    pub context: String,
    /// Continuation, verbatim (LAMBADA: `" " + last word`).
    pub continuation: String,
}

/// A dataset row scored by the loglikelihood of a continuation.
pub trait Loglikelihood {
    /// The item of this row.
    fn get(&self) -> std::result::Result<LlItem, RowError>;
}

/// A loglikelihood evaluation over rows of `T`.
pub type LoglikelihoodTask<T> = Task<T, LoglikelihoodKind>;

/// The loglikelihood kind (see [`Kind`]).
#[derive(Debug)]
pub struct LoglikelihoodKind;

impl<T: Loglikelihood> Kind<T> for LoglikelihoodKind {
    const KIND: TaskKind = TaskKind::Loglikelihood;
    type Request = ScoreRequest;
    type Response = Vec<ContinuationScore>;
    type Lowered = (LlItem, Slots);

    fn begin(_: &str, _: &Env<'_>) -> Result<Self> {
        Ok(LoglikelihoodKind)
    }

    fn lower(
        &mut self,
        _: usize,
        row: &T,
        prompt: &Prompt<'_>,
        env: &Env<'_>,
        fp: &mut Fnv,
        requests: &mut Vec<ScoreRequest>,
    ) -> std::result::Result<Self::Lowered, RowFailure> {
        let mut item = row.get()?;
        item.context = prompt.context(&item.context)?;
        // The same fields as a one-choice multiple-choice item (the choice is its own norm text).
        *fp = fp
            .str(&item.context)
            .str(&item.continuation)
            .str(&item.continuation)
            .row(0);
        let slots = lower_pairs(
            env.tokenizer,
            env.model.max_len(),
            std::slice::from_ref(&item.context),
            std::slice::from_ref(&item.continuation),
            requests,
        )?;
        Ok((item, slots))
    }

    fn execute(
        &self,
        env: &Env<'_>,
        name: &str,
        requests: &[ScoreRequest],
        batch: BatchSettings,
    ) -> Result<(Vec<Self::Response>, ExecStats)> {
        score_requests(env, name, requests, batch, env.options.share_prefix)
    }

    fn finish(
        &mut self,
        index: usize,
        _: &T,
        (item, slots): Self::Lowered,
        requests: &[ScoreRequest],
        responses: &[Self::Response],
        env: &Env<'_>,
    ) -> std::result::Result<Finished, RowFailure> {
        let s = read_pairs(&slots, requests, responses);
        let (ll, greedy) = (s.loglikelihoods[0], s.greedy[0]);
        let acc = f64::from(u8::from(greedy));
        let record = json!({
            "index": index,
            "contexts": [item.context],
            "continuations": [item.continuation],
            "loglikelihoods": s.loglikelihoods,
            "is_greedy": s.greedy,
            "num_tokens": s.num_tokens,
            "answer": 0,
            "prediction": 0,
            "truncated": s.truncated,
            "metrics": {"acc": acc, "loglikelihood": ll},
        });
        Ok(Finished {
            values: vec![("acc".into(), acc), ("loglikelihood".into(), ll)],
            record,
            intermediates: if env.options.return_intermediates {
                vec![pair_tokens(slots[0], requests)]
            } else {
                vec![]
            },
            truncated: s.truncated,
        })
    }

    /// `acc` as a mean; `perplexity` = exp(−mean loglikelihood), a corpus metric.
    fn aggregate(&self, per_sample: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Metric> {
        let mut metrics = super::outcome::mean_metrics(per_sample);
        metrics.remove("loglikelihood");
        let lls = per_sample.get("loglikelihood").map_or(&[][..], Vec::as_slice);
        let sum: f64 = lls.iter().sum();
        metrics.insert(
            "perplexity".into(),
            Metric {
                value: (-sum / lls.len() as f64).exp(),
                stderr: None,
            },
        );
        metrics
    }
}
