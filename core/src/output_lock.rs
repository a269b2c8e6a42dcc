//! Locks on a run's output folder, so that two processes never journal into it at once: a
//! whole run holds the folder exclusively; each shard of a sharded run holds it shared (its
//! shards run side by side, but no whole run joins them) and its own rank's folder
//! exclusively (a shard rerun while the first of its rank is still running — an orphan of a
//! stopped launcher, a second launch — is refused). The locks are advisory `flock`s on the
//! folders themselves (no lock file is left behind) and go with the process, however it ends.

use crate::error::{Error, Result};
use crate::shard::{rank_dir, Share};
use std::fs::{File, TryLockError};
use std::path::Path;

/// The locks a run holds while it runs (released when dropped).
#[derive(Debug)]
pub(crate) struct OutputLock {
    _held: Vec<File>,
}

impl OutputLock {
    /// Takes the locks `share` needs on the output folder `dir` (which exists), or says who
    /// holds them.
    pub(crate) fn acquire(dir: &Path, share: Share) -> Result<OutputLock> {
        let held = match share {
            Share::Whole => vec![lock(dir, true, || {
                "another evalkit run is writing into this folder (it holds the folder's lock): wait for it to end, or give another --output".to_string()
            })?],
            Share::Rank { rank, world } => {
                let folder = lock(dir, false, || {
                    "a run that is not this sharded one is writing into this folder (it holds the folder's lock): wait for it to end, or give another --output".to_string()
                })?;
                let own = rank_dir(&dir.join(".journal"), rank, world);
                std::fs::create_dir_all(&own).map_err(|e| Error::io("creating journal folder", &own, e))?;
                let rank_lock = lock(&own, true, || {
                    format!(
                        "shard {rank} of {world} is already running into this run's folder (a process holds its journal's lock: a shard of an earlier launch still running?): wait for it to end, or stop it, before running this shard again"
                    )
                })?;
                vec![folder, rank_lock]
            }
            Share::Merge { .. } => vec![lock(dir, false, || {
                "a run that is not this sharded one is writing into this folder (it holds the folder's lock): wait for it to end".to_string()
            })?],
        };
        Ok(OutputLock {
            _held: held.into_iter().flatten().collect(),
        })
    }

    /// Takes the lock a merge of a sharded run holds on its journal folder `journal` while it
    /// gathers the shares and removes their journals: one merge at a time (`evalkit merge`
    /// beside the last shard's own).
    pub(crate) fn merging(journal: &Path) -> Result<OutputLock> {
        let held = lock(journal, true, || {
            "another process is merging this run's results (`evalkit merge`, or the last shard to finish): wait for it to end".to_string()
        })?;
        Ok(OutputLock {
            _held: held.into_iter().collect(),
        })
    }
}

/// Locks the folder `path` (exclusively, or shared) without waiting; `busy` says why not. A
/// file system that cannot lock (some network file systems) leaves the run unlocked, with a
/// warning: the lock guards against a mistake, and its absence must not stop a run.
fn lock(path: &Path, exclusive: bool, busy: impl FnOnce() -> String) -> Result<Option<File>> {
    let cannot = |e: &dyn std::fmt::Display| {
        tracing::warn!(
            "{}: cannot be locked ({e}): nothing keeps another run from writing into it meanwhile",
            path.display()
        );
    };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            cannot(&e);
            return Ok(None);
        }
    };
    let taken = if exclusive { f.try_lock() } else { f.try_lock_shared() };
    match taken {
        Ok(()) => Ok(Some(f)),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
            message: busy(),
        }),
        Err(TryLockError::Error(e)) => {
            cannot(&e);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_into_one_folder_exclude_each_other() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let whole = OutputLock::acquire(dir, Share::Whole).expect("free");
        let e = OutputLock::acquire(dir, Share::Whole).expect_err("held").to_string();
        assert!(e.contains("another evalkit run is writing into this folder"), "{e}");
        let e = OutputLock::acquire(dir, Share::Rank { rank: 0, world: 2 }).expect_err("held");
        assert!(e.to_string().contains("not this sharded one"), "{e}");
        drop(whole);
        // Shards run side by side, one process per rank, and keep a whole run out.
        let zero = OutputLock::acquire(dir, Share::Rank { rank: 0, world: 2 }).expect("rank 0");
        let _one = OutputLock::acquire(dir, Share::Rank { rank: 1, world: 2 }).expect("rank 1");
        let e = OutputLock::acquire(dir, Share::Rank { rank: 0, world: 2 }).expect_err("rank 0 runs");
        assert!(e.to_string().contains("shard 0 of 2 is already running"), "{e}");
        assert!(OutputLock::acquire(dir, Share::Whole).is_err());
        drop(zero);
        let _again = OutputLock::acquire(dir, Share::Rank { rank: 0, world: 2 }).expect("rank 0 ended");
        let _merge = OutputLock::acquire(dir, Share::Merge { world: 2 }).expect("shared");
        // One merge at a time.
        let journal = dir.join(".journal");
        let merging = OutputLock::merging(&journal).expect("free");
        let e = OutputLock::merging(&journal).expect_err("held").to_string();
        assert!(e.contains("another process is merging"), "{e}");
        drop(merging);
        let _next = OutputLock::merging(&journal).expect("released");
    }
}
