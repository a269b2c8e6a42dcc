//! High-level settings: arguments parsed once into validated values — paths resolved, device
//! chosen, model opened, tasks loaded.

use super::args::{BatchSizeArg, GenKwargs, Limit, ModelArgs, RunArgs};
use anyhow::{bail, Context, Result};
use evalkit::core::chat::ChatTemplate;
use evalkit::core::gate::Bound;
use evalkit::core::kinds::{ChatOptions, RunOptions, Subset};
use evalkit::core::model::served::Served;
use evalkit::core::model::torchscript::{TorchScriptModel, TorchScriptOptions};
use evalkit::core::request::Sampling;
use evalkit::core::{DeviceSpec, Dtype, LoadOptions, Model, Tokenizer};
use std::path::{Path, PathBuf};

/// An opened model with its tokenizer.
pub struct OpenedModel {
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    pub name: String,
    /// The folder of the tokenizer files (and of the chat template).
    pub dir: PathBuf,
}

/// Where the arguments' model comes from, and the folder of its tokenizer.
enum Source<'a> {
    /// A TorchScript module (`--torchscript`), its tokenizer from `--tokenizer`.
    TorchScript { module: &'a Path, tokenizer: &'a Path },
    /// A served model (`--model openai-compatible:URL`), its tokenizer from `--tokenizer`.
    Served { url: &'a str, tokenizer: &'a Path },
    /// A checkpoint folder: `--model DIR`, or a hub model's snapshot in the hub cache.
    Checkpoint(PathBuf),
}

impl Source<'_> {
    fn tokenizer_dir(&self) -> &Path {
        match self {
            Source::TorchScript { tokenizer, .. } | Source::Served { tokenizer, .. } => tokenizer,
            Source::Checkpoint(dir) => dir,
        }
    }
}

/// The URL of a served model (`--model openai-compatible:URL`), if the arguments name one.
pub fn served_url(a: &ModelArgs) -> Option<&str> {
    a.model.as_ref()?.to_str()?.strip_prefix("openai-compatible:")
}

/// Resolves the arguments' model: a hub model id (`org/name[@revision]`, not a folder here) to
/// its snapshot in the hub cache.
fn source<'a>(a: &'a ModelArgs, hub: &evalkit::suites::hub::HubOptions) -> Result<Source<'a>> {
    if let Some(module) = &a.torchscript {
        let tokenizer = a.tokenizer.as_deref().context("--torchscript needs --tokenizer")?;
        return Ok(Source::TorchScript { module, tokenizer });
    }
    let dir = a.model.as_ref().context("give --model or --torchscript")?;
    if let Some(url) = served_url(a) {
        let tokenizer = a
            .tokenizer
            .as_deref()
            .context("a served model needs --tokenizer DIR (the served model's tokenizer.json)")?;
        return Ok(Source::Served { url, tokenizer });
    }
    if dir.is_file() {
        anyhow::bail!(
            "--model {} is a file: give the checkpoint's folder (with config.json, the safetensors and tokenizer.json)",
            dir.display()
        );
    }
    if !dir.exists() {
        if let Some((id, rev)) = dir.to_str().and_then(evalkit::suites::hub::parse_model_id) {
            let snapshot = evalkit::suites::hub::model_snapshot(&id, &rev, hub).with_context(|| {
                format!(
                    "no folder {} here, so --model was read as the hub model {id}@{rev}",
                    dir.display()
                )
            })?;
            return Ok(Source::Checkpoint(snapshot));
        }
    }
    Ok(Source::Checkpoint(dir.clone()))
}

/// Opens the model the arguments name: a checkpoint directory, a hub model id
/// (`org/name[@revision]`, through the hub cache), a TorchScript module or a served model.
pub fn open_model(a: &ModelArgs, hub: &evalkit::suites::hub::HubOptions) -> Result<OpenedModel> {
    let device: DeviceSpec = a.device.parse()?;
    let dtype = Dtype::from(a.dtype);
    match source(a, hub)? {
        Source::TorchScript { module, tokenizer } => {
            let max_len = a.max_len.context("--torchscript needs --max-len")?;
            let model = TorchScriptModel::load(
                module,
                device.resolve()?,
                TorchScriptOptions {
                    max_len,
                    takes_mask: a.takes_mask,
                },
            )?;
            Ok(OpenedModel {
                model: Box::new(model),
                tokenizer: Tokenizer::from_dir(tokenizer)?,
                name: model_name(a),
                dir: tokenizer.to_path_buf(),
            })
        }
        Source::Served { url, tokenizer } => open_served(a, url, tokenizer, true),
        Source::Checkpoint(dir) => {
            // A checkpoint's length is its config's: a --max-len that would do nothing is
            // refused (here, not in `source`: `evalkit merge` reads older runs' commands).
            if a.max_len.is_some() {
                anyhow::bail!(
                    "--max-len is for --torchscript and a served model; a checkpoint's max length is its config.json's"
                );
            }
            let mut opened = open_checkpoint(&dir, device, dtype)?;
            opened.name = model_name(a);
            Ok(opened)
        }
    }
}

/// What a sharded run recorded of its model (`.journal/shards.json`): enough to merge its
/// journals without the model.
pub struct RecordedModel {
    /// The model's description (the journals are keyed by it).
    pub describe: String,
    /// Its context length, as the shards planned with it.
    pub max_len: usize,
    /// Its vocabulary size (`None` in a run started by an evalkit that did not record it: the
    /// tokenizer's is taken).
    pub vocab_size: Option<usize>,
    /// The run's `model_name`.
    pub name: String,
    /// Its [`evalkit::core::Model::weights_stamp`] (`None` in a run started by an evalkit
    /// that did not record it, whose journals were keyed without it).
    pub weights_stamp: Option<String>,
}

/// The tokenizer the arguments name, and a stand-in for the model from what the run recorded
/// ([`evalkit::core::model::unloaded::Unloaded`]): no weights loaded, no server asked.
pub fn open_unloaded(
    a: &ModelArgs,
    hub: &evalkit::suites::hub::HubOptions,
    recorded: RecordedModel,
) -> Result<OpenedModel> {
    let dir = source(a, hub)?.tokenizer_dir().to_path_buf();
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let vocab_size = recorded.vocab_size.unwrap_or_else(|| tokenizer.vocab_size());
    let model = evalkit::core::model::unloaded::Unloaded::new(recorded.describe, recorded.max_len, vocab_size)
        .with_weights_stamp(recorded.weights_stamp);
    Ok(OpenedModel {
        model: Box::new(model),
        tokenizer,
        name: recorded.name,
        dir,
    })
}

/// The name a served model's results go under (its id on the server), asked without the
/// checks a run's connection makes (each shard makes them).
pub fn served_name(a: &ModelArgs, hub: &evalkit::suites::hub::HubOptions) -> Result<String> {
    match source(a, hub)? {
        Source::Served { url, tokenizer } => Ok(open_served(a, url, tokenizer, false)?.name),
        _ => Ok(model_name(a)),
    }
}

/// Connects to a served model; its tokenizer (and max length) come from `tok_dir`
/// (`--tokenizer`); `checks`: [`Served`]'s checks of the engine at connection.
fn open_served(a: &ModelArgs, url: &str, tok_dir: &Path, checks: bool) -> Result<OpenedModel> {
    let max_len = match a.max_len {
        Some(n) => n,
        None => evalkit::core::model::read_max_len(tok_dir).with_context(|| {
            format!(
                "the served model's max length: give --max-len, or a config.json in {}",
                tok_dir.display()
            )
        })?,
    };
    let mut opts = Served::options(url, max_len);
    opts.model = a.served_model.clone();
    opts.in_flight = a.in_flight;
    opts.retries = a.retries;
    opts.checks = checks;
    let tokenizer = Tokenizer::from_dir(tok_dir)?;
    let model = Served::connect(opts, tokenizer.clone())?;
    let name = model.model_id().rsplit('/').next().unwrap_or("served").to_string();
    Ok(OpenedModel {
        model: Box::new(model),
        tokenizer,
        name,
        dir: tok_dir.to_path_buf(),
    })
}

/// Opens a Hugging Face checkpoint directory.
pub fn open_checkpoint(dir: &Path, device: DeviceSpec, dtype: Dtype) -> Result<OpenedModel> {
    // Absolute, so that results.json says which checkpoint wherever it is read.
    let dir = &std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let model = evalkit::core::load_checkpoint(dir, LoadOptions { device, dtype })
        .with_context(|| format!("opening checkpoint {}", dir.display()))?;
    let tokenizer = Tokenizer::from_dir(dir)?;
    tokenizer.check_fits(model.vocab_size())?;
    Ok(OpenedModel {
        model,
        tokenizer,
        name: file_name(dir),
        dir: dir.to_path_buf(),
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
}

/// A score gate: `task.metric` must be ≥ (`--min`) or ≤ (`--max`) a value.
#[derive(Debug, Clone)]
pub struct Gate {
    pub task: String,
    pub metric: String,
    pub bound: Bound,
}

impl Gate {
    /// Parses `TASK.METRIC=VALUE` of `--min` (`at_least`) or `--max`.
    fn parse(g: &str, at_least: bool) -> Result<Gate> {
        let flag = if at_least { "--min" } else { "--max" };
        let (lhs, v) = g
            .split_once('=')
            .with_context(|| format!("{flag} {g}: expected TASK.METRIC=VALUE"))?;
        let (task, metric) = lhs
            .split_once('.')
            .with_context(|| format!("{flag} {g}: expected TASK.METRIC=VALUE"))?;
        let v: f64 = v
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .with_context(|| format!("{flag} {g}: {v} is not a finite number"))?;
        Ok(Gate {
            task: task.into(),
            metric: metric.into(),
            bound: if at_least { Bound::AtLeast(v) } else { Bound::AtMost(v) },
        })
    }
}

/// The task names `--tasks` asks for: each name as given, or in place of a pattern with `*`,
/// `?` or `[...]` (lm-eval's fnmatch patterns: `mmlu_*`, `arc_*`) the suites it matches, sorted
/// as lm-eval sorts them. An unknown name, or a pattern that matches nothing, is refused.
pub fn expand_tasks(asked: &[String]) -> Result<Vec<String>> {
    let known: Vec<String> = evalkit::suites::all().into_iter().map(|s| s.name).collect();
    let mut tasks: Vec<String> = vec![];
    if asked.iter().any(|t| t.trim().is_empty()) {
        bail!("--tasks has an empty name (a stray comma, or an empty argument)");
    }
    for name in asked {
        if !name.contains(['*', '?', '[']) {
            evalkit::suites::check_name(name)?;
            tasks.push(name.clone());
            continue;
        }
        let pattern = glob::Pattern::new(name).with_context(|| format!("--tasks: `{name}` is not a valid pattern"))?;
        let mut matched: Vec<&String> = known.iter().filter(|k| pattern.matches(k)).collect();
        if matched.is_empty() {
            bail!("--tasks: no task matches `{name}` (run `evalkit list` for the names)");
        }
        matched.sort();
        tasks.extend(
            matched
                .into_iter()
                .filter(|m| !tasks.contains(m))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    Ok(tasks)
}

/// Everything `run` needs besides the model.
pub struct RunSettings {
    pub tasks: Vec<String>,
    pub options: RunOptions,
    pub suite_options: evalkit::suites::LoadOptions,
    pub output: PathBuf,
    /// What the run does otherwise than the arguments may suggest, for the console.
    pub notes: Vec<String>,
}

/// The chat settings the arguments ask for (lm-eval's rules: multi-turn few-shot by default
/// under a template; multi-turn without one is an error).
fn chat_options(a: &RunArgs, checkpoint: &Path) -> Result<Option<ChatOptions>> {
    let Some(name) = &a.apply_chat_template else {
        if a.fewshot_as_multiturn == Some(true) {
            bail!("--fewshot-as-multiturn needs --apply-chat-template");
        }
        return Ok(None);
    };
    let name = Some(name.as_str()).filter(|n| !n.is_empty());
    // Its errors name the checkpoint folder and what was looked for.
    let template = ChatTemplate::from_dir(checkpoint, name).context("--apply-chat-template")?;
    let mut chat = ChatOptions::new(template);
    chat.fewshot_as_multiturn = a.fewshot_as_multiturn.unwrap_or(true);
    Ok(Some(chat))
}

/// The score gates of `--min` and `--max`.
pub fn gates(a: &RunArgs) -> Result<Vec<Gate>> {
    a.gates
        .iter()
        .map(|g| Gate::parse(g, true))
        .chain(a.max_gates.iter().map(|g| Gate::parse(g, false)))
        .collect()
}

/// `--output`, else `evalkit-results/<model name>`.
pub fn output_dir(a: &RunArgs, model_name: &str) -> PathBuf {
    a.output
        .clone()
        .unwrap_or_else(|| PathBuf::from("evalkit-results").join(model_name))
}

/// The name a model's results go under, known before it is opened (so the process that starts
/// shards finds their output): the checkpoint's or module's file name, a hub id with `/` as
/// `--` and its revision where it is not `main` (`EleutherAI--pythia-70m@step1000`: each
/// revision's results their own), a served model's its id on the server (known only once
/// connected).
pub fn model_name(a: &ModelArgs) -> String {
    match (&a.torchscript, &a.model) {
        (Some(ts), _) => file_name(ts),
        (None, Some(m)) => match m.to_str().and_then(evalkit::suites::hub::parse_model_id) {
            Some((id, rev)) if !m.exists() => {
                let id = id.replace('/', "--");
                if rev == "main" {
                    id
                } else {
                    format!("{id}@{}", rev.replace('/', "--"))
                }
            }
            _ => file_name(m),
        },
        (None, None) => "model".into(),
    }
}

/// The sampling temperature (0: greedy) of lm-eval's `--gen_kwargs` over `--temperature`
/// (`flag`), as lm-eval merges them into a task's settings: every generation task here decodes
/// greedily (lm-eval's `do_sample: false`), so they sample only with do_sample=true — at 1
/// (transformers' default) without a temperature — and a temperature or top_p alone is
/// ignored, as transformers ignores it then (the note says so).
fn gen_temperature(g: &GenKwargs, flag: f64) -> (f64, Option<String>) {
    let temperature = match g.do_sample {
        Some(true) => g.temperature.unwrap_or(if flag > 0.0 { flag } else { 1.0 }),
        Some(false) => 0.0,
        None if g.temperature.is_some() => 0.0,
        None => flag,
    };
    let ignored: Vec<String> = [
        g.temperature.filter(|&t| t > 0.0).map(|t| format!("temperature={t}")),
        g.top_p.map(|p| format!("top_p={p}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let note = (g.do_sample.is_none() && temperature == 0.0 && !ignored.is_empty()).then(|| {
        format!(
            "--gen-kwargs {} ignored without do_sample=true: decoding stays greedy, as in lm-eval (its tasks' do_sample is false)",
            ignored.join(",")
        )
    });
    (temperature, note)
}

pub fn run_settings(a: &RunArgs, model: &OpenedModel) -> Result<RunSettings> {
    let model_name = &model.name;
    let g = a.gen_kwargs.unwrap_or_default();
    let (temperature, note) = gen_temperature(&g, a.temperature);
    let notes: Vec<String> = note.into_iter().collect();
    let top_p = g.top_p.unwrap_or(a.top_p);
    if !(temperature >= 0.0 && top_p > 0.0 && top_p <= 1.0) {
        bail!("--temperature must be ≥ 0 and --top-p in (0, 1]");
    }
    if g.do_sample == Some(true) && temperature == 0.0 {
        bail!("--gen-kwargs: do_sample=true with temperature 0 asks for both sampling and greedy choice");
    }
    if a.max_batch_size.is_some() && a.batch_size != Some(BatchSizeArg::Auto) {
        bail!("--max-batch-size goes with --batch-size auto");
    }
    let subset = a.limit.map(|limit| match (limit, a.sample) {
        (Limit::Rows(n), false) => Subset::First(n),
        (Limit::Rows(n), true) => Subset::Sample(n),
        (Limit::Share(f), false) => Subset::FirstShare(f),
        (Limit::Share(f), true) => Subset::SampleShare(f),
    });
    let sampling = (temperature > 0.0).then_some(Sampling::Nucleus { temperature, top_p });
    let options = RunOptions {
        batch_size: match a.batch_size {
            Some(BatchSizeArg::Fixed(n)) => Some(n),
            Some(BatchSizeArg::Auto) => Some(a.max_batch_size.unwrap_or(64) as usize),
            None => None,
        },
        auto_batch_size: a.batch_size == Some(BatchSizeArg::Auto),
        chunk_size: a.chunk_size,
        subset,
        seed: a.seed,
        share_prefix: !a.no_share_prefix,
        sampling,
        samples_per_prompt: a.samples_per_prompt.max(1),
        max_new_tokens: g.max_gen_toks.or(a.max_new_tokens),
        system_instruction: a.system_instruction.clone(),
        chat: chat_options(a, &model.dir)?,
        ..RunOptions::default()
    };
    let mut suite_options = evalkit::suites::LoadOptions::new(evalkit::suites::data::data_dir(a.data_dir.as_deref()));
    suite_options.num_fewshot = a.num_fewshot;
    suite_options.seed = a.seed;
    if a.hub {
        suite_options.hub = Some(evalkit::suites::hub::HubOptions {
            offline: a.offline,
            ..Default::default()
        });
    }
    suite_options.confirm_run_unsafe_code = a.confirm_run_unsafe_code;
    gates(a)?; // a malformed gate fails before the run, not after it
    let tasks = expand_tasks(&a.tasks)?;
    // Refused before anything runs, as lm-eval refuses it (a pattern such as `*` included).
    if !a.confirm_run_unsafe_code && tasks.iter().any(|t| t == "humaneval") {
        bail!("humaneval: {}", evalkit::suites::humaneval::UNCONFIRMED);
    }
    let output = output_dir(a, model_name);
    Ok(RunSettings {
        tasks,
        options,
        suite_options,
        output,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hub_revision_has_its_own_results_folder() {
        let name = |model: &str| {
            let cli = <crate::cli::args::Cli as clap::Parser>::try_parse_from([
                "evalkit", "run", "--tasks", "arc_easy", "--model", model,
            ])
            .expect("parses");
            let crate::cli::args::Command::Run(a) = cli.command else {
                panic!("a run")
            };
            model_name(&a.model)
        };
        assert_eq!(name("EleutherAI/pythia-70m"), "EleutherAI--pythia-70m");
        assert_eq!(name("EleutherAI/pythia-70m@main"), "EleutherAI--pythia-70m");
        assert_eq!(
            name("EleutherAI/pythia-70m@step1000"),
            "EleutherAI--pythia-70m@step1000"
        );
        assert_eq!(name("org/name@refs/pr/1"), "org--name@refs--pr--1");
    }

    #[test]
    fn an_empty_task_name_is_said_as_such() {
        for asked in [vec![String::new()], vec!["arc_easy".into(), " ".into()]] {
            let e = expand_tasks(&asked).expect_err("empty").to_string();
            assert!(e.contains("--tasks has an empty name"), "{e}");
        }
    }

    #[test]
    fn gen_kwargs_sample_only_with_do_sample_as_lm_eval() {
        let g = |do_sample, temperature, top_p| GenKwargs {
            do_sample,
            temperature,
            top_p,
            ..GenKwargs::default()
        };
        // A temperature alone: greedy, as lm-eval's gsm8k (do_sample: false) decodes, and said.
        let (t, note) = gen_temperature(&g(None, Some(0.8), None), 0.0);
        assert_eq!(t, 0.0);
        assert!(note.is_some_and(|n| n.contains("temperature=0.8") && n.contains("do_sample=true")));
        let (t, note) = gen_temperature(&g(None, None, Some(0.9)), 0.0);
        assert!(t == 0.0 && note.is_some_and(|n| n.contains("top_p=0.9")));
        // With do_sample=true: that temperature, else 1 (transformers' default) or the flag's.
        assert_eq!(gen_temperature(&g(Some(true), Some(0.8), None), 0.0), (0.8, None));
        assert_eq!(gen_temperature(&g(Some(true), None, None), 0.0), (1.0, None));
        assert_eq!(gen_temperature(&g(Some(true), None, None), 0.6), (0.6, None));
        // do_sample=false is greedy over the flag; without gen-kwargs the flag decides.
        assert_eq!(gen_temperature(&g(Some(false), Some(0.8), None), 0.7).0, 0.0);
        assert_eq!(gen_temperature(&g(None, None, None), 0.7), (0.7, None));
        assert_eq!(gen_temperature(&g(None, Some(0.0), None), 0.0), (0.0, None));
    }

    #[test]
    fn task_patterns_expand_to_the_suites_they_match() {
        let asked = ["arc_*", "mmlu_anatomy", "mmlu_a*", "gsm8k"].map(String::from);
        assert_eq!(
            expand_tasks(&asked).expect("expands"),
            [
                "arc_challenge",
                "arc_easy",
                "mmlu_anatomy",
                "mmlu_abstract_algebra",
                "mmlu_astronomy",
                "gsm8k"
            ]
        );
        // A name that is no pattern is kept as given; an unknown one is refused, before any
        // model loads.
        assert_eq!(expand_tasks(&["mmlu_stem".into()]).expect("kept"), ["mmlu_stem"]);
        let e = expand_tasks(&["nope".into()]).expect_err("unknown").to_string();
        assert!(e.contains("unknown task `nope`"), "{e}");
        let e = expand_tasks(&["zzz*".into()]).expect_err("matches nothing").to_string();
        assert!(e.contains("no task matches `zzz*`"), "{e}");
        let e = expand_tasks(&["arc_[".into()]).expect_err("bad pattern").to_string();
        assert!(e.contains("`arc_[` is not a valid pattern"), "{e}");
    }
}
