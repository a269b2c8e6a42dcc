//! Data-parallel runs: N processes (on one machine, or launched by torchrun or Slurm on many)
//! each compute a share of every evaluation and journal it into the shared output directory
//! under their rank; the last to finish (or a merge) gathers the journals and writes the
//! results exactly as a single process would.
//!
//! - Which share a process computes is its [`Share`] (in [`crate::RunOptions::share`]): every
//!   process lowers every row the same way and builds the same plan of batches, then computes
//!   only the batches [`crate::schedule::Plan::shares`] deals to its rank (whole batches,
//!   balanced by tokens), so every request is computed in the batch it has in one process.
//! - `<output>/.journal/shards.json` records the settings of the run; a shard started with
//!   others is refused ([`claim`]).
//! - A shard's journals live in `<output>/.journal/rank-R-of-N/`; when its share of every
//!   evaluation is journaled it leaves `done` there ([`mark_done`]); the shard that then finds
//!   every rank done takes `merge.lock` ([`try_lock`]) and merges.
//! - Beside each journal a [`ShareRecord`] keeps what the rank did for that evaluation (its
//!   device, chunks computed and resumed, seconds, raw speed), so the results report the
//!   shards' work rather than the merging process's.
//! - An evaluation that fails on its own in a run of several leaves a [`FailureRecord`]
//!   (`rank-R-of-N/<evaluation>.failed.json`) and the rank goes on; the merge lists it under
//!   `failed` with the others' results, and makes the ranks that failed it not done again, so
//!   rerunning them runs it again and merges anew.
//!
//! [`Launch::from_env`] reads how a cluster launcher started the process: torchrun's `RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, or Slurm's `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`.

use crate::error::{Error, Result};
use crate::schedule::ExecStats;
use crate::throughput::RawThroughput;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// This process's part in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Share {
    /// One process computes everything.
    #[default]
    Whole,
    /// Shard `rank` of `world`: computes its share of every evaluation and journals it under
    /// its rank; the last shard to finish merges.
    Rank {
        /// 0-based rank.
        rank: usize,
        /// Number of shards.
        world: usize,
    },
    /// Computes nothing: gathers the journals of every rank of a `world`-shard run and writes
    /// the results (`evalkit merge`); a rank whose share is not journaled is an error.
    Merge {
        /// Number of shards.
        world: usize,
    },
}

impl Share {
    /// Shard `rank` of `world`, checked (`world` 1 is the whole run).
    ///
    /// ```
    /// use evalkit_core::shard::Share;
    /// assert_eq!(Share::rank(0, 1).unwrap(), Share::Whole);
    /// assert_eq!(Share::rank(2, 3).unwrap(), Share::Rank { rank: 2, world: 3 });
    /// assert!(Share::rank(3, 3).is_err());
    /// ```
    pub fn rank(rank: usize, world: usize) -> Result<Share> {
        match (rank, world) {
            (_, 0) => Err(Error::Launch {
                launcher: "shards",
                message: "a run needs at least one shard (world size 0)".into(),
            }),
            (r, w) if r >= w => Err(Error::Launch {
                launcher: "shards",
                message: format!("rank {r} is not below the world size {w}"),
            }),
            (_, 1) => Ok(Share::Whole),
            (rank, world) => Ok(Share::Rank { rank, world }),
        }
    }

    /// Number of shards (1 for the whole run).
    pub fn world(self) -> usize {
        match self {
            Share::Whole => 1,
            Share::Rank { world, .. } | Share::Merge { world } => world,
        }
    }
}

/// Where rank `rank`'s journals of a `world`-shard run live under the run's journal folder.
pub fn rank_dir(journal: &Path, rank: usize, world: usize) -> PathBuf {
    journal.join(format!("rank-{rank}-of-{world}"))
}

/// What one rank did for one evaluation, kept beside its journal
/// (`rank-R-of-N/<evaluation>.share.json`; public as the record's format) so that the merge
/// reports the run's chunks, seconds and efficiency across the shards rather than the merging
/// process's alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// The device the rank ran on (`Cpu`, `Cuda(1)`).
    pub device: String,
    /// The rank's own share: chunks computed by the process that wrote this record, chunks it
    /// resumed from the rank's journal, their tokens and seconds, and its batch cap.
    pub stats: ExecStats,
    /// Seconds the rank spent on the evaluation: lowering and its share, and for a rank that
    /// finds the other shares already journaled, gathering them and scoring too (the gather
    /// that waited for other shards, and `evalkit merge`, count nowhere). `None` until the
    /// evaluation's share is done.
    pub wall_seconds: Option<f64>,
    /// The rank's raw speed (`--floor`), which prices its share's floor.
    pub raw_throughput: Option<RawThroughput>,
}

impl ShareRecord {
    /// The floor of the rank's share at its own raw speed; `None` without a measured speed.
    pub fn floor_seconds(&self) -> Option<f64> {
        self.raw_throughput
            .map(|raw| raw.floor_seconds(&self.stats.work.tokens))
    }

    fn path(journal: &Path, rank: usize, world: usize, evaluation: &str) -> PathBuf {
        rank_dir(journal, rank, world).join(format!("{evaluation}.share.json"))
    }

    /// The record at `path`; `None` when there is none. A record that cannot be read is only
    /// bookkeeping lost: it is reported and counts as none (the next record overwrites it,
    /// and the merge keeps the merging process's view of that evaluation).
    fn read(path: &Path) -> Option<ShareRecord> {
        if !path.is_file() {
            return None;
        }
        crate::error::read_json(path)
            .map_err(|e| tracing::warn!("{e} (a shard's record of its share; ignored)"))
            .ok()
    }

    fn write(&self, path: &Path) -> Result<()> {
        write_record(path, self)
    }

    /// Records what this process did for `rank`'s share of `evaluation` on `device`. A process
    /// that only read the share back from the journal keeps the complete record of the one
    /// that computed it; a record its process left incomplete (it died before its seconds
    /// were counted) is replaced, so the share reads as resumed.
    pub(crate) fn record(
        journal: &Path,
        (rank, world): (usize, usize),
        evaluation: &str,
        device: tch::Device,
        stats: &ExecStats,
    ) -> Result<()> {
        let path = Self::path(journal, rank, world, evaluation);
        if stats.chunks_computed == 0 && Self::read(&path).is_some_and(|r| r.wall_seconds.is_some()) {
            return Ok(());
        }
        let record = ShareRecord {
            device: format!("{device:?}"),
            stats: *stats,
            wall_seconds: None,
            raw_throughput: None,
        };
        record.write(&path)
    }

    /// Completes the record [`ShareRecord::record`] left for this process's share of
    /// `evaluation` with its wall seconds and raw speed (a record completed before, by the
    /// process that computed the share, is kept).
    pub(crate) fn finish(
        journal: &Path,
        (rank, world): (usize, usize),
        evaluation: &str,
        wall_seconds: f64,
        raw: Option<RawThroughput>,
    ) -> Result<()> {
        let path = Self::path(journal, rank, world, evaluation);
        match Self::read(&path) {
            Some(mut r) if r.wall_seconds.is_none() => {
                r.wall_seconds = Some(wall_seconds);
                r.raw_throughput = raw;
                r.write(&path)
            }
            _ => Ok(()),
        }
    }

    /// Every rank's record of `evaluation`, by rank (`None` where a rank left none: a run
    /// journaled by an earlier version, or an evaluation that runs outside the executor).
    pub(crate) fn read_all(journal: &Path, world: usize, evaluation: &str) -> Vec<Option<ShareRecord>> {
        (0..world)
            .map(|r| Self::read(&Self::path(journal, r, world, evaluation)))
            .collect()
    }
}

/// Writes a rank's record (pretty JSON, atomically) at `path`, making its rank's folder.
fn write_record(path: &Path, record: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating journal folder", dir, e))?;
    }
    let body = serde_json::to_string_pretty(record).expect("a record serializes");
    crate::evaluator::write_atomic(path, body.as_bytes())
}

/// An evaluation a rank could not finish, for an error of that evaluation alone
/// ([`Error::is_evaluation_specific`]: a row of its data, requests the model cannot run), kept
/// as `rank-R-of-N/<evaluation>.failed.json`: the rank goes on with the run's other
/// evaluations, and the merge lists this one under `failed` and writes the others' results, as
/// one process does. A rank that runs the evaluation again removes its record first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The 0-based row the error names, where it names one ([`Error::Row`]).
    pub row: Option<usize>,
    /// What went wrong (the error's message without the evaluation's name).
    pub message: String,
}

impl FailureRecord {
    fn path(journal: &Path, rank: usize, world: usize, evaluation: &str) -> PathBuf {
        rank_dir(journal, rank, world).join(format!("{evaluation}.failed.json"))
    }

    /// Records `error`, `rank`'s failure of `evaluation`: an error of the evaluation's own
    /// ([`Error::is_evaluation_specific`]); any other is refused (it stops the shard instead).
    pub(crate) fn write(journal: &Path, (rank, world): (usize, usize), evaluation: &str, error: &Error) -> Result<()> {
        let record = match error {
            Error::Row { row, message, .. } => FailureRecord {
                row: Some(*row),
                message: message.clone(),
            },
            Error::Incapable { message, .. } => FailureRecord {
                row: None,
                message: message.clone(),
            },
            other => {
                return Err(Error::Evaluation {
                    evaluation: evaluation.into(),
                    message: format!("a shard records only an evaluation's own failure, not: {other}"),
                })
            }
        };
        write_record(&Self::path(journal, rank, world, evaluation), &record)
    }

    /// Removes `rank`'s record of `evaluation` (it is about to run again).
    pub(crate) fn clear(journal: &Path, (rank, world): (usize, usize), evaluation: &str) -> Result<()> {
        let path = Self::path(journal, rank, world, evaluation);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", &path, e)),
            _ => Ok(()),
        }
    }

    /// The failure of `evaluation` as the first rank that recorded one met it, with what other
    /// ranks met where it differs; `None` when no rank recorded one. A record that cannot be
    /// read still says the evaluation failed, naming the file.
    pub(crate) fn first(journal: &Path, world: usize, evaluation: &str) -> Option<Error> {
        let mut records = (0..world).filter_map(|rank| {
            let path = Self::path(journal, rank, world, evaluation);
            path.is_file().then(|| {
                let record = crate::error::read_json::<FailureRecord>(&path).unwrap_or_else(|e| FailureRecord {
                    row: None,
                    message: format!("shard {rank} recorded a failure that cannot be read: {e}"),
                });
                (rank, record)
            })
        });
        let (_, first) = records.next()?;
        let mut message = first.message.clone();
        for (rank, other) in records {
            if !message.contains(&other.message) {
                message.push_str(&format!(" (shard {rank}: {})", other.message));
            }
        }
        let evaluation = evaluation.to_string();
        Some(match first.row {
            Some(row) => Error::Row {
                evaluation,
                row,
                message,
            },
            None => Error::Incapable { evaluation, message },
        })
    }

    /// Makes every rank that recorded a failure not done again, after a merge that reported
    /// the failures: rerunning those ranks (alone, or with the run's command) runs the
    /// evaluations again, and the last of them to finish merges anew. A marker that cannot be
    /// removed is warned of (the merge's own error, or its results, come first).
    pub(crate) fn reopen(journal: &Path, world: usize) {
        for rank in 0..world {
            let dir = rank_dir(journal, rank, world);
            let failed = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_str().is_some_and(|n| n.ends_with(".failed.json")));
            let done = dir.join("done");
            if failed && done.exists() {
                if let Err(e) = std::fs::remove_file(&done) {
                    tracing::warn!(
                        "{}: {e} (shard {rank} failed an evaluation; remove the file before rerunning it)",
                        done.display()
                    );
                }
            }
        }
    }
}

/// How a cluster launcher started this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Global rank.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Rank on this node (which device the process takes).
    pub local_rank: usize,
    /// Which launcher's variables were read (`torchrun`, `slurm`).
    pub launcher: &'static str,
}

impl Launch {
    /// Reads torchrun's (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`) or else Slurm's
    /// (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`) variables; `None` when neither
    /// launcher set them. A value that is not a number, or a rank outside the world, is an
    /// error naming the variable.
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any source of variables.
    ///
    /// ```
    /// use evalkit_core::shard::Launch;
    /// let vars = |k: &str| match k { "RANK" => Some("3".into()), "WORLD_SIZE" => Some("4".into()), "LOCAL_RANK" => Some("1".into()), _ => None };
    /// let l = Launch::from_vars(vars).unwrap().unwrap();
    /// assert_eq!((l.rank, l.world, l.local_rank, l.launcher), (3, 4, 1, "torchrun"));
    /// assert!(Launch::from_vars(|_| None).unwrap().is_none());
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        for (launcher, [rank, world, local]) in [
            ("torchrun", ["RANK", "WORLD_SIZE", "LOCAL_RANK"]),
            ("slurm", ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"]),
        ] {
            let (Some(r), Some(w)) = (var(rank), var(world)) else {
                continue;
            };
            let num = |name: &str, v: &str| {
                v.trim().parse::<usize>().map_err(|_| Error::Launch {
                    launcher,
                    message: format!("{name}={v:?} is not a number"),
                })
            };
            let (r, w) = (num(rank, &r)?, num(world, &w)?);
            let local_rank = match var(local) {
                Some(l) => num(local, &l)?,
                None => r,
            };
            if r >= w {
                return Err(Error::Launch {
                    launcher,
                    message: format!("{rank}={r} is not below {world}={w}"),
                });
            }
            return Ok(Some(Launch {
                rank: r,
                world: w,
                local_rank,
                launcher,
            }));
        }
        Ok(None)
    }
}

/// Records the run's settings in `journal/shards.json`, or checks them against the record a
/// shard already wrote: a shard started with other settings is refused, naming what differs.
/// `settings` is a JSON object (the results' config without what may differ per shard); its
/// `command` and `cwd`, where present, are kept for `evalkit merge` and not compared.
pub fn claim(journal: &Path, settings: &Value) -> Result<()> {
    let path = journal.join("shards.json");
    std::fs::create_dir_all(journal).map_err(|e| Error::io("creating journal folder", journal, e))?;
    let body = serde_json::to_string_pretty(settings).expect("settings serialize");
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut f) => {
            use std::io::Write;
            let io = |e| Error::io("writing", &path, e);
            f.write_all(body.as_bytes()).map_err(io)?;
            return f.sync_all().map_err(io);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("creating", &path, e)),
    }
    // Another shard wrote it (perhaps a moment ago: wait for the whole file).
    let mut recorded: Option<Value> = None;
    for _ in 0..50 {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
        if let Ok(v) = serde_json::from_str(&text) {
            recorded = Some(v);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let recorded = recorded.ok_or_else(|| Error::Shards {
        path: path.clone(),
        message: "is not valid JSON: remove the output directory's .journal folder to start the run afresh".into(),
    })?;
    let differs = differences(&recorded, settings);
    if differs.is_empty() {
        return Ok(());
    }
    Err(Error::Shards {
        path,
        message: format!(
            "this shard was started with settings other than the run's: {}; start every shard with the same command (or another --output)",
            differs.join("; ")
        ),
    })
}

/// Settings recorded for `evalkit merge` but not compared: their spelling may differ between
/// shards that run the same thing (`command`, `cwd`), or it follows from the model, which
/// `model` compares (`vocab_size`, which runs started by earlier versions did not record).
const NOT_COMPARED: &[&str] = &["command", "cwd", "vocab_size"];

/// The top-level keys whose values differ, as `KEY THIS here, RUN'S in the run`.
fn differences(run: &Value, this: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (run.as_object().unwrap_or(&empty), this.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !NOT_COMPARED.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "(none)".to_string(), Value::to_string);
            format!("{k} {} here, {} in the run", show(b.get(k)), show(a.get(k)))
        })
        .collect()
}

/// Marks rank `rank`'s share of every evaluation as journaled.
pub fn mark_done(journal: &Path, rank: usize, world: usize) -> Result<()> {
    let dir = rank_dir(journal, rank, world);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating journal folder", &dir, e))?;
    crate::evaluator::write_atomic(&dir.join("done"), b"done\n")
}

/// Ranks that have not marked their share done.
pub fn not_done(journal: &Path, world: usize) -> Vec<usize> {
    (0..world)
        .filter(|&r| !rank_dir(journal, r, world).join("done").is_file())
        .collect()
}

/// Takes the run's merge lock; false when another process holds it.
pub fn try_lock(journal: &Path) -> Result<bool> {
    let path = journal.join("merge.lock");
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("creating", &path, e)),
    }
}

/// Releases the run's merge lock (after a merge failed; a merge that succeeds removes the
/// run's journals).
pub fn unlock(journal: &Path) {
    let _ = std::fs::remove_file(journal.join("merge.lock"));
}

/// Removes what a `world`-shard run journaled (its settings, its ranks' folders, the merge
/// lock) once its results are written; the journals of other runs in the folder stay.
pub(crate) fn remove_run(journal: &Path, world: usize) -> Result<()> {
    for r in 0..world {
        let dir = rank_dir(journal, r, world);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("removing journal", &dir, e))?;
        }
    }
    for file in ["shards.json", "merge.lock"] {
        let path = journal.join(file);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::io("removing journal", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shard_with_other_settings_is_refused() {
        let dir = std::env::temp_dir().join(format!("evalkit-shard-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = json!({"world": 3, "batch_size": 16, "seed": 1234});
        claim(&dir, &run).unwrap();
        claim(&dir, &run).unwrap();
        let other = json!({"world": 3, "batch_size": 8, "seed": 1234});
        let e = claim(&dir, &other).unwrap_err().to_string();
        assert!(e.contains("batch_size 8 here, 16 in the run"), "{e}");
        assert!(e.contains("shards.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slurm_and_bad_values() {
        let slurm = |k: &str| match k {
            "SLURM_PROCID" => Some("5".into()),
            "SLURM_NTASKS" => Some("8".into()),
            "SLURM_LOCALID" => Some("1".into()),
            _ => None,
        };
        let l = Launch::from_vars(slurm).unwrap().unwrap();
        assert_eq!((l.rank, l.world, l.local_rank, l.launcher), (5, 8, 1, "slurm"));
        let bad = |k: &str| match k {
            "RANK" => Some("x".into()),
            "WORLD_SIZE" => Some("2".into()),
            _ => None,
        };
        let e = Launch::from_vars(bad).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Launch {
                    launcher: "torchrun",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "torchrun: RANK=\"x\" is not a number");
        let outside = |k: &str| match k {
            "RANK" => Some("2".into()),
            "WORLD_SIZE" => Some("2".into()),
            _ => None,
        };
        assert!(Launch::from_vars(outside)
            .unwrap_err()
            .to_string()
            .contains("not below"));
    }

    #[test]
    fn a_share_record_is_kept_by_the_process_that_computed_the_share() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path();
        let stats = |computed, resumed| ExecStats {
            chunks_computed: computed,
            chunks_resumed: resumed,
            ..Default::default()
        };
        let read = |rank: usize| ShareRecord::read_all(j, 2, "t")[rank].clone();
        ShareRecord::record(j, (1, 2), "t", tch::Device::Cpu, &stats(3, 0)).unwrap();
        ShareRecord::finish(j, (1, 2), "t", 2.5, None).unwrap();
        // A later process that only read the share back, and its seconds, change nothing.
        ShareRecord::record(j, (1, 2), "t", tch::Device::Cpu, &stats(0, 3)).unwrap();
        ShareRecord::finish(j, (1, 2), "t", 0.1, None).unwrap();
        assert_eq!(read(0), None, "rank 0 left no record");
        let r = read(1).unwrap();
        assert_eq!(
            (r.stats, r.wall_seconds, r.device.as_str()),
            (stats(3, 0), Some(2.5), "Cpu")
        );
        assert_eq!(r.floor_seconds(), None);
        // One that computed part of it anew replaces the record, its seconds still to come.
        ShareRecord::record(j, (1, 2), "t", tch::Device::Cpu, &stats(1, 2)).unwrap();
        assert_eq!(
            (read(1).unwrap().stats, read(1).unwrap().wall_seconds),
            (stats(1, 2), None)
        );
        // That process died before its seconds were counted: the rerun, which resumes all of
        // the share, replaces the incomplete record and completes its own.
        ShareRecord::record(j, (1, 2), "t", tch::Device::Cpu, &stats(0, 3)).unwrap();
        ShareRecord::finish(j, (1, 2), "t", 0.1, None).unwrap();
        let r = read(1).unwrap();
        assert_eq!((r.stats, r.wall_seconds), (stats(0, 3), Some(0.1)));
        // A record that cannot be read counts as none, and the next one replaces it.
        std::fs::create_dir_all(rank_dir(j, 0, 2)).unwrap();
        std::fs::write(ShareRecord::path(j, 0, 2, "t"), "{").unwrap();
        assert_eq!(read(0), None);
        ShareRecord::record(j, (0, 2), "t", tch::Device::Cpu, &stats(0, 2)).unwrap();
        assert_eq!(read(0).unwrap().stats, stats(0, 2));
    }
}
