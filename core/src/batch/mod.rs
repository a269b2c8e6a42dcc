//! Batch execution on the model: turns a batch of token-level requests into padded tensors,
//! runs the model under no-grad, and reads back per-token log-probs or generated tokens. The
//! scheduler ([`crate::schedule`]) decides which requests form a batch; this module decides
//! their tensor layout:
//!
//! * [`score`]: scoring, with or without a shared context;
//! * [`logprobs`]: target log-probabilities and greedy tokens from the head's logits;
//! * [`generate`]: generation, prefilled into a KV cache and decoded step by step;
//! * [`sampling`]: how one next token is chosen from logits (greedy, temperature + nucleus);
//! * [`stops`]: stop strings found as a generation grows.

pub(crate) mod checked;
pub mod generate;
pub mod logprobs;
pub mod sampling;
pub mod score;
pub mod stops;

pub use generate::generate_batch;
pub use sampling::{choose_token, nucleus};
pub use score::{score_batch, score_shared, score_unshared};

use tch::{Device, Tensor};

/// Token counts of the model passes (what prefix sharing saves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenCounts {
    /// Token positions run through the model body (padding excluded).
    pub forwarded: usize,
    /// Positions the output head was applied to.
    pub scored: usize,
    /// Of the forwarded positions, those a packed scoring pass did not keep: no score reads
    /// them, so the last layer needs only their keys and values, and a model that prunes
    /// computes no more there ([`crate::model::Model::hidden_states_packed_at`]; one that does
    /// not runs them whole, and the floor's pruned rate, timed the same way, is then its body
    /// rate).
    #[serde(default)]
    pub pruned: usize,
}

impl std::ops::AddAssign for TokenCounts {
    fn add_assign(&mut self, other: TokenCounts) {
        self.forwarded += other.forwarded;
        self.scored += other.scored;
        self.pruned += other.pruned;
    }
}

/// Rows of equal length as an `(rows, width)` int64 tensor on `device`.
pub(crate) fn int_tensor(rows: &[Vec<i64>], device: Device) -> Tensor {
    let width = rows.first().map_or(0, Vec::len) as i64;
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat)
        .view([rows.len() as i64, width])
        .to_device(device)
}
