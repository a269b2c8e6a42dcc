//! The tokenizer of a checkpoint: a wrapper over the Hugging Face `tokenizers` crate that knows
//! the special-token rules evalkit's numbers depend on (DESIGN.md section 3): `encode` applies
//! `tokenizer.json`'s own post-processor (Llama-style tokenizers add BOS, GPT-2 adds nothing);
//! the prefix token for an empty context is BOS (`bos_token` of `tokenizer_config.json`, else
//! `bos_token_id` of `config.json`), else EOS; EOS ids come from `generation_config.json`, else
//! `config.json`, else `eos_token` of `tokenizer_config.json`.

use crate::error::{Error, Result};
use crate::model::IdOrList;
use std::path::{Path, PathBuf};

/// A checkpoint's tokenizer with its BOS/EOS rules.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    bos: Option<i64>,
    eos: Vec<i64>,
    /// The prefix token's text: a string that starts with it gets no special tokens.
    prefix_text: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct TokenizerConfig {
    bos_token: Option<TokenSpec>,
    eos_token: Option<TokenSpec>,
}

/// `"<s>"` or `{"content": "<s>", ...}`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TokenSpec {
    Text(String),
    Added { content: String },
}

impl TokenSpec {
    fn text(&self) -> &str {
        match self {
            TokenSpec::Text(s) | TokenSpec::Added { content: s } => s,
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct IdsConfig {
    bos_token_id: Option<IdOrList>,
    eos_token_id: Option<IdOrList>,
}

fn read_optional<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    if path.exists() {
        crate::error::read_json(path)
    } else {
        Ok(T::default())
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` (+ the optional config files) from a checkpoint directory.
    ///
    /// ```no_run
    /// let tok = evalkit_core::Tokenizer::from_dir("models/stories260K-hf".as_ref())?;
    /// assert_eq!(tok.encode("Once")?[0], 1); // BOS added by the post-processor
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::MissingFile {
                path,
                hint: Some("the checkpoint's Hugging Face tokenizer".into()),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tcfg: TokenizerConfig = read_optional(&dir.join("tokenizer_config.json"))?;
        let cfg: IdsConfig = read_optional(&dir.join("config.json"))?;
        let gen: IdsConfig = read_optional(&dir.join("generation_config.json"))?;
        let lookup = |spec: &Option<TokenSpec>| spec.as_ref().and_then(|s| inner.token_to_id(s.text())).map(i64::from);
        let bos =
            lookup(&tcfg.bos_token).or_else(|| cfg.bos_token_id.as_ref().and_then(|b| b.to_vec().first().copied()));
        let eos = gen
            .eos_token_id
            .or(cfg.eos_token_id)
            .map(|e| e.to_vec())
            .or_else(|| lookup(&tcfg.eos_token).map(|e| vec![e]))
            .unwrap_or_default();
        Ok(Tokenizer::new(inner, path, bos, eos))
    }

    /// Wraps an already-built `tokenizers::Tokenizer`.
    pub fn from_parts(inner: tokenizers::Tokenizer, bos: Option<i64>, eos: Vec<i64>) -> Self {
        Tokenizer::new(inner, PathBuf::from("<in memory>"), bos, eos)
    }

    fn new(inner: tokenizers::Tokenizer, path: PathBuf, bos: Option<i64>, eos: Vec<i64>) -> Self {
        let prefix = bos.or_else(|| eos.first().copied());
        let prefix_text = prefix
            .and_then(|p| inner.decode(&[p as u32], false).ok())
            .filter(|t| !t.is_empty());
        Tokenizer {
            inner,
            path,
            bos,
            eos,
            prefix_text,
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Encodes with the tokenizer's own special-token rule (its post-processor), except that a
    /// text already starting with the prefix token's text (a chat template's `<s>` or
    /// `<|begin_of_text|>`) gets none (lm-eval's `tok_encode`). Only ids are computed, no
    /// offsets.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let special = !self.prefix_text.as_deref().is_some_and(|p| text.starts_with(p));
        let enc = self.inner.encode_fast(text, special).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// [`Tokenizer::encode`] of each text, the texts spread over libtorch's CPU threads
    /// ([`crate::threads::parallel`]; call it from the thread that runs the model).
    ///
    /// ```no_run
    /// let tok = evalkit_core::Tokenizer::from_dir("models/stories260K-hf".as_ref())?;
    /// let texts = ["Once upon a time", "there was"].map(String::from);
    /// assert_eq!(tok.encode_all(&texts)?, vec![tok.encode("Once upon a time")?, tok.encode("there was")?]);
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn encode_all(&self, texts: &[String]) -> Result<Vec<Vec<i64>>> {
        let mut out: Vec<Option<Result<Vec<i64>>>> = texts.iter().map(|_| None).collect();
        let threads = tch::get_num_threads().max(1) as usize;
        crate::threads::parallel_parts(out.iter_mut().collect(), threads, |i, slot| {
            **slot = Some(self.encode(&texts[i]));
        });
        out.into_iter()
            .map(|slot| slot.expect("parallel_parts runs every part"))
            .collect()
    }

    /// Encodes without special tokens (ids only).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Decodes ids to text, dropping special tokens when `skip_special`.
    pub fn decode(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner.decode(&ids, skip_special).map_err(|e| self.err(e))
    }

    /// The token an empty context becomes: BOS, else the first EOS.
    pub fn prefix_token(&self) -> Result<i64> {
        self.bos
            .or_else(|| self.eos.first().copied())
            .ok_or_else(|| self.err("no BOS or EOS token: cannot form a prefix for an empty context"))
    }

    /// EOS ids (generation stops at any of them).
    pub fn eos_ids(&self) -> &[i64] {
        &self.eos
    }

    /// Number of ids the tokenizer can produce (vocabulary plus added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Fails unless every id the tokenizer can produce, and the id put before whole texts (BOS,
    /// else the first EOS), are rows of the model's output (another EOS id outside them stops
    /// nothing, but is never fed to the model).
    pub fn check_fits(&self, model_vocab: usize) -> Result<()> {
        let prefix = self.prefix_token().ok();
        if let Some(id) = prefix.filter(|&id| usize::try_from(id).map_or(true, |i| i >= model_vocab)) {
            let what = match self.bos {
                Some(_) => "BOS",
                None => "EOS (put before texts for want of a BOS)",
            };
            return Err(self.err(format!(
                "its {what} id {id} (tokenizer_config.json, generation_config.json or config.json) is outside \
                 the model's vocabulary of {model_vocab} entries"
            )));
        }
        let max_id = self
            .inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        if max_id > model_vocab {
            return Err(self.err(format!(
                "produces ids up to {} but the model's vocabulary has {model_vocab} entries: tokenizer and model do not match",
                max_id - 1
            )));
        }
        Ok(())
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
