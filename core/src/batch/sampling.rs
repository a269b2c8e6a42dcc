//! Choosing the next token from one row's float32 logits: greedy (argmax, lowest id on ties)
//! or temperature then nucleus (top-p) sampling from the row's own seeded RNG.

use crate::request::Sampling;
use rand::Rng;

/// Picks the next token from float32 logits of one row.
pub fn choose_token(logits: &[f32], sampling: Sampling, rng: &mut rand_chacha::ChaCha8Rng) -> i64 {
    let argmax = || {
        let mut best = 0;
        for (i, v) in logits.iter().enumerate() {
            if v.total_cmp(&logits[best]).is_gt() {
                best = i;
            }
        }
        best as i64
    };
    match sampling {
        Sampling::Nucleus { temperature, top_p } if !sampling.is_greedy() => {
            let kept = nucleus(logits, temperature, top_p);
            let total: f64 = kept.iter().map(|&(_, p)| p).sum();
            let mut u = rng.random::<f64>() * total;
            for &(i, p) in &kept {
                if u < p {
                    return i as i64;
                }
                u -= p;
            }
            kept.last().map_or_else(argmax, |&(i, _)| i as i64)
        }
        _ => argmax(),
    }
}

/// Temperature-scaled probabilities of the nucleus: tokens by decreasing probability until
/// their mass reaches `top_p`, the crossing token included. Returns (id, probability) pairs.
///
/// ```
/// use evalkit_core::batch::nucleus;
/// // probabilities 0.5, 0.3, 0.2: top_p 0.6 keeps the first two (0.5 < 0.6 ≤ 0.8).
/// let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
/// let kept: Vec<usize> = nucleus(&logits, 1.0, 0.6).iter().map(|&(i, _)| i).collect();
/// assert_eq!(kept, vec![0, 1]);
/// ```
pub fn nucleus(logits: &[f32], temperature: f64, top_p: f64) -> Vec<(usize, f64)> {
    let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(usize, f64)> = scaled.iter().map(|&s| (s - max).exp()).enumerate().collect();
    let z: f64 = probs.iter().map(|&(_, p)| p).sum();
    probs.iter_mut().for_each(|(_, p)| *p /= z);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut mass = 0.0;
    let mut keep = 0;
    for &(_, p) in &probs {
        keep += 1;
        mass += p;
        if mass >= top_p {
            break;
        }
    }
    probs.truncate(keep.max(1));
    probs
}
