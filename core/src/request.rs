//! Token-level requests that every evaluation kind lowers to, and the string → token rules of
//! DESIGN.md section 3 that produce them ([`encode_pair`]).
//!
//! * [`ScoreRequest`]: one context and one or more continuations scored after it (multiple
//!   choice shares the context; loglikelihood, perplexity windows and next-token rows have one).
//! * [`GenerateRequest`]: a prompt to continue.

use crate::error::Result;
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

/// A context and the continuations scored after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    /// Context token ids (never empty: an empty context is the prefix token).
    pub context: Vec<i64>,
    /// Continuations, each scored token by token after the context.
    pub continuations: Vec<Vec<i64>>,
}

impl ScoreRequest {
    /// Length of the longest input this request forms (context + continuation − 1).
    pub fn len(&self) -> usize {
        self.context.len() + self.continuations.iter().map(Vec::len).max().unwrap_or(1) - 1
    }

    /// True when there is nothing to score.
    pub fn is_empty(&self) -> bool {
        self.continuations.iter().all(Vec::is_empty)
    }
}

/// The score of one continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationScore {
    /// Log-prob of each continuation token (float32 log-softmax).
    pub token_logprobs: Vec<f32>,
    /// The model's argmax at each continuation position.
    pub argmax: Vec<i64>,
    /// Whether the context was left-truncated to fit the model.
    pub truncated: bool,
}

impl ContinuationScore {
    /// Sum of the token log-probs (in f64).
    pub fn loglikelihood(&self) -> f64 {
        self.token_logprobs.iter().map(|&x| f64::from(x)).sum()
    }

    /// True when every continuation token was the argmax.
    pub fn is_greedy(&self, continuation: &[i64]) -> bool {
        self.argmax.iter().zip(continuation).all(|(a, b)| a == b)
    }
}

/// A prompt to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Prompt token ids (already left-truncated to the prompt budget).
    pub prompt: Vec<i64>,
    /// Seed of this sample's RNG (used when sampling).
    pub seed: u64,
}

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// Argmax (ties: lowest id).
    Greedy,
    /// Temperature, then nucleus: keep the smallest set of tokens whose probability reaches
    /// `top_p`, including the token that crosses it.
    Nucleus {
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Nucleus mass in (0, 1].
        top_p: f64,
    },
}

impl Sampling {
    /// True where the choice is the argmax: greedy, or a temperature of 0 or below.
    ///
    /// ```
    /// use evalkit_core::request::Sampling;
    /// assert!(Sampling::Nucleus { temperature: 0.0, top_p: 1.0 }.is_greedy());
    /// assert!(!Sampling::Nucleus { temperature: 0.7, top_p: 1.0 }.is_greedy());
    /// ```
    pub fn is_greedy(self) -> bool {
        match self {
            Sampling::Greedy => true,
            Sampling::Nucleus { temperature, .. } => temperature <= 0.0,
        }
    }
}

/// What generation needs beyond the prompts.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// Generation stops at the first of these strings (excluded from the text).
    pub stop: Vec<String>,
    /// Token choice.
    pub sampling: Sampling,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated ids, up to (excluding) EOS; may extend past a stop string.
    pub tokens: Vec<i64>,
    /// Generated text, cut before the first stop string.
    pub text: String,
    /// Why it ended: `eos`, `stop`, or `length`.
    pub finish: String,
}

/// Lowers a (context, continuation) string pair to token ids, as lm-eval does: trailing
/// whitespace of the context moves to the front of the continuation; the continuation's ids
/// are `enc(context + continuation)[len(enc(context))..]`; `enc` applies the tokenizer's own
/// special-token rule. An empty context becomes the prefix token, and the continuation is
/// encoded alone without special tokens (if it starts with the prefix token itself, that
/// token is the context).
pub fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str) -> Result<(Vec<i64>, Vec<i64>)> {
    let mut pairs = encode_pairs(tok, &[(context, continuation)])?;
    Ok(pairs.pop().expect("one pair in, one out"))
}

/// [`encode_pair`] of each `(context, continuation)`: each distinct non-empty context encoded
/// once, and its texts and those of its pairs in one [`Tokenizer::encode_all`] (over
/// libtorch's CPU threads); a pair with an empty context encodes its continuation alone.
///
/// ```no_run
/// use evalkit_core::request::{encode_pair, encode_pairs};
/// let tok = evalkit_core::Tokenizer::from_dir("models/stories260K-hf".as_ref())?;
/// let q = "Question: 2 + 2 =";
/// let pairs = encode_pairs(&tok, &[(q, " 4"), (q, " 5")])?;
/// assert_eq!(pairs, vec![encode_pair(&tok, q, " 4")?, encode_pair(&tok, q, " 5")?]);
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn encode_pairs(tok: &Tokenizer, pairs: &[(&str, &str)]) -> Result<Vec<(Vec<i64>, Vec<i64>)>> {
    // The texts to encode: each distinct non-empty context once (trailing whitespace trimmed),
    // then the whole text of each pair after one, that whitespace before the continuation.
    let mut contexts: Vec<&str> = vec![];
    let context_of: Vec<Option<usize>> = pairs
        .iter()
        .map(|&(context, _)| {
            (!context.is_empty()).then(|| {
                contexts.iter().position(|c| *c == context).unwrap_or_else(|| {
                    contexts.push(context);
                    contexts.len() - 1
                })
            })
        })
        .collect();
    let mut texts: Vec<String> = contexts.iter().map(|c| c.trim_end().to_string()).collect();
    for &(context, continuation) in pairs.iter().filter(|(c, _)| !c.is_empty()) {
        let trimmed = context.trim_end();
        texts.push(format!("{trimmed}{}{continuation}", &context[trimmed.len()..]));
    }
    let mut ids = tok.encode_all(&texts)?.into_iter();
    let context_ids: Vec<Vec<i64>> = ids.by_ref().take(contexts.len()).collect();
    let mut out = Vec::with_capacity(pairs.len());
    for (&(_, continuation), at) in pairs.iter().zip(context_of) {
        let Some(at) = at else {
            // lm-eval's `loglikelihood`: the continuation without special tokens after the
            // prefix token, unless it already starts with that token.
            let cont = tok.encode_plain(continuation)?;
            let prefix = tok.prefix_token()?;
            out.push(match cont.first() {
                Some(&first) if first == prefix => (cont[..1].to_vec(), cont[1..].to_vec()),
                _ => (vec![prefix], cont),
            });
            continue;
        };
        let ctx = &context_ids[at];
        let whole = ids.next().expect("a whole text per pair with a context");
        let cont = whole.get(ctx.len()..).map(<[i64]>::to_vec).unwrap_or_default();
        // A whitespace-only context leaves nothing to condition on: use the prefix token.
        let ctx = if ctx.is_empty() {
            vec![tok.prefix_token()?]
        } else {
            ctx.clone()
        };
        out.push((ctx, cont));
    }
    Ok(out)
}
