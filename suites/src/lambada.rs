//! LAMBADA, OpenAI version (lm-eval `lambada_openai`): the context is `text` up to its last
//! space, the continuation `" " + last word`; `acc` is greedy, `perplexity` = exp(−mean ll).

use crate::data::read_jsonl;
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One LAMBADA passage.
#[derive(Debug, Clone, Evaluation, Deserialize)]
#[eval(name = "lambada_openai", kind = loglikelihood, context = Self::context, continuation = Self::last_word)]
pub struct Lambada {
    /// The passage; its last word is the target.
    pub text: String,
}

impl Lambada {
    fn split(&self) -> (&str, &str) {
        self.text.rsplit_once(' ').unwrap_or(("", &self.text))
    }
    fn context(&self) -> &str {
        self.split().0
    }
    fn last_word(&self) -> String {
        format!(" {}", self.split().1)
    }
}

/// Loads `lambada_openai`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    opts.no_fewshot(name)?;
    let path = opts.data_dir.join("lambada/lambada_test.jsonl");
    let rows: Vec<Lambada> = read_jsonl(
        &path,
        "LAMBADA (OpenAI) test",
        "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl",
    )?;
    for (i, r) in rows.iter().enumerate() {
        if !r.text.contains(' ') {
            return Err(crate::data::malformed(
                &path,
                i + 1,
                "text",
                "has no space: no last word to predict",
            ));
        }
    }
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}
