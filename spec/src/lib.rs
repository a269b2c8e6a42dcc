//! evalkit-spec: the five evaluation kinds and the metrics each reports — the one table that
//! `#[derive(Evaluation)]` checks attributes against at compile time and the engine reports
//! at run time (evalkit-core re-exports [`TaskKind`]).
//!
//! ```
//! use evalkit_spec::TaskKind;
//! let k = TaskKind::from_name("multiple_choice").unwrap();
//! assert_eq!(k.metrics(), ["acc", "acc_norm", "acc_bytes", "acc_token_norm"]);
//! assert!(evalkit_spec::ALL_METRICS.contains(&"bits_per_byte"));
//! ```
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};

/// The five kinds of evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Choose the most likely continuation.
    MultipleChoice,
    /// Log-likelihood of one continuation (LAMBADA style).
    Loglikelihood,
    /// Rolling perplexity of whole texts.
    Perplexity,
    /// Next-token accuracy.
    NextToken,
    /// Generation, scored by a check on the generated text.
    Generate,
}

impl TaskKind {
    /// Every kind, in a fixed order.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::MultipleChoice,
        TaskKind::Loglikelihood,
        TaskKind::Perplexity,
        TaskKind::NextToken,
        TaskKind::Generate,
    ];

    /// The kind's name as written in results and in `#[eval(kind = ...)]`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::MultipleChoice => "multiple_choice",
            TaskKind::Loglikelihood => "loglikelihood",
            TaskKind::Perplexity => "perplexity",
            TaskKind::NextToken => "next_token",
            TaskKind::Generate => "generate",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The metrics every evaluation of this kind reports (generation adds its own through a
    /// `score` hook).
    pub fn metrics(self) -> &'static [&'static str] {
        match self {
            TaskKind::MultipleChoice => &["acc", "acc_norm", "acc_bytes", "acc_token_norm"],
            TaskKind::Loglikelihood => &["acc", "perplexity"],
            TaskKind::Perplexity => &[
                "token_perplexity",
                "word_perplexity",
                "byte_perplexity",
                "bits_per_byte",
            ],
            TaskKind::NextToken => &["acc"],
            TaskKind::Generate => &["exact_match"],
        }
    }
}

/// Every metric some kind reports.
pub const ALL_METRICS: &[&str] = &[
    "acc",
    "acc_norm",
    "acc_bytes",
    "acc_token_norm",
    "perplexity",
    "token_perplexity",
    "word_perplexity",
    "byte_perplexity",
    "bits_per_byte",
    "exact_match",
];

/// What is wrong with `name` as an evaluation's name, if anything: it names the evaluation's
/// files (`samples_<name>.jsonl`, its journal), so it must be a file name of its own — not
/// empty, not `.` or `..`, no `/` or `\`, no control characters.
///
/// ```
/// assert_eq!(evalkit_spec::name_problem("mmlu_anatomy"), None);
/// assert!(evalkit_spec::name_problem("sub/name").is_some());
/// assert!(evalkit_spec::name_problem("..").is_some());
/// ```
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name is empty")
    } else if name == "." || name == ".." {
        Some("the name is `.` or `..`, which are not file names")
    } else if name.contains(['/', '\\']) {
        Some("the name contains `/` or `\\`: it names the evaluation's files, which it would put in other folders")
    } else if name.chars().any(char::is_control) {
        Some("the name contains a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_every_kind_is_listed_and_names_round_trip() {
        for k in TaskKind::ALL {
            assert_eq!(TaskKind::from_name(k.as_str()), Some(k));
            for m in k.metrics() {
                assert!(ALL_METRICS.contains(m), "{m}");
            }
        }
        for m in ALL_METRICS {
            assert!(TaskKind::ALL.iter().any(|k| k.metrics().contains(m)), "{m} unused");
        }
    }
}
