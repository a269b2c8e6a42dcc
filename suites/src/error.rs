//! Errors of the suites crate: a benchmark that cannot be found, loaded or used.

use std::path::PathBuf;

/// What can go wrong when loading a suite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No suite of that name.
    #[error("unknown task `{name}` (run `evalkit list` for the names; close matches: {close})")]
    UnknownSuite {
        /// The name asked for.
        name: String,
        /// Known names that contain it or start alike.
        close: String,
    },
    /// A file of the Hugging Face Hub is neither in the hub cache nor could be fetched.
    #[error("{what} is not in the hub cache ({path}); obtain it from {source_hint}")]
    NotCached {
        /// Where the hub cache would hold it.
        path: PathBuf,
        /// What it is.
        what: String,
        /// Where to get it.
        source_hint: String,
    },
    /// A benchmark file is missing.
    #[error("missing file {path}: {what}; obtain it from {source_hint} and put it under the data directory")]
    MissingFile {
        /// The path expected.
        path: PathBuf,
        /// What it is.
        what: String,
        /// Where to get it.
        source_hint: String,
    },
    /// A row of a benchmark file is malformed.
    #[error("{path}:{line}: field `{field}`: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A benchmark file holds no rows (empty, or blank lines only).
    #[error("{path} holds no rows ({what}); obtain it again from {source_hint}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What the file is.
        what: String,
        /// Where to get it.
        source_hint: String,
    },
    /// A benchmark file its reader cannot use as a whole: not UTF-8 text (or a compressed or
    /// binary file in its place), or text without what the reader looks for.
    #[error("{}{}: {message}", .path.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// The 1-based line at fault, where there is one.
        line: Option<usize>,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The benchmark cannot run in this setting (e.g. no few-shot split).
    #[error("task `{task}`: {message}")]
    Setting {
        /// The task.
        task: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// An error of the engine.
    #[error(transparent)]
    Core(#[from] evalkit_core::Error),
}

/// Result alias of the suites crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
