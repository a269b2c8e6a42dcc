//! PIQA (lm-eval `piqa`): `Question: {goal}\nAnswer:` with `[sol1, sol2]`; labels come from
//! the line-aligned `valid-labels.lst`.

use crate::data::{malformed, read_jsonl, read_text};
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One PIQA item.
#[derive(Debug, Clone, Evaluation, Deserialize)]
#[eval(name = "piqa", kind = multiple_choice, metrics(acc, acc_norm), choices = Self::solutions)]
pub struct Piqa {
    /// The goal.
    #[eval(context = "Question: {goal}\nAnswer:")]
    pub goal: String,
    /// First solution.
    pub sol1: String,
    /// Second solution.
    pub sol2: String,
    /// 0 or 1 (from the label file).
    #[serde(skip)]
    #[eval(answer)]
    pub label: usize,
}

impl Piqa {
    fn solutions(&self) -> [&str; 2] {
        [&self.sol1, &self.sol2]
    }
}

const SOURCE: &str = "https://yonatanbisk.com/piqa/ (valid.jsonl, valid-labels.lst)";

/// Reads `valid.jsonl` with its labels.
pub fn read(dir: &std::path::Path) -> Result<Vec<Piqa>> {
    let path = dir.join("valid.jsonl");
    let labels_path = dir.join("valid-labels.lst");
    let mut rows: Vec<Piqa> = read_jsonl(&path, "PIQA validation questions", SOURCE)?;
    let labels_text = read_text(&labels_path, "PIQA validation labels", SOURCE)?;
    let labels: Vec<&str> = labels_text.lines().collect();
    if labels.len() != rows.len() {
        return Err(malformed(
            &labels_path,
            labels.len(),
            "label",
            format!(
                "{} labels for {} questions in {}",
                labels.len(),
                rows.len(),
                path.display()
            ),
        ));
    }
    for (i, (row, l)) in rows.iter_mut().zip(labels).enumerate() {
        row.label = match l.trim() {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(malformed(
                    &labels_path,
                    i + 1,
                    "label",
                    format!("{other:?} is not 0 or 1"),
                ))
            }
        };
    }
    Ok(rows)
}

/// Loads `piqa`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn evalkit_core::Evaluation>>> {
    opts.no_fewshot(name)?;
    Ok(vec![evalkit_core::task(read(&opts.data_dir.join("piqa"))?)
        .named(name)
        .build()])
}
