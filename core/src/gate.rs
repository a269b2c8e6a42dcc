//! Score gates for `cargo test`: an evaluation's metric must reach a bound, and when it does
//! not, the error shows the score, its standard error, and the first rows (in dataset order)
//! that fell on the wrong side of the bound, with what the model answered — what a developer
//! needs to read a failing model test without rerunning it.
//!
//! ```
//! use evalkit_core::gate::Bound;
//! # use serde_json::json;
//! # let acc = vec![1.0, 0.0, 1.0];
//! # let per_sample = std::collections::BTreeMap::from([("acc".to_string(), acc.clone())]);
//! # let outcome = evalkit_core::Outcome {
//! #     name: "demo".into(), kind: evalkit_core::TaskKind::MultipleChoice, n: 3, truncated: 0,
//! #     metrics: [("acc".to_string(), evalkit_core::metrics::mean_metric(&acc))].into(),
//! #     per_sample,
//! #     samples: (0..3).map(|i| json!({"index": i, "continuations": [" yes", " no"], "answer": 0,
//! #         "prediction": if i == 1 { 1 } else { 0 }, "metrics": {"acc": acc[i]}})).collect(),
//! #     intermediates: None, notes: Default::default(), stats: Default::default(),
//! #     fingerprint: 0, wall_seconds: 0.0,
//! # };
//! // `outcome` is what `Evaluator::outcomes()` returns for one evaluation: acc 2/3 here.
//! assert!(outcome.require("acc", Bound::AtLeast(0.5)).is_ok());
//! let err = outcome.require("acc", Bound::AtLeast(0.9)).unwrap_err();
//! let msg = err.to_string();
//! assert!(msg.contains("acc = 0.6667 ± 0.3333") && msg.contains("row 1"), "{msg}");
//! ```

use crate::kinds::Outcome;
use crate::metrics::Metric;
use std::fmt::Write;

/// Which side of a value a metric must be on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The metric must be ≥ the value (accuracies, exact match).
    AtLeast(f64),
    /// The metric must be ≤ the value (perplexities).
    AtMost(f64),
}

impl Bound {
    /// Whether `v` is on the right side.
    ///
    /// ```
    /// use evalkit_core::gate::Bound;
    /// assert!(Bound::AtLeast(0.5).holds(0.5) && !Bound::AtMost(10.0).holds(12.0));
    /// ```
    pub fn holds(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(min) => v >= min,
            Bound::AtMost(max) => v <= max,
        }
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::AtLeast(v) => write!(f, "≥ {v}"),
            Bound::AtMost(v) => write!(f, "≤ {v}"),
        }
    }
}

/// Rows shown in a gate failure.
const SHOWN_ROWS: usize = 5;

/// A gate that did not hold (or a metric the evaluation does not report). Its `Debug` is its
/// message, so a gate's `.unwrap()` in a test prints the rows readably.
#[derive(Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    /// The metric is on the wrong side of the bound.
    #[error("{evaluation}: {metric} = {} (n = {n}) must be {bound}{rows}", fmt_metric(.score))]
    Missed {
        /// The evaluation.
        evaluation: String,
        /// The metric.
        metric: String,
        /// Its value and standard error.
        score: Metric,
        /// Rows evaluated.
        n: usize,
        /// The bound it missed.
        bound: Bound,
        /// The first rows on the wrong side, rendered (starts with a newline; may be empty).
        rows: String,
    },
    /// The evaluation reports no such metric.
    #[error("{evaluation} reports no metric {metric:?} (it reports: {available})")]
    Unknown {
        /// The evaluation.
        evaluation: String,
        /// The metric asked for.
        metric: String,
        /// The metrics it does report.
        available: String,
    },
}

impl std::fmt::Debug for GateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn fmt_metric(m: &Metric) -> String {
    match m.stderr {
        Some(se) => format!("{:.4} ± {se:.4}", m.value),
        None => format!("{:.4}", m.value),
    }
}

impl Outcome {
    /// Checks that `metric` is within `bound`; returns the score when it is. The error lists
    /// the first rows whose own value of the metric (as their sample record holds it: a
    /// generation row's mean over its samples) is on the wrong side of the bound.
    pub fn require(&self, metric: &str, bound: Bound) -> Result<Metric, GateError> {
        let Some(&score) = self.metrics.get(metric) else {
            return Err(GateError::Unknown {
                evaluation: self.name.clone(),
                metric: metric.into(),
                available: self.metrics.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        if bound.holds(score.value) {
            return Ok(score);
        }
        let (wrong, lines) = wrong_rows(&self.samples, metric, bound);
        let mut rows = String::new();
        if wrong > 0 {
            let _ = write!(rows, "\n{wrong} row(s) on the wrong side; the first:");
        }
        for line in lines {
            let _ = write!(rows, "\n  {line}");
        }
        Err(GateError::Missed {
            evaluation: self.name.clone(),
            metric: metric.into(),
            score,
            n: self.n,
            bound,
            rows,
        })
    }
}

/// The first rows (at most five) of a `samples_<evaluation>.jsonl` whose own value of `metric`
/// (its `metrics` field; for a corpus metric such as `word_perplexity`, the row's own,
/// [`crate::metrics::corpus_metric`] over it alone) misses `bound`, one line each, and how many
/// miss it in all — what a gate over written results shows.
///
/// ```
/// use evalkit_core::gate::{wrong_rows, Bound};
/// // Two WikiText pages: word perplexities e^1 and e^3 (their records hold token_perplexity only).
/// let pages = [
///     serde_json::json!({"index": 0, "text": "a b", "loglikelihood": -2.0, "tokens": 2, "words": 2, "bytes": 3, "metrics": {"token_perplexity": 2.7}}),
///     serde_json::json!({"index": 1, "text": "c d", "loglikelihood": -6.0, "tokens": 2, "words": 2, "bytes": 3, "metrics": {"token_perplexity": 20.1}}),
/// ];
/// let (n, lines) = wrong_rows(&pages, "word_perplexity", Bound::AtMost(10.0));
/// assert_eq!(n, 1);
/// assert!(lines[0].starts_with("row 1: value 20.0855; text c d"), "{lines:?}");
///
/// // Multiple choice: the end of the prompt, and the text that tells the choices apart.
/// let ctx = "Question: Which gas do plants take in?\nAnswer:";
/// let arc = serde_json::json!({"index": 7, "contexts": [ctx, ctx], "continuations": [" oxygen", " carbon dioxide"],
///     "prediction": 0, "answer": 1, "metrics": {"acc": 0.0}});
/// let (_, lines) = wrong_rows(&[arc], "acc", Bound::AtLeast(0.5));
/// assert_eq!(lines[0], "row 7: value 0.0000; prompt \"Question: Which gas do plants take in?\\nAnswer:\", \
///     predicted 0 (\" oxygen\"), answer 1 (\" carbon dioxide\")");
/// // WinoGrande: one continuation after each choice's own context.
/// let wino = serde_json::json!({"index": 2, "contexts": ["Ann thanked Bea because Ann", "Ann thanked Bea because Bea"],
///     "continuations": [" helped.", " helped."], "prediction": 0, "answer": 1, "metrics": {"acc": 0.0}});
/// let (_, lines) = wrong_rows(&[wino], "acc", Bound::AtLeast(0.5));
/// assert_eq!(lines[0], "row 2: value 0.0000; predicted 0 (\"Ann thanked Bea because Ann\"), \
///     answer 1 (\"Ann thanked Bea because Bea\")");
/// ```
pub fn wrong_rows(samples: &[serde_json::Value], metric: &str, bound: Bound) -> (usize, Vec<String>) {
    let own = |s: &serde_json::Value| {
        s["metrics"][metric]
            .as_f64()
            .or_else(|| crate::metrics::corpus_metric(&[s], metric))
    };
    let wrong: Vec<(&serde_json::Value, f64)> = samples
        .iter()
        .filter_map(|s| own(s).map(|v| (s, v)))
        .filter(|&(_, v)| !bound.holds(v))
        .collect();
    let lines = wrong
        .iter()
        .take(SHOWN_ROWS)
        .map(|&(s, v)| describe_row(s, v))
        .collect();
    (wrong.len(), lines)
}

/// One line for a row: its dataset index, its value, and what the model answered. For a
/// multiple-choice row, the end of its prompt (its question, or the choices it lists) and the
/// text that tells the choices apart: the continuations, or the contexts where those are all
/// the same, as in WinoGrande. For a generation row, its first sample.
fn describe_row(s: &serde_json::Value, value: f64) -> String {
    let index = s["index"].as_u64().map_or("?".into(), |i| i.to_string());
    let what = if s["continuations"].as_array().is_some_and(|c| c.len() == 1) {
        // One continuation (loglikelihood): whether it was the greedy one, and its score.
        format!(
            "continuation \"{}\" (greedy: {}, loglikelihood {})",
            head(&s["continuations"][0]),
            s["is_greedy"][0],
            s["loglikelihoods"][0]
                .as_f64()
                .map_or_else(|| "?".into(), |ll| format!("{ll:.4}"))
        )
    } else if let Some(p) = s.get("prediction") {
        let same = |field: &str| s[field].as_array().is_some_and(|v| v.windows(2).all(|w| w[0] == w[1]));
        // The choices differ in their continuations, or (the same continuation after each
        // choice's own context) in the ends of their contexts.
        let (choices, shown): (&serde_json::Value, fn(&serde_json::Value) -> String) =
            if same("continuations") && !same("contexts") {
                (&s["contexts"], tail)
            } else {
                (&s["continuations"], head)
            };
        let pick = |k: &serde_json::Value| k.as_u64().map(|k| shown(&choices[k as usize]));
        let prompt = if same("contexts") {
            format!("prompt \"{}\", ", tail(&s["contexts"][0]))
        } else {
            String::new()
        };
        format!(
            "{prompt}predicted {} (\"{}\"), answer {} (\"{}\")",
            p,
            pick(p).unwrap_or_default(),
            s["answer"],
            pick(&s["answer"]).unwrap_or_default()
        )
    } else if let Some(g) = s.get("generations") {
        format!("generated {}, target {}", head(&g[0]), head(&s["target"]))
    } else if let Some(t) = s.get("text") {
        format!("text {}", head(t))
    } else {
        String::new()
    };
    format!("row {index}: value {value:.4}; {what}")
}

/// How many characters of a text a row's line shows.
const SHOWN_CHARS: usize = 60;

/// A text on one line (newlines as `\n`).
fn one_line(v: &serde_json::Value) -> String {
    v.as_str()
        .map_or_else(|| v.to_string(), str::to_string)
        .replace('\n', "\\n")
}

/// The first [`SHOWN_CHARS`] characters of a text, on one line (`…` where it goes on).
fn head(v: &serde_json::Value) -> String {
    let line = one_line(v);
    match line.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// The last [`SHOWN_CHARS`] characters of a text, on one line (`…` where it went before):
/// the end of a prompt, where its question is.
fn tail(v: &serde_json::Value) -> String {
    let line = one_line(v);
    let n = line.chars().count();
    match line.char_indices().nth(n.saturating_sub(SHOWN_CHARS)) {
        Some((cut, _)) if cut > 0 => format!("…{}", &line[cut..]),
        _ => line,
    }
}
