//! The five evaluation kinds (DESIGN.md section 3) and what they share.
//!
//! Each kind is a trait a dataset row implements — the seed design's hooks `get`, `clean`,
//! `check`, `score`, with defaults — plus a task type that holds the rows and implements
//! [`Evaluation`], the object-safe interface the [`crate::evaluator::Evaluator`] runs:
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
//! scheduler ([`crate::schedule`]) and the batch executor ([`crate::batch`]), and turns the
//! results into per-sample records and metrics ([`Outcome`]).

/// Defines a kind's task type: the struct holding name, rows, defaults and few-shot examples,
/// its constructor, and the [`Evaluation`] impl that delegates to the kind's own `run`.
macro_rules! task_type {
    ($(#[$doc:meta])* $task:ident, $row:ident, $kind:expr) => {
        $(#[$doc])*
        pub struct $task<T> {
            /// Name.
            pub name: String,
            /// Rows in dataset order.
            pub rows: Vec<T>,
            /// Defaults.
            pub defaults: super::Defaults,
            /// Few-shot examples prepended to each context or prompt.
            pub fewshot: Option<crate::fewshot::FewShot>,
        }

        impl<T: $row> $task<T> {
            /// A task named `name` over `rows`.
            pub fn new(name: impl Into<String>, rows: Vec<T>) -> Self {
                $task { name: name.into(), rows, defaults: super::Defaults::default(), fewshot: None }
            }
        }

        impl<T: $row> super::Evaluation for $task<T> {
            fn name(&self) -> &str {
                &self.name
            }
            fn kind(&self) -> super::TaskKind {
                $kind
            }
            fn len(&self) -> usize {
                self.rows.len()
            }
            fn defaults(&self) -> super::Defaults {
                self.defaults
            }
            fn evaluate(&self, env: &super::Env<'_>) -> crate::error::Result<super::Outcome> {
                self.run(env)
            }
        }
    };
}

pub mod generate;
pub mod loglikelihood;
pub mod multiple_choice;
pub mod next_token;
pub mod perplexity;
mod scoring;

pub(crate) use scoring::execute_mc;

pub use generate::{GenItem, Generate, GenerateTask};
pub use loglikelihood::{LlItem, Loglikelihood, LoglikelihoodTask};
pub use multiple_choice::{McItem, MultipleChoice, MultipleChoiceTask};
pub use next_token::{NextToken, NextTokenSample, NextTokenTask};
pub use perplexity::{Perplexity, PerplexityTask, PplItem};

use crate::batch::TokenCounts;
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::metrics::{Metric, Reduce, Score};
use crate::model::Model;
use crate::request::Sampling;
use crate::schedule::{BatchSettings, ExecStats, Executor, Plan};
use crate::tokenizer::Tokenizer;
use rand::SeedableRng;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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

/// Which rows an evaluation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// Every row.
    #[default]
    All,
    /// The first n rows.
    First(usize),
    /// n rows drawn with the evaluation's own seeded RNG, kept in dataset order.
    Sample(usize),
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
    /// Batch size; `None` uses the evaluation's default, else 16.
    pub batch_size: Option<usize>,
    /// Batch unit (`replicas × per_device_batch_size`).
    pub batch_unit: usize,
    /// Chunk size; `None` uses the evaluation's default, else 8.
    pub chunk_size: Option<usize>,
    /// Which rows; `None` uses the evaluation's default limit (first n), else all.
    pub subset: Option<Subset>,
    /// Seed of every RNG (subsets, few-shot draws, sampling), combined with each evaluation's
    /// name so evaluations do not share a stream.
    pub seed: u64,
    /// Score multiple-choice continuations from their context's KV cache.
    pub share_prefix: bool,
    /// Also return per-sample token rows with action and padding masks.
    pub return_intermediates: bool,
    /// Generation sampling (`None`: greedy).
    pub sampling: Option<Sampling>,
    /// Generations per prompt (consecutive p0,p0,…,p1,…).
    pub samples_per_prompt: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: None,
            batch_unit: 1,
            chunk_size: None,
            subset: None,
            seed: 1234,
            share_prefix: true,
            return_intermediates: false,
            sampling: None,
            samples_per_prompt: 1,
        }
    }
}

impl RunOptions {
    /// The batching an evaluation with `defaults` runs with.
    pub fn batch_settings(&self, defaults: &Defaults) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size.or(defaults.batch_size).unwrap_or(16).max(1),
            batch_unit: self.batch_unit.max(1),
            chunk_size: self.chunk_size.or(defaults.chunk_size).unwrap_or(8).max(1),
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
    /// Progress bar to advance per chunk.
    pub progress: Option<&'a indicatif::ProgressBar>,
}

/// Per-sample token row with its masks, the same shape for every kind (for RL consumers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Intermediate {
    /// Token ids (right-padded with 0 to the evaluation's widest row).
    pub tokens: Vec<i64>,
    /// True at tokens the model scored or generated (the "actions").
    pub action_mask: Vec<bool>,
    /// True at real tokens, false at padding.
    pub padding_mask: Vec<bool>,
}

/// Everything one evaluation produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Evaluation name.
    pub name: String,
    /// Its kind.
    pub kind: TaskKind,
    /// Rows evaluated.
    pub n: usize,
    /// Rows whose input was truncated to fit the model.
    pub truncated: usize,
    /// Aggregated metrics.
    pub metrics: BTreeMap<String, Metric>,
    /// Per-sample values of each per-sample metric, in dataset order.
    pub per_sample: BTreeMap<String, Vec<f64>>,
    /// One JSON record per row (samples_<name>.jsonl), in dataset order.
    pub samples: Vec<serde_json::Value>,
    /// Per-sample token rows and masks, when asked for.
    pub intermediates: Option<Vec<Intermediate>>,
    /// Anything else the results should record (e.g. a lowered max_new_tokens).
    pub notes: BTreeMap<String, serde_json::Value>,
    /// Chunks computed and resumed, and the tokens and seconds of all chunks (resumed ones
    /// included).
    pub stats: ExecStats,
    /// Hash of what was asked of the model, in text: the evaluation's name and kind, the rows
    /// selected, each row's rendered inputs (few-shot prefix included), answers and the
    /// settings that change values (generation parameters). Independent of the model, so two
    /// models' runs with equal fingerprints answered the same questions.
    pub fingerprint: u64,
    /// Seconds this process spent on the evaluation (lowering, execution, scoring), set by the
    /// evaluator.
    pub wall_seconds: f64,
}

impl Outcome {
    /// `metric` reduced as asked: mean, sum, or the per-sample values.
    pub fn score(&self, metric: &str, how: Reduce) -> Option<Score> {
        self.per_sample.get(metric).map(|v| crate::metrics::reduce(v, how))
    }
}

/// An evaluation the evaluator can run: a name, a kind, rows, and how to evaluate them.
pub trait Evaluation {
    /// The evaluation's name (lm-eval's task name for standard suites).
    fn name(&self) -> &str;
    /// Its kind.
    fn kind(&self) -> TaskKind;
    /// Number of rows in its full dataset.
    fn len(&self) -> usize;
    /// True for an empty dataset.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Per-evaluation defaults.
    fn defaults(&self) -> Defaults {
        Defaults::default()
    }
    /// Runs the evaluation.
    fn evaluate(&self, env: &Env<'_>) -> Result<Outcome>;
}

/// FNV-1a, 64 bits: a stable hash for seeds and fingerprints (std's hasher may change).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    /// Feeds a string (with a terminator, so concatenations differ).
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes()).bytes(&[0xff])
    }
    /// Feeds an index or count.
    pub fn row(self, i: usize) -> Self {
        self.bytes(&(i as u64).to_le_bytes())
    }
    /// Feeds integers.
    pub fn ints(self, v: &[i64]) -> Self {
        v.iter().fold(self, |h, x| h.bytes(&x.to_le_bytes())).bytes(&[0xfe])
    }
    /// The hash.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Starts the data fingerprint of an evaluation (see [`Outcome::fingerprint`]).
pub(crate) fn data_fingerprint(name: &str, kind: TaskKind) -> Fnv {
    Fnv::default().str("evalkit data v1").str(name).str(kind.as_str())
}

/// The seed of evaluation `name`'s own RNG.
pub fn eval_seed(seed: u64, name: &str) -> u64 {
    Fnv::default().bytes(&seed.to_le_bytes()).str(name).finish()
}

/// Dataset indices an evaluation uses, in dataset order.
pub fn select_rows(name: &str, len: usize, subset: Subset, seed: u64) -> Vec<usize> {
    match subset {
        Subset::All => (0..len).collect(),
        Subset::First(n) => (0..len.min(n)).collect(),
        Subset::Sample(n) if n >= len => (0..len).collect(),
        Subset::Sample(n) => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(eval_seed(seed, name));
            let mut idx = rand::seq::index::sample(&mut rng, len, n).into_vec();
            idx.sort_unstable();
            idx
        }
    }
}

/// What every kind does first: checks the dataset, picks the subset and batching.
pub(crate) struct Prepared {
    pub rows: Vec<usize>,
    pub batch: BatchSettings,
}

pub(crate) fn prepare(name: &str, len: usize, defaults: &Defaults, env: &Env<'_>) -> Result<Prepared> {
    if len == 0 {
        return Err(Error::Evaluation {
            evaluation: name.into(),
            message: "the dataset is empty".into(),
        });
    }
    let o = env.options;
    let subset = o.subset.unwrap_or(defaults.limit.map_or(Subset::All, Subset::First));
    let rows = select_rows(name, len, subset, o.seed);
    if rows.is_empty() {
        return Err(Error::Evaluation {
            evaluation: name.into(),
            message: "the subset selects no rows (limit 0)".into(),
        });
    }
    Ok(Prepared {
        rows,
        batch: o.batch_settings(defaults),
    })
}

/// Runs `plan` through the executor with the evaluation's journal (when the env has a
/// journal folder); `fingerprint` must cover everything the results depend on.
pub(crate) fn execute<R, F>(
    env: &Env<'_>,
    name: &str,
    fingerprint: Fnv,
    plan: &Plan,
    n: usize,
    run_batch: F,
) -> Result<(Vec<R>, ExecStats)>
where
    R: Serialize + DeserializeOwned + Clone,
    F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
{
    let fp = format!(
        "{:016x}",
        fingerprint
            .str(&env.model.describe())
            .str(&format!("{:?}", plan.chunks))
            .finish()
    );
    let mut journal = match env.journal_dir {
        Some(dir) => Some(Journal::open(&dir.join(format!("{name}.journal.jsonl")), &fp)?),
        None => None,
    };
    let mut ex = Executor {
        journal: journal.as_mut(),
        progress: env.progress,
        stats: ExecStats::default(),
    };
    let out = ex.run(plan, n, run_batch)?;
    Ok((out, ex.stats))
}

/// Adds the evaluation's name to errors raised below it.
pub(crate) fn name_error(name: &str, e: Error) -> Error {
    match e {
        Error::NonFinite { what, .. } => Error::NonFinite {
            evaluation: name.into(),
            what,
        },
        Error::Unsupported(m) => Error::Evaluation {
            evaluation: name.into(),
            message: m,
        },
        other => other,
    }
}

/// Pads intermediates to a common width.
pub(crate) fn pad_intermediates(rows: Vec<(Vec<i64>, Vec<bool>)>) -> Vec<Intermediate> {
    let w = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(mut tokens, mut action_mask)| {
            let n = tokens.len();
            tokens.resize(w, 0);
            action_mask.resize(w, false);
            let padding_mask = (0..w).map(|i| i < n).collect();
            Intermediate {
                tokens,
                action_mask,
                padding_mask,
            }
        })
        .collect()
}

/// Per-sample metric values → mean metrics with standard errors.
pub(crate) fn mean_metrics(per_sample: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Metric> {
    per_sample
        .iter()
        .map(|(k, v)| (k.clone(), crate::metrics::mean_metric(v)))
        .collect()
}

/// Scores requests through the executor (what the scoring kinds share).
pub(crate) fn score_requests(
    env: &Env<'_>,
    name: &str,
    reqs: &[crate::request::ScoreRequest],
    batch: BatchSettings,
    share: bool,
) -> Result<(Vec<Vec<crate::request::ContinuationScore>>, ExecStats)> {
    let lengths: Vec<usize> = reqs.iter().map(|r| r.len()).collect();
    let plan = Plan::new(&lengths, batch);
    let mut fp = Fnv::default().str(name).str(if share { "shared" } else { "unshared" });
    for r in reqs {
        fp = fp.ints(&r.context);
        for c in &r.continuations {
            fp = fp.ints(c);
        }
    }
    execute(env, name, fp, &plan, reqs.len(), |items, counts| {
        let batch: Vec<&crate::request::ScoreRequest> = items.iter().map(|&i| &reqs[i]).collect();
        crate::batch::score_batch(env.model, &batch, share, counts).map_err(|e| name_error(name, e))
    })
}

/// Wraps a row error with the evaluation name and row index.
pub(crate) fn row_error(name: &str, row: usize, e: RowError) -> Error {
    Error::Row {
        evaluation: name.into(),
        row,
        message: e.0,
    }
}

/// `context` preceded by row `index`'s description and few-shot examples, if the task has any.
pub(crate) fn with_fewshot(fewshot: &Option<crate::fewshot::FewShot>, index: usize, context: &str) -> String {
    match fewshot {
        Some(f) => format!("{}{context}", f.prefix(index)),
        None => context.to_string(),
    }
}
