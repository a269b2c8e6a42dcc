//! ARC-Easy and ARC-Challenge (lm-eval `arc_easy`, `arc_challenge`): `Question: {stem}\nAnswer:`
//! with the choice texts; the answer is `answerKey`'s position among the labels (which are
//! `A..D` or `1..4`). Few-shot examples come from the Dev split.

use crate::data::{jsonl_line, malformed, read_jsonl};
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One ARC question.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "arc_easy", kind = multiple_choice, metrics(acc, acc_norm))]
pub struct Arc {
    /// The question stem.
    #[eval(context = "Question: {question}\nAnswer:")]
    pub question: String,
    /// Choice texts.
    #[eval(choices)]
    pub choices: Vec<String>,
    /// Index of the right choice.
    #[eval(answer)]
    pub answer: usize,
}

#[derive(Deserialize)]
struct RawChoice {
    text: String,
    label: String,
}
#[derive(Deserialize)]
struct RawQuestion {
    stem: String,
    choices: Vec<RawChoice>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    question: RawQuestion,
    answer_key: String,
}

/// Reads an ARC JSONL file.
pub fn read(path: &std::path::Path) -> Result<Vec<Arc>> {
    let raw: Vec<Raw> = read_jsonl(
        path,
        "an ARC split (JSONL)",
        "https://allenai.org/data/arc (ARC-V1-Feb2018)",
    )?;
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let answer = r
                .question
                .choices
                .iter()
                .position(|c| c.label == r.answer_key)
                .ok_or_else(|| {
                    malformed(
                        path,
                        jsonl_line(path, i),
                        "answerKey",
                        format!(
                            "{:?} is none of the labels {:?}",
                            r.answer_key,
                            r.question.choices.iter().map(|c| &c.label).collect::<Vec<_>>()
                        ),
                    )
                })?;
            Ok(Arc {
                question: r.question.stem,
                choices: r.question.choices.into_iter().map(|c| c.text).collect(),
                answer,
            })
        })
        .collect()
}

/// Loads `arc_easy` or `arc_challenge`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn evalkit_core::Evaluation>>> {
    let dir = if name == "arc_easy" {
        "ARC-Easy"
    } else {
        "ARC-Challenge"
    };
    let base = opts.data_dir.join("arc").join(dir);
    let rows = read(&base.join(format!("{dir}-Test.jsonl")))?;
    let k = opts.num_fewshot.unwrap_or(0);
    let mut t = evalkit_core::task(rows).named(name);
    if k > 0 {
        let pool = read(&base.join(format!("{dir}-Dev.jsonl")))?;
        t = t
            .fewshot(&pool, k, opts.sampler(), "")
            .map_err(|e| crate::Error::Setting {
                task: name.into(),
                message: e.to_string(),
            })?;
    }
    Ok(vec![t.build()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_error_names_the_file_line_past_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ARC-Easy-Test.jsonl");
        let row = |key: &str| {
            format!(
                r#"{{"question": {{"stem": "s", "choices": [{{"text": "a", "label": "A"}}, {{"text": "b", "label": "B"}}]}}, "answerKey": "{key}"}}"#
            )
        };
        std::fs::write(&path, format!("{}\n\n\n{}\n{}\n", row("A"), row("B"), row("Z"))).unwrap();
        let e = super::read(&path).unwrap_err().to_string();
        assert!(
            e.contains(r#"ARC-Easy-Test.jsonl:5: field `answerKey`: "Z" is none of the labels ["A", "B"]"#),
            "{e}"
        );
    }
}
