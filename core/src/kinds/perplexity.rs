//! Perplexity of whole texts (the seed's PerplexityEvaluation with its boundary defect fixed,
//! plus bits per byte): rolling loglikelihood in disjoint windows of the model's max length,
//! the first window preceded by the prefix token (lm-eval's `get_rolling_token_windows` with
//! context_len 1, then `make_disjoint_window`). Corpus metrics are ratios of sums over all
//! texts: `token_perplexity`, `word_perplexity`, `byte_perplexity`, `bits_per_byte`.

use super::execute::score_requests;
use super::prompt::Prompt;
use super::task::{Finished, Kind, RowFailure, Task};
use super::{Env, RowError, TaskKind};
use crate::error::Result;
use crate::fingerprint::Fnv;
use crate::metrics::{count_words, perplexities, Metric};
use crate::request::{ContinuationScore, ScoreRequest};
use crate::schedule::{BatchSettings, ExecStats};
use serde_json::json;
use std::collections::BTreeMap;

/// The text of a row, and the text its words and bytes are counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PplItem {
    /// The text scored.
    pub text: String,
    /// Counted for word/byte perplexity (WikiText: the page before detokenizing); `None`:
    /// the scored text.
    pub count_text: Option<String>,
}

/// A dataset row whose text is scored by rolling perplexity.
pub trait Perplexity {
    /// The item of this row.
    fn get(&self) -> std::result::Result<PplItem, RowError>;
}

/// The disjoint rolling windows of `tokens` for a model of `max_len`, as score requests:
/// the first scores `t[0..m]` after `[prefix]`; each next one scores the following
/// `k = min(n − p, max_len)` tokens conditioned on the `max_len − k + 1` tokens before them.
///
/// ```
/// use evalkit_core::kinds::perplexity::rolling_windows;
/// let w = rolling_windows(&[10, 11, 12, 13, 14], 1, 2);
/// assert_eq!(w[0].context, vec![1]);
/// assert_eq!(w[0].continuations[0], vec![10, 11]);
/// assert_eq!(w[1].context, vec![11]);            // a full window is conditioned on one token
/// assert_eq!(w[1].continuations[0], vec![12, 13]);
/// assert_eq!(w[2].context, vec![12, 13]);        // the final partial window on L − k + 1
/// assert_eq!(w[2].continuations[0], vec![14]);
/// ```
pub fn rolling_windows(tokens: &[i64], prefix: i64, max_len: usize) -> Vec<ScoreRequest> {
    let n = tokens.len();
    if n == 0 || max_len == 0 {
        return vec![];
    }
    let m = n.min(max_len);
    let mut out = vec![ScoreRequest {
        context: vec![prefix],
        continuations: vec![tokens[..m].to_vec()],
    }];
    let mut p = m;
    while p < n {
        let k = (n - p).min(max_len);
        let e = p + k;
        out.push(ScoreRequest {
            context: tokens[e - max_len - 1..e - k].to_vec(),
            continuations: vec![tokens[e - k..e].to_vec()],
        });
        p = e;
    }
    out
}

/// A perplexity evaluation over rows of `T`.
pub type PerplexityTask<T> = Task<T, PerplexityKind>;

/// The perplexity kind (see [`Kind`]): the prefix token and max length every row's windows
/// use, and the corpus sums the metrics are ratios of.
#[derive(Debug)]
pub struct PerplexityKind {
    prefix: i64,
    max_len: usize,
    nll: f64,
    tokens: usize,
    words: usize,
    bytes: usize,
}

/// What a text keeps between lowering and finishing.
#[derive(Debug)]
pub struct PplRow {
    text: String,
    ids: Vec<i64>,
    first: usize,
    windows: usize,
    words: usize,
    bytes: usize,
}

impl<T: Perplexity> Kind<T> for PerplexityKind {
    const KIND: TaskKind = TaskKind::Perplexity;
    type Request = ScoreRequest;
    type Response = Vec<ContinuationScore>;
    type Lowered = PplRow;

    fn begin(_: &str, env: &Env<'_>) -> Result<Self> {
        Ok(PerplexityKind {
            prefix: env.tokenizer.prefix_token()?,
            max_len: env.model.max_len(),
            nll: 0.0,
            tokens: 0,
            words: 0,
            bytes: 0,
        })
    }

    fn lower(
        &mut self,
        _: usize,
        row: &T,
        _prompt: &Prompt<'_>,
        env: &Env<'_>,
        fp: &mut Fnv,
        requests: &mut Vec<ScoreRequest>,
    ) -> std::result::Result<PplRow, RowFailure> {
        let item = row.get()?;
        *fp = fp.str(&item.text).str(item.count_text.as_deref().unwrap_or(""));
        if item.text.is_empty() {
            return Err(RowError::new("the text is empty").into());
        }
        let ids = env.tokenizer.encode(&item.text)?;
        let counted = item.count_text.as_deref().unwrap_or(&item.text);
        let windows = rolling_windows(&ids, self.prefix, self.max_len);
        let low = PplRow {
            first: requests.len(),
            windows: windows.len(),
            words: count_words(counted),
            bytes: counted.len(),
            text: item.text,
            ids,
        };
        requests.extend(windows);
        Ok(low)
    }

    fn execute(
        &self,
        env: &Env<'_>,
        name: &str,
        requests: &[ScoreRequest],
        batch: BatchSettings,
    ) -> Result<(Vec<Self::Response>, ExecStats)> {
        score_requests(env, name, requests, batch, false)
    }

    fn finish(
        &mut self,
        index: usize,
        _: &T,
        low: PplRow,
        _: &[ScoreRequest],
        responses: &[Self::Response],
        env: &Env<'_>,
    ) -> std::result::Result<Finished, RowFailure> {
        let ll: f64 = responses[low.first..low.first + low.windows]
            .iter()
            .map(|s| s[0].loglikelihood())
            .sum();
        let tokens = low.ids.len();
        self.nll -= ll;
        self.tokens += tokens;
        self.words += low.words;
        self.bytes += low.bytes;
        let ppl = (-ll / tokens as f64).exp();
        let record = json!({
            "index": index,
            "text": low.text,
            "loglikelihood": ll,
            "tokens": tokens,
            "words": low.words,
            "bytes": low.bytes,
            "metrics": {"token_perplexity": ppl},
        });
        let intermediates = if env.options.return_intermediates {
            let row: Vec<i64> = std::iter::once(self.prefix).chain(low.ids.iter().copied()).collect();
            let mask = (0..row.len()).map(|p| p > 0).collect();
            vec![(row, mask)]
        } else {
            vec![]
        };
        Ok(Finished {
            values: vec![("loglikelihood".into(), ll), ("token_perplexity".into(), ppl)],
            record,
            intermediates,
            truncated: false,
        })
    }

    /// Corpus metrics: ratios of the sums over every text (no standard error).
    fn aggregate(&self, _: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Metric> {
        perplexities(self.nll, self.tokens, self.words, self.bytes)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Metric { value: v, stderr: None }))
            .collect()
    }
}
