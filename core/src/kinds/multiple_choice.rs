//! Multiple choice (the seed's PerplexityComparisonEvaluation, with its first-token defect
//! fixed): each choice is a continuation of the context, every continuation token is scored,
//! and the prediction is the argmax of the summed log-likelihood (`acc`), of log-likelihood
//! per character of the choice (`acc_norm`), per UTF-8 byte (`acc_bytes`) and per token
//! (`acc_token_norm`). Ties go to the first choice. Contexts are shared through the KV cache
//! unless the run disables it.

use super::{execute_mc, Env, Outcome, RowError, TaskKind};
use crate::error::Result;

/// One multiple-choice item: a (context, continuation) pair per choice and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct McItem {
    /// Context of each choice (all equal for a shared context).
    pub contexts: Vec<String>,
    /// Continuation of each choice, delimiter included (e.g. `" Paris"`).
    pub continuations: Vec<String>,
    /// What `acc_norm`/`acc_bytes` divide by: the choice text without the delimiter.
    pub norm_texts: Vec<String>,
    /// Index of the correct choice.
    pub answer: usize,
}

impl McItem {
    /// Choices after one context, each continued as `" " + choice` (lm-eval's target delimiter).
    ///
    /// ```
    /// let item = evalkit_core::kinds::McItem::shared("Q: 2+2?\nA:", &["4", "5"], 0);
    /// assert_eq!(item.continuations, vec![" 4", " 5"]);
    /// ```
    pub fn shared<S: AsRef<str>>(context: impl Into<String>, choices: &[S], answer: usize) -> Self {
        Self::shared_with_delimiter(context, choices, answer, " ")
    }

    /// Like [`McItem::shared`] with another delimiter between context and choice.
    pub fn shared_with_delimiter<S: AsRef<str>>(
        context: impl Into<String>,
        choices: &[S],
        answer: usize,
        delimiter: &str,
    ) -> Self {
        let context = context.into();
        McItem {
            contexts: vec![context; choices.len()],
            continuations: choices.iter().map(|c| format!("{delimiter}{}", c.as_ref())).collect(),
            norm_texts: choices.iter().map(|c| c.as_ref().to_string()).collect(),
            answer,
        }
    }

    /// Partial scoring (WinoGrande): one context per choice, one shared continuation.
    pub fn partial<S: AsRef<str>>(contexts: &[S], continuation: &str, answer: usize) -> Self {
        McItem {
            contexts: contexts.iter().map(|c| c.as_ref().to_string()).collect(),
            continuations: vec![format!(" {continuation}"); contexts.len()],
            norm_texts: vec![continuation.to_string(); contexts.len()],
            answer,
        }
    }
}

/// A dataset row that is a multiple-choice item.
pub trait MultipleChoice {
    /// The item of this row.
    fn get(&self) -> std::result::Result<McItem, RowError>;

    /// Metrics beyond the standard four, or replacing them (same name), from the choices'
    /// log-likelihoods (e.g. TruthfulQA MC2's probability mass on true answers).
    fn extra_metrics(&self, _item: &McItem, _loglikelihoods: &[f64]) -> Vec<(&'static str, f64)> {
        vec![]
    }
}

task_type!(
    /// A multiple-choice evaluation over rows of `T`.
    MultipleChoiceTask, MultipleChoice, TaskKind::MultipleChoice
);

impl<T: MultipleChoice> MultipleChoiceTask<T> {
    fn run(&self, env: &Env<'_>) -> Result<Outcome> {
        let get = |i: usize, r: &T| {
            r.get().map(|mut it| {
                for c in &mut it.contexts {
                    *c = super::with_fewshot(&self.fewshot, i, c);
                }
                it
            })
        };
        execute_mc(
            &self.name,
            &self.rows,
            &self.defaults,
            env,
            TaskKind::MultipleChoice,
            get,
            |r, item, lls| r.extra_metrics(item, lls),
        )
    }
}
