//! BoolQ dev (lm-eval `boolq`): `{passage}\nQuestion: {question}?\nAnswer:` with choices
//! `["no", "yes"]`; the answer is 1 for `true`.

use crate::data::read_jsonl;
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One BoolQ question.
#[derive(Debug, Clone, Evaluation, Deserialize)]
#[eval(name = "boolq", kind = multiple_choice, metrics(acc), choices = Self::no_yes, context = "{passage}\nQuestion: {question}?\nAnswer:")]
pub struct Boolq {
    /// The question.
    pub question: String,
    /// The passage.
    pub passage: String,
    /// True for "yes".
    #[eval(answer)]
    pub answer: bool,
}

impl Boolq {
    fn no_yes(&self) -> [&'static str; 2] {
        ["no", "yes"]
    }
}

/// Loads `boolq`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    opts.no_fewshot(name)?;
    if let Some((src, hub)) = opts.hub_source(name)? {
        let rows: Vec<Boolq> = crate::hub::load_rows(&src, hub)?;
        return Ok(vec![evalkit_core::task(rows).named(name).build()]);
    }
    let rows: Vec<Boolq> = read_jsonl(
        &opts.data_dir.join("boolq/dev.jsonl"),
        "BoolQ dev (JSONL)",
        "https://github.com/google-research-datasets/boolean-questions (dev.jsonl)",
    )?;
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}
