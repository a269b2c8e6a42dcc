//! Loglikelihood (LAMBADA style): one continuation scored after its context; `acc` is whether
//! every continuation token is the model's argmax, `perplexity` = exp(−mean loglikelihood).

use super::{execute_mc, Defaults, Env, Evaluation, McItem, Outcome, RowError, TaskKind};
use crate::error::Result;

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
pub struct LoglikelihoodTask<T> {
    /// Name.
    pub name: String,
    /// Rows in dataset order.
    pub rows: Vec<T>,
    /// Defaults.
    pub defaults: Defaults,
    /// Few-shot examples prepended to each context or prompt.
    pub fewshot: Option<crate::fewshot::FewShot>,
}

impl<T: Loglikelihood> LoglikelihoodTask<T> {
    /// A task named `name` over `rows`.
    pub fn new(name: impl Into<String>, rows: Vec<T>) -> Self {
        LoglikelihoodTask {
            name: name.into(),
            rows,
            defaults: Defaults::default(),
            fewshot: None,
        }
    }
}

impl<T: Loglikelihood> Evaluation for LoglikelihoodTask<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> TaskKind {
        TaskKind::Loglikelihood
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn defaults(&self) -> Defaults {
        self.defaults
    }
    fn evaluate(&self, env: &Env<'_>) -> Result<Outcome> {
        let get = |i: usize, r: &T| {
            r.get().map(|it| McItem {
                contexts: vec![super::with_fewshot(&self.fewshot, i, &it.context)],
                norm_texts: vec![it.continuation.clone()],
                continuations: vec![it.continuation],
                answer: 0,
            })
        };
        execute_mc(
            &self.name,
            &self.rows,
            &self.defaults,
            env,
            TaskKind::Loglikelihood,
            get,
            |_, _, _| vec![],
        )
    }
}
