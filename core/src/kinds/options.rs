//! How an evaluation runs: which rows ([`Subset`]), the benchmark author's [`Defaults`], the
//! run's [`RunOptions`], and the [`Env`] (model, tokenizer, journal, progress) it runs in.

use super::prompt::ChatOptions;
use crate::model::Model;
use crate::request::Sampling;
use crate::schedule::BatchSettings;
use crate::shard::Share;
use crate::tokenizer::Tokenizer;
use serde::Serialize;
use std::path::Path;

/// Which rows an evaluation uses.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// Every row.
    #[default]
    All,
    /// The first n rows.
    First(usize),
    /// n rows drawn with the evaluation's own seeded RNG, kept in dataset order.
    Sample(usize),
    /// The first ⌈rows × share⌉ rows, the share in (0, 1) (lm-eval's `--limit` below 1, each
    /// evaluation its own count: each MMLU subject a share of its own rows).
    FirstShare(f64),
    /// ⌈rows × share⌉ rows drawn as [`Subset::Sample`] draws them.
    SampleShare(f64),
}

/// Per-evaluation defaults (a benchmark's author sets them; run options override them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Defaults {
    /// Default batch size.
    pub batch_size: Option<usize>,
    /// Default chunk size.
    pub chunk_size: Option<usize>,
    /// Default subset limit.
    pub limit: Option<usize>,
}

/// How an evaluation is run (the same for every evaluation of a run).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Batch size; `None` uses the evaluation's default, else 16 (with `auto_batch_size`,
    /// 64).
    pub batch_size: Option<usize>,
    /// `--batch-size auto`: `batch_size` is the largest batch tried; a batch that runs out of
    /// memory is halved, and the evaluation goes on at the size that fit
    /// ([`crate::schedule::BatchSettings::halve_on_oom`]).
    pub auto_batch_size: bool,
    /// Batch unit (`replicas × per_device_batch_size`).
    pub batch_unit: usize,
    /// Chunk size; `None` uses the evaluation's default, else 8.
    pub chunk_size: Option<usize>,
    /// Which rows; `None` uses the evaluation's default limit (first n), else all.
    pub subset: Option<Subset>,
    /// Seed of every RNG (subsets, sampling), combined with each evaluation's name so
    /// evaluations do not share a stream. (Few-shot draws are fixed when an evaluation is
    /// built, from the seed given to the builder.)
    pub seed: u64,
    /// Score multiple-choice continuations from their context's KV cache.
    pub share_prefix: bool,
    /// Also return per-sample token rows with action and padding masks.
    pub return_intermediates: bool,
    /// Generation sampling (`None`: greedy).
    pub sampling: Option<Sampling>,
    /// Generations per prompt (consecutive p0,p0,…,p1,…).
    pub samples_per_prompt: usize,
    /// Most new tokens per generation in place of each generation task's own
    /// ([`super::Generate::max_new_tokens`]; lm-eval's `max_gen_toks`).
    pub max_new_tokens: Option<usize>,
    /// Text of the system message (lm-eval's `--system_instruction`), joined with each
    /// evaluation's description (see [`super::prompt`]).
    pub system_instruction: Option<String>,
    /// Render every context through this chat template (lm-eval's `--apply_chat_template`).
    pub chat: Option<ChatOptions>,
    /// This process's share of a data-parallel run (see [`crate::shard`]).
    pub share: Share,
    /// The training step of the weights ([`crate::Evaluator::at_step`]): recorded in
    /// results.json (`config.step`) and part of every journal's key, so that a journal another
    /// step left in the output folder is started afresh rather than resumed.
    pub step: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: None,
            auto_batch_size: false,
            batch_unit: 1,
            chunk_size: None,
            subset: None,
            seed: 1234,
            share_prefix: true,
            return_intermediates: false,
            sampling: None,
            samples_per_prompt: 1,
            max_new_tokens: None,
            system_instruction: None,
            chat: None,
            share: Share::Whole,
            step: None,
        }
    }
}

impl RunOptions {
    /// The batching an evaluation with `defaults` runs with.
    pub fn batch_settings(&self, defaults: &Defaults) -> BatchSettings {
        BatchSettings {
            batch_size: match self.auto_batch_size {
                true => self.batch_size.unwrap_or(64),
                false => self.batch_size.or(defaults.batch_size).unwrap_or(16),
            }
            .max(1),
            batch_unit: self.batch_unit.max(1),
            chunk_size: self.chunk_size.or(defaults.chunk_size).unwrap_or(8).max(1),
            halve_on_oom: self.auto_batch_size,
        }
    }
}

/// What an evaluation runs with.
pub struct Env<'a> {
    /// The model.
    pub model: &'a dyn Model,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// Run options.
    pub options: &'a RunOptions,
    /// Where chunk journals go (`None`: no journal, nothing resumes).
    pub journal_dir: Option<&'a Path>,
    /// Progress display to advance per chunk.
    pub progress: Option<&'a crate::Progress>,
}
