//! The numerics every decoder shares: the checks on its inputs, position ids from a padding
//! mask, and the one additive attention bias (causal + padding). All work for left and right
//! padding and with a KV cache.

use crate::error::{Error, Result, TorchContext};
use tch::{Device, Kind, Tensor};

/// Checks a decoder's inputs and moves them to `device`: `ids` `(batch, seq)` with every id in
/// `0..vocab`, and `mask` covering the `past` cached positions plus the `seq` new ones. Returns
/// (ids, mask, seq).
pub fn check_inputs(
    ids: &Tensor,
    mask: &Tensor,
    past: i64,
    vocab: i64,
    device: Device,
) -> Result<(Tensor, Tensor, i64)> {
    let (_, s) = ids.size2().op("input ids shape")?;
    if s == 0 {
        return Err(Error::Unsupported("forward called with no tokens".into()));
    }
    let ids = ids.to_device(device);
    let mask = mask.to_device(device);
    if mask.size()[1] != past + s {
        return Err(Error::Unsupported(format!(
            "mask covers {} positions, expected {past} cached + {s} new",
            mask.size()[1]
        )));
    }
    check_ids(&ids, vocab)?;
    Ok((ids, mask, s))
}

/// Checks that every id of `ids` is in `0..vocab`.
pub fn check_ids(ids: &Tensor, vocab: i64) -> Result<()> {
    let max_id = ids.max().int64_value(&[]);
    if max_id >= vocab || ids.min().int64_value(&[]) < 0 {
        return Err(Error::Unsupported(format!(
            "token id {max_id} outside vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// Which keys each query of packed rows may attend (see [`crate::Model::hidden_states_packed`]),
/// from each token's segment (`(batch, seq)`: 0 for the shared context, `j + 1` for
/// continuation `j`, −1 for padding): query `q` attends key `k` where `k ≤ q`, `k` is real,
/// and `k` is in the context or in `q`'s own segment; every query attends itself, so no row
/// is fully masked (a padding query's output is never read). Returns `(batch, 1, seq, seq)`
/// bools.
///
/// ```
/// use evalkit_core::model::mask::tree_allowed;
/// // context of 2, continuation 1 of 2 tokens, continuation 2 of 1, one padding position
/// let seg = tch::Tensor::from_slice(&[0i64, 0, 1, 1, 2, -1]).view([1, 6]);
/// let a = tree_allowed(&seg).unwrap();
/// let row = |q: i64| -> Vec<bool> { (0..6).map(|k| a.int64_value(&[0, 0, q, k]) != 0).collect() };
/// assert_eq!(row(3), [true, true, true, true, false, false]); // context + its own segment
/// assert_eq!(row(4), [true, true, false, false, true, false]); // not continuation 1
/// assert_eq!(row(5), [true, true, false, false, false, true]); // padding (never read)
/// ```
pub fn tree_allowed(seg: &Tensor) -> Result<Tensor> {
    let (_, width) = seg.size2().op("segment shape")?;
    let (sq, sk) = (seg.unsqueeze(2), seg.unsqueeze(1));
    let idx = Tensor::f_arange(width, (Kind::Int64, seg.device())).op("arange")?;
    let causal = idx.view([1, -1]).le_tensor(&idx.view([-1, 1])).unsqueeze(0);
    let visible = sk.eq(0).logical_or(&sk.eq_tensor(&sq)).logical_and(&sk.ge(0));
    let diagonal = idx.view([1, -1]).eq_tensor(&idx.view([-1, 1])).unsqueeze(0);
    Ok(causal.logical_and(&visible).logical_or(&diagonal).unsqueeze(1))
}

/// Checks packed inputs (see [`crate::Model::hidden_states_packed`]) and moves them to
/// `device`: `ids` and `positions` `(batch, seq)`, `allowed` `(batch, 1, seq, seq)`. Returns
/// (ids, positions, additive bias in `kind`).
pub fn packed_inputs(
    ids: &Tensor,
    positions: &Tensor,
    allowed: &Tensor,
    vocab: i64,
    device: Device,
    kind: Kind,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, s) = ids.size2().op("input ids shape")?;
    if positions.size() != [b, s] || allowed.size() != [b, 1, s, s] {
        return Err(Error::Unsupported(format!(
            "packed rows: ids {:?}, positions {:?}, allowed {:?} (expected [{b}, {s}] and [{b}, 1, {s}, {s}])",
            ids.size(),
            positions.size(),
            allowed.size()
        )));
    }
    let ids = ids.to_device(device);
    check_ids(&ids, vocab)?;
    Ok((
        ids,
        positions.to_device(device),
        bias(&allowed.to_device(device), kind)?,
    ))
}

/// The additive bias of a boolean `allowed` tensor: 0 where allowed, a large negative number
/// elsewhere.
fn bias(allowed: &Tensor, kind: Kind) -> Result<Tensor> {
    let dev = allowed.device();
    let neg = match kind {
        Kind::Half => -6.0e4,
        _ => -1.0e9,
    };
    let zeros = Tensor::f_zeros([1], (kind, dev)).op("zeros")?;
    let negs = Tensor::f_full([1], neg, (kind, dev)).op("full")?;
    zeros.f_where_self(allowed, &negs).op("building attention bias")
}

/// Position ids of the `q_len` newest tokens, given the padding mask of all `past + q_len`
/// positions (`(batch, past + q_len)`, 1 = token, 0 = padding): each token's position is the
/// number of real tokens before it, so a padded row gets the positions it would have alone.
pub fn positions(mask: &Tensor, q_len: i64) -> Result<Tensor> {
    let total = mask.size()[1];
    let pos = (mask.f_cumsum(1, Kind::Int64).op("cumsum of mask")? - 1).clamp_min(0);
    pos.f_narrow(1, total - q_len, q_len).op("slicing positions")
}

/// The additive attention bias `(batch, 1, q_len, past + q_len)` in `kind`: 0 where query `i`
/// (absolute position `past + i`) may attend key `j` — `j <= past + i` and key `j` is a real
/// token — and a large negative number elsewhere. Each query may always attend its own
/// position, so the row of a padding query is never fully masked (a fully masked row would
/// give NaN, and 0 × NaN poisons real rows through the values of later layers).
pub fn attention_bias(mask: &Tensor, q_len: i64, kind: Kind) -> Result<Tensor> {
    let (_, total) = mask.size2().op("reading mask shape")?;
    let past = total - q_len;
    let dev = mask.device();
    let q = Tensor::f_arange_start(past, total, (Kind::Int64, dev))
        .op("arange")?
        .view([q_len, 1]);
    let k = Tensor::f_arange(total, (Kind::Int64, dev))
        .op("arange")?
        .view([1, total]);
    let causal = k.le_tensor(&q);
    let diagonal = k.eq_tensor(&q);
    let keys = mask.ne(0).unsqueeze(1).unsqueeze(1);
    let allowed = causal
        .unsqueeze(0)
        .unsqueeze(0)
        .logical_and(&keys)
        .logical_or(&diagonal);
    bias(&allowed, kind)
}
