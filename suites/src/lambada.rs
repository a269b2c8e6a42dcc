//! LAMBADA, OpenAI version (lm-eval `lambada_openai`): the context is `text` up to its last
//! space, the continuation `" " + last word`; `acc` is greedy, `perplexity` = exp(−mean ll).

use crate::data::{jsonl_line, read_jsonl};
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
                jsonl_line(&path, i),
                "text",
                "has no space: no last word to predict",
            ));
        }
    }
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_text_without_a_last_word_names_its_file_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lambada")).unwrap();
        std::fs::write(
            dir.path().join("lambada/lambada_test.jsonl"),
            "{\"text\": \"a b\"}\n\n{\"text\": \"c d\"}\n\n{\"text\": \"word\"}\n",
        )
        .unwrap();
        let e = super::load(&crate::LoadOptions::new(dir.path().to_path_buf()), "lambada_openai")
            .err()
            .expect("no last word")
            .to_string();
        assert!(
            e.ends_with("lambada_test.jsonl:5: field `text`: has no space: no last word to predict"),
            "{e}"
        );
    }
}
