//! Loglikelihood (LAMBADA style): one continuation scored after its context; `acc` is whether
//! every continuation token is the model's argmax, `perplexity` = exp(−mean loglikelihood).

use super::{execute_mc, Env, McItem, Outcome, RowError, TaskKind};
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

task_type!(
    /// A loglikelihood evaluation over rows of `T`.
    LoglikelihoodTask, Loglikelihood, TaskKind::Loglikelihood
);

impl<T: Loglikelihood> LoglikelihoodTask<T> {
    fn run(&self, env: &Env<'_>) -> Result<Outcome> {
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
