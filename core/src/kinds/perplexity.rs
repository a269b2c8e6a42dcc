//! Perplexity of whole texts (the seed's PerplexityEvaluation with its boundary defect fixed,
//! plus bits per byte): rolling loglikelihood in disjoint windows of the model's max length,
//! the first window preceded by the prefix token (lm-eval's `get_rolling_token_windows` with
//! context_len 1, then `make_disjoint_window`). Corpus metrics are ratios of sums over all
//! texts: `token_perplexity`, `word_perplexity`, `byte_perplexity`, `bits_per_byte`.

use super::{
    data_fingerprint, pad_intermediates, prepare, row_error, score_requests, Env, Outcome, RowError, TaskKind,
};
use crate::error::Result;
use crate::metrics::{count_words, perplexities, Metric};
use crate::request::ScoreRequest;
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

task_type!(
    /// A perplexity evaluation over rows of `T`.
    PerplexityTask, Perplexity, TaskKind::Perplexity
);

impl<T: Perplexity> PerplexityTask<T> {
    fn run(&self, env: &Env<'_>) -> Result<Outcome> {
        let name = &self.name;
        let prep = prepare(name, self.rows.len(), &self.defaults, env)?;
        let prefix = env.tokenizer.prefix_token()?;
        let max_len = env.model.max_len();
        let mut reqs = vec![];
        let mut spans = vec![]; // (first request, count, tokens, words, bytes)
        let mut texts = vec![];
        let mut fingerprint = data_fingerprint(name, TaskKind::Perplexity);
        for &i in &prep.rows {
            let item = self.rows[i].get().map_err(|e| row_error(name, i, e))?;
            fingerprint = fingerprint
                .row(i)
                .str(&item.text)
                .str(item.count_text.as_deref().unwrap_or(""));
            if item.text.is_empty() {
                return Err(row_error(name, i, RowError::new("the text is empty")));
            }
            let tokens = env.tokenizer.encode(&item.text)?;
            let counted = item.count_text.as_deref().unwrap_or(&item.text);
            let windows = rolling_windows(&tokens, prefix, max_len);
            spans.push((
                reqs.len(),
                windows.len(),
                tokens.len(),
                count_words(counted),
                counted.len(),
            ));
            reqs.extend(windows);
            texts.push((item.text, tokens));
        }
        let (scores, stats) = score_requests(env, name, &reqs, prep.batch, false)?;
        let (mut nll, mut ntok, mut nwords, mut nbytes) = (0.0, 0usize, 0usize, 0usize);
        let mut per_sample: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut samples = vec![];
        let mut inter = vec![];
        for ((&index, &(first, count, tokens, words, bytes)), (text, ids)) in prep.rows.iter().zip(&spans).zip(&texts) {
            let ll: f64 = scores[first..first + count].iter().map(|s| s[0].loglikelihood()).sum();
            nll -= ll;
            ntok += tokens;
            nwords += words;
            nbytes += bytes;
            per_sample.entry("loglikelihood".into()).or_default().push(ll);
            per_sample
                .entry("token_perplexity".into())
                .or_default()
                .push((-ll / tokens as f64).exp());
            samples.push(json!({
                "index": index,
                "text": text,
                "loglikelihood": ll,
                "tokens": tokens,
                "words": words,
                "bytes": bytes,
                "metrics": {"token_perplexity": (-ll / tokens as f64).exp()},
            }));
            if env.options.return_intermediates {
                let row: Vec<i64> = std::iter::once(prefix).chain(ids.iter().copied()).collect();
                let mask = (0..row.len()).map(|p| p > 0).collect();
                inter.push((row, mask));
            }
        }
        let metrics = perplexities(nll, ntok, nwords, nbytes)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Metric { value: v, stderr: None }))
            .collect();
        Ok(Outcome {
            name: name.clone(),
            kind: TaskKind::Perplexity,
            n: prep.rows.len(),
            truncated: 0,
            metrics,
            per_sample,
            samples,
            intermediates: env.options.return_intermediates.then(|| pad_intermediates(inter)),
            notes: BTreeMap::new(),
            stats,
            fingerprint: fingerprint.finish(),
            wall_seconds: 0.0,
        })
    }
}
