//! Scoring a batch of requests:
//!
//! * without sharing, each (context + continuation) row is left-truncated to `max_len + 1`
//!   tokens, its last token dropped, and right-padded; the output head is applied only at the
//!   scored positions;
//! * with a shared context and a model that packs ([`Model::packs`]: the Llama family, GPT-2),
//!   the batch's contexts and all their continuations run as one packed pass
//!   ([`crate::model::PackedBatch`]): no padding through the layers, each continuation at the
//!   positions after its context and attending only the context and itself: [`score_packed`];
//! * with a shared context and a model that only caches, contexts are left-padded and run once
//!   with a KV cache; the last context position scores every continuation's first token; the
//!   cache is copied to one row per continuation, which then runs `continuation[..len-1]` to
//!   score the rest: [`score_shared`];
//! * with a shared context and a model that packs, a request too long for the model (its rows
//!   truncated as without sharing, a different context tail for each continuation) runs as one
//!   packed request per continuation, the window's context tail then the continuation:
//!   `score_windows`.
//!
//! The head runs once per position: the last context position's logits score the first token
//! of every continuation (computed once, read once per continuation).
//!
//! Padded passes run their rows in groups of similar length, so that padding never exceeds a
//! quarter of a pass's real tokens (it more than doubled the work of HellaSwag's endings at
//! batch 16).

use super::{int_tensor, TokenCounts};
use crate::error::{Error, Result, TorchContext};
use crate::model::{Model, PackedBatch, PackedRequest};
use crate::request::{ContinuationScore, ScoreRequest};
use tch::Tensor;

/// Positions whose logits are computed at once: bounds the `(positions, vocab)` logits tensor
/// (about 100 MB for a 50k vocabulary in float32) whatever the batch.
const HEAD_CHUNK: usize = 512;

/// Applies the head at `(row, pos)` of `hidden`, returns (target log-probs, argmax) per entry
/// and the number of positions the head ran at: an entry whose `(row, pos)` an earlier entry
/// already has (the last context position, which scores the first token of every
/// continuation) reads that position's logits instead of running the head again.
/// The log-prob is `logit[target] − logsumexp(logits)`, the same as log_softmax without
/// materialising it; a non-finite logsumexp (a NaN or +inf logit) is an error.
fn score_positions<M: Model + ?Sized>(
    model: &M,
    hidden: &Tensor,
    rows: &[i64],
    pos: &[i64],
    targets: &[i64],
) -> Result<(Vec<f32>, Vec<i64>, usize)> {
    let dev = hidden.device();
    // Unique positions in order of first appearance, and each entry's index among them.
    let mut seen = std::collections::HashMap::with_capacity(rows.len());
    let (mut ur, mut up) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    let at: Vec<usize> = rows
        .iter()
        .zip(pos)
        .map(|(&r, &p)| {
            *seen.entry((r, p)).or_insert_with(|| {
                ur.push(r);
                up.push(p);
                ur.len() - 1
            })
        })
        .collect();
    // Entries by the head chunk their position falls in.
    let chunks = ur.len().div_ceil(HEAD_CHUNK);
    let mut by_chunk: Vec<Vec<usize>> = vec![vec![]; chunks];
    for (e, &u) in at.iter().enumerate() {
        by_chunk[u / HEAD_CHUNK].push(e);
    }
    let (mut lps, mut ams) = (vec![0f32; rows.len()], vec![0i64; rows.len()]);
    for (c, entries) in by_chunk.iter().enumerate() {
        let (start, end) = (c * HEAD_CHUNK, ((c + 1) * HEAD_CHUNK).min(ur.len()));
        let r = Tensor::from_slice(&ur[start..end]).to_device(dev);
        let p = Tensor::from_slice(&up[start..end]).to_device(dev);
        let sel = hidden.f_index(&[Some(r), Some(p)]).op("gathering scored positions")?;
        let logits = super::checked::head(model, &sel)?;
        let local: Vec<i64> = entries.iter().map(|&e| (at[e] - start) as i64).collect();
        let t: Vec<i64> = entries.iter().map(|&e| targets[e]).collect();
        let (lp, am) = super::logprobs::log_probs(&logits, &local, &t)?;
        for ((&e, l), a) in entries.iter().zip(lp).zip(am) {
            lps[e] = l;
            ams[e] = a;
        }
    }
    Ok((lps, ams, ur.len()))
}

/// Most padding a padded pass may carry: a group of rows, longest first, takes the next row
/// while its padded size stays within this factor of its real tokens.
const MAX_PADDING: f64 = 1.25;

/// Splits items of `lengths` into groups, each padded to its longest, so that no group's
/// padded size exceeds [`MAX_PADDING`] × its real size (a group of one is never padded).
/// Groups hold indices into `lengths`, longest first.
///
/// ```text
/// lengths [10, 9, 2, 2, 1] → [[0, 1], [2, 3, 4]]   (20 padded for 19 real; 6 for 5)
/// ```
fn padding_groups(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut groups: Vec<Vec<usize>> = vec![];
    let mut real = 0;
    for i in order {
        let fits = groups.last().is_some_and(|g| {
            let width = lengths[g[0]];
            ((g.len() + 1) * width) as f64 <= MAX_PADDING * (real + lengths[i]) as f64
        });
        if fits {
            groups.last_mut().expect("a group").push(i);
            real += lengths[i];
        } else {
            groups.push(vec![i]);
            real = lengths[i];
        }
    }
    groups
}

/// Scores every continuation of every request, each (context, continuation) pair as its own
/// row. Returns one score list per request, in continuation order.
pub fn score_unshared<M: Model + ?Sized>(
    model: &M,
    reqs: &[&ScoreRequest],
    counts: &mut TokenCounts,
) -> Result<Vec<Vec<ContinuationScore>>> {
    let _guard = tch::no_grad_guard();
    let max_len = model.max_len();
    let mut inputs: Vec<Vec<i64>> = vec![];
    let mut meta = vec![]; // (request, continuation, truncated)
    for (ri, r) in reqs.iter().enumerate() {
        for (ci, cont) in r.continuations.iter().enumerate() {
            if cont.len() > max_len {
                return Err(Error::Unsupported(format!(
                    "a continuation of {} tokens is longer than the model's max length {max_len}",
                    cont.len()
                )));
            }
            let full: Vec<i64> = r.context.iter().chain(cont).copied().collect();
            let start = full.len().saturating_sub(max_len + 1);
            inputs.push(full[start..full.len() - 1].to_vec());
            meta.push((ri, ci, start > 0));
        }
    }
    let mut out: Vec<Vec<ContinuationScore>> = reqs.iter().map(|r| Vec::with_capacity(r.continuations.len())).collect();
    let width = inputs.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        for &(ri, _, t) in &meta {
            out[ri].push(ContinuationScore {
                token_logprobs: vec![],
                argmax: vec![],
                truncated: t,
            });
        }
        return Ok(out);
    }
    let mut ids = vec![];
    let mut mask = vec![];
    let (mut rows, mut pos, mut targets) = (vec![], vec![], vec![]);
    for (row, (inp, &(ri, ci, _))) in inputs.iter().zip(&meta).enumerate() {
        let cont = &reqs[ri].continuations[ci];
        let mut r = inp.clone();
        r.resize(width, 0);
        ids.push(r);
        let mut m = vec![1i64; inp.len()];
        m.resize(width, 0);
        mask.push(m);
        for (k, &t) in cont.iter().enumerate() {
            rows.push(row as i64);
            pos.push((inp.len() - cont.len() + k) as i64);
            targets.push(t);
        }
        counts.forwarded += inp.len();
    }
    let dev = model.device();
    let hidden = super::checked::hidden_states(model, &int_tensor(&ids, dev), &int_tensor(&mask, dev), None)?;
    let (lp, am, heads) = score_positions(model, &hidden, &rows, &pos, &targets)?;
    counts.scored += heads;
    let mut off = 0;
    for &(ri, ci, truncated) in &meta {
        let k = reqs[ri].continuations[ci].len();
        out[ri].push(ContinuationScore {
            token_logprobs: lp[off..off + k].to_vec(),
            argmax: am[off..off + k].to_vec(),
            truncated,
        });
        off += k;
    }
    Ok(out)
}

/// Whether a request can share its context (given a model that caches): every continuation
/// non-empty and none forcing a truncation (which would cut a different context per
/// continuation).
fn fits_shared(max_len: usize, r: &ScoreRequest) -> bool {
    !r.context.is_empty() && r.len() <= max_len && r.continuations.iter().all(|c| !c.is_empty())
}

/// Scores requests with one context pass each and the KV cache reused for every continuation.
/// Every request must fit without truncation, and the model must cache.
pub fn score_shared<M: Model + ?Sized>(
    model: &M,
    reqs: &[&ScoreRequest],
    counts: &mut TokenCounts,
) -> Result<Vec<Vec<ContinuationScore>>> {
    let _guard = tch::no_grad_guard();
    let dev = model.device();
    let lc = reqs.iter().map(|r| r.context.len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (vec![], vec![]);
    for r in reqs {
        let pad = lc - r.context.len();
        ids.push(
            std::iter::repeat_n(0, pad)
                .chain(r.context.iter().copied())
                .collect::<Vec<i64>>(),
        );
        mask.push(
            std::iter::repeat_n(0, pad)
                .chain(std::iter::repeat_n(1, r.context.len()))
                .collect::<Vec<i64>>(),
        );
        counts.forwarded += r.context.len();
    }
    let ctx_mask = int_tensor(&mask, dev);
    let mut cache = model
        .new_cache()
        .ok_or_else(|| Error::Unsupported("model has no KV cache".into()))?;
    let ctx_hidden = super::checked::hidden_states(model, &int_tensor(&ids, dev), &ctx_mask, Some(&mut cache))?;
    // First tokens: from the context pass.
    let (mut r1, mut p1, mut t1) = (vec![], vec![], vec![]);
    for (ri, r) in reqs.iter().enumerate() {
        for c in &r.continuations {
            r1.push(ri as i64);
            p1.push(lc as i64 - 1);
            t1.push(c[0]);
        }
    }
    let (lp1, am1, heads) = score_positions(model, &ctx_hidden, &r1, &p1, &t1)?;
    counts.scored += heads;
    // The rest: one row per continuation longer than one token, from a copy of its context's
    // cache, in groups of similar length (so padding stays bounded).
    let (mut cont_rows, mut cont_lens) = (vec![], vec![]);
    for (ri, r) in reqs.iter().enumerate() {
        for (ci, c) in r.continuations.iter().enumerate() {
            if c.len() > 1 {
                cont_rows.push((ri, ci));
                cont_lens.push(c.len() - 1);
            }
        }
    }
    let mut rest: std::collections::HashMap<(usize, usize), (Vec<f32>, Vec<i64>)> = std::collections::HashMap::new();
    for group in padding_groups(&cont_lens) {
        let w = cont_lens[group[0]];
        let (mut ids2, mut mask2, mut src) = (vec![], vec![], vec![]);
        let (mut r2, mut p2, mut t2) = (vec![], vec![], vec![]);
        for (row, &g) in group.iter().enumerate() {
            let (ri, ci) = cont_rows[g];
            let cont = &reqs[ri].continuations[ci];
            let c = &cont[..cont.len() - 1];
            let mut r = c.to_vec();
            r.resize(w, 0);
            ids2.push(r);
            let mut m = vec![1i64; c.len()];
            m.resize(w, 0);
            mask2.push(m);
            src.push(ri as i64);
            counts.forwarded += c.len();
            for (k, &t) in cont.iter().enumerate().skip(1) {
                r2.push(row as i64);
                p2.push(k as i64 - 1);
                t2.push(t);
            }
        }
        let src = Tensor::from_slice(&src).to_device(dev);
        let mut rows_cache = cache.select(&src)?;
        let full_mask = Tensor::cat(&[ctx_mask.index_select(0, &src), int_tensor(&mask2, dev)], 1);
        let hidden = super::checked::hidden_states(model, &int_tensor(&ids2, dev), &full_mask, Some(&mut rows_cache))?;
        let (lp, am, heads) = score_positions(model, &hidden, &r2, &p2, &t2)?;
        counts.scored += heads;
        let mut off = 0;
        for &g in &group {
            let k = cont_lens[g];
            rest.insert(cont_rows[g], (lp[off..off + k].to_vec(), am[off..off + k].to_vec()));
            off += k;
        }
    }
    let mut i1 = 0;
    let mut out = vec![];
    for (ri, r) in reqs.iter().enumerate() {
        let mut scores = vec![];
        for ci in 0..r.continuations.len() {
            let mut lp = vec![lp1[i1]];
            let mut am = vec![am1[i1]];
            i1 += 1;
            if let Some((l, a)) = rest.remove(&(ri, ci)) {
                lp.extend(l);
                am.extend(a);
            }
            scores.push(ContinuationScore {
                token_logprobs: lp,
                argmax: am,
                truncated: false,
            });
        }
        out.push(scores);
    }
    Ok(out)
}

/// Scores requests as one packed batch ([`PackedBatch`]): each context once, then each
/// continuation but its last token, attending the context and itself. The last context
/// position scores every continuation's first token; the rest are scored in their own
/// segment. Every request must fit without truncation, and the model must pack
/// ([`Model::packs`]).
pub fn score_packed<M: Model + ?Sized>(
    model: &M,
    reqs: &[&ScoreRequest],
    counts: &mut TokenCounts,
) -> Result<Vec<Vec<ContinuationScore>>> {
    let _guard = tch::no_grad_guard();
    let segments: Vec<Vec<&[i64]>> = reqs
        .iter()
        .map(|r| r.continuations.iter().map(|c| &c[..c.len() - 1]).collect())
        .collect();
    let packed: Vec<PackedRequest<'_>> = reqs
        .iter()
        .zip(&segments)
        .map(|(r, s)| PackedRequest {
            context: &r.context,
            segments: s,
        })
        .collect();
    let batch = PackedBatch::with_window(&packed, model.device(), model.attention_window())?;
    // Scored positions in the batch's token order: request by request, the context, then
    // each segment.
    let (mut pos, mut t) = (vec![], vec![]);
    let mut off = 0;
    for req in reqs {
        let last = (off + req.context.len() - 1) as i64;
        off += req.context.len();
        for c in &req.continuations {
            pos.push(last);
            t.push(c[0]);
            for (k, &tok) in c.iter().enumerate().skip(1) {
                pos.push((off + k - 1) as i64);
                t.push(tok);
            }
            off += c.len() - 1;
        }
    }
    // The positions read, each once: the body returns their hidden states alone (the rest skip
    // the last layer's work past its keys and values), in this order.
    let mut kept: Vec<usize> = pos.iter().map(|&p| p as usize).collect();
    kept.sort_unstable();
    kept.dedup();
    let mut row_of = vec![0i64; batch.tokens()];
    for (row, &p) in kept.iter().enumerate() {
        row_of[p] = row as i64;
    }
    let kept_rows: Vec<i64> = pos.iter().map(|&p| row_of[p as usize]).collect();
    let hidden = super::checked::hidden_states_packed_at(model, &batch, &batch.keep(&kept)?)?;
    counts.forwarded += batch.tokens();
    counts.pruned += batch.tokens() - kept.len();
    let (lp, am, heads) = score_positions(model, &hidden, &vec![0; pos.len()], &kept_rows, &t)?;
    counts.scored += heads;
    // Scores come back per continuation: first token, then the rest, continuation by continuation.
    let mut off = 0;
    let mut out = Vec::with_capacity(reqs.len());
    for req in reqs {
        let mut scores = vec![];
        for c in &req.continuations {
            scores.push(ContinuationScore {
                token_logprobs: lp[off..off + c.len()].to_vec(),
                argmax: am[off..off + c.len()].to_vec(),
                truncated: false,
            });
            off += c.len();
        }
        out.push(scores);
    }
    Ok(out)
}

/// Whether [`score_windows`] takes `r`: a context and at least one continuation, each
/// non-empty and at most `max_len` tokens (so that its window keeps a context token).
fn fits_windows(max_len: usize, r: &ScoreRequest) -> bool {
    !r.context.is_empty()
        && !r.continuations.is_empty()
        && r.continuations.iter().all(|c| !c.is_empty() && c.len() <= max_len)
}

/// Scores each continuation of `reqs` as [`score_unshared`] does — the last `max_len + 1`
/// tokens of context + continuation, the last dropped, as the model's input — but each window
/// as a packed request of the context's tail and the continuation ([`score_packed`]): no
/// padding, and the packed path's attention. Every request must pass [`fits_windows`].
fn score_windows<M: Model + ?Sized>(
    model: &M,
    reqs: &[&ScoreRequest],
    counts: &mut TokenCounts,
) -> Result<Vec<Vec<ContinuationScore>>> {
    let max_len = model.max_len();
    let (mut windows, mut cut) = (vec![], vec![]);
    for r in reqs {
        for c in &r.continuations {
            let start = (r.context.len() + c.len()).saturating_sub(max_len + 1);
            windows.push(ScoreRequest {
                context: r.context[start..].to_vec(),
                continuations: vec![c.clone()],
            });
            cut.push(start > 0);
        }
    }
    let refs: Vec<&ScoreRequest> = windows.iter().collect();
    // One request of one continuation per window, in order.
    let mut scores = score_packed(model, &refs, counts)?.into_iter().flatten().zip(cut);
    Ok(reqs
        .iter()
        .map(|r| {
            (&mut scores)
                .take(r.continuations.len())
                .map(|(s, truncated)| ContinuationScore { truncated, ..s })
                .collect()
        })
        .collect())
}

/// Scores a batch, sharing contexts where `share` is set, the model packs or caches, and a
/// request fits without truncation; with sharing set on a model that packs, a request that
/// needs truncation runs as packed windows (`score_windows`), else as padded rows.
pub fn score_batch<M: Model + ?Sized>(
    model: &M,
    reqs: &[&ScoreRequest],
    share: bool,
    counts: &mut TokenCounts,
) -> Result<Vec<Vec<ContinuationScore>>> {
    // Whether the model packs or caches at all is asked once per batch, not once per request.
    let packs = share && model.packs();
    let share = share && (packs || model.new_cache().is_some());
    let max_len = model.max_len();
    let (shared, alone): (Vec<usize>, Vec<usize>) =
        (0..reqs.len()).partition(|&i| share && fits_shared(max_len, reqs[i]));
    let mut out: Vec<Option<Vec<ContinuationScore>>> = vec![None; reqs.len()];
    if packs && !shared.is_empty() {
        // One packed pass: no padding through the layers, attention only where the tree needs it.
        let sub: Vec<&ScoreRequest> = shared.iter().map(|&i| reqs[i]).collect();
        for (&i, s) in shared.iter().zip(score_packed(model, &sub, counts)?) {
            out[i] = Some(s);
        }
    } else if !shared.is_empty() {
        // Contexts of similar length run together (padding stays bounded).
        let lens: Vec<usize> = shared.iter().map(|&i| reqs[i].context.len()).collect();
        for group in padding_groups(&lens) {
            let sub: Vec<&ScoreRequest> = group.iter().map(|&g| reqs[shared[g]]).collect();
            for (&g, s) in group.iter().zip(score_shared(model, &sub, counts)?) {
                out[shared[g]] = Some(s);
            }
        }
    }
    // A request that needs truncation cuts a different context for each continuation: with
    // sharing on a packing model each (context tail, continuation) runs as its own packed
    // request.
    let (windows, alone): (Vec<usize>, Vec<usize>) = alone
        .into_iter()
        .partition(|&i| packs && fits_windows(max_len, reqs[i]));
    if !windows.is_empty() {
        let sub: Vec<&ScoreRequest> = windows.iter().map(|&i| reqs[i]).collect();
        for (&i, s) in windows.iter().zip(score_windows(model, &sub, counts)?) {
            out[i] = Some(s);
        }
    }
    if !alone.is_empty() {
        let sub: Vec<&ScoreRequest> = alone.iter().map(|&i| reqs[i]).collect();
        for (i, s) in alone.iter().zip(score_unshared(model, &sub, counts)?) {
            out[*i] = Some(s);
        }
    }
    Ok(out.into_iter().map(|s| s.expect("every request scored")).collect())
}

#[cfg(test)]
mod tests {
    use super::padding_groups;

    #[test]
    fn groups_bound_padding() {
        assert_eq!(padding_groups(&[10, 9, 2, 2, 1]), vec![vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(padding_groups(&[3, 3, 3]), vec![vec![0, 1, 2]]);
        assert_eq!(padding_groups(&[]), Vec::<Vec<usize>>::new());
        let lengths: Vec<usize> = (1..60).map(|i| (i * 37) % 41 + 1).collect();
        let groups = padding_groups(&lengths);
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>(), "every item once");
        for g in &groups {
            let (w, real) = (lengths[g[0]], g.iter().map(|&i| lengths[i]).sum::<usize>());
            assert!((g.len() * w) as f64 <= 1.25 * real as f64 || g.len() == 1, "{g:?}");
        }
    }
}
