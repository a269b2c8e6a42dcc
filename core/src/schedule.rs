//! Scheduling: the only code that decides which requests run together. Requests are ordered
//! longest first, packed into batches of `batch_size`, each batch padded to a multiple of the
//! batch unit by repeating its last item (padded items never reach a score), and batches are
//! grouped into chunks of `chunk_size` — the unit of progress, of journaling and of device
//! synchronisation. [`Executor::run`] executes a plan chunk by chunk, skipping chunks that a
//! [`Journal`] already holds, and returns results in request order with the [`Work`] of
//! every chunk (tokens and seconds; a resumed chunk brings its journaled cost).

use crate::batch::TokenCounts;
use crate::error::{Error, Result};
use crate::journal::Journal;
use serde::{de::DeserializeOwned, Serialize};

/// How requests are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BatchSettings {
    /// Requests per batch.
    pub batch_size: usize,
    /// Batches are padded to a multiple of this (`replicas × per_device_batch_size`).
    pub batch_unit: usize,
    /// Batches per chunk.
    pub chunk_size: usize,
    /// A batch that runs out of memory is halved (and every later batch of the evaluation
    /// runs at most that size) instead of failing: `batch_size` is the largest tried
    /// (`--batch-size auto`). The plan, and so the journal, stays that of `batch_size`.
    #[serde(default)]
    pub halve_on_oom: bool,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            batch_size: 16,
            batch_unit: 1,
            chunk_size: 8,
            halve_on_oom: false,
        }
    }
}

/// One slot of a batch: which request, and whether it only pads the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the request.
    pub item: usize,
    /// True for a repeated item that fills the batch unit; its result is dropped.
    pub padding: bool,
}

/// Batches of slots, grouped in chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `chunks[c][b]` is batch `b` of chunk `c`.
    pub chunks: Vec<Vec<Vec<Slot>>>,
}

impl Plan {
    /// Orders requests by `lengths`, longest first (ties keep request order), and packs them.
    ///
    /// ```
    /// use evalkit_core::schedule::{BatchSettings, Plan};
    /// let s = BatchSettings { batch_size: 2, batch_unit: 2, chunk_size: 1, halve_on_oom: false };
    /// let plan = Plan::new(&[3, 9, 5], s);
    /// let items: Vec<Vec<(usize, bool)>> = plan.chunks.iter().flatten()
    ///     .map(|b| b.iter().map(|s| (s.item, s.padding)).collect()).collect();
    /// assert_eq!(items, vec![vec![(1, false), (2, false)], vec![(0, false), (0, true)]]);
    /// ```
    pub fn new(lengths: &[usize], s: BatchSettings) -> Plan {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
        let batch = s.batch_size.max(1);
        let unit = s.batch_unit.max(1);
        let batches: Vec<Vec<Slot>> = order
            .chunks(batch)
            .map(|items| {
                let mut slots: Vec<Slot> = items.iter().map(|&item| Slot { item, padding: false }).collect();
                let last = *items.last().expect("chunks are never empty");
                while !slots.len().is_multiple_of(unit) {
                    slots.push(Slot {
                        item: last,
                        padding: true,
                    });
                }
                slots
            })
            .collect();
        let chunks = batches.chunks(s.chunk_size.max(1)).map(<[_]>::to_vec).collect();
        Plan { chunks }
    }

    /// Every shard's share of this plan in a run over `world` processes (indexed by rank):
    /// whole batches (so every request is computed in the batch it has in a single process),
    /// dealt out once, deterministically and balanced by tokens — each batch, costliest first,
    /// goes to the shard with the fewest tokens so far (a batch costs its slots × its longest
    /// request, as padded) — then, in plan order, regrouped into chunks of `chunk_size`
    /// batches.
    ///
    /// ```
    /// use evalkit_core::schedule::{BatchSettings, Plan};
    /// let s = BatchSettings { batch_size: 1, batch_unit: 1, chunk_size: 1, halve_on_oom: false };
    /// let lengths = [9, 1, 5, 4];
    /// let shares = Plan::new(&lengths, s).shares(&lengths, 2, 1);
    /// let items = |p: &Plan| -> Vec<usize> { p.chunks.iter().flatten().flatten().map(|s| s.item).collect() };
    /// assert_eq!(items(&shares[0]), vec![0, 1]); // 9 + 1 tokens
    /// assert_eq!(items(&shares[1]), vec![2, 3]); // 5 + 4 tokens
    /// ```
    pub fn shares(&self, lengths: &[usize], world: usize, chunk_size: usize) -> Vec<Plan> {
        let batches: Vec<&Vec<Slot>> = self.chunks.iter().flatten().collect();
        let cost = |b: &[Slot]| {
            b.len()
                * b.iter()
                    .map(|s| lengths.get(s.item).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0)
        };
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by(|&a, &b| cost(batches[b]).cmp(&cost(batches[a])).then(a.cmp(&b)));
        let world = world.max(1);
        let mut load = vec![0usize; world];
        let mut owner = vec![0usize; batches.len()];
        for b in order {
            let r = (0..world).min_by_key(|&r| (load[r], r)).expect("world ≥ 1");
            load[r] += cost(batches[b]);
            owner[b] = r;
        }
        (0..world)
            .map(|rank| {
                let mine: Vec<Vec<Slot>> = batches
                    .iter()
                    .zip(&owner)
                    .filter(|(_, &o)| o == rank)
                    .map(|(b, _)| (*b).clone())
                    .collect();
                Plan {
                    chunks: mine.chunks(chunk_size.max(1)).map(<[_]>::to_vec).collect(),
                }
            })
            .collect()
    }

    /// Requests the plan computes (padding excluded).
    pub fn requests(&self) -> usize {
        self.chunks.iter().flatten().flatten().filter(|s| !s.padding).count()
    }
}

/// The largest batch ≤ `max_batch` that splits `n` items evenly over `dp` replicas, with the
/// number of steps: `n % (batch × dp) == 0`, steps = `n / (batch × dp)`; `None` when no batch
/// does.
///
/// ```
/// use evalkit_core::schedule::find_accumulation_steps;
/// assert_eq!(find_accumulation_steps(96, 16, 2), Some((16, 3)));
/// assert_eq!(find_accumulation_steps(90, 16, 2), Some((15, 3)));
/// assert_eq!(find_accumulation_steps(7, 4, 2), None);
/// ```
pub fn find_accumulation_steps(n: usize, max_batch: usize, dp: usize) -> Option<(usize, usize)> {
    if dp == 0 {
        return None;
    }
    (1..=max_batch)
        .rev()
        .find(|b| n.is_multiple_of(b * dp))
        .map(|b| (b, n / (b * dp)))
}

/// What computing a chunk cost: tokens through the model and seconds on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Work {
    /// Tokens through the body and positions through the head.
    #[serde(flatten)]
    pub tokens: TokenCounts,
    /// Seconds spent computing.
    pub seconds: f64,
}

impl std::ops::AddAssign for Work {
    fn add_assign(&mut self, o: Work) {
        self.tokens += o.tokens;
        self.seconds += o.seconds;
    }
}

/// Counts of what an execution did (for results and for the resume test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ExecStats {
    /// Chunks computed by this run.
    pub chunks_computed: usize,
    /// Chunks read back from the journal.
    pub chunks_resumed: usize,
    /// Chunks an earlier run journaled for other settings (other data, tokenizer, weights,
    /// batch or chunk size), discarded: this run computed them afresh.
    #[serde(default)]
    pub chunks_discarded: usize,
    /// Work of every chunk, resumed ones included (their cost is journaled with them).
    pub work: Work,
    /// The batch size that halving on out-of-memory settled on ([`BatchSettings::halve_on_oom`]);
    /// `None` when no batch ran out of memory.
    #[serde(default)]
    pub batch_cap: Option<usize>,
}

/// Runs a plan: chunk by chunk, journaling each finished chunk and advancing a progress bar.
pub struct Executor<'a> {
    /// Where finished chunks are recorded (none: nothing is journaled).
    pub journal: Option<&'a mut Journal>,
    /// Progress display, advanced per chunk.
    pub progress: Option<&'a crate::Progress>,
    /// What was computed and what was resumed.
    pub stats: ExecStats,
    /// Halve a batch that runs out of memory ([`BatchSettings::halve_on_oom`]).
    pub halve_on_oom: bool,
}

impl<'a> Executor<'a> {
    /// Runs `plan` over `n` requests; `run_batch` gets the request indices of one batch (padding
    /// included) and the chunk's token counter, and returns one result per index. Results come
    /// back in request order.
    pub fn run<R, F>(&mut self, plan: &Plan, n: usize, run_batch: F) -> Result<Vec<R>>
    where
        R: Serialize + DeserializeOwned + Clone,
        F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
    {
        self.run_share(plan, n, run_batch)?
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| Error::Internal(format!("request {i} was never scheduled"))))
            .collect()
    }

    /// Runs a plan that may cover only some of the `n` requests (a shard's share, see
    /// [`Plan::shares`]); the others come back as `None`.
    pub fn run_share<R, F>(&mut self, plan: &Plan, n: usize, mut run_batch: F) -> Result<Vec<Option<R>>>
    where
        R: Serialize + DeserializeOwned + Clone,
        F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
    {
        let mut out: Vec<Option<R>> = vec![None; n];
        if let Some(p) = self.progress {
            p.set_requests(plan.requests());
        }
        for (c, chunk) in plan.chunks.iter().enumerate() {
            let resumed: Option<crate::journal::Chunk<R>> = match self.journal.as_deref() {
                Some(j) => j.get(c)?,
                None => None,
            };
            let mut computed_tokens = 0;
            let results = match resumed {
                Some((r, work)) => {
                    self.stats.chunks_resumed += 1;
                    self.stats.work += work;
                    r
                }
                None => {
                    let (results, work) = self.compute_chunk(chunk, &mut run_batch)?;
                    if let Some(j) = self.journal.as_deref_mut() {
                        j.put(c, &results, work)?;
                    }
                    self.stats.chunks_computed += 1;
                    self.stats.work += work;
                    computed_tokens = work.tokens.forwarded;
                    results
                }
            };
            if let Some(p) = self.progress {
                p.advance(results.len(), computed_tokens);
            }
            for (i, r) in results {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
        Ok(out)
    }

    /// Computes one chunk: each request's result (padding dropped) and what the chunk cost.
    fn compute_chunk<R, F>(&mut self, chunk: &[Vec<Slot>], run_batch: &mut F) -> Result<(Vec<(usize, R)>, Work)>
    where
        F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
    {
        let start = std::time::Instant::now();
        let mut tokens = TokenCounts::default();
        let mut results = vec![];
        for batch in chunk {
            let items: Vec<usize> = batch.iter().map(|s| s.item).collect();
            let got = self.run_batch(&items, &mut tokens, run_batch)?;
            results.extend(
                batch
                    .iter()
                    .zip(got)
                    .filter(|(s, _)| !s.padding)
                    .map(|(s, r)| (s.item, r)),
            );
        }
        let work = Work {
            tokens,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok((results, work))
    }

    /// Runs one batch of the plan: whole, or with [`Executor::halve_on_oom`] in pieces of at
    /// most the size halving settled on, halving again when a piece runs out of memory (a
    /// piece of one request that does is an error). Token counts are those of the pieces that
    /// ran.
    fn run_batch<R, F>(&mut self, items: &[usize], tokens: &mut TokenCounts, run_batch: &mut F) -> Result<Vec<R>>
    where
        F: FnMut(&[usize], &mut TokenCounts) -> Result<Vec<R>>,
    {
        let mut out = Vec::with_capacity(items.len());
        let mut rest = items;
        while !rest.is_empty() {
            let size = rest.len().min(self.stats.batch_cap.unwrap_or(usize::MAX));
            let mut counts = TokenCounts::default();
            match run_batch(&rest[..size], &mut counts) {
                Ok(got) if got.len() == size => out.extend(got),
                Ok(got) => {
                    return Err(Error::Unsupported(format!(
                        "a batch of {size} requests came back with {} results (a model's `score` or `generate` returns one per request)",
                        got.len()
                    )))
                }
                Err(e) if self.halve_on_oom && size > 1 && e.is_out_of_memory() => {
                    tracing::warn!("out of memory at batch size {size}, halving: {e}");
                    self.stats.batch_cap = Some(size / 2);
                    continue;
                }
                Err(e) => return Err(e),
            }
            *tokens += counts;
            rest = &rest[size..];
        }
        Ok(out)
    }
}
