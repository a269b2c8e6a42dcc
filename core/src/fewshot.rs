//! Few-shot prompting in lm-eval's layout: `description + Σ(example_context + delimiter +
//! example_answer + "\n\n") + context`. Examples come from a pool (the benchmark's few-shot
//! split): the first k (`FewShotSampler::First`, MMLU's rule, identical to lm-eval), or k drawn
//! per row with a seeded RNG of their own (`FewShotSampler::Seeded`): row i's examples depend
//! only on the seed and i, never on `limit` or order.

use crate::kinds::Fnv;
use rand::SeedableRng;

/// How examples are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FewShotSampler {
    /// The first k examples of the pool.
    First,
    /// k examples per row from an RNG seeded with (seed, row index).
    Seeded(u64),
}

/// Rendered few-shot examples and the rule that picks them.
#[derive(Debug, Clone)]
pub struct FewShot {
    /// (context, answer) of each pool example.
    pub examples: Vec<(String, String)>,
    /// Examples per prompt.
    pub k: usize,
    /// Selection rule.
    pub sampler: FewShotSampler,
    /// Text before the examples.
    pub description: String,
    /// Between an example's context and its answer (lm-eval's target delimiter).
    pub delimiter: String,
}

impl FewShot {
    /// The text that precedes row `index`'s context.
    ///
    /// ```
    /// use evalkit_core::fewshot::{FewShot, FewShotSampler};
    /// let f = FewShot { examples: vec![("Q: 1+1?\nA:".into(), "2".into())], k: 1,
    ///     sampler: FewShotSampler::First, description: "Math.\n\n".into(), delimiter: " ".into() };
    /// assert_eq!(f.prefix(0), "Math.\n\nQ: 1+1?\nA: 2\n\n");
    /// ```
    pub fn prefix(&self, index: usize) -> String {
        let mut out = self.description.clone();
        let k = self.k.min(self.examples.len());
        let chosen: Vec<usize> = match self.sampler {
            FewShotSampler::First => (0..k).collect(),
            FewShotSampler::Seeded(seed) => {
                let s = Fnv::default()
                    .bytes(&seed.to_le_bytes())
                    .bytes(&(index as u64).to_le_bytes())
                    .finish();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s);
                rand::seq::index::sample(&mut rng, self.examples.len(), k).into_vec()
            }
        };
        for i in chosen {
            let (c, a) = &self.examples[i];
            out.push_str(c);
            out.push_str(&self.delimiter);
            out.push_str(a);
            out.push_str("\n\n");
        }
        out
    }
}
