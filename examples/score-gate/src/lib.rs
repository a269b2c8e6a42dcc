//! A benchmark of your own: story endings for a model trained on children's stories. Each row
//! of `data/stories.jsonl` is a story opening, two endings and the index of the sensible one;
//! the derive turns the struct into a multiple-choice evaluation (acc, acc_norm, ...).

use evalkit::Evaluation;
use std::path::{Path, PathBuf};

/// One row of `data/stories.jsonl`.
#[derive(Debug, Clone, Evaluation, serde::Deserialize)]
#[eval(name = "story_endings", kind = multiple_choice, metrics(acc, acc_norm))]
pub struct StoryEnding {
    /// The opening the endings continue.
    #[eval(context = "{story}")]
    pub story: String,
    /// Candidate endings.
    #[eval(choices)]
    pub endings: Vec<String>,
    /// Index of the sensible ending.
    #[eval(answer)]
    pub label: usize,
}

/// Reads the rows, naming the file and line of a malformed one.
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<StoryEnding>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// This crate's data file.
pub fn data_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/stories.jsonl")
}

/// A checkpoint among evalkit's shared test models (`$EVALKIT_SHARED/models/<name>`, by default
/// the `shared` folder beside the evalkit checkout); an error saying where it looked, and how
/// to point elsewhere, when it is not there.
pub fn shared_model(name: &str) -> anyhow::Result<PathBuf> {
    let (shared, from) = match std::env::var_os("EVALKIT_SHARED") {
        Some(s) => (PathBuf::from(s), "EVALKIT_SHARED"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
            "the default beside the evalkit checkout",
        ),
    };
    let dir = shared.join("models").join(name);
    anyhow::ensure!(
        dir.is_dir(),
        "no checkpoint {name} at {} ({from}): set EVALKIT_SHARED to the folder that holds models/{name}",
        dir.display()
    );
    Ok(dir)
}
