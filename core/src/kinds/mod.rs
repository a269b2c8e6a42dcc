//! The five evaluation kinds (DESIGN.md section 3) and what they share.
//!
//! Each kind is a trait a dataset row implements — the seed design's hooks `get`, `clean`,
//! `check`, `score`, with defaults — and a [`Kind`] that says what is particular to it. One
//! generic [`Task`] holds the rows and runs every kind through the same driver
//! ([`task`]: pick rows, lower, execute with the journal, finish rows, aggregate):
//!
//! | kind | row trait | task |
//! |---|---|---|
//! | multiple choice | [`MultipleChoice`] | [`MultipleChoiceTask`] |
//! | loglikelihood | [`Loglikelihood`] | [`LoglikelihoodTask`] |
//! | perplexity | [`Perplexity`] | [`PerplexityTask`] |
//! | next token | [`NextToken`] | [`NextTokenTask`] |
//! | generation | [`Generate`] | [`GenerateTask`] |
//!
//! Every kind lowers rows to token-level requests ([`crate::request`]), runs them through the
//! scheduler ([`crate::schedule`]) and the batch executor ([`crate::batch`]) — the meeting point
//! is the private `execute` module — and turns the results into per-sample records and metrics ([`Outcome`]).

mod execute;
pub mod generate;
pub mod loglikelihood;
pub mod multiple_choice;
pub mod next_token;
mod options;
mod outcome;
mod pairs;
pub mod perplexity;
mod rows;
pub mod task;

pub use crate::fingerprint::{eval_seed, Fnv};
pub use generate::{GenItem, Generate, GenerateKind, GenerateTask};
pub use loglikelihood::{LlItem, Loglikelihood, LoglikelihoodKind, LoglikelihoodTask};
pub use multiple_choice::{McItem, MultipleChoice, MultipleChoiceKind, MultipleChoiceTask};
pub use next_token::{NextToken, NextTokenKind, NextTokenSample, NextTokenTask};
pub use options::{Defaults, Env, RunOptions, Subset};
pub(crate) use outcome::mean_metrics;
pub use outcome::{Intermediate, Outcome};
pub use perplexity::{Perplexity, PerplexityKind, PerplexityTask, PplItem};
pub use rows::select_rows;
pub use task::{Evaluation, Finished, Kind, RowFailure, Task};

use serde::Serialize;

/// The five kinds of evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
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
    /// The kind's name as written in results.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::MultipleChoice => "multiple_choice",
            TaskKind::Loglikelihood => "loglikelihood",
            TaskKind::Perplexity => "perplexity",
            TaskKind::NextToken => "next_token",
            TaskKind::Generate => "generate",
        }
    }

    /// The metrics every evaluation of this kind reports (generation adds its own).
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

/// Why a row cannot be evaluated; the engine adds the evaluation and row index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowError(pub String);

impl RowError {
    /// A row error with a message naming the field.
    pub fn new(msg: impl Into<String>) -> Self {
        RowError(msg.into())
    }
}
