//! Stable hashing: [`Fnv`] (FNV-1a, 64 bits — std's hasher may change between releases), the
//! per-evaluation RNG seeds derived from it ([`eval_seed`]), and the start of an evaluation's
//! data fingerprint (what results.json records as `fingerprint`).

use crate::kinds::TaskKind;

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
