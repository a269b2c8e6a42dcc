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

use super::{
    eval_seed, execute, name_error, pad_intermediates, prepare, row_error, Env, Fnv, Outcome, RowError, TaskKind,
};
use crate::error::Result;
use crate::request::{GenerateParams, GenerateRequest, Generation, Sampling};
use crate::schedule::Plan;
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

task_type!(
    /// A generation evaluation over rows of `T`.
    GenerateTask, Generate, TaskKind::Generate
);

impl<T: Generate> GenerateTask<T> {
    fn run(&self, env: &Env<'_>) -> Result<Outcome> {
        let name = &self.name;
        let prep = prepare(name, self.rows.len(), &self.defaults, env)?;
        let max_len = env.model.max_len();
        let mut notes = BTreeMap::new();
        let mut max_new = T::max_new_tokens();
        if max_new == 0 {
            return Err(crate::Error::Evaluation {
                evaluation: name.clone(),
                message: "max_new_tokens is 0".into(),
            });
        }
        if max_new >= max_len {
            let lowered = (max_len / 2).max(1);
            notes.insert("max_new_tokens".into(), json!({"requested": max_new, "used": lowered, "reason": format!("no room for a prompt in max length {max_len}")}));
            max_new = lowered;
        }
        let budget = max_len - max_new;
        let g = env.options.samples_per_prompt.max(1);
        let sampling = env.options.sampling.unwrap_or(Sampling::Greedy);
        let params = GenerateParams {
            max_new_tokens: max_new,
            stop: T::stop(),
            sampling,
        };
        let seed = eval_seed(env.options.seed, name);
        let mut items = vec![];
        let mut reqs = vec![];
        let mut truncated = 0;
        let mut fingerprint = super::data_fingerprint(name, TaskKind::Generate)
            .str(&format!("{params:?}"))
            .row(g);
        if sampling != Sampling::Greedy {
            fingerprint = fingerprint.bytes(&seed.to_le_bytes());
        }
        for &i in &prep.rows {
            let mut item = self.rows[i].get().map_err(|e| row_error(name, i, e))?;
            item.prompt = super::with_fewshot(&self.fewshot, i, &item.prompt);
            fingerprint = fingerprint.row(i).str(&item.prompt).str(&item.target);
            let mut ids = env.tokenizer.encode(&item.prompt)?;
            if ids.is_empty() {
                ids.push(env.tokenizer.prefix_token()?);
            }
            if ids.len() > budget {
                ids.drain(..ids.len() - budget);
                truncated += 1;
            }
            for j in 0..g {
                let s = Fnv::default()
                    .bytes(&seed.to_le_bytes())
                    .bytes(&(i as u64).to_le_bytes())
                    .bytes(&(j as u64).to_le_bytes())
                    .finish();
                reqs.push(GenerateRequest {
                    prompt: ids.clone(),
                    seed: s,
                });
            }
            items.push(item);
        }
        let lengths: Vec<usize> = reqs.iter().map(|r| r.prompt.len()).collect();
        let plan = Plan::new(&lengths, prep.batch);
        let fp = reqs
            .iter()
            .fold(Fnv::default().str(name).str(&format!("{params:?}")), |h, r| {
                h.ints(&r.prompt).bytes(&r.seed.to_le_bytes())
            });
        let (gens, stats): (Vec<Generation>, _) = execute(env, name, fp, &plan, reqs.len(), |idx, counts| {
            let batch: Vec<&GenerateRequest> = idx.iter().map(|&i| &reqs[i]).collect();
            crate::batch::generate_batch(env.model, env.tokenizer, &batch, &params, counts)
                .map_err(|e| name_error(name, e))
        })?;
        let mut per_sample: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut samples = vec![];
        let mut inter = vec![];
        for (k, (&index, item)) in prep.rows.iter().zip(&items).enumerate() {
            let row = &self.rows[index];
            let outs = &gens[k * g..(k + 1) * g];
            let mut extracted = vec![];
            let mut row_metrics: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (j, out) in outs.iter().enumerate() {
                let cleaned = row.clean(&out.text);
                for (m, v) in row.score(&item.target, &cleaned) {
                    per_sample.entry(m.clone()).or_default().push(v);
                    row_metrics.entry(m).or_default().push(v);
                }
                extracted.push(cleaned);
                if env.options.return_intermediates {
                    let p = &reqs[k * g + j].prompt;
                    let tokens: Vec<i64> = p.iter().chain(&out.tokens).copied().collect();
                    let mask = (0..tokens.len()).map(|q| q >= p.len()).collect();
                    inter.push((tokens, mask));
                }
            }
            let metrics: serde_json::Map<String, serde_json::Value> = row_metrics
                .iter()
                .map(|(m, v)| (m.clone(), json!(crate::metrics::mean(v))))
                .collect();
            samples.push(json!({
                "index": index,
                "prompt": item.prompt,
                "generations": outs.iter().map(|o| &o.text).collect::<Vec<_>>(),
                "finish": outs.iter().map(|o| &o.finish).collect::<Vec<_>>(),
                "target": item.target,
                "extracted": extracted,
                "metrics": metrics,
            }));
        }
        Ok(Outcome {
            name: name.clone(),
            kind: TaskKind::Generate,
            n: prep.rows.len(),
            truncated,
            metrics: super::mean_metrics(&per_sample),
            per_sample,
            samples,
            intermediates: env.options.return_intermediates.then(|| pad_intermediates(inter)),
            notes,
            stats,
            fingerprint: fingerprint.finish(),
            wall_seconds: 0.0,
        })
    }
}
