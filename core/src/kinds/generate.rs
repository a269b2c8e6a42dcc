//! Generation (the seed's RolloutEvaluation, with EOS stopping and per-evaluation RNGs): each
//! prompt is continued by up to `max_new_tokens` tokens — greedy, or temperature + nucleus
//! sampling from a seeded RNG per sample (so results do not depend on batching) — stopping at
//! EOS or at any stop string. [`Generate::clean`] sees only the generated text;
//! [`Generate::check`] or [`Generate::score`] give the per-sample values.
//!
//! The prompt budget is `max_len − max_new_tokens`; longer prompts keep their end and are
//! counted as truncated. Where `max_new_tokens` leaves no room for a prompt it is lowered to
//! `max_len / 2`, and the lowering is recorded in the results (`notes.max_new_tokens`).
//! `samples_per_prompt = G` repeats each prompt G times consecutively (p0,p0,…,p1,…): the
//! per-sample values and intermediates follow that order.

use super::execute::{execute, name_error};
use super::prompt::Prompt;
use super::task::{Finished, Kind, RowFailure, Task};
use super::{Env, RowError, TaskKind};
use crate::error::Result;
use crate::fingerprint::{eval_seed, Fnv};
use crate::request::{GenerateParams, GenerateRequest, Generation, Sampling};
use crate::schedule::{BatchSettings, ExecStats};
use serde_json::json;
use std::collections::BTreeMap;

/// A prompt and the reference the generation is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenItem {
    /// The prompt.
    pub prompt: String,
    /// The reference answer.
    pub target: String,
}

/// A dataset row scored by generating from a prompt.
pub trait Generate {
    /// Most new tokens per prompt (required: there is no sensible default).
    fn max_new_tokens() -> usize
    where
        Self: Sized;

    /// Strings that end a generation (excluded from the text).
    fn stop() -> Vec<String>
    where
        Self: Sized,
    {
        vec![]
    }

    /// The item of this row.
    fn get(&self) -> std::result::Result<GenItem, RowError>;

    /// Extracts the answer from the generated text (default: unchanged).
    fn clean(&self, generated: &str) -> String {
        generated.to_string()
    }

    /// Whether the cleaned generation is right (default: exact match).
    fn check(&self, target: &str, cleaned: &str) -> bool {
        target == cleaned
    }

    /// Per-sample metrics (default: `exact_match` from [`Generate::check`]).
    fn score(&self, target: &str, cleaned: &str) -> Vec<(String, f64)> {
        vec![("exact_match".into(), f64::from(u8::from(self.check(target, cleaned))))]
    }
}

/// A generation evaluation over rows of `T`.
pub type GenerateTask<T> = Task<T, GenerateKind>;

/// The generation kind (see [`Kind`]): the parameters, prompt budget and seed every row shares.
#[derive(Debug)]
pub struct GenerateKind {
    params: GenerateParams,
    /// `max_new_tokens` as the benchmark asks it (before any lowering to fit the model).
    requested_max_new: usize,
    budget: usize,
    samples_per_prompt: usize,
    seed: u64,
    notes: BTreeMap<String, serde_json::Value>,
}

/// What a prompt keeps between lowering and finishing.
#[derive(Debug)]
pub struct GenRow {
    item: GenItem,
    first: usize,
    truncated: bool,
}

impl<T: Generate> Kind<T> for GenerateKind {
    const KIND: TaskKind = TaskKind::Generate;
    type Request = GenerateRequest;
    type Response = Generation;
    type Lowered = GenRow;

    fn begin(name: &str, env: &Env<'_>) -> Result<Self> {
        let max_len = env.model.max_len();
        let mut notes = BTreeMap::new();
        let requested_max_new = env.options.max_new_tokens.unwrap_or_else(T::max_new_tokens);
        let mut max_new = requested_max_new;
        let stop = T::stop();
        if stop.iter().any(String::is_empty) {
            return Err(crate::Error::Evaluation {
                evaluation: name.into(),
                message: "an empty stop string would end every generation before its first token".into(),
            });
        }
        if max_new == 0 {
            return Err(crate::Error::Evaluation {
                evaluation: name.into(),
                message: "max_new_tokens is 0".into(),
            });
        }
        if max_new >= max_len {
            let lowered = (max_len / 2).max(1);
            notes.insert("max_new_tokens".into(), json!({"requested": max_new, "used": lowered, "reason": format!("no room for a prompt in max length {max_len}")}));
            max_new = lowered;
        }
        Ok(GenerateKind {
            params: GenerateParams {
                max_new_tokens: max_new,
                stop,
                sampling: env.options.sampling.unwrap_or(Sampling::Greedy),
            },
            requested_max_new,
            budget: max_len - max_new,
            samples_per_prompt: env.options.samples_per_prompt.max(1),
            seed: eval_seed(env.options.seed, name),
            notes,
        })
    }

    /// The generation settings as the benchmark and the run ask them (not as lowered to fit a
    /// model), so the fingerprint stays the same across models.
    fn settings(&self, fp: Fnv) -> Fnv {
        let mut fp = fp.row(self.requested_max_new).row(self.samples_per_prompt);
        for s in &self.params.stop {
            fp = fp.str(s);
        }
        match self.params.sampling {
            Sampling::Greedy => fp.str("greedy"),
            Sampling::Nucleus { temperature, top_p } => fp
                .str("nucleus")
                .bytes(&temperature.to_le_bytes())
                .bytes(&top_p.to_le_bytes())
                .bytes(&self.seed.to_le_bytes()),
        }
    }

    fn lower(
        &mut self,
        index: usize,
        row: &T,
        prompt: &Prompt<'_>,
        env: &Env<'_>,
        fp: &mut Fnv,
        requests: &mut Vec<GenerateRequest>,
    ) -> std::result::Result<GenRow, RowFailure> {
        let mut item = row.get()?;
        item.prompt = prompt.context(&item.prompt)?;
        *fp = fp.str(&item.prompt).str(&item.target);
        let mut ids = env.tokenizer.encode(&item.prompt)?;
        if ids.is_empty() {
            ids.push(env.tokenizer.prefix_token()?);
        }
        let truncated = ids.len() > self.budget;
        if truncated {
            ids.drain(..ids.len() - self.budget);
        }
        let first = requests.len();
        for j in 0..self.samples_per_prompt {
            let s = Fnv::default()
                .bytes(&self.seed.to_le_bytes())
                .bytes(&(index as u64).to_le_bytes())
                .bytes(&(j as u64).to_le_bytes())
                .finish();
            requests.push(GenerateRequest {
                prompt: ids.clone(),
                seed: s,
            });
        }
        Ok(GenRow { item, first, truncated })
    }

    fn execute(
        &self,
        env: &Env<'_>,
        name: &str,
        requests: &[GenerateRequest],
        batch: BatchSettings,
    ) -> Result<(Vec<Generation>, ExecStats)> {
        let lengths: Vec<usize> = requests.iter().map(|r| r.prompt.len()).collect();
        let key = requests
            .iter()
            .fold(Fnv::default().str(name).str(&format!("{:?}", self.params)), |h, r| {
                h.ints(&r.prompt).bytes(&r.seed.to_le_bytes())
            });
        execute(env, name, key, &lengths, batch, |idx, counts| {
            let batch: Vec<&GenerateRequest> = idx.iter().map(|&i| &requests[i]).collect();
            env.model
                .generate(env.tokenizer, &batch, &self.params, counts)
                .map_err(|e| name_error(name, idx, e))
        })
    }

    fn finish(
        &mut self,
        index: usize,
        row: &T,
        low: GenRow,
        requests: &[GenerateRequest],
        responses: &[Generation],
        env: &Env<'_>,
    ) -> std::result::Result<Finished, RowFailure> {
        let g = self.samples_per_prompt;
        let outs = &responses[low.first..low.first + g];
        let mut values = vec![];
        let mut extracted = vec![];
        let mut intermediates = vec![];
        let mut row_metrics: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (j, out) in outs.iter().enumerate() {
            let cleaned = row.clean(&out.text);
            for (m, v) in row.score(&low.item.target, &cleaned) {
                values.push((m.clone(), v));
                row_metrics.entry(m).or_default().push(v);
            }
            extracted.push(cleaned);
            if env.options.return_intermediates {
                let p = &requests[low.first + j].prompt;
                let tokens: Vec<i64> = p.iter().chain(&out.tokens).copied().collect();
                let mask = (0..tokens.len()).map(|q| q >= p.len()).collect();
                intermediates.push((tokens, mask));
            }
        }
        let metrics: serde_json::Map<String, serde_json::Value> = row_metrics
            .iter()
            .map(|(m, v)| (m.clone(), json!(crate::metrics::mean(v))))
            .collect();
        let record = json!({
            "index": index,
            "prompt": low.item.prompt,
            "generations": outs.iter().map(|o| &o.text).collect::<Vec<_>>(),
            "finish": outs.iter().map(|o| &o.finish).collect::<Vec<_>>(),
            "target": low.item.target,
            "extracted": extracted,
            "truncated": low.truncated,
            "metrics": metrics,
        });
        Ok(Finished {
            values,
            record,
            intermediates,
            truncated: low.truncated,
        })
    }

    fn notes(&self) -> BTreeMap<String, serde_json::Value> {
        self.notes.clone()
    }
}
