//! Low-level arguments as clap parses them. Commands never see these types: [`super::settings`]
//! turns them into validated settings.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Evaluate language models on benchmarks, on libtorch.
#[derive(Debug, Parser)]
#[command(name = "evalkit", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Less output (no progress bars).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More output: per evaluation its seconds, tokens, chunks and efficiency; the raw speed
    /// with `run --floor`.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Output format: `text` tables (the default; for `report`, HTML), `json` (`run`, `show`,
    /// `merge`, `list`, `compare`, `demo`), `md` (`run`, `show`, `merge`, `list`, `demo`,
    /// `report`) or `html` (`report`).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// libtorch CPU threads (default: $OMP_NUM_THREADS, else every core).
    #[arg(long, global = true, env = "EVALKIT_THREADS", value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: Option<i32>,
}

impl Global {
    /// The thread count: `--threads`, else `OMP_NUM_THREADS` (as PyTorch reads it), else the
    /// machine's parallelism.
    pub fn threads(&self) -> i32 {
        self.threads
            .or_else(|| {
                std::env::var("OMP_NUM_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse::<i32>().ok())
                    .filter(|&n| n > 0)
            })
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as i32))
    }
}

/// How tables are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text.
    Text,
    /// JSON.
    Json,
    /// Markdown (`show`, `report`).
    Md,
    /// HTML (`report`; its default).
    Html,
}

impl Format {
    /// The value as `--format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Md => "md",
            Format::Html => "html",
        }
    }
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl From<DtypeArg> for evalkit::core::Dtype {
    fn from(d: DtypeArg) -> Self {
        match d {
            DtypeArg::F32 => evalkit::core::Dtype::F32,
            DtypeArg::Bf16 => evalkit::core::Dtype::Bf16,
            DtypeArg::F16 => evalkit::core::Dtype::F16,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run benchmarks on a checkpoint and write results.json + samples_<task>.jsonl.
    Run(Box<RunArgs>),
    /// List the benchmarks with their kind, metrics, split and official row count (of the
    /// published split; a data folder holding fewer rows evaluates those).
    List {
        /// Also load each benchmark from this data folder, as `run` would with its default
        /// few-shot setting, and show the rows found there, or why it does not load.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the results table of an output directory.
    Show {
        /// Output directory (or its results.json).
        path: PathBuf,
    },
    /// Write an HTML report of one or more runs (report.html with charts and sample tables,
    /// PNG charts in charts/), or Markdown with `--format md` (for a PR or a model card).
    Report {
        /// Run output directories (or their results.json).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where report.html and charts/ go (default: the run's directory when there is one); with
        /// `--format md`, report.md (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Sample rows shown per task and run (the worst first).
        #[arg(long, default_value_t = 200)]
        rows: usize,
    },
    /// Compare two runs row by row: differences with paired bootstrap intervals and McNemar's
    /// exact test (refused when the runs asked different questions).
    Compare {
        /// Baseline output directory.
        a: PathBuf,
        /// Other output directory.
        b: PathBuf,
    },
    /// Write the results of a sharded run whose shards have all finished (the last shard to
    /// finish does this itself; merge after a shard was rerun by hand, or when the merging
    /// shard died). It reads the journals and the tokenizer: the model is not loaded (nor a
    /// served model's server asked).
    Merge {
        /// The run's output directory (holds `.journal/shards.json`).
        dir: PathBuf,
    },
    /// Write a checkpoint of a model's shape with seeded random weights (config.json,
    /// model.safetensors, the tokenizer's files): throughput at a real shape without a download.
    RandomCheckpoint(RandomCheckpointArgs),
    /// Score the shared test checkpoints on the synthetic suites (and real benchmark subsets
    /// when the data is present).
    Demo(DemoArgs),
}

/// `evalkit random-checkpoint`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("shape").required(true).args(["preset", "config"])))]
pub struct RandomCheckpointArgs {
    /// A named shape: llama-3.2-1b, gpt2-small or pythia-160m.
    #[arg(long)]
    pub preset: Option<String>,
    /// Or any Llama-family (llama, mistral, qwen2), GPT-2 or GPT-NeoX `config.json`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory whose tokenizer.json (and tokenizer_config.json, generation_config.json)
    /// the checkpoint gets; its vocabulary must fit the shape's.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Seed of the weights (the same seed writes the same file).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Precision the weights are stored in.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// The new checkpoint's directory (must not hold a checkpoint yet).
    #[arg(long)]
    pub output: PathBuf,
}

/// The model and how to run it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json), a hub
    /// model `org/name[@revision]` read through the hub cache (downloaded unless --offline), or
    /// `openai-compatible:http://HOST:PORT/v1`, a model served by vLLM, SGLang, TGI or
    /// llama.cpp's server (needs --tokenizer).
    #[arg(long, required_unless_present = "torchscript", conflicts_with = "torchscript")]
    pub model: Option<PathBuf>,
    /// A TorchScript module instead (needs --tokenizer and --max-len).
    #[arg(long, requires_all = ["tokenizer", "max_len"])]
    pub torchscript: Option<PathBuf>,
    /// Directory with tokenizer.json (for --torchscript and a served model; its config.json
    /// gives a served model's max length unless --max-len does).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The served model's id (default: the first the endpoint lists).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Requests in flight at once to a served model.
    #[arg(long, default_value_t = 8, value_parser = positive)]
    pub in_flight: usize,
    /// Retries of a request to a served model after a connection error or a 5xx (backoff from
    /// 0.5 s, doubling); then the run stops, and a rerun resumes from its journal.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
    /// Longest sequence the TorchScript module (or the served model, instead of its
    /// tokenizer's config.json) accepts; a checkpoint's is its config's.
    #[arg(long, value_parser = positive)]
    pub max_len: Option<usize>,
    /// The TorchScript module's forward takes (ids, mask).
    #[arg(long)]
    pub takes_mask: bool,
    /// cpu, cuda, cuda:N or auto; a sharded run takes a list (`cuda:0,cuda:1`, one per shard
    /// by local rank) or gives `cuda` the index of its local rank.
    #[arg(long, default_value = "auto", env = "EVALKIT_DEVICE")]
    pub device: String,
    /// Precision of weights and activations (log-softmax is always f32).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
}

/// `evalkit run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated task names (see `evalkit list`), or lm-eval's patterns (`'mmlu_*'`).
    #[arg(long, value_delimiter = ',', required = true, value_parser = trimmed)]
    pub tasks: Vec<String>,
    /// Evaluate only N rows of each task (the first N, or a seeded sample with --sample); a
    /// number below 1 is a share of each task's rows, rounded up (lm-eval's `--limit 0.1`).
    #[arg(long, value_parser = limit)]
    pub limit: Option<Limit>,
    /// With --limit: draw the rows with the task's seeded RNG instead of taking the first.
    #[arg(long, requires = "limit")]
    pub sample: bool,
    /// Few-shot examples per prompt (default: the task's, 0 except gsm8k's 5).
    #[arg(long)]
    pub num_fewshot: Option<usize>,
    /// Requests per batch, or `auto`: batches of up to --max-batch-size, halved when one runs
    /// out of device memory (each evaluation goes on at the size that fit).
    #[arg(long, value_parser = parse_batch_size)]
    pub batch_size: Option<BatchSizeArg>,
    /// With --batch-size auto: the largest batch tried (default 64).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_size: Option<u64>,
    /// Batches per chunk (the unit of progress and of resuming).
    #[arg(long, value_parser = positive)]
    pub chunk_size: Option<usize>,
    /// Benchmark files (default: $EVALKIT_DATA, else ~/.cache/evalkit/data).
    #[arg(long, env = "EVALKIT_DATA")]
    pub data_dir: Option<PathBuf>,
    /// Read tasks that have a Hugging Face Hub source (boolq, hellaswag) from the hub cache,
    /// downloading what is missing.
    #[arg(long)]
    pub hub: bool,
    /// Use the hub cache only, never the network (datasets with --hub, models given by hub id).
    #[arg(long, env = "HF_HUB_OFFLINE", value_parser = clap::builder::BoolishValueParser::new())]
    pub offline: bool,
    /// Output directory (default: evalkit-results/<model name>: a hub model's `org--name`, with
    /// `@revision` where it is not `main`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Seed of subsets, few-shot draws and sampling.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Sampling temperature for generation (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus mass for sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Generations per prompt.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub samples_per_prompt: usize,
    /// Most new tokens per generation, in place of each generation task's own (GSM8K's 256,
    /// HumanEval's 1024).
    #[arg(long, value_parser = positive)]
    pub max_new_tokens: Option<usize>,
    /// lm-eval's `--gen_kwargs`: `max_gen_toks=N`, `temperature=T`, `top_p=P` and
    /// `do_sample=true|false`, comma-separated; they take the place of --max-new-tokens,
    /// --temperature and --top-p. As in lm-eval (whose generation tasks set
    /// `do_sample: false`), only do_sample=true samples.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = gen_kwargs)]
    pub gen_kwargs: Option<GenKwargs>,
    /// Run HumanEval, whose scoring executes the model's code (lm-eval's
    /// --confirm_run_unsafe_code); without it a run asking for humaneval is refused.
    #[arg(
        long,
        env = "EVALKIT_CONFIRM_RUN_UNSAFE_CODE",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub confirm_run_unsafe_code: bool,
    /// Score each choice with its own context pass instead of sharing the context's KV cache.
    #[arg(long)]
    pub no_share_prefix: bool,
    /// Fail (exit 1) unless a metric reaches a value: `task.metric=value`, repeatable.
    #[arg(long = "min", value_name = "TASK.METRIC=VALUE")]
    pub gates: Vec<String>,
    /// Fail (exit 1) unless a metric stays at or below a value (perplexities), repeatable.
    #[arg(long = "max", value_name = "TASK.METRIC=VALUE")]
    pub max_gates: Vec<String>,
    /// The training step of the checkpoint, recorded as `config.step` (report plots such runs
    /// against it); part of the journal's key, so a journal another step left is not resumed.
    #[arg(long)]
    pub step: Option<u64>,
    /// Render every prompt through the checkpoint's chat template (lm-eval's
    /// `--apply_chat_template`); NAME picks one of several named templates.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub apply_chat_template: Option<String>,
    /// The system message's text (joined with each task's description).
    #[arg(long, value_name = "TEXT")]
    pub system_instruction: Option<String>,
    /// Measure the model's raw forward speed first (a few seconds) and report each task's
    /// forward-pass floor and efficiency (floor ÷ its wall seconds).
    #[arg(long)]
    pub floor: bool,
    /// Data-parallel over N worker processes on this machine, each computing a token-balanced
    /// share of every evaluation (with `--device cuda:0,cuda:1,...`, one device each). Under
    /// torchrun or Slurm's srun every launched process is a shard already.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub shards: u16,
    /// Few-shot examples as user/assistant turns (the default with --apply-chat-template) or,
    /// with `false`, joined into one user message.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub fewshot_as_multiturn: Option<bool>,
}

/// `evalkit demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Checkpoints to score (default: the shared test checkpoints).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Where the shared models and data are (default: $EVALKIT_SHARED, else `shared` beside
    /// the workspace).
    #[arg(long, env = "EVALKIT_SHARED")]
    pub shared: Option<PathBuf>,
    /// Rows per task.
    #[arg(long, default_value_t = 40, value_parser = positive)]
    pub limit: usize,
}

/// `--batch-size`: a number of requests, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSizeArg {
    /// Exactly this many requests per batch.
    Fixed(usize),
    /// Up to `--max-batch-size`, halved on out-of-memory.
    Auto,
}

fn parse_batch_size(s: &str) -> Result<BatchSizeArg, String> {
    match s {
        "auto" => Ok(BatchSizeArg::Auto),
        _ => match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(BatchSizeArg::Fixed(n)),
            _ => Err(format!("`{s}` is neither a positive number nor `auto`")),
        },
    }
}

/// A count of at least one (`--limit 0` would ask for nothing, and is refused before the
/// output folder is made).
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
}

/// `--limit`: a number of rows, or a share of each task's rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this many rows.
    Rows(usize),
    /// This share of the rows, in (0, 1), rounded up.
    Share(f64),
}

/// A positive whole number of rows (`2` or `2.0`), or a share in (0, 1) (`0.1`), as lm-eval
/// reads `--limit`; `0`, a negative number and a fraction above 1 are refused.
fn limit(s: &str) -> Result<Limit, String> {
    if let Ok(n) = positive(s) {
        return Ok(Limit::Rows(n));
    }
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(Limit::Share(f)),
        Ok(f) if f >= 1.0 && f.fract() == 0.0 && f < 1e15 => Ok(Limit::Rows(f as usize)),
        // Whole, but beyond any count of rows (`positive` refused it for overflowing).
        Ok(f) if f >= 1.0 && f.fract() == 0.0 => Ok(Limit::Rows(usize::MAX)),
        _ => Err(format!(
            "`{s}` is neither a positive whole number of rows nor a share of the rows in (0, 1)"
        )),
    }
}

/// `--gen-kwargs`: the generation settings lm-eval's `--gen_kwargs` may give that evalkit honours.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GenKwargs {
    /// `max_gen_toks`.
    pub max_gen_toks: Option<usize>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `do_sample`.
    pub do_sample: Option<bool>,
}

/// Parses `key=value,...` as lm-eval parses `--gen_kwargs` (`true`/`false` in any case are
/// booleans); a key evalkit does not honour (`until`, `num_beams`) is refused, naming those it
/// does.
fn gen_kwargs(s: &str) -> Result<GenKwargs, String> {
    let mut g = GenKwargs::default();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("{key}: `{value}` is not a number"))
        };
        match key {
            "max_gen_toks" => g.max_gen_toks = Some(positive(value).map_err(|e| format!("max_gen_toks: {e}"))?),
            "temperature" => g.temperature = Some(number()?),
            "top_p" => g.top_p = Some(number()?),
            "do_sample" => {
                g.do_sample = Some(match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("do_sample: `{value}` is not true or false")),
                })
            }
            _ => {
                return Err(format!(
                    "`{key}` is not a setting evalkit takes (it takes max_gen_toks, temperature, top_p and do_sample)"
                ))
            }
        }
    }
    Ok(g)
}

/// A list item without the spaces around it (`--tasks "arc_easy, hellaswag"`).
fn trimmed(s: &str) -> Result<String, std::convert::Infallible> {
    Ok(s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::{limit, Limit};

    #[test]
    fn limit_reads_rows_and_shares_as_lm_eval_does() {
        assert_eq!(limit("2"), Ok(Limit::Rows(2)));
        assert_eq!(limit("2.0"), Ok(Limit::Rows(2)));
        assert_eq!(limit("0.5"), Ok(Limit::Share(0.5)));
        // Beyond any count of rows: all of them (it was refused as not a whole number).
        assert_eq!(limit("99999999999999999999"), Ok(Limit::Rows(usize::MAX)));
        for bad in ["0", "-3", "1.5", "nan", "x"] {
            assert!(limit(bad).is_err(), "{bad}");
        }
    }
}
