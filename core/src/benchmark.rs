//! [`Benchmark`]: what `#[derive(Evaluation)]` implements for a dataset row type — its name,
//! kind, metrics and defaults, how a row serves as a few-shot example, and how rows become an
//! [`Evaluation`]. [`task`] builds an evaluation from rows with an optional few-shot pool.

use crate::fewshot::{FewShot, FewShotError, FewShotSampler, FewShotSpec};
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
    /// Text before the few-shot examples (lm-eval's `description`); it precedes every context
    /// or prompt, at zero-shot too.
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
    /// Zero-shot asked for ([`TaskBuilder::zero_shot`]) where the benchmark declares examples.
    zero_shot: bool,
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
        zero_shot: false,
    }
}

impl<T: Benchmark> TaskBuilder<T> {
    /// Renames the evaluation.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Says that a benchmark declaring `num_fewshot` is built without few-shot examples on
    /// purpose, so [`TaskBuilder::build`] does not warn of it (it changes nothing else: the
    /// `description` still precedes every context, and few-shot settings given stay).
    pub fn zero_shot(mut self) -> Self {
        self.zero_shot = true;
        self
    }

    /// Prepends `k` examples from `pool` (a split other than the evaluated one) to every
    /// prompt, after `description`; the description is there at k = 0 too. Each row's examples
    /// are drawn now, in row order (see [`crate::fewshot`]).
    pub fn fewshot(
        self,
        pool: &[T],
        k: usize,
        sampler: FewShotSampler,
        description: impl Into<String>,
    ) -> Result<Self, FewShotError> {
        let examples = render(pool)?;
        self.with_examples(examples, k, sampler, description.into(), false)
    }

    /// Like [`TaskBuilder::fewshot`] with the evaluated rows as the pool: as lm-eval does
    /// when the few-shot split is the evaluated split, a row never gets itself (k + 1 are
    /// drawn and the row removed).
    pub fn fewshot_from_rows(
        self,
        k: usize,
        sampler: FewShotSampler,
        description: impl Into<String>,
    ) -> Result<Self, FewShotError> {
        let examples = if k == 0 { vec![] } else { render(&self.rows)? };
        self.with_examples(examples, k, sampler, description.into(), true)
    }

    /// Few-shot with the benchmark's own settings (`num_fewshot`, `description`), the examples
    /// drawn from `pool` by lm-eval's default sampler seeded with `seed`.
    pub fn fewshot_default(self, pool: &[T], seed: u64) -> Result<Self, FewShotError> {
        self.fewshot(pool, T::NUM_FEWSHOT, FewShotSampler::Random(seed), T::DESCRIPTION)
    }

    fn with_examples(
        mut self,
        examples: Vec<(String, String)>,
        k: usize,
        sampler: FewShotSampler,
        description: String,
        own_split: bool,
    ) -> Result<Self, FewShotError> {
        if (k > 0 || !description.is_empty()) && matches!(T::KIND, TaskKind::Perplexity | TaskKind::NextToken) {
            return Err(FewShotError::NotApplicable { kind: T::KIND.as_str() });
        }
        let spec = FewShotSpec {
            k,
            sampler,
            description,
            delimiter: T::DELIMITER.to_string(),
        };
        let n = self.rows.len();
        self.fewshot = Some(if own_split {
            FewShot::new(examples.clone(), spec, n, Some(&examples))?
        } else {
            FewShot::new(examples, spec, n, None)?
        });
        Ok(self)
    }

    /// The evaluation. Without few-shot settings, the benchmark's `description` (if any)
    /// still precedes every context, as lm-eval's zero-shot prompts do, and a benchmark that
    /// declares `num_fewshot` runs zero-shot with a warning (its examples need a pool:
    /// [`TaskBuilder::fewshot_default`]).
    pub fn build(self) -> Box<dyn Evaluation> {
        let note = self.zero_shot_note();
        if let Some(note) = &note {
            tracing::warn!("{note}");
        }
        let fewshot = match self.fewshot {
            None if !T::DESCRIPTION.is_empty() => {
                let spec = FewShotSpec {
                    k: 0,
                    sampler: FewShotSampler::First,
                    description: T::DESCRIPTION.to_string(),
                    delimiter: T::DELIMITER.to_string(),
                };
                Some(FewShot::new(vec![], spec, self.rows.len(), None).expect("zero-shot needs no pool"))
            }
            f => f,
        };
        Box::new(Built {
            inner: T::evaluation(self.name, self.rows, fewshot),
            // Also in the outcome (results.json's `notes`), where a library user who installs
            // no `tracing` subscriber would otherwise see nothing of it.
            note: note.map(|n| ("num_fewshot", n)),
            highlighted: T::METRICS,
        })
    }
}

/// A built evaluation: its outcome carries the note of how it was built, and a metric it
/// highlights (`metrics(...)`) that it does not report is an error. The derive checks the
/// highlighted names against a kind's own metrics at compile time; a `score` hook's names are
/// only known once rows are scored, so a typo there (`metrics(hti)` for `hit`) is caught here
/// rather than left to make a gate on it fail later.
struct Built {
    inner: Box<dyn Evaluation>,
    note: Option<(&'static str, String)>,
    highlighted: &'static [&'static str],
}

impl Evaluation for Built {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> TaskKind {
        self.inner.kind()
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn defaults(&self) -> Defaults {
        self.inner.defaults()
    }

    fn evaluate(&self, env: &crate::kinds::Env<'_>) -> crate::Result<crate::kinds::Outcome> {
        let mut outcome = self.inner.evaluate(env)?;
        let missing: Vec<&str> = self
            .highlighted
            .iter()
            .copied()
            .filter(|m| !outcome.metrics.contains_key(*m))
            .collect();
        if !missing.is_empty() {
            return Err(crate::Error::Metrics {
                evaluation: outcome.name.clone(),
                message: format!(
                    "metrics({}) names {}, which it does not report (it reports: {}): a typo, or a `score` hook that does not return it",
                    self.highlighted.join(", "),
                    missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                    outcome.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some((key, note)) = &self.note {
            outcome.notes.insert((*key).into(), serde_json::json!(note));
        }
        Ok(outcome)
    }
}

impl<T: Benchmark> TaskBuilder<T> {
    /// What [`TaskBuilder::build`] warns of: a benchmark declaring `num_fewshot` built with no
    /// few-shot settings.
    fn zero_shot_note(&self) -> Option<String> {
        (self.fewshot.is_none() && !self.zero_shot && T::NUM_FEWSHOT > 0).then(|| {
            format!(
                "`{}` declares num_fewshot = {} but was built with no few-shot pool, so it runs zero-shot: give it one with .fewshot_default(pool, seed) or .fewshot(..), or say .zero_shot()",
                self.name,
                T::NUM_FEWSHOT
            )
        })
    }
}

/// Each row as a few-shot example.
fn render<T: Benchmark>(rows: &[T]) -> Result<Vec<(String, String)>, FewShotError> {
    rows.iter()
        .enumerate()
        .map(|(index, r)| r.example().map_err(|e| FewShotError::Example { index, message: e.0 }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Perplexity, PerplexityTask, PplItem};

    struct Text(String);
    impl Perplexity for Text {
        fn get(&self) -> Result<PplItem, RowError> {
            Ok(PplItem {
                text: self.0.clone(),
                count_text: None,
            })
        }
    }
    impl Benchmark for Text {
        const NAME: &'static str = "texts";
        const KIND: TaskKind = TaskKind::Perplexity;
        const METRICS: &'static [&'static str] = &["word_perplexity"];
        fn example(&self) -> Result<(String, String), RowError> {
            Ok((self.0.clone(), String::new()))
        }
        fn evaluation(name: String, rows: Vec<Self>, _: Option<FewShot>) -> Box<dyn Evaluation> {
            Box::new(PerplexityTask::new(name, rows))
        }
    }

    /// [`Text`] declaring three few-shot examples.
    struct Shots(Text);
    impl Perplexity for Shots {
        fn get(&self) -> Result<PplItem, RowError> {
            self.0.get()
        }
    }
    impl Benchmark for Shots {
        const NAME: &'static str = "shots";
        const KIND: TaskKind = TaskKind::Perplexity;
        const METRICS: &'static [&'static str] = &["word_perplexity"];
        const NUM_FEWSHOT: usize = 3;
        fn example(&self) -> Result<(String, String), RowError> {
            self.0.example()
        }
        fn evaluation(name: String, rows: Vec<Self>, _: Option<FewShot>) -> Box<dyn Evaluation> {
            Box::new(PerplexityTask::new(name, rows))
        }
    }

    #[test]
    fn a_declared_num_fewshot_without_a_pool_is_warned_of() {
        let note = task(vec![Shots(Text("a".into()))]).zero_shot_note().expect("a note");
        assert!(
            note.contains("`shots` declares num_fewshot = 3") && note.contains("fewshot_default"),
            "{note}"
        );
        assert_eq!(task(vec![Text("a".into())]).zero_shot_note(), None);
        let zero = task(vec![Shots(Text("a".into()))]).fewshot(&[], 0, FewShotSampler::First, "");
        assert_eq!(zero.expect("k = 0").zero_shot_note(), None, "zero-shot asked for");
        assert_eq!(task(vec![Shots(Text("a".into()))]).zero_shot().zero_shot_note(), None);
    }

    #[test]
    fn fewshot_has_no_meaning_for_whole_texts() {
        let rows = || vec![Text("a b".into()), Text("c d".into())];
        let e = task(rows())
            .fewshot(&rows(), 1, FewShotSampler::First, "")
            .err()
            .expect("refused");
        assert_eq!(e, FewShotError::NotApplicable { kind: "perplexity" });
        assert!(e.to_string().contains("--num-fewshot 0"), "{e}");
        let own = task(rows()).fewshot_from_rows(1, FewShotSampler::Random(1), "");
        assert!(own.is_err());
        // k = 0 is no few-shot at all; a description still has nothing to precede.
        assert!(task(rows()).fewshot(&[], 0, FewShotSampler::First, "").is_ok());
        assert!(task(rows())
            .fewshot(&[], 0, FewShotSampler::First, "Texts.\n\n")
            .is_err());
    }
}
