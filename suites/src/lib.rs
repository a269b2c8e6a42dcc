//! evalkit-suites: the benchmarks people quote, each defined as an annotated struct that reads
//! the benchmark's own distributed files, plus a synthetic family generated in code.
//!
//! Names are lm-evaluation-harness's task names (`arc_easy`, `hellaswag`, `mmlu`,
//! `mmlu_<subject>`, ...), and prompts, delimiters and metrics follow its 0.4.13 task
//! definitions. Files are found under a data directory laid out like this project's
//! `shared/data` (see [`data::data_dir`]).
//!
//! ```no_run
//! use evalkit_suites::{load, LoadOptions};
//! let loaded = load("arc_easy", &LoadOptions::new("data".into()))?;
//! assert_eq!(loaded.evaluations[0].len(), 2376);
//! # Ok::<(), evalkit_suites::Error>(())
//! ```
#![deny(missing_docs)]

pub mod arc;
pub mod boolq;
pub mod data;
mod error;
pub mod gsm8k;
pub mod hellaswag;
pub mod hub;
pub mod humaneval;
pub mod lambada;
pub mod mmlu;
pub mod piqa;
pub mod synthetic;
pub mod truthfulqa;
pub mod wikitext;
pub mod winogrande;

pub use error::{Error, Result};

use evalkit_core::evaluator::Group;
use evalkit_core::fewshot::FewShotSampler;
use evalkit_core::kinds::TaskKind;
use evalkit_core::Evaluation;
use std::path::PathBuf;

/// How suites are loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Root of the benchmark files.
    pub data_dir: PathBuf,
    /// Few-shot examples per prompt (`None`: the suite's default, 0 except GSM8K's 5).
    pub num_fewshot: Option<usize>,
    /// Seed of few-shot draws (and of synthetic data).
    pub seed: u64,
    /// Size and difficulty of the synthetic suites.
    pub synthetic: synthetic::SyntheticConfig,
    /// Read suites that have a hub source from the Hugging Face Hub (cache first) instead of
    /// the data directory.
    pub hub: Option<hub::HubOptions>,
    /// Load HumanEval, whose scoring runs model-written Python code (lm-eval's
    /// `confirm_run_unsafe_code`); without it `humaneval` is refused.
    pub confirm_run_unsafe_code: bool,
}

impl LoadOptions {
    /// Defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        LoadOptions {
            data_dir,
            num_fewshot: None,
            seed: 1234,
            hub: None,
            synthetic: synthetic::SyntheticConfig::default(),
            confirm_run_unsafe_code: false,
        }
    }

    /// The few-shot sampler of this run: lm-eval's default sampler, `random.Random(seed)`.
    pub fn sampler(&self) -> FewShotSampler {
        FewShotSampler::Random(self.seed)
    }

    /// The hub source of `task` when the run reads the hub and the task has one (tasks
    /// without one are read from the data directory).
    pub fn hub_source(&self, task: &str) -> Result<Option<(hub::HubSource, &hub::HubOptions)>> {
        Ok(self.hub.as_ref().and_then(|h| hub::source(task).map(|src| (src, h))))
    }

    /// Fails when few-shot is asked of a suite without a few-shot split here.
    pub fn no_fewshot(&self, task: &str) -> Result<()> {
        match self.num_fewshot {
            Some(k) if k > 0 => Err(Error::Setting {
                task: task.into(),
                message: format!("{k}-shot asked, but this task has no few-shot split here (the files evalkit reads, or the rows it generates, hold none); pass --num-fewshot 0"),
            }),
            _ => Ok(()),
        }
    }
}

/// Evaluations (and groups) a suite name expands to.
pub struct Loaded {
    /// The evaluations.
    pub evaluations: Vec<Box<dyn Evaluation>>,
    /// Groups reported as micro-averages (MMLU and its categories).
    pub groups: Vec<Group>,
    /// Members of the suite that could not be loaded while others could (an MMLU subject
    /// whose file is malformed), by name with the error: the run names them, and the groups
    /// they belong to, under `failed`, as it names a task that does not load.
    pub not_loaded: Vec<(String, Error)>,
}

impl Loaded {
    /// Every member, or the error of the first that did not load.
    pub fn complete(mut self) -> Result<Self> {
        match self.not_loaded.is_empty() {
            true => Ok(self),
            false => Err(self.not_loaded.swap_remove(0).1),
        }
    }
}

/// A suite as `evalkit list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suite {
    /// lm-eval task name.
    pub name: String,
    /// Evaluation kind.
    pub kind: TaskKind,
    /// Metrics reported.
    pub metrics: Vec<&'static str>,
    /// Split evaluated.
    pub split: &'static str,
    /// Official row count (synthetic: the default size).
    pub rows: usize,
    /// Default few-shot examples.
    pub num_fewshot: usize,
}

/// The row of `evalkit list` for a suite whose rows are `B`: its kind, metrics and default
/// few-shot count come from the benchmark's own definition.
fn suite<B: evalkit_core::Benchmark>(name: &str, split: &'static str, rows: usize) -> Suite {
    Suite {
        name: name.into(),
        kind: B::KIND,
        metrics: B::METRICS.to_vec(),
        split,
        rows,
        num_fewshot: B::NUM_FEWSHOT,
    }
}

/// Every suite, with its kind, metrics, split and row count.
pub fn all() -> Vec<Suite> {
    let mut v = vec![
        suite::<arc::Arc>("arc_easy", "test", 2376),
        suite::<arc::Arc>("arc_challenge", "test", 1172),
        suite::<piqa::Piqa>("piqa", "validation", 1838),
        suite::<hellaswag::Hellaswag>("hellaswag", "validation", 10042),
        suite::<winogrande::Winogrande>("winogrande", "validation (dev)", 1267),
        suite::<boolq::Boolq>("boolq", "validation (dev)", 3270),
        suite::<lambada::Lambada>("lambada_openai", "test", 5153),
        suite::<wikitext::WikiPage>("wikitext", "test (62 pages)", 62),
        suite::<mmlu::Mmlu>("mmlu", "test", mmlu::ROWS.iter().sum()),
    ];
    // lm-eval's MMLU groups, after `mmlu` itself.
    v.extend(
        mmlu::CATEGORIES
            .iter()
            .map(|c| suite::<mmlu::Mmlu>(&format!("mmlu_{c}"), "test", mmlu::category_rows(c))),
    );
    v.extend([
        suite::<truthfulqa::TruthfulQa>("truthfulqa_mc1", "validation", 817),
        suite::<truthfulqa::TruthfulQa>("truthfulqa_mc2", "validation", 817),
        suite::<gsm8k::Gsm8k>("gsm8k", "test", 1319),
        suite::<humaneval::HumanEval>("humaneval", "test", 164),
    ]);
    let rows = synthetic::SyntheticConfig::default().rows;
    v.push(suite::<synthetic::Arithmetic>(
        "synthetic_arithmetic",
        "generated",
        rows,
    ));
    v.push(suite::<synthetic::Copy>("synthetic_copy", "generated", rows));
    v.push(suite::<synthetic::Sort>("synthetic_sort", "generated", rows));
    v.push(suite::<synthetic::Brackets>("synthetic_brackets", "generated", rows));
    for (s, n) in mmlu::SUBJECTS.iter().zip(mmlu::ROWS) {
        v.push(suite::<mmlu::Mmlu>(&format!("mmlu_{s}"), "test", n));
    }
    v
}

/// Fails with [`Error::UnknownSuite`] where no suite is named `name`, naming close matches
/// (the name in lower case, else names that contain it, are contained in it or start alike):
/// checked before a run loads its model, as lm-eval checks its task names.
///
/// ```
/// evalkit_suites::check_name("mmlu_stem")?;
/// let e = evalkit_suites::check_name("ARC_EASY").unwrap_err();
/// assert!(e.to_string().ends_with("close matches: arc_easy)"), "{e}");
/// # Ok::<(), evalkit_suites::Error>(())
/// ```
pub fn check_name(name: &str) -> Result<()> {
    if all().iter().any(|s| s.name == name) {
        Ok(())
    } else {
        Err(unknown(name))
    }
}

fn unknown(name: &str) -> Error {
    let n = name.to_lowercase();
    let names: Vec<String> = all().into_iter().map(|s| s.name).collect();
    // The name in another case alone, else names alike.
    let close: Vec<String> = match names.iter().find(|s| **s == n) {
        Some(same) => vec![same.clone()],
        None => names
            .into_iter()
            .filter(|s| s.contains(&n) || n.contains(s.as_str()) || s.get(..3) == n.get(..3))
            .take(5)
            .collect(),
    };
    Error::UnknownSuite {
        name: name.into(),
        close: if close.is_empty() {
            "none".into()
        } else {
            close.join(", ")
        },
    }
}

/// Loads the suite `name`. A suite of several files (MMLU) loads the members it can and lists
/// the others in [`Loaded::not_loaded`]; [`Loaded::complete`] makes that an error.
pub fn load(name: &str, opts: &LoadOptions) -> Result<Loaded> {
    let one = |evaluations| {
        Ok(Loaded {
            evaluations,
            groups: vec![],
            not_loaded: vec![],
        })
    };
    match name {
        "arc_easy" | "arc_challenge" => one(arc::load(opts, name)?),
        "piqa" => one(piqa::load(opts, name)?),
        "hellaswag" => one(hellaswag::load(opts, name)?),
        "winogrande" => one(winogrande::load(opts, name)?),
        "boolq" => one(boolq::load(opts, name)?),
        "lambada_openai" => one(lambada::load(opts, name)?),
        "wikitext" => one(wikitext::load(opts, name)?),
        "truthfulqa_mc1" | "truthfulqa_mc2" => one(truthfulqa::load(opts, name)?),
        "gsm8k" => one(gsm8k::load(opts, name)?),
        "humaneval" => one(humaneval::load(opts, name)?),
        n if n == "mmlu"
            || n.strip_prefix("mmlu_")
                .is_some_and(|s| mmlu::SUBJECTS.contains(&s) || mmlu::CATEGORIES.contains(&s)) =>
        {
            mmlu::load(opts, n)
        }
        n => match synthetic::evaluation(
            n,
            &synthetic::SyntheticConfig {
                seed: opts.seed,
                ..opts.synthetic
            },
        ) {
            Some(e) => {
                // Generated rows have no few-shot split: k-shot is refused, not ignored.
                opts.no_fewshot(n)?;
                one(vec![e])
            }
            None => Err(unknown(n)),
        },
    }
}
