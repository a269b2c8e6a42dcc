//! Where the kinds meet the engine: token-level requests go through the scheduler's plan and
//! the executor, chunk by chunk, with the evaluation's resume journal. [`score_requests`] is
//! the path of the scoring kinds (multiple choice, loglikelihood, perplexity, next token);
//! generation calls [`execute`] with its own batch function.

use super::Env;
use crate::batch::TokenCounts;
use crate::error::{Error, Result};
use crate::fingerprint::Fnv;
use crate::journal::{Journal, Recorded};
use crate::request::{ContinuationScore, ScoreRequest};
use crate::schedule::{BatchSettings, ExecStats, Executor, Plan};
use crate::shard::{rank_dir, Share, ShareRecord};
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;

/// Plans requests of `lengths` with `batch` and runs the plan through the executor with the
/// evaluation's journal (when the env has a journal folder); `key` must cover everything the
/// results depend on but the model and the plan, which are added here. In a sharded run
/// ([`Share`]) this process computes its rank's share and gathers the other ranks' shares
/// from their journals; while one is incomplete the result is [`Error::ShardsPending`]. A
/// shard leaves a [`ShareRecord`] of its own share beside its journal.
pub(crate) fn execute<R, F>(
    env: &Env<'_>,
    name: &str,
    key: Fnv,
    lengths: &[usize],
    batch: BatchSettings,
    run_batch: F,
) -> Result<(Vec<R>, ExecStats)>
where
    R: Serialize + DeserializeOwned + Clone,
    F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
{
    let plan = Plan::new(lengths, batch);
    let n = lengths.len();
    let key = key.str(&env.model.describe());
    // Other weights at the same path (`checkpoints/latest` overwritten) are another model.
    let key = match env.model.weights_stamp() {
        Some(stamp) => key.str(&format!("weights {stamp}")),
        None => key,
    };
    // Live weights change from step to step under one description.
    let key = match env.options.step {
        Some(step) => key.str(&format!("step {step}")),
        None => key,
    };
    let file = crate::journal::file_name(name);
    let (rank, world) = match env.options.share {
        Share::Whole => {
            let fp = format!("{:016x}", key.str(&format!("{:?}", plan.chunks)).finish());
            let mut journal = match env.journal_dir {
                Some(dir) => Some(Journal::open(&dir.join(&file), &fp)?),
                None => None,
            };
            let mut ex = Executor {
                stats: ExecStats {
                    chunks_discarded: journal.as_ref().map_or(0, Journal::discarded),
                    ..ExecStats::default()
                },
                journal: journal.as_mut(),
                progress: env.progress,
                halve_on_oom: batch.halve_on_oom,
            };
            let out = ex.run(&plan, n, run_batch)?;
            return Ok((out, ex.stats));
        }
        Share::Rank { rank, world } => (Some(rank), world),
        Share::Merge { world } => (None, world),
    };
    let dir = env.journal_dir.ok_or_else(|| Error::Evaluation {
        evaluation: name.into(),
        message: "a sharded run journals into its output directory: run it with Evaluator::run_share".into(),
    })?;
    let shares = plan.shares(lengths, world, batch.chunk_size);
    let fingerprint = |r: usize| {
        format!(
            "{:016x}",
            key.str(&format!("shard {r} of {world}"))
                .str(&format!("{:?}", shares[r].chunks))
                .finish()
        )
    };
    let path = |r: usize| rank_dir(dir, r, world).join(&file);
    let (mut out, mut stats): (Vec<Option<R>>, ExecStats) = match rank {
        Some(r) => {
            let mut journal = Journal::open(&path(r), &fingerprint(r))?;
            let mut ex = Executor {
                stats: ExecStats {
                    chunks_discarded: journal.discarded(),
                    ..ExecStats::default()
                },
                journal: Some(&mut journal),
                progress: env.progress,
                halve_on_oom: batch.halve_on_oom,
            };
            let out = ex.run_share(&shares[r], n, run_batch)?;
            ShareRecord::record(dir, (r, world), name, env.model.device(), &ex.stats)?;
            (out, ex.stats)
        }
        None => (vec![None; n], ExecStats::default()),
    };
    let mut pending = vec![];
    for r in (0..world).filter(|&r| Some(r) != rank) {
        let recorded = Recorded::read(&path(r), &fingerprint(r))?;
        if recorded.is_foreign() {
            return Err(Error::Shards {
                path: path(r),
                message: format!(
                    "shard {r} journaled other requests or batches for `{name}` than this shard plans (other data, tokenizer or settings): rerun shard {r} with the run's command, or remove the output's .journal folder to start the run again"
                ),
            });
        }
        let mut chunks = vec![];
        for c in 0..shares[r].chunks.len() {
            match recorded.get::<R>(c)? {
                Some(chunk) => chunks.push(chunk),
                None => break,
            }
        }
        if chunks.len() < shares[r].chunks.len() {
            pending.push(r);
            continue;
        }
        for (results, work) in chunks {
            stats.chunks_resumed += 1;
            stats.work += work;
            for (i, v) in results {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(v);
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err(Error::ShardsPending {
            evaluation: name.into(),
            ranks: pending,
            world,
            journal: dir.to_path_buf(),
        });
    }
    let out = out
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.ok_or_else(|| Error::Evaluation {
                evaluation: name.into(),
                message: format!("request {i} is in no shard's journal"),
            })
        })
        .collect::<Result<Vec<R>>>()?;
    Ok((out, stats))
}

/// Scores requests, longest first, sharing contexts through the KV cache when `share` is set.
/// A continuation that a request holds twice is scored once ([`distinct_continuations`]).
pub(crate) fn score_requests(
    env: &Env<'_>,
    name: &str,
    reqs: &[ScoreRequest],
    batch: BatchSettings,
    share: bool,
) -> Result<(Vec<Vec<ContinuationScore>>, ExecStats)> {
    let (distinct, copies) = distinct_continuations(reqs);
    let (mut scores, stats) = score_distinct(env, name, &distinct, batch, share)?;
    for (i, of) in copies {
        scores[i] = of.iter().map(|&u| scores[i][u].clone()).collect();
    }
    Ok((scores, stats))
}

/// A request that holds a continuation twice: its index, and for each of its continuations
/// the index of the distinct one it equals.
type Copies = (usize, Vec<usize>);

/// The requests with each continuation once, and for each request that held one twice, its
/// index and where each of its continuations is among the distinct ones. lm-eval computes a
/// (context, continuation) pair that appears twice once (its logits cache groups equal
/// requests), so equal choices get equal log-likelihoods and a tie goes to the first, as
/// DESIGN section 3 asks; computed twice in one packed batch they could differ in the last
/// bit and break the tie the other way.
fn distinct_continuations(reqs: &[ScoreRequest]) -> (Vec<Cow<'_, ScoreRequest>>, Vec<Copies>) {
    let mut copies = vec![];
    let distinct = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut unique: Vec<&Vec<i64>> = vec![];
            let of: Vec<usize> = r
                .continuations
                .iter()
                .map(|c| {
                    unique.iter().position(|u| *u == c).unwrap_or_else(|| {
                        unique.push(c);
                        unique.len() - 1
                    })
                })
                .collect();
            if unique.len() == r.continuations.len() {
                return Cow::Borrowed(r);
            }
            let continuations = unique.into_iter().cloned().collect();
            copies.push((i, of));
            Cow::Owned(ScoreRequest {
                context: r.context.clone(),
                continuations,
            })
        })
        .collect();
    (distinct, copies)
}

fn score_distinct(
    env: &Env<'_>,
    name: &str,
    reqs: &[Cow<'_, ScoreRequest>],
    batch: BatchSettings,
    share: bool,
) -> Result<(Vec<Vec<ContinuationScore>>, ExecStats)> {
    let lengths: Vec<usize> = reqs.iter().map(|r| r.len()).collect();
    let mut key = Fnv::default().str(name).str(if share { "shared" } else { "unshared" });
    for r in reqs {
        key = key.ints(&r.context);
        for c in &r.continuations {
            key = key.ints(c);
        }
    }
    execute(env, name, key, &lengths, batch, |items, counts| {
        let batch: Vec<&ScoreRequest> = items.iter().map(|&i| reqs[i].as_ref()).collect();
        env.model
            .score(&batch, share, counts)
            .map_err(|e| name_error(name, items, e))
    })
}

/// Adds the evaluation's name to errors raised below it; non-finite logits of a batch of
/// requests `items` name their requests (those at the positions the error names, else all).
pub(crate) fn name_error(name: &str, items: &[usize], e: Error) -> Error {
    match e {
        Error::NonFinite { what, rows, .. } => Error::NonFinite {
            evaluation: name.into(),
            what,
            rows: if rows.is_empty() {
                items.to_vec()
            } else {
                rows.iter().filter_map(|&p| items.get(p).copied()).collect()
            },
        },
        Error::Incapable { message, .. } => Error::Incapable {
            evaluation: name.into(),
            message,
        },
        Error::Unsupported(m) => Error::Evaluation {
            evaluation: name.into(),
            message: m,
        },
        other => other,
    }
}
