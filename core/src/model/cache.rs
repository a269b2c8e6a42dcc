//! The key/value cache of a decoder: one (key, value) pair per layer, shaped
//! `(batch, kv_heads, capacity, head_dim)`, allocated lazily once the batch size is known and
//! written in place. Capacity grows by doubling (up to the model's max length) rather than by
//! concatenating each step. Its limit is in padded positions: a batch that left-pads contexts
//! and right-pads continuations can hold up to twice the model's max length while every row's
//! real tokens (and so its position ids) stay within it. The engine uses it for generation and to score several
//! continuations after one shared context ([`KvCache::select`] copies rows for each).

use crate::error::{Result, TorchContext};
use tch::Tensor;

/// Cached keys and values of every layer for a batch of sequences.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: i64,
    max_len: i64,
}

impl KvCache {
    /// An empty cache for `num_layers` layers holding at most `max_len` (padded) positions.
    pub fn new(num_layers: usize, max_len: usize) -> Self {
        KvCache {
            layers: (0..num_layers).map(|_| None).collect(),
            len: 0,
            max_len: max_len as i64,
        }
    }

    /// Number of positions cached so far.
    pub fn current_seq_len(&self) -> usize {
        self.len as usize
    }

    /// Drops every cached position.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Writes `k`, `v` (`(batch, kv_heads, new, head_dim)`) of `layer` after the cached
    /// positions and returns views of all positions so far. Call [`KvCache::advance`] once
    /// every layer has been updated.
    pub fn update(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, new, d) = k.size4().op("reading key shape")?;
        let needed = self.len + new;
        if needed > self.max_len {
            return Err(crate::Error::Unsupported(format!(
                "KV cache overflow: {needed} positions, model max length {}",
                self.max_len
            )));
        }
        let slot = &mut self.layers[layer];
        let grow = match slot {
            Some((ck, _)) => ck.size()[2] < needed,
            None => true,
        };
        if grow {
            let cap = needed
                .max(64)
                .max(slot.as_ref().map_or(0, |(ck, _)| 2 * ck.size()[2]))
                .min(self.max_len);
            let nk = Tensor::f_zeros([b, h, cap, d], (k.kind(), k.device())).op("allocating KV cache")?;
            let nv = Tensor::f_zeros([b, h, cap, d], (v.kind(), v.device())).op("allocating KV cache")?;
            if let Some((ck, cv)) = slot.as_ref() {
                nk.narrow(2, 0, self.len)
                    .f_copy_(&ck.narrow(2, 0, self.len))
                    .op("growing KV cache")?;
                nv.narrow(2, 0, self.len)
                    .f_copy_(&cv.narrow(2, 0, self.len))
                    .op("growing KV cache")?;
            }
            *slot = Some((nk, nv));
        }
        let (ck, cv) = slot.as_ref().expect("allocated above");
        ck.narrow(2, self.len, new).f_copy_(k).op("writing KV cache")?;
        cv.narrow(2, self.len, new).f_copy_(v).op("writing KV cache")?;
        Ok((ck.narrow(2, 0, needed), cv.narrow(2, 0, needed)))
    }

    /// Marks `n` more positions as cached (after all layers were updated).
    pub fn advance(&mut self, n: usize) {
        self.len += n as i64;
    }

    /// A new cache whose row `i` is row `index[i]` of this one (rows may repeat): how a shared
    /// context's cache is handed to each of its continuations.
    pub fn select(&self, index: &Tensor) -> Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|(k, v)| -> Result<(Tensor, Tensor)> {
                        let idx = index.to_device(k.device());
                        Ok((
                            k.f_index_select(0, &idx).op("selecting KV cache rows")?,
                            v.f_index_select(0, &idx).op("selecting KV cache rows")?,
                        ))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: self.len,
            max_len: self.max_len,
        })
    }
}
