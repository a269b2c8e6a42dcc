//! WinoGrande dev (lm-eval `winogrande`) with partial scoring: the option substituted for `_`
//! ends each choice's context (`sentence[:i] + option`), and the rest of the sentence
//! (`sentence[i+1:].strip()`) is the one continuation scored after either — the derive's
//! `contexts` + `continuation` form.

use crate::data::{jsonl_line, malformed, read_jsonl};
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::kinds::{MultipleChoice, RowError};
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One WinoGrande sentence.
#[derive(Debug, Clone, Deserialize, Evaluation)]
#[eval(name = "winogrande", kind = multiple_choice, metrics(acc),
       contexts = Self::contexts, continuation = Self::rest, answer = Self::answer_index)]
pub struct Winogrande {
    /// The sentence with `_` where an option goes.
    pub sentence: String,
    /// First option.
    pub option1: String,
    /// Second option.
    pub option2: String,
    /// `"1"` or `"2"`.
    pub answer: String,
}

impl Winogrande {
    fn blank(&self) -> std::result::Result<usize, RowError> {
        self.sentence
            .find('_')
            .ok_or_else(|| RowError::new("field `sentence`: no `_` blank, where an option goes"))
    }

    /// `sentence[:i] + option` for each option.
    fn contexts(&self) -> std::result::Result<Vec<String>, RowError> {
        let head = &self.sentence[..self.blank()?];
        Ok(vec![
            format!("{head}{}", self.option1),
            format!("{head}{}", self.option2),
        ])
    }

    /// `sentence[i+1:].strip()` (empty without a blank, which `contexts` reports).
    fn rest(&self) -> String {
        self.blank()
            .map(|i| self.sentence[i + 1..].trim().to_string())
            .unwrap_or_default()
    }

    fn answer_index(&self) -> std::result::Result<usize, RowError> {
        match self.answer.as_str() {
            "1" => Ok(0),
            "2" => Ok(1),
            other => Err(RowError::new(format!(
                "field `answer`: {other:?} is not \"1\" or \"2\""
            ))),
        }
    }
}

/// Loads `winogrande` (dev), checking each row's blank and answer up front.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    opts.no_fewshot(name)?;
    let path = opts.data_dir.join("winogrande/dev.jsonl");
    let rows: Vec<Winogrande> = read_jsonl(
        &path,
        "WinoGrande dev (JSONL)",
        "https://winogrande.allenai.org (winogrande_1.1 dev.jsonl)",
    )?;
    for (i, r) in rows.iter().enumerate() {
        r.get().map_err(|e| {
            // The row's own errors name their field first (`field `answer`: ...`).
            let (field, message) =
                e.0.strip_prefix("field `")
                    .and_then(|rest| rest.split_once("`: "))
                    .unwrap_or(("(row)", e.0.as_str()));
            malformed(&path, jsonl_line(&path, i), field, message)
        })?;
    }
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_answer_names_its_file_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("winogrande")).unwrap();
        let row = |answer: &str| {
            format!(
                r#"{{"sentence": "The cup fell because _ was heavy.", "option1": "it", "option2": "the shelf", "answer": "{answer}"}}"#
            )
        };
        std::fs::write(
            dir.path().join("winogrande/dev.jsonl"),
            format!("{}\n\n{}\n\n\n{}\n", row("1"), row("2"), row("3")),
        )
        .unwrap();
        let e = super::load(&crate::LoadOptions::new(dir.path().to_path_buf()), "winogrande")
            .err()
            .expect("answer 3")
            .to_string();
        assert!(
            e.ends_with(r#"dev.jsonl:6: field `answer`: "3" is not "1" or "2""#),
            "{e}"
        );
    }

    #[test]
    fn a_sentence_without_a_blank_names_its_field_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("winogrande")).unwrap();
        std::fs::write(
            dir.path().join("winogrande/dev.jsonl"),
            r#"{"sentence": "The cup fell.", "option1": "it", "option2": "the shelf", "answer": "1"}"#,
        )
        .unwrap();
        let e = super::load(&crate::LoadOptions::new(dir.path().to_path_buf()), "winogrande")
            .err()
            .expect("no blank")
            .to_string();
        assert!(
            e.ends_with("dev.jsonl:1: field `sentence`: no `_` blank, where an option goes"),
            "{e}"
        );
    }
}
