//! One driver for every kind. A [`Task`] holds an evaluation's rows, defaults and few-shot
//! prompts; its kind `K` ([`Kind`]) says only what is particular to it — how a row lowers to
//! requests, how the requests execute, how a row's responses become its sample and metrics,
//! and how per-sample values aggregate (the mean by default). [`Task`]'s [`Evaluation`] impl
//! runs the sequence all kinds share: pick the rows, lower each (its few-shot prefix and its
//! rendered inputs fed to the data fingerprint), execute chunk by chunk with the journal,
//! finish each row in dataset order, aggregate.

use super::outcome::{mean_metrics, pad_intermediates};
use super::prompt::{Prompt, Prompter};
use super::rows::prepare;
use super::{Defaults, Env, Outcome, RowError, TaskKind};
use crate::error::{Error, Result};
use crate::fewshot::FewShot;
use crate::fingerprint::{data_fingerprint, Fnv};
use crate::metrics::Metric;
use crate::schedule::{BatchSettings, ExecStats};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;

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

/// Why a row could not be lowered or finished: the row itself (the driver adds the evaluation
/// and row index) or the engine below it.
#[derive(Debug)]
pub enum RowFailure {
    /// The row is malformed.
    Row(RowError),
    /// Tokenizing, decoding or the model failed.
    Engine(Error),
}

impl From<RowError> for RowFailure {
    fn from(e: RowError) -> Self {
        RowFailure::Row(e)
    }
}

impl From<Error> for RowFailure {
    fn from(e: Error) -> Self {
        RowFailure::Engine(e)
    }
}

/// One row's results, as its kind finishes it.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// Per-sample metric values, in order (a generation row has one set per generation).
    pub values: Vec<(String, f64)>,
    /// Its record in `samples_<evaluation>.jsonl`.
    pub record: serde_json::Value,
    /// Its token rows and action masks (when the run asks for intermediates).
    pub intermediates: Vec<(Vec<i64>, Vec<bool>)>,
    /// Whether its input was truncated to fit the model.
    pub truncated: bool,
}

/// What is particular to one kind of evaluation over rows of `T`. A value of the kind is the
/// state of one run (e.g. perplexity's corpus sums), made by [`Kind::begin`].
pub trait Kind<T>: Sized {
    /// The kind.
    const KIND: TaskKind;
    /// The requests rows lower to.
    type Request;
    /// What executing one request returns (journaled, so serializable).
    type Response: Serialize + DeserializeOwned + Clone;
    /// What a row keeps between lowering and finishing.
    type Lowered;

    /// Starts a run of evaluation `name`: checks settings, fixes what every row shares.
    fn begin(name: &str, env: &Env<'_>) -> Result<Self>;

    /// Feeds the settings that change values to the data fingerprint (default: none).
    fn settings(&self, fingerprint: Fnv) -> Fnv {
        fingerprint
    }

    /// Lowers row `index` to requests appended to `requests`, feeding its rendered inputs to
    /// `fingerprint`; `prompt` turns the row's own context or prompt into the model's input
    /// (description, system instruction, few-shot examples, chat template).
    fn lower(
        &mut self,
        index: usize,
        row: &T,
        prompt: &Prompt<'_>,
        env: &Env<'_>,
        fingerprint: &mut Fnv,
        requests: &mut Vec<Self::Request>,
    ) -> std::result::Result<Self::Lowered, RowFailure>;

    /// Executes every request of the run.
    fn execute(
        &self,
        env: &Env<'_>,
        name: &str,
        requests: &[Self::Request],
        batch: BatchSettings,
    ) -> Result<(Vec<Self::Response>, ExecStats)>;

    /// Row `index`'s sample from the responses (indexed like `requests`).
    fn finish(
        &mut self,
        index: usize,
        row: &T,
        lowered: Self::Lowered,
        requests: &[Self::Request],
        responses: &[Self::Response],
        env: &Env<'_>,
    ) -> std::result::Result<Finished, RowFailure>;

    /// Per-sample values → metrics (default: each a mean with its standard error).
    fn aggregate(&self, per_sample: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Metric> {
        mean_metrics(per_sample)
    }

    /// Anything else the results should record.
    fn notes(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::new()
    }
}

/// An evaluation of kind `K` over rows of `T` (see the aliases [`super::MultipleChoiceTask`],
/// [`super::GenerateTask`], ...).
pub struct Task<T, K> {
    /// Name.
    pub name: String,
    /// Rows in dataset order.
    pub rows: Vec<T>,
    /// Defaults.
    pub defaults: Defaults,
    /// Description and few-shot examples prepended to each context or prompt.
    pub fewshot: Option<FewShot>,
    kind: PhantomData<fn() -> K>,
}

impl<T, K> Task<T, K> {
    /// A task named `name` over `rows`.
    pub fn new(name: impl Into<String>, rows: Vec<T>) -> Self {
        Task {
            name: name.into(),
            rows,
            defaults: Defaults::default(),
            fewshot: None,
            kind: PhantomData,
        }
    }
}

impl<T, K: Kind<T>> Evaluation for Task<T, K> {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> TaskKind {
        K::KIND
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn defaults(&self) -> Defaults {
        self.defaults
    }
    fn evaluate(&self, env: &Env<'_>) -> Result<Outcome> {
        let name = &self.name;
        let prep = prepare(name, self.rows.len(), &self.defaults, env)?;
        if let Some(f) = self.fewshot.as_ref().filter(|f| f.num_rows() != self.rows.len()) {
            return Err(Error::Evaluation {
                evaluation: name.clone(),
                message: format!(
                    "its few-shot examples were drawn for {} rows, but it has {}: build them from these rows",
                    f.num_rows(),
                    self.rows.len()
                ),
            });
        }
        if let Some(p) = env.progress {
            p.set_rows(prep.rows.len());
        }
        let mut kind = K::begin(name, env)?;
        let failed = |index: usize, f: RowFailure| match f {
            RowFailure::Row(e) => Error::Row {
                evaluation: name.clone(),
                row: index,
                message: e.0,
            },
            RowFailure::Engine(e) => e,
        };
        let mut fingerprint = kind.settings(data_fingerprint(name, K::KIND));
        let prompter = Prompter::new(
            self.fewshot.as_ref(),
            env.options.system_instruction.as_deref(),
            env.options.chat.as_ref(),
        );
        let started = std::time::Instant::now();
        let mut requests = vec![];
        let mut lowered = Vec::with_capacity(prep.rows.len());
        // The row each request came from (errors of a batch name rows, not requests).
        let mut owner = vec![];
        for &i in &prep.rows {
            fingerprint = fingerprint.row(i);
            let low = kind
                .lower(i, &self.rows[i], &prompter.row(i), env, &mut fingerprint, &mut requests)
                .map_err(|f| failed(i, f))?;
            lowered.push(low);
            owner.resize(requests.len(), i);
        }
        let lowered_at = started.elapsed();
        let (responses, stats) = kind.execute(env, name, &requests, prep.batch).map_err(|e| match e {
            Error::NonFinite { evaluation, what, rows } => {
                let mut rows: Vec<usize> = rows.iter().filter_map(|&r| owner.get(r).copied()).collect();
                rows.sort_unstable();
                rows.dedup();
                Error::NonFinite { evaluation, what, rows }
            }
            other => other,
        })?;
        let executed_at = started.elapsed();
        let mut per_sample: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let (mut samples, mut inter, mut truncated) = (vec![], vec![], 0);
        // Every row must report the same metrics the same number of times, so that per-sample
        // values line up with rows (means, groups, gates).
        let mut shape: Option<BTreeMap<String, usize>> = None;
        for (&i, low) in prep.rows.iter().zip(lowered) {
            let f = kind
                .finish(i, &self.rows[i], low, &requests, &responses, env)
                .map_err(|f| failed(i, f))?;
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for (k, _) in &f.values {
                *counts.entry(k.clone()).or_default() += 1;
            }
            match &shape {
                None => shape = Some(counts),
                Some(first) if *first != counts => {
                    return Err(failed(
                        i,
                        RowFailure::Row(RowError::new(format!(
                            "the row reports metrics {counts:?}, the first row {first:?}: every row must report the same metrics"
                        ))),
                    ))
                }
                Some(_) => {}
            }
            for (k, v) in f.values {
                per_sample.entry(k).or_default().push(v);
            }
            samples.push(f.record);
            inter.extend(f.intermediates);
            truncated += usize::from(f.truncated);
        }
        tracing::debug!(
            "{name}: {} rows lowered to {} requests in {:.1} ms, executed in {:.1} ms, scored in {:.1} ms",
            prep.rows.len(),
            requests.len(),
            lowered_at.as_secs_f64() * 1e3,
            (executed_at - lowered_at).as_secs_f64() * 1e3,
            (started.elapsed() - executed_at).as_secs_f64() * 1e3
        );
        Ok(Outcome {
            name: name.clone(),
            kind: K::KIND,
            n: prep.rows.len(),
            truncated,
            metrics: kind.aggregate(&per_sample),
            per_sample,
            samples,
            intermediates: env.options.return_intermediates.then(|| pad_intermediates(inter)),
            notes: {
                let mut notes = kind.notes();
                if let Some(n) = prompter.notes() {
                    notes.insert("chat_template".into(), n);
                }
                let o = env.options;
                if matches!(K::KIND, TaskKind::Perplexity | TaskKind::NextToken)
                    && (o.chat.is_some() || o.system_instruction.is_some())
                {
                    notes.insert(
                        "chat_template".into(),
                        serde_json::json!(
                            "not applied: this kind scores whole texts (as lm-eval's loglikelihood_rolling)"
                        ),
                    );
                }
                notes
            },
            stats,
            fingerprint: fingerprint.finish(),
            wall_seconds: 0.0,
        })
    }
}
