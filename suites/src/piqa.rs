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
    let mut lines: Vec<&str> = labels_text.lines().collect();
    // Blank lines at the end are no labels; one in the middle is refused (the labels after it
    // would be off by one), naming its line.
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let labels = lines
        .iter()
        .enumerate()
        .map(|(i, l)| match l.trim() {
            "0" => Ok(0),
            "1" => Ok(1),
            "" => Err(malformed(
                &labels_path,
                i + 1,
                "label",
                "a blank line among the labels: each line holds the label (0 or 1) of the question on \
                 the same row of valid.jsonl",
            )),
            other => Err(malformed(
                &labels_path,
                i + 1,
                "label",
                format!("{other:?} is not 0 or 1"),
            )),
        })
        .collect::<Result<Vec<usize>>>()?;
    if labels.len() != rows.len() {
        return Err(malformed(
            &labels_path,
            labels.len().max(1),
            "label",
            format!(
                "{} labels for {} questions in {}",
                labels.len(),
                rows.len(),
                path.display()
            ),
        ));
    }
    for (row, label) in rows.iter_mut().zip(labels) {
        row.label = label;
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

#[cfg(test)]
mod tests {
    /// Reads two questions with the labels file `labels`.
    fn read(labels: &str) -> crate::Result<Vec<super::Piqa>> {
        let dir = tempfile::tempdir().unwrap();
        let row = r#"{"goal": "g", "sol1": "a", "sol2": "b"}"#;
        std::fs::write(dir.path().join("valid.jsonl"), format!("{row}\n{row}\n")).unwrap();
        std::fs::write(dir.path().join("valid-labels.lst"), labels).unwrap();
        super::read(dir.path())
    }

    #[test]
    fn blank_lines_end_the_labels_but_do_not_split_them() {
        let rows = read("1\n0\n\n  \n").unwrap();
        assert_eq!(rows.iter().map(|r| r.label).collect::<Vec<_>>(), [1, 0]);
        let e = read("1\n\n0\n").unwrap_err().to_string();
        assert!(
            e.contains("valid-labels.lst:2: field `label`: a blank line among the labels"),
            "{e}"
        );
        let e = read("1\n2\n").unwrap_err().to_string();
        assert!(
            e.contains(r#"valid-labels.lst:2: field `label`: "2" is not 0 or 1"#),
            "{e}"
        );
        let e = read("1\n").unwrap_err().to_string();
        assert!(
            e.contains("valid-labels.lst:1: field `label`: 1 labels for 2 questions"),
            "{e}"
        );
    }
}
