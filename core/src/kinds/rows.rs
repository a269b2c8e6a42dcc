//! Which rows an evaluation runs: the subset ([`select_rows`], each evaluation with its own
//! seeded RNG) and the checks every kind makes first (an empty dataset, an empty subset).

use super::{Defaults, Env, Subset};
use crate::error::{Error, Result};
use crate::fingerprint::eval_seed;
use crate::schedule::BatchSettings;
use rand::SeedableRng;

/// Dataset indices an evaluation uses, in dataset order.
///
/// ```
/// use evalkit_core::kinds::{select_rows, Subset};
/// assert_eq!(select_rows("x", 10, Subset::First(3), 1), vec![0, 1, 2]);
/// assert_eq!(select_rows("x", 10, Subset::Sample(3), 1).len(), 3);
/// // lm-eval's count for a share: ⌈2376 × 0.01⌉ = ⌈23.76⌉
/// assert_eq!(select_rows("x", 2376, Subset::FirstShare(0.01), 1).len(), 24);
/// ```
pub fn select_rows(name: &str, len: usize, subset: Subset, seed: u64) -> Vec<usize> {
    // As lm-eval counts it: `int(math.ceil(len(docs) * limit))`, in doubles.
    let share = |f: f64| (len as f64 * f).ceil() as usize;
    match subset {
        Subset::FirstShare(f) => select_rows(name, len, Subset::First(share(f)), seed),
        Subset::SampleShare(f) => select_rows(name, len, Subset::Sample(share(f)), seed),
        Subset::All => (0..len).collect(),
        Subset::First(n) => (0..len.min(n)).collect(),
        Subset::Sample(n) if n >= len => (0..len).collect(),
        Subset::Sample(n) => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(eval_seed(seed, name));
            let mut idx = rand::seq::index::sample(&mut rng, len, n).into_vec();
            idx.sort_unstable();
            idx
        }
    }
}

/// The rows and batching of one run.
pub(crate) struct Prepared {
    pub rows: Vec<usize>,
    pub batch: BatchSettings,
}

/// Checks the dataset, picks the subset and the batching.
pub(crate) fn prepare(name: &str, len: usize, defaults: &Defaults, env: &Env<'_>) -> Result<Prepared> {
    if len == 0 {
        return Err(Error::Evaluation {
            evaluation: name.into(),
            message: "the dataset is empty".into(),
        });
    }
    let o = env.options;
    let subset = o.subset.unwrap_or(defaults.limit.map_or(Subset::All, Subset::First));
    let rows = select_rows(name, len, subset, o.seed);
    if rows.is_empty() {
        return Err(Error::Evaluation {
            evaluation: name.into(),
            message: "the subset selects no rows (limit 0)".into(),
        });
    }
    Ok(Prepared {
        rows,
        batch: o.batch_settings(defaults),
    })
}
