//! [`Benchmark`]: what `#[derive(Evaluation)]` implements for a dataset row type — its name,
//! kind, metrics and defaults, how a row serves as a few-shot example, and how rows become an
//! [`Evaluation`]. [`task`] builds an evaluation from rows with an optional few-shot pool.

use crate::fewshot::{FewShot, FewShotSampler};
use crate::kinds::{Defaults, Evaluation, RowError, TaskKind};

/// A dataset row type that defines a whole evaluation (implemented by the derive).
pub trait Benchmark: Sized + 'static {
    /// Default evaluation name.
    const NAME: &'static str;
    /// The evaluation kind.
    const KIND: TaskKind;
    /// The metrics the author highlights (every metric of the kind is reported regardless).
    const METRICS: &'static [&'static str];
    /// Delimiter between a few-shot example's context and its answer.
    const DELIMITER: &'static str = " ";
    /// Text before the few-shot examples (lm-eval's `description`).
    const DESCRIPTION: &'static str = "";
    /// Default number of few-shot examples.
    const NUM_FEWSHOT: usize = 0;

    /// Default batch size, chunk size and limit.
    fn defaults() -> Defaults {
        Defaults::default()
    }

    /// This row as a few-shot example: (context, answer text).
    fn example(&self) -> Result<(String, String), RowError>;

    /// The evaluation named `name` over `rows`.
    fn evaluation(name: String, rows: Vec<Self>, fewshot: Option<FewShot>) -> Box<dyn Evaluation>;
}

/// Builds an evaluation from rows of a [`Benchmark`].
pub struct TaskBuilder<T> {
    name: String,
    rows: Vec<T>,
    fewshot: Option<FewShot>,
}

/// Starts an evaluation over `rows`, named after the benchmark.
///
/// ```
/// use evalkit_core::benchmark::{task, Benchmark};
/// use evalkit_core::kinds::*;
/// struct Row(String);
/// impl Perplexity for Row {
///     fn get(&self) -> Result<PplItem, RowError> { Ok(PplItem { text: self.0.clone(), count_text: None }) }
/// }
/// impl Benchmark for Row {
///     const NAME: &'static str = "texts";
///     const KIND: TaskKind = TaskKind::Perplexity;
///     const METRICS: &'static [&'static str] = &["word_perplexity"];
///     fn example(&self) -> Result<(String, String), RowError> { Ok((self.0.clone(), String::new())) }
///     fn evaluation(name: String, rows: Vec<Self>, _: Option<evalkit_core::fewshot::FewShot>) -> Box<dyn Evaluation> {
///         Box::new(PerplexityTask::new(name, rows))
///     }
/// }
/// let eval = task(vec![Row("hello".into())]).named("my_texts").build();
/// assert_eq!((eval.name(), eval.len()), ("my_texts", 1));
/// ```
pub fn task<T: Benchmark>(rows: Vec<T>) -> TaskBuilder<T> {
    TaskBuilder {
        name: T::NAME.to_string(),
        rows,
        fewshot: None,
    }
}

impl<T: Benchmark> TaskBuilder<T> {
    /// Renames the evaluation.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Prepends `k` examples from `pool` to every prompt, after `description`.
    pub fn fewshot(
        mut self,
        pool: &[T],
        k: usize,
        sampler: FewShotSampler,
        description: impl Into<String>,
    ) -> Result<Self, RowError> {
        let examples = pool.iter().map(Benchmark::example).collect::<Result<Vec<_>, _>>()?;
        self.fewshot = Some(FewShot {
            examples,
            k,
            sampler,
            description: description.into(),
            delimiter: T::DELIMITER.to_string(),
        });
        Ok(self)
    }

    /// Few-shot with the benchmark's own settings (`num_fewshot`, `description`), the examples
    /// drawn per row from `pool` with an RNG seeded by `seed` and the row index.
    pub fn fewshot_default(self, pool: &[T], seed: u64) -> Result<Self, RowError> {
        self.fewshot(pool, T::NUM_FEWSHOT, FewShotSampler::Seeded(seed), T::DESCRIPTION)
    }

    /// The evaluation.
    pub fn build(self) -> Box<dyn Evaluation> {
        T::evaluation(self.name, self.rows, self.fewshot)
    }
}
