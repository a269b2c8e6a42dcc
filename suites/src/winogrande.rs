//! WinoGrande dev (lm-eval `winogrande`) with partial scoring: the option substituted for `_`
//! ends each choice's context (`sentence[:i] + option`), and the rest of the sentence
//! (`sentence[i+1:].strip()`) is the one continuation scored after either. The derive has no
//! partial-scoring form, so this row implements the kind trait by hand.

use crate::data::{malformed, read_jsonl};
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::fewshot::FewShot;
use evalkit_core::kinds::{McItem, MultipleChoice, MultipleChoiceTask, RowError, TaskKind};
use evalkit_core::{Benchmark, Evaluation};
use serde::Deserialize;

/// One WinoGrande sentence.
#[derive(Debug, Clone, Deserialize)]
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
    fn blank(&self) -> Result<usize, RowError> {
        self.sentence
            .find('_')
            .ok_or_else(|| RowError::new("field `sentence` has no `_` blank"))
    }
}

impl MultipleChoice for Winogrande {
    fn get(&self) -> Result<McItem, RowError> {
        let i = self.blank()?;
        let head = &self.sentence[..i];
        let rest = self.sentence[i + 1..].trim();
        let answer = match self.answer.as_str() {
            "1" => 0,
            "2" => 1,
            other => {
                return Err(RowError::new(format!(
                    "field `answer`: {other:?} is not \"1\" or \"2\""
                )))
            }
        };
        Ok(McItem::partial(
            &[format!("{head}{}", self.option1), format!("{head}{}", self.option2)],
            rest,
            answer,
        ))
    }
}

impl Benchmark for Winogrande {
    const NAME: &'static str = "winogrande";
    const KIND: TaskKind = TaskKind::MultipleChoice;
    const METRICS: &'static [&'static str] = &["acc"];
    fn example(&self) -> Result<(String, String), RowError> {
        let item = self.get()?;
        Ok((item.contexts[item.answer].clone(), item.norm_texts[item.answer].clone()))
    }
    fn evaluation(name: String, rows: Vec<Self>, fewshot: Option<FewShot>) -> Box<dyn Evaluation> {
        let mut t = MultipleChoiceTask::new(name, rows);
        t.fewshot = fewshot;
        Box::new(t)
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
        r.get()
            .map_err(|e| malformed(&path, i + 1, e.0.split('`').nth(1).unwrap_or("sentence"), e.0.clone()))?;
    }
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}
