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
pub mod prompt;
mod rows;
pub mod task;

pub use crate::fingerprint::{eval_seed, Fnv};
/// The five kinds and the metrics each reports (one table, shared with the derive).
pub use evalkit_spec::TaskKind;
pub use generate::{GenItem, Generate, GenerateKind, GenerateTask};
pub use loglikelihood::{LlItem, Loglikelihood, LoglikelihoodKind, LoglikelihoodTask};
pub use multiple_choice::{McItem, MultipleChoice, MultipleChoiceKind, MultipleChoiceTask};
pub use next_token::{NextToken, NextTokenKind, NextTokenSample, NextTokenTask};
pub use options::{Defaults, Env, RunOptions, Subset};
pub use outcome::{Intermediate, Outcome};
pub use perplexity::{Perplexity, PerplexityKind, PerplexityTask, PplItem};
pub use prompt::{ChatOptions, Prompt, Prompter};
pub use rows::select_rows;
pub use task::{Evaluation, Finished, Kind, RowFailure, Task};

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
