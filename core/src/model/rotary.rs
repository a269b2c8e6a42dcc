//! Rotary position embeddings (Su et al. 2021, arXiv:2104.09864) in the `rotate_half` layout of
//! Hugging Face transformers: the two halves of the rotated dimensions pair up. Llama rotates
//! every dimension of a head; GPT-NeoX its first `partial_rotary_factor` share and passes the
//! rest through.

use tch::{Device, Kind, Tensor};

/// The default inverse frequencies `1 / theta^(2i / dims)` for `i < dims / 2`, where `dims`
/// is the number of rotated dimensions of a head.
pub(crate) fn inverse_frequencies(theta: f64, dims: i64) -> Vec<f64> {
    (0..dims / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / dims as f64))
        .collect()
}

/// Inverse frequencies on the device, turning positions into cos and sin tables.
#[derive(Debug)]
pub(crate) struct Rotary {
    inv_freq: Tensor,
    pairs: i64,
    kind: Kind,
}

impl Rotary {
    /// The embedding with `inv_freq` (one per rotated pair), its tables in `kind`.
    pub(crate) fn new(inv_freq: &[f64], kind: Kind, device: Device) -> Self {
        Rotary {
            inv_freq: Tensor::from_slice(inv_freq).to_kind(Kind::Float).to_device(device),
            pairs: inv_freq.len() as i64,
            kind,
        }
    }

    /// cos and sin `(batch, 1, seq, rotated dims)` for position ids `(batch, seq)`, computed in
    /// float32 as transformers computes them.
    pub(crate) fn tables(&self, pos: &Tensor) -> (Tensor, Tensor) {
        let freqs = pos.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, self.pairs]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(self.kind), emb.sin().to_kind(self.kind))
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    Tensor::cat(&[x2.neg(), x1], 3)
}

/// `x` `(batch, heads, seq, head_dim)` with its first `cos.size(-1)` dimensions rotated by the
/// tables of [`Rotary::tables`] and the rest unchanged.
/// (A model that rotates no dimension, GPT-NeoX with a share of 0, passes `x` through.)
pub(crate) fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (dims, rotated) = (
        x.size().last().copied().unwrap_or(0),
        cos.size().last().copied().unwrap_or(0),
    );
    if rotated == 0 {
        return x.shallow_clone();
    }
    if rotated == dims {
        return x * cos + rotate_half(x) * sin;
    }
    let part = x.narrow(3, 0, rotated);
    let turned = &part * cos + rotate_half(&part) * sin;
    Tensor::cat(&[turned, x.narrow(3, rotated, dims - rotated)], 3)
}
