//! The resume journal: one JSON-lines file per evaluation recording each finished chunk's
//! results and cost (tokens, seconds), so a killed run loses no finished work. The first line
//! holds a fingerprint of everything the results depend on (model, requests, batching); a
//! journal whose fingerprint differs is discarded. Each chunk is appended and synced before the run moves on; a torn last
//! line (a kill mid-write) is ignored and that chunk recomputed.

use crate::error::{Error, Result};
use crate::schedule::Work;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of an evaluation's journal file in its run's journal folder (or a shard's).
///
/// ```
/// assert_eq!(evalkit_core::journal::file_name("arc_easy"), "arc_easy.journal.jsonl");
/// ```
pub fn file_name(evaluation: &str) -> String {
    format!("{evaluation}.journal.jsonl")
}

/// A finished chunk: (request index, result) pairs and what computing them cost.
pub type Chunk<R> = (Vec<(usize, R)>, Work);

/// Finished chunks of one evaluation, backed by a file.
#[derive(Debug)]
pub struct Journal {
    file: std::fs::File,
    recorded: Recorded,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    fingerprint: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    chunk: usize,
    results: serde_json::Value,
    /// What the chunk cost, so a resumed run reports the tokens and seconds of all chunks.
    work: Work,
}

/// The chunks a journal file records, read without opening it for writing (how the shard
/// that merges a data-parallel run reads the other shards' journals).
#[derive(Debug)]
pub struct Recorded {
    path: PathBuf,
    chunks: HashMap<usize, (serde_json::Value, Work)>,
    foreign: bool,
    /// Chunks of a foreign journal (written for other settings), which are not read.
    discarded: usize,
}

impl Recorded {
    /// The chunks recorded at `path` for a run with `fingerprint`: none when the file is
    /// missing or was written for other settings; a torn last line is left out.
    pub fn read(path: &Path, fingerprint: &str) -> Result<Self> {
        let mut chunks = HashMap::new();
        let (mut foreign, mut discarded) = (false, 0);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading journal", path, e))?;
            let mut lines = text.split_inclusive('\n');
            let valid = lines
                .next()
                .is_some_and(|first| serde_json::from_str::<Header>(first).is_ok_and(|h| h.fingerprint == fingerprint));
            foreign = !valid;
            // Only complete lines count: a line without its newline was torn by a kill.
            for line in lines.filter(|l| l.ends_with('\n')) {
                if let Ok(e) = serde_json::from_str::<Entry>(line) {
                    if valid {
                        chunks.insert(e.chunk, (e.results, e.work));
                    } else {
                        discarded += 1;
                    }
                }
            }
        }
        Ok(Recorded {
            path: path.to_path_buf(),
            chunks,
            foreign,
            discarded,
        })
    }

    /// True when the file exists but was written for other settings (its chunks are ignored).
    pub fn is_foreign(&self) -> bool {
        self.foreign
    }

    /// How many chunks a foreign file held (0 for a journal of these settings).
    pub fn discarded(&self) -> usize {
        self.discarded
    }

    /// Number of chunks recorded.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// True when no chunk is recorded.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The recorded results of chunk `c` and what computing it cost, if any.
    pub fn get<R: DeserializeOwned>(&self, c: usize) -> Result<Option<Chunk<R>>> {
        self.chunks
            .get(&c)
            .map(|(v, work)| {
                serde_json::from_value(v.clone())
                    .map(|r| (r, *work))
                    .map_err(|e| Error::Parse {
                        path: self.path.clone(),
                        line: None,
                        message: format!("chunk {c}: {e}"),
                    })
            })
            .transpose()
    }
}

impl Journal {
    /// Opens (or starts) the journal at `path` for a run with `fingerprint`.
    pub fn open(path: &Path, fingerprint: &str) -> Result<Self> {
        let io = |e| Error::io("opening journal", path, e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let recorded = Recorded::read(path, fingerprint)?;
        if recorded.discarded() > 0 {
            // Said now, as the file is rewritten without them: an interrupted run says it too.
            tracing::warn!(
                "{}: {} chunk(s) journaled by an earlier run with other settings are discarded; this run computes them afresh",
                path.display(),
                recorded.discarded()
            );
        }
        // Rewritten (atomically) without a torn tail, or for these settings, so appends start
        // on a fresh line and a kill meanwhile loses nothing.
        let mut body = serde_json::to_string(&Header {
            fingerprint: fingerprint.into(),
        })
        .expect("header serializes");
        body.push('\n');
        let mut keys: Vec<_> = recorded.chunks.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            let (results, work) = &recorded.chunks[&k];
            body.push_str(
                &serde_json::to_string(&Entry {
                    chunk: k,
                    results: results.clone(),
                    work: *work,
                })
                .expect("entry serializes"),
            );
            body.push('\n');
        }
        crate::evaluator::write_atomic(path, body.as_bytes())?;
        let f = std::fs::OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Journal { file: f, recorded })
    }

    /// Number of chunks recorded.
    pub fn len(&self) -> usize {
        self.recorded.len()
    }

    /// Chunks an earlier journal at this path held for other settings, discarded on opening.
    pub fn discarded(&self) -> usize {
        self.recorded.discarded()
    }

    /// True when no chunk is recorded.
    pub fn is_empty(&self) -> bool {
        self.recorded.is_empty()
    }

    /// The recorded results of chunk `c` and what computing it cost, if any.
    pub fn get<R: DeserializeOwned>(&self, c: usize) -> Result<Option<Chunk<R>>> {
        self.recorded.get(c)
    }

    /// Records the results of chunk `c` and its cost durably.
    pub fn put<R: Serialize>(&mut self, c: usize, results: &[(usize, R)], work: Work) -> Result<()> {
        let value = serde_json::to_value(results).map_err(|e| Error::Parse {
            path: self.recorded.path.clone(),
            line: None,
            message: e.to_string(),
        })?;
        let line = serde_json::to_string(&Entry {
            chunk: c,
            results: value.clone(),
            work,
        })
        .expect("entry serializes");
        let io = |e| Error::io("writing journal", &self.recorded.path, e);
        self.file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.recorded.chunks.insert(c, (value, work));
        Ok(())
    }

    /// Deletes the journal file (after the results are safely written).
    pub fn remove(self) -> Result<()> {
        let path = &self.recorded.path;
        std::fs::remove_file(path).map_err(|e| Error::io("removing journal", path, e))
    }
}
