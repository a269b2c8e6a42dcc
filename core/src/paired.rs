//! Paired comparison of two runs on the rows both evaluated: the difference of the means with a
//! seeded paired bootstrap interval, and, for 0/1 metrics such as accuracy, McNemar's exact
//! test. `evalkit compare` reports these per metric so a difference can be told from noise.

use rand::{Rng, SeedableRng};

/// One metric compared row by row between run A and run B.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairedDiff {
    /// Rows compared.
    pub n: usize,
    /// Mean of A.
    pub a: f64,
    /// Mean of B.
    pub b: f64,
    /// `b − a`.
    pub diff: f64,
    /// 2.5th percentile of the bootstrap distribution of `b − a`.
    pub lo: f64,
    /// 97.5th percentile.
    pub hi: f64,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
    /// The RNG seed of the resampling.
    pub seed: u64,
    /// McNemar's exact two-sided p-value, when every value of both runs is 0 or 1.
    pub mcnemar_p: Option<f64>,
    /// Rows right in A only, and right in B only (McNemar's discordant pairs).
    pub discordant: Option<(usize, usize)>,
}

impl PairedDiff {
    /// True when the difference is significant at 5%: for 0/1 values, McNemar's exact test
    /// (p < 0.05; the percentile bootstrap of few discordant pairs is too narrow, and marked
    /// a difference of 4 to 0 of 20 rows whose p is 0.125), else the 95% interval excludes 0.
    pub fn significant(&self) -> bool {
        match self.mcnemar_p {
            Some(p) => p < 0.05,
            None => self.lo > 0.0 || self.hi < 0.0,
        }
    }
}

/// Compares per-row values `a[i]` and `b[i]` (the same rows, in the same order): `resamples`
/// bootstrap means of the row differences, each over `n` rows drawn with replacement from an
/// RNG seeded with `seed`; the interval's ends are percentiles with linear interpolation (as
/// numpy's default). `None` when there are no rows or the lengths differ.
///
/// ```
/// use evalkit_core::paired::compare;
/// let a = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0];
/// let d = compare(&a, &a, 1000, 7).unwrap();
/// assert_eq!((d.diff, d.lo, d.hi, d.mcnemar_p), (0.0, 0.0, 0.0, Some(1.0)));
/// assert!(!d.significant());
/// // 4 rows right in B alone of 20: the bootstrap interval excludes 0, McNemar's p is 0.125.
/// let b = [[1.0; 4].as_slice(), &[0.0; 16]].concat();
/// let d = compare(&[0.0; 20], &b, 1000, 7).unwrap();
/// assert!(d.lo > 0.0 && d.mcnemar_p == Some(0.125) && !d.significant());
/// ```
pub fn compare(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<PairedDiff> {
    let n = a.len();
    if n == 0 || b.len() != n {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let binary = |v: &[f64]| v.iter().all(|&x| x == 0.0 || x == 1.0);
    let (mcnemar_p, discordant) = if binary(a) && binary(b) {
        let only_a = a.iter().zip(b).filter(|&(&x, &y)| x == 1.0 && y == 0.0).count();
        let only_b = a.iter().zip(b).filter(|&(&x, &y)| x == 0.0 && y == 1.0).count();
        (Some(mcnemar_exact(only_a, only_b)), Some((only_a, only_b)))
    } else {
        (None, None)
    };
    Some(PairedDiff {
        n,
        a: mean(a),
        b: mean(b),
        diff: mean(&d),
        lo: percentile(&means, 0.025),
        hi: percentile(&means, 0.975),
        resamples: means.len(),
        seed,
        mcnemar_p,
        discordant,
    })
}

/// The `q`-quantile of sorted values, interpolating linearly between ranks.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// McNemar's exact test: with `b` and `c` discordant pairs, the two-sided binomial p-value
/// `min(1, 2 · P(X ≤ min(b, c)))` for `X ~ Binomial(b + c, 1/2)` (scipy's
/// `binomtest(min(b, c), b + c, 0.5)`), summed in log space so large counts do not underflow.
///
/// ```
/// use evalkit_core::paired::mcnemar_exact;
/// assert_eq!(mcnemar_exact(3, 7), 0.34375);
/// assert_eq!(mcnemar_exact(0, 0), 1.0);
/// ```
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let m = b + c;
    if m == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln2 = std::f64::consts::LN_2;
    // log C(m, j) − m·ln 2 for j = 0..=k, then log-sum-exp.
    let mut log_terms = Vec::with_capacity(k + 1);
    let mut log_c = 0.0;
    for j in 0..=k {
        if j > 0 {
            log_c += ((m - j + 1) as f64).ln() - (j as f64).ln();
        }
        log_terms.push(log_c - m as f64 * ln2);
    }
    let top = log_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let cdf = top.exp() * log_terms.iter().map(|t| (t - top).exp()).sum::<f64>();
    (2.0 * cdf).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_scipy_binomtest() {
        // scipy 1.x: binomtest(min(b, c), b + c, 0.5).pvalue
        let cases = [
            (3, 7, 0.34375),
            (0, 5, 0.0625),
            (7, 13, 0.263_175_964_355_468_75),
            (40, 60, 0.056_887_933_640_980_89),
            (150, 250, 6.531_819_212_838_477e-7),
            (0, 1, 1.0),
            (12, 0, 0.000_488_281_25),
        ];
        for (b, c, p) in cases {
            let got = mcnemar_exact(b, c);
            assert!(
                (got - p).abs() <= 1e-12 * p.max(1e-300) + 1e-15,
                "({b}, {c}): {got} vs {p}"
            );
        }
    }

    #[test]
    fn bootstrap_interval_brackets_the_difference_and_is_repeatable() {
        // A constant shift: every resample has the same mean difference.
        let a: Vec<f64> = (0..50).map(|i| f64::from(i % 7)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 0.25).collect();
        let d = compare(&a, &b, 500, 1).unwrap();
        assert!((d.lo - 0.25).abs() < 1e-12 && (d.hi - 0.25).abs() < 1e-12 && d.significant());
        assert_eq!(d.mcnemar_p, None, "not 0/1 values");
        // Accuracies: the interval is close to the normal approximation diff ± 1.96·se.
        let a: Vec<f64> = (0..400).map(|i| f64::from(u8::from(i % 2 == 0))).collect();
        let b: Vec<f64> = (0..400)
            .map(|i| f64::from(u8::from(i % 2 == 0 || i % 5 == 1)))
            .collect();
        let x = compare(&a, &b, 4000, 1234).unwrap();
        let dif: Vec<f64> = a.iter().zip(&b).map(|(p, q)| q - p).collect();
        let se = crate::metrics::stderr_of_mean(&dif).unwrap();
        assert!((x.diff - 0.1).abs() < 1e-12, "{}", x.diff);
        assert!(
            (x.lo - (x.diff - 1.96 * se)).abs() < 0.01,
            "{} vs {}",
            x.lo,
            x.diff - 1.96 * se
        );
        assert!(
            (x.hi - (x.diff + 1.96 * se)).abs() < 0.01,
            "{} vs {}",
            x.hi,
            x.diff + 1.96 * se
        );
        assert_eq!(x.discordant, Some((0, 40)));
        assert_eq!(x, compare(&a, &b, 4000, 1234).unwrap(), "seeded");
        assert!(compare(&a, &b[1..], 10, 1).is_none() && compare(&[], &[], 10, 1).is_none());
    }
}
