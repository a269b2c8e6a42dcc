//! Stable hashing: [`Fnv`] (FNV-1a, 64 bits — std's hasher may change between releases), the
//! per-evaluation RNG seeds derived from it ([`eval_seed`]), the start of an evaluation's
//! data fingerprint (what results.json records as `fingerprint`), and the stamp of a model's
//! files ([`files_stamp`]).

use crate::error::{Error, Result};
use crate::kinds::TaskKind;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// FNV-1a, 64 bits: a stable hash for seeds and fingerprints.
///
/// ```
/// use evalkit_core::fingerprint::Fnv;
/// assert_eq!(Fnv::default().finish(), 0xcbf2_9ce4_8422_2325);
/// assert_ne!(Fnv::default().str("ab").str("c").finish(), Fnv::default().str("a").str("bc").finish());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    /// Feeds a string (with a terminator, so concatenations differ).
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes()).bytes(&[0xff])
    }
    /// Feeds an index or count.
    pub fn row(self, i: usize) -> Self {
        self.bytes(&(i as u64).to_le_bytes())
    }
    /// Feeds integers.
    pub fn ints(self, v: &[i64]) -> Self {
        v.iter().fold(self, |h, x| h.bytes(&x.to_le_bytes())).bytes(&[0xfe])
    }
    /// The hash.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// The seed of evaluation `name`'s own RNG.
pub fn eval_seed(seed: u64, name: &str) -> u64 {
    Fnv::default().bytes(&seed.to_le_bytes()).str(name).finish()
}

/// Starts the data fingerprint of an evaluation (see [`crate::Outcome::fingerprint`]).
pub(crate) fn data_fingerprint(name: &str, kind: TaskKind) -> Fnv {
    Fnv::default().str("evalkit data v1").str(name).str(kind.as_str())
}

/// Files up to this size are stamped whole; larger ones by their head and samples.
const WHOLE: u64 = 2 << 20;
/// The head of a larger file stamped whole (a safetensors header, with its tensor names,
/// shapes and offsets, is at the start).
const HEAD: u64 = 1 << 20;
/// Blocks sampled from the rest of a larger file, evenly spread, and their size.
const SAMPLES: u64 = 256;
const BLOCK: u64 = 4 << 10;

/// A stamp of a model's files that changes when their contents change: per file, in the order
/// given, its name, its length and its bytes, or for a file over 2 MiB its first MiB and 256
/// blocks of 4 KiB spread evenly over the rest. Weights change everywhere when they change
/// (training steps, a new initialisation, a merged adapter), so the samples see it without
/// reading gigabytes. Every copy of the files gives the same stamp, on any machine, whatever
/// their times.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let w = dir.path().join("model.safetensors");
/// std::fs::write(&w, vec![1u8; 3 << 20])?;
/// let before = evalkit_core::fingerprint::files_stamp(&[w.clone()])?;
/// let mut bytes = vec![1u8; 3 << 20];
/// bytes[(3 << 20) - 1] = 2; // the last byte: in the last sampled block
/// std::fs::write(&w, bytes)?;
/// assert_ne!(evalkit_core::fingerprint::files_stamp(&[w])?, before);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn files_stamp(files: &[PathBuf]) -> Result<String> {
    let mut fp = Fnv::default().str("evalkit files v1");
    for path in files {
        let io = |e| Error::io("reading", path, e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fp = fp.str(&name).bytes(&len.to_le_bytes());
        let mut read = |at: u64, n: u64| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; n as usize];
            f.seek(SeekFrom::Start(at)).map_err(io)?;
            f.read_exact(&mut buf).map_err(io)?;
            Ok(buf)
        };
        if len <= WHOLE {
            fp = fp.bytes(&read(0, len)?);
            continue;
        }
        fp = fp.bytes(&read(0, HEAD)?);
        let span = len - HEAD - BLOCK;
        for i in 0..SAMPLES {
            fp = fp.bytes(&read(HEAD + span * i / (SAMPLES - 1), BLOCK)?);
        }
    }
    Ok(format!("{:016x}", fp.finish()))
}

/// The files of a checkpoint directory that decide what a model computes and how its text is
/// tokenized: weights (`.safetensors`, `.bin`, `.pt`), configurations and tokenizers (`.json`,
/// `.model`, `.txt`, `.tiktoken`) and chat templates (`.jinja`), sorted by name.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    const KEPT: [&str; 8] = ["safetensors", "bin", "pt", "json", "model", "txt", "tiktoken", "jinja"];
    let io = |e| Error::io("listing", dir, e);
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let kept = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| KEPT.contains(&e));
        if kept && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
