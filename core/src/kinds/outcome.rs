//! What one evaluation produced ([`Outcome`]): metrics, per-sample values and records in
//! dataset order, optional token rows with masks ([`Intermediate`]), and the run's records.

use super::TaskKind;
use crate::metrics::{Metric, Reduce, Score};
use crate::schedule::ExecStats;
use serde::Serialize;
use std::collections::BTreeMap;

/// Per-sample token row with its masks, the same shape for every kind (for RL consumers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Intermediate {
    /// Token ids (right-padded with 0 to the evaluation's widest row).
    pub tokens: Vec<i64>,
    /// True at tokens the model scored or generated (the "actions").
    pub action_mask: Vec<bool>,
    /// True at real tokens, false at padding.
    pub padding_mask: Vec<bool>,
}

/// Everything one evaluation produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Evaluation name.
    pub name: String,
    /// Its kind.
    pub kind: TaskKind,
    /// Rows evaluated.
    pub n: usize,
    /// Rows whose input was truncated to fit the model.
    pub truncated: usize,
    /// Aggregated metrics.
    pub metrics: BTreeMap<String, Metric>,
    /// Per-sample values of each per-sample metric, in dataset order.
    pub per_sample: BTreeMap<String, Vec<f64>>,
    /// One JSON record per row (`samples_<name>.jsonl`), in dataset order.
    pub samples: Vec<serde_json::Value>,
    /// Per-sample token rows and masks, when asked for.
    pub intermediates: Option<Vec<Intermediate>>,
    /// Anything else the results should record (e.g. a lowered max_new_tokens).
    pub notes: BTreeMap<String, serde_json::Value>,
    /// Chunks computed and resumed, and the tokens and seconds of all chunks (resumed ones
    /// included).
    pub stats: ExecStats,
    /// Hash of what was asked of the model, in text: the evaluation's name and kind, the rows
    /// selected, each row's rendered inputs (few-shot prefix included), answers and the
    /// settings that change values (generation parameters). Independent of the model, so two
    /// models' runs with equal fingerprints answered the same questions.
    pub fingerprint: u64,
    /// Seconds this process spent on the evaluation (lowering, execution, scoring).
    pub wall_seconds: f64,
}

impl Outcome {
    /// `metric` reduced as asked: mean, sum, or the per-sample values.
    pub fn score(&self, metric: &str, how: Reduce) -> Option<Score> {
        self.per_sample.get(metric).map(|v| crate::metrics::reduce(v, how))
    }
}

/// Pads intermediates to a common width.
pub(crate) fn pad_intermediates(rows: Vec<(Vec<i64>, Vec<bool>)>) -> Vec<Intermediate> {
    let w = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(mut tokens, mut action_mask)| {
            let n = tokens.len();
            tokens.resize(w, 0);
            action_mask.resize(w, false);
            let padding_mask = (0..w).map(|i| i < n).collect();
            Intermediate {
                tokens,
                action_mask,
                padding_mask,
            }
        })
        .collect()
}

/// Per-sample metric values → mean metrics with standard errors.
pub(crate) fn mean_metrics(per_sample: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Metric> {
    per_sample
        .iter()
        .map(|(k, v)| (k.clone(), crate::metrics::mean_metric(v)))
        .collect()
}
