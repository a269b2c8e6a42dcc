//! Metric definitions (DESIGN.md section 3): accuracies of multiple choice, corpus perplexities,
//! exact match and number extraction for generation, and the reductions (`mean` with its
//! standard error, `sum`, `none`).

use serde::{Deserialize, Serialize};

/// A reported metric: its value and, for means, the standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The value.
    pub value: f64,
    /// Standard error of a mean; `None` for corpus metrics (ratios of sums).
    pub stderr: Option<f64>,
}

/// How per-sample values are reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduce {
    /// The mean.
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: the per-sample values.
    None,
}

/// A reduced score.
#[derive(Debug, Clone, PartialEq)]
pub enum Score {
    /// `mean` or `sum`.
    Scalar(f64),
    /// `none`: one value per sample, in dataset order.
    PerSample(Vec<f64>),
}

/// Reduces per-sample values.
pub fn reduce(values: &[f64], how: Reduce) -> Score {
    match how {
        Reduce::Mean => Score::Scalar(mean(values)),
        Reduce::Sum => Score::Scalar(values.iter().sum()),
        Reduce::None => Score::PerSample(values.to_vec()),
    }
}

/// Arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Standard error of the mean as lm-eval computes it: sample standard deviation (n − 1)
/// divided by √n; `None` for fewer than two values.
///
/// ```
/// let se = evalkit_core::metrics::stderr_of_mean(&[1.0, 0.0, 1.0, 0.0]).unwrap();
/// assert!((se - (1.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
/// ```
pub fn stderr_of_mean(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let m = mean(values);
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some((var / n as f64).sqrt())
}

/// The standard error of a group's size-weighted mean from its members' standard errors and
/// sizes, as lm-eval 0.4.13 reports a group's (`pooled_sample_stderr`: the within-member
/// variances pooled, `Σ (nᵢ − 1) · seᵢ² · nᵢ / (N − k)`, over `N`): `None` where a member has
/// none (fewer than two rows) or the members leave no degree of freedom.
///
/// ```
/// use evalkit_core::metrics::{pooled_stderr, stderr_of_mean};
/// let (a, b) = ([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0]);
/// let members = [(stderr_of_mean(&a), a.len()), (stderr_of_mean(&b), b.len())];
/// // Squared deviations within each member: 0.75 and 0.667, over 7 − 2 degrees of freedom.
/// let want = ((0.75 + 2.0 / 3.0) / 5.0 / 7.0f64).sqrt();
/// assert!((pooled_stderr(&members).unwrap() - want).abs() < 1e-12);
/// // lm-eval 0.4.13's pooled_sample_stderr of the same members:
/// assert!((pooled_stderr(&members).unwrap() - 0.20118695404073914).abs() < 1e-15);
/// assert_eq!(pooled_stderr(&[(None, 1), (stderr_of_mean(&a), 4)]), None);
/// ```
pub fn pooled_stderr(members: &[(Option<f64>, usize)]) -> Option<f64> {
    let total: usize = members.iter().map(|&(_, n)| n).sum();
    if total <= members.len() {
        return None;
    }
    let mut within = 0.0;
    for &(stderr, n) in members {
        within += (n as f64 - 1.0) * stderr?.powi(2) * n as f64;
    }
    let var = within / (total - members.len()) as f64;
    Some((var / total as f64).sqrt())
}

/// A mean metric with its standard error.
pub fn mean_metric(values: &[f64]) -> Metric {
    Metric {
        value: mean(values),
        stderr: stderr_of_mean(values),
    }
}

/// Index of the largest value, the first on ties; as numpy's `argmax` (which lm-eval calls),
/// a NaN counts as larger than any number, so the first NaN wins.
///
/// ```
/// use evalkit_core::metrics::argmax;
/// assert_eq!(argmax(&[-2.0, -1.0, -1.0]), 1);
/// assert_eq!(argmax(&[f64::NEG_INFINITY, -5.0]), 1);
/// assert_eq!(argmax(&[-1.0, f64::NAN, -0.5, f64::NAN]), 1);
/// ```
pub fn argmax(values: &[f64]) -> usize {
    // Not `total_cmp`: it ranks the negative NaN that 0/0 gives on x86 below every number
    // and −0.0 below 0.0, where numpy takes any NaN first and the zeros as equal.
    if let Some(nan) = values.iter().position(|v| v.is_nan()) {
        return nan;
    }
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Python's `str.isspace` for one character (`\s` of `re` on str patterns).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Word count as `len(re.split(r"\s+", text))`: whitespace runs + 1, which counts an empty field
/// at each end where the text starts or ends with whitespace.
///
/// ```
/// use evalkit_core::metrics::count_words;
/// assert_eq!(count_words("a b  c"), 3);
/// assert_eq!(count_words(" a b\n"), 4);
/// assert_eq!(count_words(""), 1);
/// ```
pub fn count_words(text: &str) -> usize {
    let mut runs = 0;
    let mut in_space = false;
    for c in text.chars() {
        let s = is_py_space(c);
        if s && !in_space {
            runs += 1;
        }
        in_space = s;
    }
    runs + 1
}

/// Corpus perplexities of rolling loglikelihood: `token_perplexity`, `word_perplexity`,
/// `byte_perplexity`, `bits_per_byte` from summed negative log-likelihood and counts.
pub fn perplexities(nll: f64, tokens: usize, words: usize, bytes: usize) -> Vec<(&'static str, f64)> {
    vec![
        ("token_perplexity", (nll / tokens as f64).exp()),
        ("word_perplexity", (nll / words as f64).exp()),
        ("byte_perplexity", (nll / bytes as f64).exp()),
        ("bits_per_byte", nll / bytes as f64 / std::f64::consts::LN_2),
    ]
}

/// A corpus metric of the built-in kinds recomputed over sample records (the fields of
/// `samples_<evaluation>.jsonl`, DESIGN §2): a perplexity evaluation's `token_perplexity`,
/// `word_perplexity`, `byte_perplexity` and `bits_per_byte` from the records' summed
/// `loglikelihood`, `tokens`, `words` and `bytes`; a loglikelihood evaluation's `perplexity`,
/// exp(−mean of `loglikelihoods[0]`). `None` for any other metric, no records, or a record
/// lacking a field. Over one record, a row's own value of the metric.
///
/// ```
/// use evalkit_core::metrics::corpus_metric;
/// let rows = [serde_json::json!({"loglikelihood": -6.0, "tokens": 3, "words": 2, "bytes": 10}),
///             serde_json::json!({"loglikelihood": -2.0, "tokens": 1, "words": 2, "bytes": 6})];
/// let both: Vec<&serde_json::Value> = rows.iter().collect();
/// assert_eq!(corpus_metric(&both, "word_perplexity"), Some(2f64.exp()));
/// assert_eq!(corpus_metric(&both[..1], "token_perplexity"), Some(2f64.exp()));
/// assert_eq!(corpus_metric(&both, "acc"), None);
/// ```
pub fn corpus_metric(records: &[&serde_json::Value], metric: &str) -> Option<f64> {
    if records.is_empty() {
        return None;
    }
    if metric == "perplexity" {
        let lls: Vec<f64> = records
            .iter()
            .map(|r| r["loglikelihoods"][0].as_f64())
            .collect::<Option<_>>()?;
        return Some((-mean(&lls)).exp());
    }
    let sum = |field: &str| records.iter().map(|r| r[field].as_f64()).sum::<Option<f64>>();
    let count = |field: &str| records.iter().map(|r| r[field].as_u64()).sum::<Option<u64>>();
    let (ll, tokens, words, bytes) = (
        sum("loglikelihood")?,
        count("tokens")?,
        count("words")?,
        count("bytes")?,
    );
    perplexities(-ll, tokens as usize, words as usize, bytes as usize)
        .into_iter()
        .find(|(name, _)| *name == metric)
        .map(|(_, v)| v)
}

/// Exact string match.
pub fn exact_match(target: &str, prediction: &str) -> bool {
    target == prediction
}
