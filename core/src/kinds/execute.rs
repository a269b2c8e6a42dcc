//! Where the kinds meet the engine: token-level requests go through the scheduler's plan and
//! the executor, chunk by chunk, with the evaluation's resume journal. [`score_requests`] is
//! the path of the scoring kinds (multiple choice, loglikelihood, perplexity, next token);
//! generation calls [`execute`] with its own batch function.

use super::Env;
use crate::batch::TokenCounts;
use crate::error::{Error, Result};
use crate::fingerprint::Fnv;
use crate::journal::Journal;
use crate::request::{ContinuationScore, ScoreRequest};
use crate::schedule::{BatchSettings, ExecStats, Executor, Plan};
use serde::{de::DeserializeOwned, Serialize};

/// Runs `plan` through the executor with the evaluation's journal (when the env has a
/// journal folder); `key` must cover everything the results depend on but the model and the
/// plan, which are added here.
pub(crate) fn execute<R, F>(
    env: &Env<'_>,
    name: &str,
    key: Fnv,
    plan: &Plan,
    n: usize,
    run_batch: F,
) -> Result<(Vec<R>, ExecStats)>
where
    R: Serialize + DeserializeOwned + Clone,
    F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
{
    let fp = format!(
        "{:016x}",
        key.str(&env.model.describe())
            .str(&format!("{:?}", plan.chunks))
            .finish()
    );
    let mut journal = match env.journal_dir {
        Some(dir) => Some(Journal::open(&dir.join(format!("{name}.journal.jsonl")), &fp)?),
        None => None,
    };
    let mut ex = Executor {
        journal: journal.as_mut(),
        progress: env.progress,
        stats: ExecStats::default(),
    };
    let out = ex.run(plan, n, run_batch)?;
    Ok((out, ex.stats))
}

/// Scores requests, longest first, sharing contexts through the KV cache when `share` is set.
pub(crate) fn score_requests(
    env: &Env<'_>,
    name: &str,
    reqs: &[ScoreRequest],
    batch: BatchSettings,
    share: bool,
) -> Result<(Vec<Vec<ContinuationScore>>, ExecStats)> {
    let lengths: Vec<usize> = reqs.iter().map(|r| r.len()).collect();
    let plan = Plan::new(&lengths, batch);
    let mut key = Fnv::default().str(name).str(if share { "shared" } else { "unshared" });
    for r in reqs {
        key = key.ints(&r.context);
        for c in &r.continuations {
            key = key.ints(c);
        }
    }
    execute(env, name, key, &plan, reqs.len(), |items, counts| {
        let batch: Vec<&ScoreRequest> = items.iter().map(|&i| &reqs[i]).collect();
        env.model.score(&batch, share, counts).map_err(|e| name_error(name, e))
    })
}

/// Adds the evaluation's name to errors raised below it.
pub(crate) fn name_error(name: &str, e: Error) -> Error {
    match e {
        Error::NonFinite { what, .. } => Error::NonFinite {
            evaluation: name.into(),
            what,
        },
        Error::Unsupported(m) => Error::Evaluation {
            evaluation: name.into(),
            message: m,
        },
        other => other,
    }
}
