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
//!
//! [`Launch::from_env`] reads how a cluster launcher started the process: torchrun's `RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, or Slurm's `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`.

use crate::error::{Error, Result};
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
/// whole journal folder).
pub fn unlock(journal: &Path) {
    let _ = std::fs::remove_file(journal.join("merge.lock"));
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
}
