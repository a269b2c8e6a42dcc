//! The evaluator: runs a list of evaluations on one model, returns name → metrics, and writes
//! `results.json` and `samples_<name>.jsonl` atomically into an output directory. Finished
//! chunks go to a journal (`<output>/.journal/`) as they complete, so a killed run resumes
//! where it stopped and recomputes only unfinished chunks; a run's journals are removed once
//! its results are written (those of another run into the same folder stay). A run holds a
//! lock on its output folder while it runs: a second run into it is refused
//! ([`Error::Locked`]).

use crate::error::{Error, Result};
use crate::kinds::{Env, Evaluation, Outcome, RunOptions};
use crate::model::Model;
use crate::schedule::ExecStats;
use crate::shard::{self, FailureRecord, Share, ShareRecord};
use crate::throughput::RawThroughput;
use crate::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Numeric fields of an evaluation's (or group's) entry in results.json that are records of
/// the run, not metrics.
pub const RECORD_KEYS: &[&str] = &[
    "n",
    "truncated",
    "members",
    "chunks_computed",
    "chunks_resumed",
    "chunks_discarded",
    "tokens_forwarded",
    "tokens_scored",
    "tokens_pruned",
    "seconds",
    "wall_seconds",
    "batch_size_after_oom",
    "floor_seconds",
    "efficiency",
];

/// Floor ÷ wall seconds, where both are known and measure one uninterrupted computation: no
/// chunk resumed from a journal, at least one computed.
fn efficiency(floor: Option<f64>, wall: Option<f64>, stats: &ExecStats) -> Option<f64> {
    match (floor, wall) {
        (Some(f), Some(w)) if stats.chunks_resumed == 0 && stats.chunks_computed > 0 && w > 0.0 => Some(f / w),
        _ => None,
    }
}

/// How [`Evaluator::run_share`] ended.
#[derive(Debug)]
pub enum RunEnd {
    /// The results were written (the whole run, the last shard, or a merge): the document.
    Results(Value),
    /// This shard's share is journaled; `ranks` are still running, and the last of them to
    /// finish writes the results.
    Waiting {
        /// Ranks whose share is not done.
        ranks: Vec<usize>,
    },
    /// Every share is done and another shard is merging them.
    Merging,
    /// The results of the evaluations that finished were written (the document), but these
    /// failed with an error of their own ([`Error::is_evaluation_specific`]; a run of several
    /// evaluations only, sharded or not). The journal is kept: a rerun resumes the finished
    /// ones (in a sharded run, the shards that failed one run it again and merge anew).
    Partial {
        /// The results of the others.
        doc: Value,
        /// Each failed evaluation's error, in run order.
        failed: Vec<Error>,
    },
}

/// A named group of evaluations reported as the micro-average over their rows (MMLU).
#[derive(Debug, Clone)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Member evaluations.
    pub members: Vec<String>,
}

/// Runs evaluations and saves their results.
pub struct Evaluator<'a> {
    model: &'a dyn Model,
    tokenizer: &'a Tokenizer,
    evaluations: Vec<Box<dyn Evaluation + 'a>>,
    groups: Vec<Group>,
    /// How every evaluation runs.
    pub options: RunOptions,
    /// Show a progress bar per evaluation (on a terminal): rows done, rows/s, tokens/s, ETA.
    pub progress: bool,
    /// Extra configuration recorded in results.json (e.g. the training step, the model path).
    pub config: Map<String, Value>,
    /// The model's raw speed, measured in this process ([`RawThroughput::measure`]): with it
    /// each evaluation reports its forward-pass floor (`floor_seconds`) and `efficiency`
    /// (floor ÷ its wall seconds; `null` when chunks were resumed or none computed). In a
    /// sharded run both sum the shards' own (see [`ShareRecord`]).
    pub raw_throughput: Option<RawThroughput>,
    /// Tasks the caller could not load, with why ([`Evaluator::not_loaded`]).
    not_loaded: Vec<(String, String)>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `model` and its tokenizer.
    pub fn new(model: &'a dyn Model, tokenizer: &'a Tokenizer) -> Self {
        Evaluator {
            model,
            tokenizer,
            evaluations: vec![],
            groups: vec![],
            options: RunOptions::default(),
            progress: false,
            config: Map::new(),
            raw_throughput: None,
            not_loaded: vec![],
        }
    }

    /// Adds an evaluation.
    pub fn add(&mut self, e: Box<dyn Evaluation + 'a>) -> &mut Self {
        self.evaluations.push(e);
        self
    }

    /// Records a task that the caller could not load (a data file missing or malformed), with
    /// why: results.json names it under `failed`, as it names an evaluation that failed on its
    /// rows, so that a run missing it never reads as a complete one.
    pub fn not_loaded(&mut self, task: &str, why: &str) -> &mut Self {
        self.not_loaded.push((task.to_string(), why.to_string()));
        self
    }

    /// Adds a group reported as the micro-average of its members.
    pub fn add_group(&mut self, g: Group) -> &mut Self {
        self.groups.push(g);
        self
    }

    /// Sets [`RunOptions::step`], the training step of live weights, recorded in results.json
    /// (`config.step`): a training loop implements [`Model`] for its module and evaluates it
    /// every N steps, with no checkpoint written (the seed design's `Evaluator.from_trainer`).
    /// The step is part of the journals' key: a journal that an interrupted run of another
    /// step left in the output folder is not resumed.
    pub fn at_step(&mut self, step: u64) -> &mut Self {
        self.options.step = Some(step);
        self
    }

    /// Names of the evaluations, in order.
    pub fn names(&self) -> Vec<&str> {
        self.evaluations.iter().map(|e| e.name()).collect()
    }

    /// There is an evaluation; every evaluation's name is a file name of its own
    /// ([`evalkit_spec::name_problem`]), and no two are the same: a name names the
    /// evaluation's results, samples file and journal.
    fn check_evaluations(&self) -> Result<()> {
        if self.evaluations.is_empty() {
            return Err(Error::Unsupported(
                "a run of no evaluations: add them with `Evaluator::add` first".into(),
            ));
        }
        for (i, e) in self.evaluations.iter().enumerate() {
            let name = e.name();
            if let Some(problem) = evalkit_spec::name_problem(name) {
                return Err(Error::Evaluation {
                    evaluation: name.into(),
                    message: problem.into(),
                });
            }
            if self.evaluations[..i].iter().any(|other| other.name() == name) {
                return Err(Error::Evaluation {
                    evaluation: name.into(),
                    message: "two evaluations have this name, and one would overwrite the other's results, samples and journal: give one another (`.named(...)`, or #[eval(name = ...)])".into(),
                });
            }
        }
        Ok(())
    }

    fn run_all(&self, journal_dir: Option<&Path>) -> Result<Vec<Outcome>> {
        self.check_evaluations()?;
        self.evaluations
            .iter()
            .map(|e| self.run_one(e.as_ref(), journal_dir))
            .collect()
    }

    fn run_one(&self, e: &(dyn Evaluation + 'a), journal_dir: Option<&Path>) -> Result<Outcome> {
        let _guard = tch::no_grad_guard();
        self.tokenizer.check_fits(self.model.vocab_size())?;
        if self.model.max_len() == 0 {
            // Nothing could be scored: a rolling perplexity would sum no windows into 1.0.
            return Err(Error::Unsupported(format!(
                "{}: a max length of 0 positions, so nothing can be scored or generated",
                self.model.describe()
            )));
        }
        let bar = self.progress.then(|| crate::Progress::new(e.name()));
        let env = Env {
            model: self.model,
            tokenizer: self.tokenizer,
            options: &self.options,
            journal_dir,
            progress: bar.as_ref(),
        };
        let start = std::time::Instant::now();
        let mut outcome = e.evaluate(&env)?;
        outcome.wall_seconds = start.elapsed().as_secs_f64();
        if let Some(b) = bar {
            b.finish();
        }
        Ok(outcome)
    }

    /// Runs every evaluation (no files written) and returns name → metric → value.
    pub fn evaluate(&self) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
        Ok(self
            .run_all(None)?
            .into_iter()
            .map(|o| (o.name, o.metrics.into_iter().map(|(k, m)| (k, m.value)).collect()))
            .collect())
    }

    /// Runs every evaluation and returns the full outcomes (per-sample values, samples,
    /// intermediates), without writing files.
    pub fn outcomes(&self) -> Result<Vec<Outcome>> {
        self.run_all(None)
    }

    /// True when `dir` holds the results of a finished run and no journal (a run that stopped,
    /// or whose evaluations did not all finish, keeps its journal there; so does another,
    /// unfinished run into the same folder).
    pub fn done(dir: &Path) -> bool {
        dir.join("results.json").is_file() && !dir.join(".journal").exists()
    }

    /// Runs every evaluation, resuming from `dir`'s journal, and writes `results.json` and
    /// `samples_<name>.jsonl` there. Returns the results document; where evaluations failed on
    /// rows of their own ([`RunEnd::Partial`]), their error ([`Error::Evaluations`] for
    /// several), once the others' results are written. An error that stops the run (an engine
    /// or device error, non-finite logits) comes last in an [`Error::Evaluations`] after the
    /// row failures before it, if any ([`Error::is_out_of_memory`] reads it there). In a sharded run
    /// ([`RunOptions::share`]) a shard that is not the last to finish returns
    /// [`Error::ShardsPending`]; [`Evaluator::run_share`] tells that case apart.
    pub fn run(&self, dir: &Path) -> Result<Value> {
        match self.run_share(dir)? {
            RunEnd::Results(doc) => Ok(doc),
            RunEnd::Waiting { ranks } => Err(Error::ShardsPending {
                evaluation: self.names().join(", "),
                ranks,
                world: self.options.share.world(),
                journal: dir.join(".journal"),
            }),
            RunEnd::Partial { failed, .. } => Err(Error::of_evaluations(failed)),
            RunEnd::Merging => Err(Error::Shards {
                path: dir.join(".journal").join("merge.lock"),
                message: format!(
                    "another shard is merging the run; if none is (it died), remove this lock or run `evalkit merge {}`",
                    dir.display()
                ),
            }),
        }
    }

    /// Runs this process's part of the run into `dir` (see [`crate::shard`]): the whole run,
    /// a shard's share (the last shard to finish merges every share and writes the results),
    /// or only the merge. A training loop calls it on every rank with the same evaluations
    /// and its rank's [`Share`]; the rank that gets [`RunEnd::Results`] holds the results.
    ///
    /// ```
    /// # use evalkit_core::kinds::{LlItem, Loglikelihood, LoglikelihoodTask, RowError};
    /// # use evalkit_core::model::{KvCache, Model};
    /// # use evalkit_core::{Evaluator, Tokenizer};
    /// # use tch::{Device, Kind, Tensor};
    /// # struct Uniform;
    /// # impl Model for Uniform {
    /// #     fn max_len(&self) -> usize { 32 }
    /// #     fn vocab_size(&self) -> usize { 4 }
    /// #     fn device(&self) -> Device { Device::Cpu }
    /// #     fn describe(&self) -> String { "uniform".into() }
    /// #     fn hidden_states(&self, ids: &Tensor, _: &Tensor, cache: Option<&mut KvCache>) -> evalkit_core::Result<Tensor> {
    /// #         if let Some(c) = cache { c.advance(ids.size()[1] as usize) }
    /// #         Ok(ids.zeros_like().to_kind(Kind::Float).unsqueeze(-1))
    /// #     }
    /// #     fn head(&self, h: &Tensor) -> evalkit_core::Result<Tensor> { Ok(h.matmul(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)))) }
    /// #     fn new_cache(&self) -> Option<KvCache> { Some(KvCache::new(0, 64)) }
    /// # }
    /// # struct Row;
    /// # impl Loglikelihood for Row {
    /// #     fn get(&self) -> Result<LlItem, RowError> { Ok(LlItem { context: "a".into(), continuation: " b c".into() }) }
    /// # }
    /// # let vocab = ["<s>", "a", "b", "c"].iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
    /// # let wl = tokenizers::models::wordlevel::WordLevel::builder().vocab(vocab).unk_token("<s>".into()).build().unwrap();
    /// # let mut t = tokenizers::Tokenizer::new(wl);
    /// # t.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    /// # let tokenizer = Tokenizer::from_parts(t, Some(0), vec![0]);
    /// use evalkit_core::evaluator::RunEnd;
    /// use evalkit_core::shard::Share;
    /// let dir = std::env::temp_dir().join(format!("evalkit-doc-share-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// // Two ranks of a training job (here one after the other, in one process).
    /// let mut ends = vec![];
    /// for rank in 0..2 {
    ///     let mut ev = Evaluator::new(&Uniform, &tokenizer);
    ///     ev.add(Box::new(LoglikelihoodTask::new("demo", (0..8).map(|_| Row).collect())));
    ///     ev.options.batch_size = Some(1);
    ///     ev.options.share = Share::rank(rank, 2)?;
    ///     ends.push(ev.run_share(&dir)?);
    /// }
    /// assert!(matches!(&ends[0], RunEnd::Waiting { ranks } if ranks == &[1]));
    /// let RunEnd::Results(doc) = &ends[1] else { panic!("rank 1 finished last") };
    /// assert_eq!(doc["results"]["demo"]["n"], 8);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn run_share(&self, dir: &Path) -> Result<RunEnd> {
        self.check_evaluations()?;
        if dir.exists() && !dir.is_dir() {
            let e = std::io::Error::new(std::io::ErrorKind::NotADirectory, "it is a file, not a directory");
            return Err(Error::io("creating output directory", dir, e));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating output directory", dir, e))?;
        let _lock = crate::output_lock::OutputLock::acquire(dir, self.options.share)?;
        let journal_dir = dir.join(".journal");
        // Held from gathering the shares until their journals are removed.
        let mut _merging = None;
        let mut failed = vec![];
        let outcomes = match self.options.share {
            Share::Whole => {
                // An evaluation that fails on its own (a row of its data, requests the model
                // cannot run: [`Error::is_evaluation_specific`]) does not stop the others; any
                // other error stops the run.
                let mut outcomes = vec![];
                for e in &self.evaluations {
                    match self.run_one(e.as_ref(), Some(&journal_dir)) {
                        Ok(o) => outcomes.push(o),
                        Err(err) if self.fails_alone(&err) => failed.push(err),
                        Err(err) => {
                            // Said with the row failures before it, which it stops from being
                            // written.
                            failed.push(err);
                            return Err(Error::of_evaluations(failed));
                        }
                    }
                }
                if outcomes.is_empty() {
                    return Err(Error::of_evaluations(failed));
                }
                outcomes
            }
            Share::Rank { rank, world } => {
                shard::claim(&journal_dir, &self.shard_settings())?;
                // This rank's share of every evaluation; an evaluation whose other shares are
                // already journaled is finished at once.
                // An evaluation that fails on its own is recorded for the merge, and the
                // shard goes on, as one process does.
                let mut outcomes = vec![];
                for e in &self.evaluations {
                    FailureRecord::clear(&journal_dir, (rank, world), e.name())?;
                    let start = std::time::Instant::now();
                    let outcome = match self.run_one(e.as_ref(), Some(&journal_dir)) {
                        Ok(o) => Some(o),
                        Err(Error::ShardsPending { .. }) => None,
                        Err(err) if self.fails_alone(&err) => {
                            FailureRecord::write(&journal_dir, (rank, world), e.name(), &err)?;
                            tracing::warn!("{err} (shard {rank}; its other evaluations go on, and the results list this one under `failed`)");
                            outcomes.push(None);
                            continue;
                        }
                        Err(other) => return Err(other),
                    };
                    let wall = start.elapsed().as_secs_f64();
                    ShareRecord::finish(&journal_dir, (rank, world), e.name(), wall, self.raw_throughput)?;
                    outcomes.push(outcome);
                }
                shard::mark_done(&journal_dir, rank, world)?;
                let ranks = shard::not_done(&journal_dir, world);
                if !ranks.is_empty() {
                    return Ok(RunEnd::Waiting { ranks });
                }
                if !shard::try_lock(&journal_dir)? {
                    return Ok(RunEnd::Merging);
                }
                match crate::output_lock::OutputLock::merging(&journal_dir) {
                    Ok(lock) => _merging = Some(lock),
                    // `evalkit merge` is merging them.
                    Err(Error::Locked { .. }) => {
                        shard::unlock(&journal_dir);
                        return Ok(RunEnd::Merging);
                    }
                    Err(e) => return Err(e),
                }
                // Every share is journaled: gather what was still pending. A merge that fails
                // leaves no lock behind, so a rerun (or `evalkit merge`) can merge.
                let gathered = self.gather(outcomes, &journal_dir, world);
                if gathered.is_err() {
                    shard::unlock(&journal_dir);
                }
                let (o, f) = gathered?;
                failed = f;
                o
            }
            Share::Merge { world } => {
                shard::claim(&journal_dir, &self.shard_settings())?;
                _merging = Some(crate::output_lock::OutputLock::merging(&journal_dir)?);
                let pending = self.evaluations.iter().map(|_| None).collect();
                let (o, f) = self.gather(pending, &journal_dir, world)?;
                failed = f;
                o
            }
        };
        for o in &outcomes {
            let mut body = String::new();
            for s in &o.samples {
                body.push_str(&serde_json::to_string(s).expect("samples serialize"));
                body.push('\n');
            }
            write_atomic(&dir.join(format!("samples_{}.jsonl", o.name)), body.as_bytes())?;
        }
        let mut doc = self.results_document(&outcomes);
        if !failed.is_empty() || !self.not_loaded.is_empty() {
            // What is missing, and why, in the document itself.
            let mut failures: Map<String, Value> = self
                .not_loaded
                .iter()
                .map(|(task, why)| (task.clone(), json!(format!("not loaded: {why}"))))
                .collect();
            failures.extend(failed.iter().filter_map(|e| match e {
                Error::Row { evaluation, .. } | Error::Incapable { evaluation, .. } => {
                    Some((evaluation.clone(), json!(e.to_string())))
                }
                _ => None,
            }));
            for g in &self.groups {
                if let Some(m) = g.members.iter().find(|m| failures.contains_key(m.as_str())) {
                    let why = format!("not reported: its member `{m}` failed");
                    failures.insert(g.name.clone(), json!(why));
                }
            }
            doc["failed"] = Value::Object(failures);
        }
        if let Share::Rank { world, .. } | Share::Merge { world } = self.options.share {
            self.account_shards(&mut doc, &journal_dir, world);
        }
        write_atomic(
            &dir.join("results.json"),
            serde_json::to_string_pretty(&doc)
                .expect("results serialize")
                .as_bytes(),
        )?;
        if !failed.is_empty() {
            // The journal stays (made where no evaluation wrote one): the run is not done. (A
            // sharded run's failing shards were reopened above: they run the evaluation again
            // when rerun, and merge anew.)
            std::fs::create_dir_all(&journal_dir).map_err(|e| Error::io("creating journal", &journal_dir, e))?;
            if let Share::Rank { .. } = self.options.share {
                shard::unlock(&journal_dir);
            }
            return Ok(RunEnd::Partial { doc, failed });
        }
        self.remove_journals(&journal_dir)?;
        Ok(RunEnd::Results(doc))
    }

    /// Removes this run's journals once its results are written, and the journal folder where
    /// nothing else is left in it. Journals of evaluations this run did not include (another
    /// run's, interrupted, into the same folder) stay, with a warning naming them: the command
    /// that started them resumes them.
    fn remove_journals(&self, journal_dir: &Path) -> Result<()> {
        if !journal_dir.exists() {
            return Ok(());
        }
        let io = |e| Error::io("removing journal", journal_dir, e);
        match self.options.share {
            Share::Whole => {
                for e in &self.evaluations {
                    let path = journal_dir.join(crate::journal::file_name(e.name()));
                    // And what a rewrite killed midway left beside it.
                    let tmp = path.with_extension("jsonl.tmp");
                    for path in [path, tmp] {
                        if path.exists() {
                            std::fs::remove_file(&path).map_err(|e| Error::io("removing journal", &path, e))?;
                        }
                    }
                }
            }
            Share::Rank { world, .. } | Share::Merge { world } => shard::remove_run(journal_dir, world)?,
        }
        // Empty folders hold no work (a rank's, made for its lock by a shard then refused).
        for entry in std::fs::read_dir(journal_dir).map_err(io)?.flatten() {
            if entry.path().is_dir() {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        let mut left: Vec<String> = std::fs::read_dir(journal_dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        if left.is_empty() {
            return std::fs::remove_dir(journal_dir).map_err(io);
        }
        left.sort();
        tracing::warn!(
            "{} keeps the journals of another run into this folder ({}): the command that started it resumes them; remove the folder to drop them",
            journal_dir.display(),
            left.join(", ")
        );
        Ok(())
    }

    /// Whether `err` fails its evaluation alone, the run's others going on: an error of the
    /// evaluation's own ([`Error::is_evaluation_specific`]) in a run of several.
    fn fails_alone(&self, err: &Error) -> bool {
        err.is_evaluation_specific() && self.evaluations.len() > 1
    }

    /// Every evaluation's outcome once every share is journaled: `computed` holds this
    /// process's own (by evaluation, `None` where it has none), the rest is gathered from the
    /// journals; an evaluation a shard recorded as failed ([`FailureRecord`]) is returned
    /// among the errors instead. Every evaluation failing is the error of them all. Where
    /// any failed, the shards that failed one are reopened ([`FailureRecord::reopen`]).
    fn gather(
        &self,
        computed: Vec<Option<Outcome>>,
        journal_dir: &Path,
        world: usize,
    ) -> Result<(Vec<Outcome>, Vec<Error>)> {
        let gathered = self.gather_outcomes(computed, journal_dir, world);
        if gathered.as_ref().map_or(true, |(_, failed)| !failed.is_empty()) {
            FailureRecord::reopen(journal_dir, world);
        }
        gathered
    }

    fn gather_outcomes(
        &self,
        computed: Vec<Option<Outcome>>,
        journal_dir: &Path,
        world: usize,
    ) -> Result<(Vec<Outcome>, Vec<Error>)> {
        let (mut outcomes, mut failed) = (vec![], vec![]);
        for (e, own) in self.evaluations.iter().zip(computed) {
            if let Some(err) = FailureRecord::first(journal_dir, world, e.name()) {
                failed.push(err);
                continue;
            }
            match own.map_or_else(|| self.run_one(e.as_ref(), Some(journal_dir)), Ok) {
                Ok(o) => outcomes.push(o),
                // Scoring the gathered shares may still fail on a row (as in one process).
                Err(err) if self.fails_alone(&err) => failed.push(err),
                Err(err) => return Err(err),
            }
        }
        if outcomes.is_empty() {
            return Err(Error::of_evaluations(failed));
        }
        Ok((outcomes, failed))
    }

    /// What every shard of a run must share (recorded in `.journal/shards.json`): the results'
    /// config but the device (each shard takes its own), with the evaluations and the number
    /// of shards (the CLI's `command` and `cwd` in the config let `evalkit merge` rebuild the
    /// run; they are not compared).
    fn shard_settings(&self) -> Value {
        let mut config = match self.results_document(&[]).get_mut("config").map(Value::take) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        // What each process has for itself: its device, and its own speed (--floor).
        config.remove("device");
        config.remove("model_fingerprint");
        config.remove("raw_throughput");
        config.insert("evaluations".into(), json!(self.names()));
        config.insert("shards".into(), json!(self.options.share.world()));
        Value::Object(config)
    }

    /// What identifies the model as it ran on `device` (checkpoint, the stamp of its files,
    /// precision, device, shape); the per-evaluation `fingerprint`s identify the rows asked,
    /// whatever the model.
    fn model_fingerprint(&self, device: &str) -> String {
        let fp = crate::fingerprint::Fnv::default()
            .str(&self.model.describe())
            .str(self.model.weights_stamp().as_deref().unwrap_or(""))
            .str(device)
            .row(self.model.max_len())
            .row(self.model.vocab_size())
            .finish();
        format!("{fp:016x}")
    }

    /// A sharded run's records, taken across its shards from their [`ShareRecord`]s rather
    /// than from the merging process: per evaluation, the chunks the shards computed and
    /// resumed, their wall seconds and floors summed (so `efficiency` is the share of the
    /// shards' time at their floor), the smallest batch cap, and each shard's own
    /// (`by_shard`, with the raw speed that priced its floor); in the config, the shards'
    /// devices. An evaluation some rank kept no record of (a journal of an earlier version,
    /// a record that could not be read, an [`Evaluation`] that runs outside the executor)
    /// keeps the merging process's view, and so does the config when none has records.
    fn account_shards(&self, doc: &mut Value, journal: &Path, world: usize) {
        let mut devices: Vec<String> = vec![];
        let Some(results) = doc.get_mut("results").and_then(Value::as_object_mut) else {
            return;
        };
        for (name, entry) in results.iter_mut() {
            let Some(records) = ShareRecord::read_all(journal, world, name)
                .into_iter()
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let Some(entry) = entry.as_object_mut() else { continue };
            let mut by_shard = vec![];
            for (rank, r) in records.iter().enumerate() {
                if !devices.contains(&r.device) {
                    devices.push(r.device.clone());
                }
                let floor = r.floor_seconds();
                by_shard.push(json!({
                    "rank": rank,
                    "device": r.device,
                    "chunks_computed": r.stats.chunks_computed,
                    "chunks_resumed": r.stats.chunks_resumed,
                    "batch_size_after_oom": r.stats.batch_cap,
                    "wall_seconds": r.wall_seconds,
                    "floor_seconds": floor,
                    "efficiency": efficiency(floor, r.wall_seconds, &r.stats),
                    "raw_throughput": r.raw_throughput,
                }));
            }
            let mut stats = ExecStats {
                batch_cap: records.iter().filter_map(|r| r.stats.batch_cap).min(),
                ..Default::default()
            };
            for r in &records {
                stats.chunks_computed += r.stats.chunks_computed;
                stats.chunks_resumed += r.stats.chunks_resumed;
                stats.chunks_discarded += r.stats.chunks_discarded;
            }
            let wall: Option<f64> = records.iter().map(|r| r.wall_seconds).sum();
            let floor: Option<f64> = records.iter().map(ShareRecord::floor_seconds).sum();
            entry.insert("chunks_computed".into(), json!(stats.chunks_computed));
            entry.insert("chunks_resumed".into(), json!(stats.chunks_resumed));
            entry.remove("chunks_discarded");
            if stats.chunks_discarded > 0 {
                entry.insert("chunks_discarded".into(), json!(stats.chunks_discarded));
            }
            entry.insert("wall_seconds".into(), json!(wall));
            entry.remove("batch_size_after_oom");
            if let Some(cap) = stats.batch_cap {
                entry.insert("batch_size_after_oom".into(), json!(cap));
            }
            entry.remove("floor_seconds");
            entry.remove("efficiency");
            if floor.is_some() {
                entry.insert("floor_seconds".into(), json!(floor));
                entry.insert("efficiency".into(), json!(efficiency(floor, wall, &stats)));
            }
            entry.insert("by_shard".into(), Value::Array(by_shard));
        }
        if devices.is_empty() {
            return;
        }
        let Some(config) = doc.get_mut("config").and_then(Value::as_object_mut) else {
            return;
        };
        let device = devices.join(", ");
        config.insert("model_fingerprint".into(), json!(self.model_fingerprint(&device)));
        // Compared across shards (a shard started on other weights is refused), and what
        // `evalkit merge` keys the journals with.
        config.insert("weights_stamp".into(), json!(self.model.weights_stamp()));
        config.insert("device".into(), json!(device));
        // Each shard's speed is in its evaluations' `by_shard`.
        config.remove("raw_throughput");
    }

    /// The results document of a set of outcomes (DESIGN.md section 2).
    pub fn results_document(&self, outcomes: &[Outcome]) -> Value {
        let mut results = Map::new();
        for o in outcomes {
            let mut m = Map::new();
            for (k, metric) in &o.metrics {
                m.insert(k.clone(), json!(metric.value));
                m.insert(format!("{k}_stderr"), json!(metric.stderr));
            }
            m.insert("n".into(), json!(o.n));
            m.insert("truncated".into(), json!(o.truncated));
            m.insert("kind".into(), json!(o.kind.as_str()));
            m.insert("chunks_computed".into(), json!(o.stats.chunks_computed));
            m.insert("chunks_resumed".into(), json!(o.stats.chunks_resumed));
            // (Only where there were some: a record of something that went wrong.)
            if o.stats.chunks_discarded > 0 {
                m.insert("chunks_discarded".into(), json!(o.stats.chunks_discarded));
            }
            m.insert("fingerprint".into(), json!(format!("{:016x}", o.fingerprint)));
            m.insert("tokens_forwarded".into(), json!(o.stats.work.tokens.forwarded));
            m.insert("tokens_scored".into(), json!(o.stats.work.tokens.scored));
            m.insert("tokens_pruned".into(), json!(o.stats.work.tokens.pruned));
            m.insert("seconds".into(), json!(o.stats.work.seconds));
            m.insert("wall_seconds".into(), json!(o.wall_seconds));
            if let Some(cap) = o.stats.batch_cap {
                m.insert("batch_size_after_oom".into(), json!(cap));
            }
            if let Some(raw) = &self.raw_throughput {
                let floor = raw.floor_seconds(&o.stats.work.tokens);
                m.insert("floor_seconds".into(), json!(floor));
                m.insert(
                    "efficiency".into(),
                    json!(efficiency(Some(floor), Some(o.wall_seconds), &o.stats)),
                );
            }
            if !o.notes.is_empty() {
                m.insert("notes".into(), json!(o.notes));
            }
            results.insert(o.name.clone(), Value::Object(m));
        }
        let mut groups = Map::new();
        for g in &self.groups {
            let members: Vec<&Outcome> = outcomes.iter().filter(|o| g.members.contains(&o.name)).collect();
            // A group lacking a member of this run (one that failed) is not reported: its
            // average would be over other rows than the group's.
            let lacking = self
                .evaluations
                .iter()
                .any(|e| g.members.iter().any(|m| m == e.name()) && !outcomes.iter().any(|o| o.name == e.name()));
            if members.is_empty() || lacking {
                continue;
            }
            let mut pooled: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for o in &members {
                for (k, v) in &o.per_sample {
                    pooled.entry(k).or_default().extend(v);
                }
            }
            let mut m = Map::new();
            for (k, v) in pooled {
                // Only metrics every member reports are pooled.
                if members.iter().all(|o| o.per_sample.contains_key(k)) {
                    // The micro-average over every member's rows, and lm-eval's stderr of a
                    // size-weighted group mean: the members' variances pooled.
                    let spread: Vec<(Option<f64>, usize)> = members
                        .iter()
                        .map(|o| {
                            let rows = &o.per_sample[k];
                            (crate::metrics::stderr_of_mean(rows), rows.len())
                        })
                        .collect();
                    m.insert(k.to_string(), json!(crate::metrics::mean(&v)));
                    m.insert(format!("{k}_stderr"), json!(crate::metrics::pooled_stderr(&spread)));
                }
            }
            m.insert("n".into(), json!(members.iter().map(|o| o.n).sum::<usize>()));
            m.insert("members".into(), json!(members.len()));
            groups.insert(g.name.clone(), Value::Object(m));
        }
        let o = &self.options;
        let mut config = self.config.clone();
        if let Some(step) = o.step {
            config.insert("step".into(), json!(step));
        }
        config.insert("model".into(), json!(self.model.describe()));
        let device = format!("{:?}", self.model.device());
        config.insert("model_fingerprint".into(), json!(self.model_fingerprint(&device)));
        // Compared across shards (a shard started on other weights is refused), and what
        // `evalkit merge` keys the journals with.
        config.insert("weights_stamp".into(), json!(self.model.weights_stamp()));
        config.insert("max_len".into(), json!(self.model.max_len()));
        config.insert("vocab_size".into(), json!(self.model.vocab_size()));
        config.insert("device".into(), json!(device));
        config.insert("batch_size".into(), json!(o.batch_size));
        config.insert("auto_batch_size".into(), json!(o.auto_batch_size));
        config.insert("batch_unit".into(), json!(o.batch_unit));
        config.insert("chunk_size".into(), json!(o.chunk_size));
        config.insert("subset".into(), json!(o.subset));
        config.insert("seed".into(), json!(o.seed));
        config.insert("share_prefix".into(), json!(o.share_prefix));
        config.insert("sampling".into(), json!(o.sampling));
        config.insert("samples_per_prompt".into(), json!(o.samples_per_prompt));
        config.insert("max_new_tokens".into(), json!(o.max_new_tokens));
        config.insert("system_instruction".into(), json!(o.system_instruction));
        if let Some(raw) = &self.raw_throughput {
            config.insert("raw_throughput".into(), json!(raw));
        }
        if o.share.world() > 1 {
            config.insert("shards".into(), json!(o.share.world()));
        }
        config.insert(
            "chat_template".into(),
            o.chat.as_ref().map_or(Value::Null, |c| {
                json!({"origin": c.template.origin(), "hash": c.template.hash(), "fewshot_as_multiturn": c.fewshot_as_multiturn})
            }),
        );
        json!({
            "results": results,
            "groups": groups,
            "config": config,
            "versions": {"evalkit": env!("CARGO_PKG_VERSION"), "libtorch": "2.11.0", "tch": "0.24.0"},
        })
    }
}

/// Writes a file atomically: a temporary file in the same folder, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let io = |e| Error::io("writing", path, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::{Evaluator, Group, RunEnd};
    use crate::kinds::{GenItem, Generate, GenerateTask, LlItem, Loglikelihood, LoglikelihoodTask, RowError};
    use crate::model::{KvCache, Model};
    use crate::request::Sampling;
    use crate::test_support::abc_tokenizer;
    use crate::Error;
    use tch::{Device, Kind, Tensor};

    /// A four-token model whose hidden value at each position is its token id: uniform
    /// next-token probabilities, or (with `nan_after_c`) NaN logits after token `c`; with
    /// `refuses_c`, it cannot run a request that holds a `c` (an engine that cannot serve some
    /// requests; its description, and so its journals' key, stays the same either way).
    struct Toy {
        nan_after_c: bool,
        refuses_c: bool,
        max_len: usize,
    }
    const UNIFORM: Toy = Toy {
        nan_after_c: false,
        refuses_c: false,
        max_len: 32,
    };
    const NAN_AFTER_C: Toy = Toy {
        nan_after_c: true,
        ..UNIFORM
    };
    impl Model for Toy {
        fn max_len(&self) -> usize {
            self.max_len
        }
        fn vocab_size(&self) -> usize {
            4
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn describe(&self) -> String {
            format!("toy (nan after c: {})", self.nan_after_c)
        }
        fn hidden_states(&self, ids: &Tensor, _: &Tensor, cache: Option<&mut KvCache>) -> crate::Result<Tensor> {
            if self.refuses_c && ids.eq(3).any().int64_value(&[]) != 0 {
                return Err(Error::Incapable {
                    evaluation: String::new(),
                    message: "no c".into(),
                });
            }
            if let Some(c) = cache {
                c.advance(ids.size()[1] as usize)
            }
            Ok(ids.to_kind(Kind::Float).unsqueeze(-1))
        }
        fn head(&self, h: &Tensor) -> crate::Result<Tensor> {
            let uniform = h.matmul(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)));
            if !self.nan_after_c {
                return Ok(uniform);
            }
            // 0 × log(1 - [id = 3]): 0, or NaN (0 × −∞) at every logit after a `c`.
            Ok(uniform + (h.eq(3.0).to_kind(Kind::Float).neg() + 1.0).log() * 0.0)
        }
        fn new_cache(&self) -> Option<KvCache> {
            Some(KvCache::new(0, 64))
        }
    }

    /// A row, or one that cannot be read.
    struct Row(bool);
    impl Loglikelihood for Row {
        fn get(&self) -> Result<LlItem, RowError> {
            if self.0 {
                Ok(LlItem {
                    context: "a".into(),
                    continuation: " b c".into(),
                })
            } else {
                Err(RowError::new("field `text`: unreadable"))
            }
        }
    }

    fn task(name: &str, good: bool) -> Box<LoglikelihoodTask<Row>> {
        Box::new(LoglikelihoodTask::new(
            name,
            (0..4).map(|i| Row(good || i != 2)).collect(),
        ))
    }

    #[test]
    fn a_failing_evaluation_leaves_the_others_and_its_group_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        let mut ev = Evaluator::new(&UNIFORM, &tok);
        ev.add(task("ok", true))
            .add(task("bad", false))
            .add(task("member", true));
        ev.add_group(Group {
            name: "pair".into(),
            members: vec!["bad".into(), "member".into()],
        });
        let end = ev.run_share(tmp.path()).expect("runs");
        let RunEnd::Partial { doc, failed } = end else {
            panic!("{end:?}")
        };
        assert!(matches!(&failed[..], [Error::Row { evaluation, row: 2, .. }] if evaluation == "bad"));
        assert_eq!(doc["results"]["ok"]["n"], 4);
        assert!(doc["results"].get("bad").is_none() && doc["groups"].get("pair").is_none());
        assert!(doc["failed"]["bad"].as_str().is_some_and(|m| m.contains("row 2")));
        assert_eq!(doc["failed"]["pair"], "not reported: its member `bad` failed");
        assert!(!Evaluator::done(tmp.path()), "the journal is kept, the run is not done");
        // The library's `run` says what failed.
        let e = ev.run(tmp.path()).expect_err("fails again");
        assert!(
            matches!(&e, Error::Row { evaluation, .. } if evaluation == "bad"),
            "{e}"
        );
    }

    #[test]
    fn a_sharded_run_reports_a_failing_evaluation_as_one_process_does() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        let run_rank = |rank: usize, bad_is_fixed: bool| {
            let mut ev = Evaluator::new(&UNIFORM, &tok);
            ev.add(task("ok", true))
                .add(task("bad", bad_is_fixed))
                .add(task("member", true));
            ev.add_group(Group {
                name: "pair".into(),
                members: vec!["bad".into(), "member".into()],
            });
            ev.options.batch_size = Some(1);
            ev.options.share = crate::shard::Share::rank(rank, 2).expect("share");
            ev.run_share(tmp.path()).expect("runs")
        };
        let journal = tmp.path().join(".journal");
        // Shard 0 records its failure and finishes its share of the others.
        assert!(matches!(run_rank(0, false), RunEnd::Waiting { ranks } if ranks == [1]));
        assert!(journal.join("rank-0-of-2/bad.failed.json").is_file());
        // The last shard merges what the others finished and lists the failure.
        let RunEnd::Partial { doc, failed } = run_rank(1, false) else {
            panic!("partial")
        };
        let partial = doc.clone();
        assert!(matches!(&failed[..], [Error::Row { evaluation, row: 2, .. }] if evaluation == "bad"));
        assert_eq!(
            (
                doc["results"]["ok"]["n"].as_u64(),
                doc["results"]["member"]["n"].as_u64()
            ),
            (Some(4), Some(4))
        );
        assert!(doc["results"].get("bad").is_none() && doc["groups"].get("pair").is_none());
        assert!(
            doc["failed"]["bad"].as_str().is_some_and(|m| m.contains("row 2")),
            "{doc}"
        );
        assert_eq!(doc["failed"]["pair"], "not reported: its member `bad` failed");
        // The shards that failed it are not done any more, and the lock is free: `evalkit
        // merge` reports the same, and rerunning them after the fix merges anew.
        assert_eq!(crate::shard::not_done(&journal, 2), [0, 1]);
        assert!(!journal.join("merge.lock").exists());
        let mut merge = Evaluator::new(&UNIFORM, &tok);
        merge
            .add(task("ok", true))
            .add(task("bad", false))
            .add(task("member", true));
        merge.options.batch_size = Some(1);
        merge.options.share = crate::shard::Share::Merge { world: 2 };
        let RunEnd::Partial { failed, .. } = merge.run_share(tmp.path()).expect("merges") else {
            panic!("partial")
        };
        assert_eq!(failed.len(), 1);
        assert!(matches!(run_rank(0, true), RunEnd::Waiting { .. }));
        assert!(
            !journal.join("rank-0-of-2/bad.failed.json").exists(),
            "cleared on success"
        );
        let RunEnd::Results(doc) = run_rank(1, true) else {
            panic!("results")
        };
        assert!(doc.get("failed").is_none(), "{doc}");
        assert_eq!(doc["results"]["bad"]["n"], 4);
        // Resumed: the records of the processes that computed `ok` stand.
        assert_eq!(doc["results"]["ok"]["by_shard"], partial["results"]["ok"]["by_shard"]);
        assert!(Evaluator::done(tmp.path()));
    }

    #[test]
    fn no_evaluations_or_no_context_is_an_error_not_a_score() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        let empty = Evaluator::new(&UNIFORM, &tok);
        let e = empty.run(&tmp.path().join("out")).expect_err("nothing to run");
        assert!(e.to_string().contains("no evaluations"), "{e}");
        assert!(!tmp.path().join("out").exists(), "nothing is written");
        assert!(empty.evaluate().is_err());
        let no_context = Toy { max_len: 0, ..UNIFORM };
        let mut ev = Evaluator::new(&no_context, &tok);
        ev.add(task("ok", true));
        let e = ev.evaluate().expect_err("max length 0");
        assert!(e.to_string().contains("max length of 0"), "{e}");
    }

    #[test]
    fn a_shard_that_failed_an_evaluation_alone_reruns_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        let run_rank = |rank: usize, refuses_c: bool| {
            let model = Toy { refuses_c, ..UNIFORM };
            let mut ev = Evaluator::new(&model, &tok);
            // Only row 2 of `ends` holds a `c`: one shard's share.
            ev.add(Box::new(LoglikelihoodTask::new(
                "ends",
                (0..4).map(|i| Ends(i == 2)).collect(),
            )))
            .add(Box::new(LoglikelihoodTask::new(
                "plain",
                (0..4).map(|_| Ends(false)).collect(),
            )));
            ev.options.batch_size = Some(1);
            ev.options.share = crate::shard::Share::rank(rank, 2).expect("share");
            ev.run_share(tmp.path()).expect("runs")
        };
        let journal = tmp.path().join(".journal");
        // Row 2, the longest, is the costliest batch: shard 0's.
        assert!(matches!(run_rank(0, true), RunEnd::Waiting { .. }));
        let RunEnd::Partial { doc, failed } = run_rank(1, true) else {
            panic!("partial")
        };
        assert!(
            matches!(&failed[..], [Error::Incapable { evaluation, message }] if evaluation == "ends" && message == "no c")
        );
        assert_eq!(doc["results"]["plain"]["n"], 4);
        // Only the shard that failed is reopened; rerun alone, it finishes last and merges.
        assert_eq!(crate::shard::not_done(&journal, 2), [0]);
        let RunEnd::Results(doc) = run_rank(0, false) else {
            panic!("results")
        };
        assert_eq!(
            (doc["results"]["ends"]["n"].as_u64(), doc.get("failed")),
            (Some(4), None)
        );
        assert!(Evaluator::done(tmp.path()));
    }

    #[test]
    fn a_journal_resumes_only_at_its_own_step() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        // A failing evaluation keeps the journal of the one that finished.
        let run = |step: u64| {
            let mut ev = Evaluator::new(&UNIFORM, &tok);
            ev.add(task("ok", true)).add(task("bad", false)).at_step(step);
            let end = ev.run_share(tmp.path()).expect("runs");
            let RunEnd::Partial { doc, .. } = end else {
                panic!("{end:?}")
            };
            assert_eq!(doc["config"]["step"], step);
            let ok = &doc["results"]["ok"];
            (ok["chunks_computed"].as_u64(), ok["chunks_resumed"].as_u64())
        };
        assert_eq!(run(1), (Some(1), Some(0)));
        assert_eq!(run(1), (Some(0), Some(1)), "the same step resumes");
        assert_eq!(run(2), (Some(1), Some(0)), "another step starts afresh");
    }

    /// A row whose context ends in `c` or in `a`.
    struct Ends(bool);
    impl Loglikelihood for Ends {
        fn get(&self) -> Result<LlItem, RowError> {
            Ok(LlItem {
                context: if self.0 { "a c" } else { "a" }.into(),
                continuation: " b".into(),
            })
        }
    }

    /// Four rows, the third ending in `c`: NaN logits after it on [`NAN_AFTER_C`].
    fn poisoned() -> Box<LoglikelihoodTask<Ends>> {
        Box::new(LoglikelihoodTask::new(
            "poisoned",
            (0..4).map(|i| Ends(i == 2)).collect(),
        ))
    }

    #[test]
    fn non_finite_logits_name_their_rows() {
        let tok = abc_tokenizer();
        let mut ev = Evaluator::new(&NAN_AFTER_C, &tok);
        ev.add(poisoned());
        ev.options.batch_size = Some(1);
        let e = ev.evaluate().expect_err("NaN");
        assert!(matches!(&e, Error::NonFinite { rows, .. } if rows == &[2]), "{e}");
        assert!(e.to_string().ends_with("in evaluation `poisoned`, row 2"), "{e}");
    }

    /// A prompt that ends in `c` or in `a`.
    struct Prompt(bool);
    impl Generate for Prompt {
        fn max_new_tokens() -> usize {
            4
        }
        fn get(&self) -> Result<GenItem, RowError> {
            Ok(GenItem {
                prompt: if self.0 { "a c" } else { "a" }.into(),
                target: String::new(),
            })
        }
    }

    #[test]
    fn non_finite_logits_while_generating_name_their_rows() {
        let tok = abc_tokenizer();
        // Greedy choice runs on the logits where they are; sampling reads them back.
        for sampling in [
            None,
            Some(Sampling::Nucleus {
                temperature: 0.8,
                top_p: 0.9,
            }),
        ] {
            let mut ev = Evaluator::new(&NAN_AFTER_C, &tok);
            ev.add(Box::new(GenerateTask::new(
                "poisoned",
                (0..4).map(|i| Prompt(i == 2)).collect(),
            )));
            ev.options.batch_size = Some(4);
            ev.options.sampling = sampling;
            let e = ev.evaluate().expect_err("NaN");
            assert!(matches!(&e, Error::NonFinite { rows, .. } if rows == &[2]), "{e}");
            assert!(e.to_string().contains("NaN logits while generating, step 0"), "{e}");
        }
        // Without the poisoned row, greedy generation ends at once: EOS (id 0) is the first of
        // four equal logits.
        let mut ev = Evaluator::new(&NAN_AFTER_C, &tok);
        ev.add(Box::new(GenerateTask::new(
            "clean",
            (0..4).map(|_| Prompt(false)).collect(),
        )));
        let out = ev.run_all(None).expect("runs");
        assert_eq!(out[0].samples[3]["finish"], serde_json::json!(["eos"]));
    }

    #[test]
    fn evaluation_names_are_unique_file_names() {
        let tok = abc_tokenizer();
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        for (names, says) in [
            (["qa", "qa"], "two evaluations have this name"),
            (["qa", "sub/qa"], "contains `/`"),
            (["..", "qa"], "not file names"),
        ] {
            let mut ev = Evaluator::new(&UNIFORM, &tok);
            for n in names {
                ev.add(task(n, true));
            }
            let e = ev.evaluate().expect_err("refused").to_string();
            assert!(e.contains(says), "{e}");
            let e = ev.run(&out).expect_err("refused").to_string();
            assert!(e.contains(says) && !out.exists(), "{e}");
        }
        // A stop string of a Generate implementation that is empty.
        struct EmptyStop;
        impl Generate for EmptyStop {
            fn max_new_tokens() -> usize {
                4
            }
            fn stop() -> Vec<String> {
                vec!["\n".into(), String::new()]
            }
            fn get(&self) -> Result<GenItem, RowError> {
                Ok(GenItem {
                    prompt: "a".into(),
                    target: String::new(),
                })
            }
        }
        let mut ev = Evaluator::new(&UNIFORM, &tok);
        ev.add(Box::new(GenerateTask::new("gen", vec![EmptyStop])));
        let e = ev.evaluate().expect_err("refused").to_string();
        assert!(e.contains("an empty stop string"), "{e}");
    }

    #[test]
    fn an_error_that_stops_the_run_comes_with_the_row_failures_before_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        let mut ev = Evaluator::new(&NAN_AFTER_C, &tok);
        ev.add(task("bad", false)).add(poisoned());
        let e = ev.run_share(tmp.path()).expect_err("NaN stops the run");
        let Error::Evaluations(errors) = &e else { panic!("{e}") };
        assert!(
            matches!(&errors[..], [Error::Row { .. }, Error::NonFinite { .. }]),
            "{e}"
        );
        assert!(!tmp.path().join("results.json").exists());
    }

    #[test]
    fn when_every_evaluation_fails_each_error_is_returned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let tok = abc_tokenizer();
        let mut ev = Evaluator::new(&UNIFORM, &tok);
        ev.add(task("one", false)).add(task("two", false));
        let e = ev.run_share(tmp.path()).expect_err("nothing finished");
        let Error::Evaluations(errors) = &e else { panic!("{e}") };
        assert_eq!(errors.len(), 2);
        assert!(e.to_string().contains("evaluation `one`, row 2") && e.to_string().contains("evaluation `two`, row 2"));
        assert!(!tmp.path().join("results.json").exists());
    }
}
