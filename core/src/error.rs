//! The error type of evalkit-core. Variants record what was being done and on which file, row,
//! field or tensor, so that a message tells the user exactly what to fix. Foreign errors
//! (tch, tokenizers, serde_json, io) are wrapped at the boundary with that context added.

use std::path::PathBuf;

/// Result alias used throughout evalkit-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a model or data, or running an evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file expected in a checkpoint or data directory does not exist.
    #[error("missing file {path}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingFile {
        /// The path that was expected.
        path: PathBuf,
        /// Where to get it, or what it is for.
        hint: Option<String>,
    },
    /// A JSON (or other structured) file does not parse or lacks a field.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<usize>,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A configuration value is missing, unknown or unsupported.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A weight is missing from a checkpoint or has the wrong shape.
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The weights file (or index).
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        name: String,
        /// What is wrong ("missing", "expected shape [..], got [..]").
        message: String,
    },
    /// The tokenizer failed or does not fit the model.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A libtorch operation failed.
    #[error("libtorch error while {op}: {source}")]
    Torch {
        /// The operation.
        op: String,
        /// The underlying error.
        source: tch::TchError,
    },
    /// The model produced non-finite logits.
    #[error(
        "model produced non-finite logits ({what}) in evaluation `{evaluation}`{}",
        rows_of(rows)
    )]
    NonFinite {
        /// The evaluation.
        evaluation: String,
        /// What was being computed.
        what: String,
        /// The rows of the dataset it happened on, or of the batch it happened in (empty where
        /// not known); below the evaluation, positions in the batch, then its request indices.
        rows: Vec<usize>,
    },
    /// A served model's endpoint failed or answered something unusable.
    #[error("{url}: {message}")]
    Served {
        /// The endpoint.
        url: String,
        /// What went wrong (the server's message for a 4xx).
        message: String,
    },
    /// A dataset or a row of it cannot be evaluated.
    #[error("evaluation `{evaluation}`, row {row}: {message}")]
    Row {
        /// The evaluation.
        evaluation: String,
        /// 0-based index of the row in the dataset.
        row: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// An evaluation is set up wrongly (empty dataset, bad settings).
    #[error("evaluation `{evaluation}`: {message}")]
    Evaluation {
        /// The evaluation.
        evaluation: String,
        /// What is wrong.
        message: String,
    },
    /// An evaluation of a data-parallel run still waits for other shards' work (a shard that
    /// finished its own share returns this when it is not the last; merging reports it for
    /// shards that have not finished).
    #[error(
        "evaluation `{evaluation}` waits for shard(s) {} of {world}: rerun each (it resumes from its journal in {}), then the last to finish, or `evalkit merge`, writes the results",
        ranks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        journal.display()
    )]
    ShardsPending {
        /// The evaluation.
        evaluation: String,
        /// Ranks whose share is not fully journaled.
        ranks: Vec<usize>,
        /// Shards in the run.
        world: usize,
        /// The journal folder of the run.
        journal: PathBuf,
    },
    /// A shard was started with settings other than the run it joins.
    #[error("{path}: {message}")]
    Shards {
        /// The run's shard record (`.journal/shards.json`).
        path: PathBuf,
        /// What differs, and what to do.
        message: String,
    },
    /// An output folder another run is writing into (it holds the folder's lock, or its rank's).
    #[error("{path}: {message}")]
    Locked {
        /// The folder locked.
        path: PathBuf,
        /// Who holds it, and what to do.
        message: String,
    },
    /// A shard's rank and world size, or a cluster launcher's variables for them, that do not
    /// make a shard.
    #[error("{launcher}: {message}")]
    Launch {
        /// Where the values came from (`torchrun`, `slurm`, or `shards` for arguments).
        launcher: &'static str,
        /// What is wrong, naming the variable.
        message: String,
    },
    /// An evaluation whose requests this model cannot run, though others may (a served
    /// engine that returns no log-prob where a rolling-perplexity window starts): the
    /// evaluation fails, the run's others go on.
    #[error("evaluation `{evaluation}`: {message}")]
    Incapable {
        /// The evaluation (filled in where the error passes the evaluation's name).
        evaluation: String,
        /// What the model cannot do, and what would.
        message: String,
    },
    /// An evaluation that does not report a metric it highlights (`metrics(...)`): a typo, or
    /// a `score` hook that does not return it. The evaluation fails, the run's others go on.
    #[error("evaluation `{evaluation}`: {message}")]
    Metrics {
        /// The evaluation.
        evaluation: String,
        /// Which metrics, and what it reports.
        message: String,
    },
    /// A model whose output breaks the [`crate::model::Model`] contract: a shape, a width or a
    /// type other than the trait's (a model of one's own, implemented wrongly).
    #[error("{model}: `{method}` {message}")]
    ModelOutput {
        /// The model ([`crate::model::Model::describe`]).
        model: String,
        /// The trait method whose output is wrong.
        method: &'static str,
        /// What it returned and what was expected.
        message: String,
    },
    /// A request that the model cannot serve (an unsupported device, dtype or operation).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A broken invariant of evalkit itself (a bug: please report it with the command).
    #[error("internal error (a bug in evalkit; please report it with the command that ran): {0}")]
    Internal(String),
    /// Several evaluations of a run failed, each with an error of its own (see
    /// [`Error::is_evaluation_specific`]), or the last with an error that stopped the run;
    /// each error on its own line.
    #[error("{} evaluations failed:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Evaluations(Vec<Error>),
}

/// ", row 3" or ", in a batch of rows 3, 4, 9" (the first eight, then how many more), or
/// nothing.
fn rows_of(rows: &[usize]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    format!(
        ", {} {}",
        if rows.len() == 1 { "row" } else { "in a batch of rows" },
        first_few(rows, 8)
    )
}

/// The first `n` of `items`, then how many more: `a, b, c and 3 more` (for messages that name
/// what they are about without listing thousands of rows or tensors).
///
/// ```
/// use evalkit_core::error::first_few;
/// assert_eq!(first_few(&[1, 2, 3, 4, 5], 3), "1, 2, 3 and 2 more");
/// assert_eq!(first_few(&["a", "b"], 3), "a, b");
/// ```
pub fn first_few(items: &[impl std::fmt::Display], n: usize) -> String {
    let shown: Vec<String> = items.iter().take(n).map(ToString::to_string).collect();
    match items.len().saturating_sub(n) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

impl Error {
    /// Wraps an io error with the operation and the path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps a libtorch error with the operation that failed.
    pub fn torch(op: impl Into<String>, source: tch::TchError) -> Self {
        Error::Torch { op: op.into(), source }
    }

    /// Whether this is libtorch running out of memory (CUDA's caching allocator or the CPU
    /// allocator), the error `--batch-size auto` answers by halving the batch.
    ///
    /// ```
    /// use evalkit_core::Error;
    /// let oom = tch::TchError::Torch("CUDA out of memory. Tried to allocate 2.00 GiB".into());
    /// assert!(Error::torch("linear", oom).is_out_of_memory());
    /// assert!(!Error::Unsupported("out of memory".into()).is_out_of_memory());
    /// let oom = tch::TchError::Torch("CUDA out of memory".into());
    /// let row = Error::Row { evaluation: "arc".into(), row: 3, message: "answer 7".into() };
    /// assert!(Error::Evaluations(vec![row, Error::torch("linear", oom)]).is_out_of_memory());
    /// ```
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            Error::Torch { source, .. } => {
                let m = source.to_string().to_lowercase();
                [
                    "out of memory",
                    "not enough memory",
                    "can't allocate memory",
                    "cannot allocate memory",
                ]
                .iter()
                .any(|s| m.contains(s))
            }
            // The error that stopped a run comes after the rows that failed before it.
            Error::Evaluations(all) => all.last().is_some_and(Error::is_out_of_memory),
            _ => false,
        }
    }

    /// Whether the error is one evaluation's own — a row of its data it cannot score (an
    /// answer out of range, a continuation longer than the model), or requests the model
    /// cannot run ([`Error::Incapable`]) — rather than the run's
    /// (files, the model, the device, a served model that fails, shards, non-finite logits):
    /// the run's other evaluations can still finish, and their work stands (in a sharded run
    /// too: the shard records the failure for the merge, [`crate::shard::FailureRecord`]).
    ///
    /// ```
    /// use evalkit_core::Error;
    /// let row = Error::Row { evaluation: "piqa".into(), row: 3, message: "too long".into() };
    /// assert!(row.is_evaluation_specific());
    /// let served = Error::Incapable { evaluation: "wikitext".into(), message: "no prompt log-probs".into() };
    /// assert!(served.is_evaluation_specific());
    /// assert!(!Error::Unsupported("bf16 on this device".into()).is_evaluation_specific());
    /// let nan = Error::NonFinite { evaluation: "piqa".into(), what: "logits".into(), rows: vec![3] };
    /// assert!(!nan.is_evaluation_specific());
    /// ```
    pub fn is_evaluation_specific(&self) -> bool {
        matches!(
            self,
            Error::Row { .. } | Error::Incapable { .. } | Error::Metrics { .. }
        )
    }

    /// The error of evaluations that failed on their own: the one error, or
    /// [`Error::Evaluations`] of several. `failed` is not empty.
    pub(crate) fn of_evaluations(mut failed: Vec<Error>) -> Error {
        match failed.len() {
            1 => failed.remove(0),
            _ => Error::Evaluations(failed),
        }
    }
}

/// Adds the libtorch operation name to a `tch` result.
pub(crate) trait TorchContext<T> {
    fn op(self, op: &str) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn op(self, op: &str) -> Result<T> {
        self.map_err(|e| Error::torch(op, e))
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String> {
    if !path.exists() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            hint: None,
        });
    }
    std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

/// Parses a JSON file into `T`, naming the file, line and serde's message on failure.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = read_to_string(path)?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let message = if field == "." || field == "?" {
            inner.to_string()
        } else {
            format!("field `{field}`: {inner}")
        };
        Error::Parse {
            path: path.to_path_buf(),
            line: Some(inner.line()),
            message,
        }
    })?;
    // Text after the value ("Extra data" to Python, which transformers reads these files with).
    de.end().map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: Some(e.line()),
        message: e.to_string(),
    })?;
    Ok(value)
}
