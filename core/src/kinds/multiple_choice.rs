//! Multiple choice (the seed's PerplexityComparisonEvaluation, with its first-token defect
//! fixed): each choice is a continuation of the context, every continuation token is scored,
//! and the prediction is the argmax of the summed log-likelihood (`acc`), of log-likelihood
//! per character of the choice (`acc_norm`), per UTF-8 byte (`acc_bytes`) and per token
//! (`acc_token_norm`). Ties go to the first choice. Contexts are shared through the KV cache
//! unless the run disables it.

use super::execute::score_requests;
use super::pairs::{lower_pairs, pair_tokens, read_pairs, Slots};
use super::prompt::Prompt;
use super::task::{Finished, Kind, RowFailure, Task};
use super::{Env, RowError, TaskKind};
use crate::error::Result;
use crate::fingerprint::Fnv;
use crate::metrics::argmax;
use crate::request::{ContinuationScore, ScoreRequest};
use crate::schedule::{BatchSettings, ExecStats};
use serde_json::json;

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
    /// The target delimiter each continuation starts with (dropped after a chat-rendered
    /// context, as lm-eval drops it).
    pub delimiter: String,
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
            delimiter: delimiter.into(),
        }
    }

    /// Partial scoring (WinoGrande): one context per choice, one shared continuation
    /// `" " + continuation`.
    ///
    /// ```
    /// let item = evalkit_core::kinds::McItem::partial(&["The cat", "The dog"], "barked.", 1);
    /// assert_eq!(item.continuations, vec![" barked.", " barked."]);
    /// ```
    pub fn partial<S: AsRef<str>>(contexts: &[S], continuation: &str, answer: usize) -> Self {
        Self::partial_with_delimiter(contexts, continuation, answer, " ")
    }

    /// Like [`McItem::partial`] with another delimiter between each context and the continuation.
    pub fn partial_with_delimiter<S: AsRef<str>>(
        contexts: &[S],
        continuation: &str,
        answer: usize,
        delimiter: &str,
    ) -> Self {
        McItem {
            contexts: contexts.iter().map(|c| c.as_ref().to_string()).collect(),
            continuations: vec![format!("{delimiter}{continuation}"); contexts.len()],
            norm_texts: vec![continuation.to_string(); contexts.len()],
            answer,
            delimiter: delimiter.into(),
        }
    }
}

/// A dataset row that is a multiple-choice item.
pub trait MultipleChoice {
    /// The item of this row.
    fn get(&self) -> std::result::Result<McItem, RowError>;

    /// Metrics beyond the standard four, or replacing them (same name), from the choices'
    /// log-likelihoods (e.g. TruthfulQA MC2's probability mass on true answers). One that
    /// replaces `acc` says the row is not scored by its one right answer, so the other
    /// standard accuracies, which count that answer, are not reported for it.
    fn extra_metrics(&self, _item: &McItem, _loglikelihoods: &[f64]) -> Vec<(&'static str, f64)> {
        vec![]
    }
}

/// A multiple-choice evaluation over rows of `T`.
pub type MultipleChoiceTask<T> = Task<T, MultipleChoiceKind>;

/// The multiple-choice kind (see [`Kind`]).
#[derive(Debug)]
pub struct MultipleChoiceKind;

impl<T: MultipleChoice> Kind<T> for MultipleChoiceKind {
    const KIND: TaskKind = TaskKind::MultipleChoice;
    type Request = ScoreRequest;
    type Response = Vec<ContinuationScore>;
    type Lowered = (McItem, Slots);

    fn begin(_: &str, _: &Env<'_>) -> Result<Self> {
        Ok(MultipleChoiceKind)
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
        // Choices usually share one context: render each distinct one once.
        let mut rendered: Vec<(String, String)> = vec![];
        for c in &mut item.contexts {
            let full = match rendered.iter().find(|(raw, _)| raw == c) {
                Some((_, full)) => full.clone(),
                None => {
                    let full = prompt.context(c)?;
                    rendered.push((std::mem::take(c), full.clone()));
                    full
                }
            };
            *c = full;
        }
        for c in &mut item.continuations {
            *c = prompt.continuation(c, &item.delimiter).to_string();
        }
        let n = item.continuations.len();
        if n == 0 {
            return Err(RowError::new("the choice list is empty").into());
        }
        if item.contexts.len() != n || item.norm_texts.len() != n {
            return Err(RowError::new(format!("{} contexts for {n} continuations", item.contexts.len())).into());
        }
        if item.answer >= n {
            return Err(RowError::new(format!("answer index {} out of range for {n} choices", item.answer)).into());
        }
        for ((ctx, cont), norm) in item.contexts.iter().zip(&item.continuations).zip(&item.norm_texts) {
            *fp = fp.str(ctx).str(cont).str(norm);
        }
        *fp = fp.row(item.answer);
        let slots = lower_pairs(
            env.tokenizer,
            env.model.max_len(),
            &item.contexts,
            &item.continuations,
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
        row: &T,
        (item, slots): Self::Lowered,
        requests: &[ScoreRequest],
        responses: &[Self::Response],
        env: &Env<'_>,
    ) -> std::result::Result<Finished, RowFailure> {
        let s = read_pairs(&slots, requests, responses);
        let lls = &s.loglikelihoods;
        let norm =
            |d: &dyn Fn(usize) -> f64| argmax(&lls.iter().enumerate().map(|(j, l)| l / d(j)).collect::<Vec<_>>());
        let pred = argmax(lls);
        let hit = |p: usize| f64::from(u8::from(p == item.answer));
        let mut m: Vec<(&'static str, f64)> = vec![
            ("acc", hit(pred)),
            ("acc_norm", hit(norm(&|j| item.norm_texts[j].chars().count() as f64))),
            // An empty choice divides by zero, as lm-eval's numpy does: −inf (never picked
            // while another is finite), or NaN for a log-likelihood of 0 (picked first).
            ("acc_bytes", hit(norm(&|j| item.norm_texts[j].len() as f64))),
            ("acc_token_norm", hit(norm(&|j| s.num_tokens[j] as f64))),
        ];
        let extra = row.extra_metrics(&item, lls);
        if extra.iter().any(|&(k, _)| k == "acc") {
            m.retain(|&(k, _)| k == "acc");
        }
        for (k, v) in extra {
            match m.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => m.push((k, v)),
            }
        }
        let record = json!({
            "index": index,
            "contexts": item.contexts,
            "continuations": item.continuations,
            "loglikelihoods": lls,
            "is_greedy": s.greedy,
            "num_tokens": s.num_tokens,
            "answer": item.answer,
            "prediction": pred,
            "truncated": s.truncated,
            "metrics": m.iter().map(|&(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        Ok(Finished {
            values: m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            record,
            intermediates: if env.options.return_intermediates {
                vec![pair_tokens(slots[pred], requests)]
            } else {
                vec![]
            },
            truncated: s.truncated,
        })
    }
}
