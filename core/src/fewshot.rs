//! Few-shot prompting in lm-eval's layout: `description + Σ(example_context + delimiter +
//! example_answer + "\n\n") + context`. The description is there at every k, including 0
//! (lm-eval 0.4.13's `fewshot_context`). Examples come from a pool (the benchmark's few-shot
//! split), chosen as lm-eval's samplers choose them:
//!
//! * [`FewShotSampler::First`]: the first k examples of the pool (lm-eval's `first_n`, MMLU);
//! * [`FewShotSampler::Random`]: lm-eval's default sampler — one Python `random.Random(seed)`
//!   per evaluation and `rnd.sample(pool, k)` once per row, in row order (row 0, 1, ...). When
//!   the pool is the evaluated split, k + 1 are drawn and the row itself is dropped
//!   (`rm_eval_doc`), with lm-eval's redraw from the pool without the row when duplicates of
//!   it leave fewer than k.
//!
//! Every row's draw is computed once, when the evaluation is built ([`FewShot::new`]), in
//! dataset order, so subsets, sharding, batching and resuming never change which examples a
//! row gets; under `--limit n` the first n rows get exactly the draws lm-eval gives them (under
//! a random `--sample`, row i keeps draw i, where lm-eval would draw in the order of the rows it
//! picked). Where the pool is the evaluated split, a row's copies are recognised by their
//! rendered example (lm-eval compares the row dicts: two rows that differ only in fields the
//! prompt does not show would count as one here).

use crate::pyrandom::PyRandom;

/// How examples are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FewShotSampler {
    /// The first k examples of the pool.
    First,
    /// lm-eval's default sampler with `random.Random(seed)` (its default seed is 1234).
    Random(u64),
}

/// Why a few-shot setting cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FewShotError {
    /// More examples asked than the pool holds.
    #[error("{k}-shot asked, but the few-shot pool has {pool} example(s){extra}")]
    PoolTooSmall {
        /// Examples asked per prompt.
        k: usize,
        /// Examples in the pool.
        pool: usize,
        /// Why the pool must be larger than k, when it must.
        extra: &'static str,
    },
    /// A pool row cannot serve as an example.
    #[error("few-shot example {index}: {message}")]
    Example {
        /// Index of the row in the pool.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Few-shot examples have no meaning for the evaluation's kind.
    #[error("few-shot examples and descriptions have no meaning for a {kind} evaluation (it scores whole texts, not answers to a context); ask for 0 examples (--num-fewshot 0) and no description")]
    NotApplicable {
        /// The kind's name.
        kind: &'static str,
    },
}

/// Which pool examples each row gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Draws {
    /// The same examples for every row.
    Same(Vec<usize>),
    /// `rows[i]` are row i's examples, in prompt order.
    PerRow(Vec<Vec<usize>>),
}

/// Rendered few-shot examples and which of them each row gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FewShot {
    /// (context, answer) of each pool example.
    examples: Vec<(String, String)>,
    k: usize,
    sampler: FewShotSampler,
    description: String,
    delimiter: String,
    draws: Draws,
    num_rows: usize,
}

/// Everything that decides a few-shot prefix except the pool and the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FewShotSpec {
    /// Examples per prompt.
    pub k: usize,
    /// Selection rule.
    pub sampler: FewShotSampler,
    /// Text before the examples (lm-eval's `description`), present at every k.
    pub description: String,
    /// Between an example's context and its answer (lm-eval's target delimiter).
    pub delimiter: String,
}

impl FewShot {
    /// Chooses the examples of each of `num_rows` rows from `examples` (the rendered pool).
    /// `evaluated` holds the rendered rows of the evaluated split when the pool *is* that
    /// split (lm-eval then draws k + 1 and removes the row itself, compared by its rendered
    /// example); pass `None` for a separate few-shot split.
    ///
    /// ```
    /// use evalkit_core::fewshot::{FewShot, FewShotSampler, FewShotSpec};
    /// let pool = vec![("Q: 1+1?\nA:".to_string(), "2".to_string())];
    /// let spec = FewShotSpec { k: 1, sampler: FewShotSampler::First,
    ///     description: "Math.\n\n".into(), delimiter: " ".into() };
    /// let f = FewShot::new(pool, spec, 3, None)?;
    /// assert_eq!(f.prefix(2), "Math.\n\nQ: 1+1?\nA: 2\n\n");
    /// # Ok::<(), evalkit_core::fewshot::FewShotError>(())
    /// ```
    pub fn new(
        examples: Vec<(String, String)>,
        spec: FewShotSpec,
        num_rows: usize,
        evaluated: Option<&[(String, String)]>,
    ) -> Result<Self, FewShotError> {
        let FewShotSpec {
            k,
            sampler,
            description,
            delimiter,
        } = spec;
        let n = examples.len();
        let too_small = |extra| FewShotError::PoolTooSmall { k, pool: n, extra };
        let draws = match sampler {
            _ if k == 0 => Draws::Same(vec![]),
            FewShotSampler::First => match evaluated {
                None if k > n => return Err(too_small("")),
                None => Draws::Same((0..k).collect()),
                Some(rows) => {
                    let mut per_row = Vec::with_capacity(num_rows);
                    for i in 0..num_rows {
                        let own = rows.get(i);
                        let chosen: Vec<usize> = (0..n).filter(|&j| Some(&examples[j]) != own).take(k).collect();
                        if chosen.len() < k {
                            return Err(too_small(" besides the row itself"));
                        }
                        per_row.push(chosen);
                    }
                    Draws::PerRow(per_row)
                }
            },
            FewShotSampler::Random(seed) => {
                let mut rnd = PyRandom::new(seed);
                let mut per_row = Vec::with_capacity(num_rows);
                for i in 0..num_rows {
                    per_row.push(match evaluated {
                        None => rnd.sample(n, k).map_err(|_| too_small(""))?,
                        Some(rows) => draw_without(&mut rnd, &examples, rows.get(i), k)?,
                    });
                }
                Draws::PerRow(per_row)
            }
        };
        Ok(FewShot {
            examples,
            k,
            sampler,
            description,
            delimiter,
            draws,
            num_rows,
        })
    }

    /// Rows of the evaluation the draws were made for.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Examples per prompt.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The selection rule.
    pub fn sampler(&self) -> FewShotSampler {
        self.sampler
    }

    /// Pool indices of row `index`'s examples, in prompt order.
    pub fn chosen(&self, index: usize) -> &[usize] {
        match &self.draws {
            Draws::Same(v) => v,
            Draws::PerRow(rows) => rows.get(index).map_or(&[], Vec::as_slice),
        }
    }

    /// Text before the examples (lm-eval's `description`).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Between an example's context and its answer (lm-eval's target delimiter).
    pub fn delimiter(&self) -> &str {
        &self.delimiter
    }

    /// Row `index`'s examples as (context, answer), in prompt order.
    pub fn examples(&self, index: usize) -> impl Iterator<Item = (&str, &str)> {
        self.chosen(index)
            .iter()
            .map(|&i| (self.examples[i].0.as_str(), self.examples[i].1.as_str()))
    }

    /// The text that precedes row `index`'s context: the description, then its examples.
    pub fn prefix(&self, index: usize) -> String {
        let mut out = self.description.clone();
        for &i in self.chosen(index) {
            let (c, a) = &self.examples[i];
            out.push_str(c);
            out.push_str(&self.delimiter);
            out.push_str(a);
            out.push_str("\n\n");
        }
        out
    }
}

/// lm-eval's draw for a row of the pool's own split: `sample(pool, k + 1)` without the row;
/// where duplicates of the row leave fewer than k, `sample(pool without the row, k)`.
fn draw_without(
    rnd: &mut PyRandom,
    pool: &[(String, String)],
    own: Option<&(String, String)>,
    k: usize,
) -> Result<Vec<usize>, FewShotError> {
    let too_small = || FewShotError::PoolTooSmall {
        k,
        pool: pool.len(),
        extra: " besides the row itself (the pool is the evaluated split, so k + 1 are drawn)",
    };
    let drawn = rnd.sample(pool.len(), k + 1).map_err(|_| too_small())?;
    let kept: Vec<usize> = drawn.into_iter().filter(|&j| Some(&pool[j]) != own).take(k).collect();
    if kept.len() == k {
        return Ok(kept);
    }
    let others: Vec<usize> = (0..pool.len()).filter(|&j| Some(&pool[j]) != own).collect();
    let picked = rnd.sample(others.len(), k).map_err(|_| too_small())?;
    Ok(picked.into_iter().map(|j| others[j]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("q{i}"), format!("a{i}"))).collect()
    }

    fn spec(k: usize, sampler: FewShotSampler) -> FewShotSpec {
        FewShotSpec {
            k,
            sampler,
            description: "D\n\n".into(),
            delimiter: " ".into(),
        }
    }

    #[test]
    fn description_at_zero_shot() {
        let f = FewShot::new(vec![], spec(0, FewShotSampler::Random(1234)), 2, None).unwrap();
        assert_eq!(f.prefix(1), "D\n\n");
    }

    #[test]
    fn random_draws_are_python_sample_per_row() {
        // random.Random(1234); [rnd.sample(range(10), 2) for _ in range(3)]
        let f = FewShot::new(pool(10), spec(2, FewShotSampler::Random(1234)), 3, None).unwrap();
        let mut rnd = PyRandom::new(1234);
        for i in 0..3 {
            assert_eq!(f.chosen(i), rnd.sample(10, 2).unwrap().as_slice());
        }
    }

    #[test]
    fn own_split_drops_the_row() {
        let p = pool(4);
        let f = FewShot::new(p.clone(), spec(3, FewShotSampler::Random(7)), 4, Some(&p)).unwrap();
        for i in 0..4 {
            assert_eq!(f.chosen(i).len(), 3);
            assert!(!f.chosen(i).contains(&i), "row {i} got itself");
        }
        let first = FewShot::new(p.clone(), spec(3, FewShotSampler::First), 4, Some(&p)).unwrap();
        assert_eq!(first.chosen(0), &[1, 2, 3]);
        assert_eq!(first.chosen(2), &[0, 1, 3]);
    }

    #[test]
    fn pool_too_small_is_an_error() {
        let e = FewShot::new(pool(2), spec(3, FewShotSampler::Random(1)), 1, None).unwrap_err();
        assert!(
            e.to_string().contains("3-shot") && e.to_string().contains("2 example"),
            "{e}"
        );
        let p = pool(3);
        assert!(FewShot::new(p.clone(), spec(3, FewShotSampler::Random(1)), 3, Some(&p)).is_err());
        assert!(FewShot::new(pool(2), spec(3, FewShotSampler::First), 1, None).is_err());
    }
}
