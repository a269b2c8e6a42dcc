//! Packed scoring batches: every context of a batch with all its continuations in one pass of
//! the body, without padding through the layers and with attention that computes only what a
//! tree of prefixes needs.
//!
//! A [`PackedBatch`] holds the batch's real tokens as one row `(1, tokens)`, laid out request
//! by request: the context, then each of its segments (a continuation but its last token) in
//! order. The linear layers, norms and embeddings run on that row as they would on any other;
//! only attention ([`PackedBatch::attend`]) looks at the structure, in two calls:
//!
//! * the contexts, right-padded to `(requests, longest context)`, attend causally among
//!   themselves (no mask: a real query never reaches a padding key);
//! * the segments, in rows of one request's segments side by side (a row takes the next segment
//!   while it stays within the batch's longest segment, or [`ROW_GOAL`] tokens), right-padded
//!   to `(segment rows, longest row)`, attend their context's keys and values and, causally,
//!   their own segment's (an additive bias).
//!
//! A model with a sliding window ([`PackedBatch::with_window`]) has both calls masked to it
//! where some row runs past the window.
//!
//! So the attention work is about `Σ context² / 2 + Σ segments × (context + segments)` instead
//! of the `(context + Σ segments)²` of one dense row under a tree mask, and no layer computes
//! padding but attention's. Each token sees exactly what it would see in its own (context +
//! continuation) row, at the positions it would have there.

use super::spans::{self, Spans};
use crate::error::{Error, Result, TorchContext};
use std::cell::OnceCell;
use tch::{Device, Tensor};

/// Tokens a segment row holds at least when segments are short: the query block of CPU
/// flash attention.
pub const ROW_GOAL: usize = 32;

/// One request of a packed batch: its context and the segments run after it (each a
/// continuation without its last token; empty for a one-token continuation).
#[derive(Debug, Clone, Copy)]
pub struct PackedRequest<'a> {
    /// The shared context (at least one token).
    pub context: &'a [i64],
    /// The segments, each attending the context and itself.
    pub segments: &'a [&'a [i64]],
}

/// Positions of a [`PackedBatch`] whose hidden states a pass returns ([`PackedBatch::keep`]).
#[derive(Debug)]
pub struct Kept {
    /// The positions, int64 on the batch's device.
    index: Tensor,
    /// The keys each attends.
    spans: Vec<Spans>,
    /// The tokens of the batch they are positions of.
    of_tokens: usize,
}

impl Kept {
    /// The positions as an int64 index `(kept,)` on the batch's device, for `index_select`.
    pub fn index(&self) -> &Tensor {
        &self.index
    }

    /// How many positions are kept.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// The tensors of a packed scoring pass (see the module docs).
///
/// ```
/// use evalkit_core::model::packed::{PackedBatch, PackedRequest};
/// let (a, b): (&[i64], &[i64]) = (&[7, 8], &[]);
/// let segments: &[&[i64]] = &[a, b];
/// let batch = PackedBatch::new(
///     &[PackedRequest { context: &[1, 2, 3], segments }],
///     tch::Device::Cpu,
/// )?;
/// assert_eq!(batch.tokens(), 5); // context 1 2 3, then segment 7 8
/// assert_eq!(Vec::<i64>::try_from(batch.positions().view([-1])).unwrap(), [0, 1, 2, 3, 4]);
/// # Ok::<(), evalkit_core::Error>(())
/// ```
#[derive(Debug)]
pub struct PackedBatch {
    ids: Tensor,
    positions: Tensor,
    /// `(requests × ctx_width)` flat indices of the contexts' tokens (padding → token 0).
    ctx_index: Tensor,
    ctx_rows: i64,
    ctx_width: i64,
    /// `(segment rows × seg_width)` flat indices of the segments' tokens (padding → token 0).
    seg_index: Tensor,
    /// The request of each segment row.
    seg_request: Tensor,
    seg_rows: i64,
    seg_width: i64,
    /// `(segment rows, 1, seg_width, ctx_width + seg_width)`: which keys the segments'
    /// queries attend.
    seg_allowed: Option<Tensor>,
    /// `seg_allowed` as an additive bias in the activations' kind, made by the first layer.
    seg_bias: OnceCell<Tensor>,
    /// For each token, its row in the concatenated outputs of the two passes.
    back: Tensor,
    /// For each token, the keys it attends ([`super::spans`], the CPU path).
    spans: Vec<Spans>,
    tokens: usize,
    /// The model's sliding window ([`PackedBatch::with_window`]).
    window: Option<usize>,
    /// Where the window leaves out keys of some token: `(ctx_width, ctx_width)`, which keys
    /// each context query attends (causal, within the window); attention then takes the
    /// padded passes.
    ctx_allowed: Option<Tensor>,
    /// `ctx_allowed` as an additive bias, made by the first layer.
    ctx_bias: OnceCell<Tensor>,
}

impl PackedBatch {
    /// Lays out `requests` on `device`, for a model whose queries attend every key before
    /// them.
    pub fn new(requests: &[PackedRequest<'_>], device: Device) -> Result<PackedBatch> {
        Self::with_window(requests, device, None)
    }

    /// Lays out `requests` on `device` for a model whose queries attend only their last
    /// `window` positions where it has a window ([`crate::model::Model::attention_window`]).
    /// Where the window leaves out keys of some token (a row longer than it), attention takes
    /// the padded passes under masks that apply it.
    ///
    /// ```
    /// use evalkit_core::model::packed::{PackedBatch, PackedRequest};
    /// let segments: &[&[i64]] = &[&[7, 8]];
    /// let requests = [PackedRequest { context: &[1, 2, 3], segments }];
    /// let batch = PackedBatch::with_window(&requests, tch::Device::Cpu, Some(4))?;
    /// assert!(batch.check_window(Some(4)).is_ok() && batch.check_window(None).is_err());
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn with_window(requests: &[PackedRequest<'_>], device: Device, window: Option<usize>) -> Result<PackedBatch> {
        if window == Some(0) {
            return Err(Error::Unsupported("a sliding window of 0 keys".into()));
        }
        if requests.iter().any(|r| r.context.is_empty()) {
            return Err(Error::Unsupported("a packed request with an empty context".into()));
        }
        let ctx_rows = requests.len();
        let ctx_width = requests.iter().map(|r| r.context.len()).max().unwrap_or(0);
        // Segment rows: a request's segments side by side, each segment's queries attending
        // its own span; a row takes the request's next segment while it stays within the
        // batch's longest segment (or ROW_GOAL tokens). Short continuations so share rows
        // (attention's cost on CPU follows its rows × heads more than its keys), and long ones
        // keep their own (a row's attention grows with its width squared).
        let goal = requests
            .iter()
            .flat_map(|r| r.segments.iter().map(|s| s.len()))
            .max()
            .unwrap_or(0)
            .max(ROW_GOAL);
        let row_len = |row: &[&[i64]]| row.iter().map(|s| s.len()).sum::<usize>();
        let mut seg_rows: Vec<(usize, Vec<&[i64]>)> = vec![];
        for (i, r) in requests.iter().enumerate() {
            let mut row: Vec<&[i64]> = vec![];
            for s in r.segments.iter().copied().filter(|s| !s.is_empty()) {
                if !row.is_empty() && row_len(&row) + s.len() > goal {
                    seg_rows.push((i, std::mem::take(&mut row)));
                }
                row.push(s);
            }
            if !row.is_empty() {
                seg_rows.push((i, row));
            }
        }
        let seg_width = seg_rows.iter().map(|(_, row)| row_len(row)).max().unwrap_or(0);
        let (mut ids, mut positions) = (vec![], vec![]);
        let mut ctx_index = vec![0i64; ctx_rows * ctx_width];
        let mut seg_index = vec![0i64; seg_rows.len() * seg_width];
        let total: usize = requests.iter().map(|r| r.context.len() + row_len(r.segments)).sum();
        let mut back = vec![0i64; total];
        let seg_base = (ctx_rows * ctx_width) as i64;
        let mut spans = Vec::with_capacity(total);
        if total > u32::MAX as usize {
            return Err(Error::Unsupported(format!("a packed batch of {total} tokens")));
        }
        let span = |a: usize, b: usize| (a as u32, b as u32); // below `total`, checked above
        let mut k = 0;
        for (i, r) in requests.iter().enumerate() {
            let cs = ids.len();
            let ctx = span(cs, cs + r.context.len());
            for (p, &t) in r.context.iter().enumerate() {
                spans.push(Spans {
                    first: span(cs, cs + p + 1),
                    second: (0, 0),
                });
                ctx_index[i * ctx_width + p] = ids.len() as i64;
                back[ids.len()] = (i * ctx_width + p) as i64;
                ids.push(t);
                positions.push(p as i64);
            }
            // This request's rows, in order.
            while let Some((_, row)) = seg_rows.get(k).filter(|(j, _)| *j == i) {
                let mut col = 0;
                for s in row {
                    let ss = ids.len();
                    for (p, &t) in s.iter().enumerate() {
                        spans.push(Spans {
                            first: ctx,
                            second: span(ss, ss + p + 1),
                        });
                        seg_index[k * seg_width + col] = ids.len() as i64;
                        back[ids.len()] = seg_base + (k * seg_width + col) as i64;
                        ids.push(t);
                        positions.push((r.context.len() + p) as i64);
                        col += 1;
                    }
                }
                k += 1;
            }
        }
        let tokens = ids.len();
        let tensor = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        let seg_allowed = if seg_rows.is_empty() {
            None
        } else {
            // Query `q` of a row (in the segment starting at `start[q]`) attends the context's
            // real keys and the keys `start[q]..=q` of its row; a padding query, itself.
            let (lc, w) = (ctx_width, seg_width);
            let mut allowed = vec![false; seg_rows.len() * w * (lc + w)];
            for (k, (i, row)) in seg_rows.iter().enumerate() {
                let c = requests[*i].context.len();
                let mut start = 0;
                let mut starts = vec![];
                for s in row {
                    starts.extend(std::iter::repeat_n(start, s.len()));
                    start += s.len();
                }
                for q in 0..w {
                    let line = &mut allowed[(k * w + q) * (lc + w)..(k * w + q + 1) * (lc + w)];
                    match starts.get(q) {
                        Some(&from) => {
                            // Keys at positions from `lo` on: the context's, then the segment's.
                            let lo = window.map_or(0, |win| (c + q - from + 1).saturating_sub(win));
                            line[lo.min(c)..c].fill(true);
                            line[lc + from + lo.saturating_sub(c)..=lc + q].fill(true);
                        }
                        None => line[lc + q] = true,
                    }
                }
            }
            Some(
                Tensor::from_slice(&allowed)
                    .view([seg_rows.len() as i64, 1, w as i64, (lc + w) as i64])
                    .to_device(device),
            )
        };
        // A token attends as many keys as its position + 1: the window leaves some out where a
        // request runs past it.
        let longest = requests
            .iter()
            .map(|r| r.context.len() + r.segments.iter().map(|s| s.len()).max().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let ctx_allowed = match window {
            Some(win) if longest > win => {
                let lc = ctx_width as i64;
                let q = Tensor::arange(lc, (tch::Kind::Int64, device)).view([lc, 1]);
                let k = Tensor::arange(lc, (tch::Kind::Int64, device)).view([1, lc]);
                let behind = &q - &k;
                Some(behind.ge(0).logical_and(&behind.lt(win as i64)))
            }
            _ => None,
        };
        let seg_request: Vec<i64> = seg_rows.iter().map(|&(i, _)| i as i64).collect();
        Ok(PackedBatch {
            ids: tensor(&ids).view([1, -1]),
            positions: tensor(&positions).view([1, -1]),
            ctx_index: tensor(&ctx_index),
            ctx_rows: ctx_rows as i64,
            ctx_width: ctx_width as i64,
            seg_index: tensor(&seg_index),
            seg_request: tensor(&seg_request),
            seg_rows: seg_rows.len() as i64,
            seg_width: seg_width as i64,
            seg_allowed,
            seg_bias: OnceCell::new(),
            back: tensor(&back),
            spans,
            tokens,
            window,
            ctx_allowed,
            ctx_bias: OnceCell::new(),
        })
    }

    /// Fails unless the batch was laid out for a model attending through `window`
    /// ([`PackedBatch::with_window`]): a batch laid out for another would attend other keys.
    pub fn check_window(&self, window: Option<usize>) -> Result<()> {
        if self.window == window {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "a packed batch laid out for sliding window {:?}, run on a model whose window is {window:?} (lay it out with PackedBatch::with_window and the model's attention_window())",
            self.window
        )))
    }

    /// Real tokens in the batch (the width of its one row).
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The tokens, `(1, tokens)` int64.
    pub fn ids(&self) -> &Tensor {
        &self.ids
    }

    /// Each token's position in its own (context + continuation) row, `(1, tokens)` int64.
    pub fn positions(&self) -> &Tensor {
        &self.positions
    }

    /// Attention over the batch's tree of prefixes: `q` `(1, heads, tokens, head_dim)`, `k` and
    /// `v` `(1, kv_heads, tokens, head_dim)` (grouped-query attention when fewer), `scale` as
    /// in scaled_dot_product_attention. Returns `(1, tokens, heads × head_dim)`.
    ///
    /// On the CPU in float32 with heads 8 or 16 wide this runs evalkit's own kernel on the
    /// packed row, each token over its spans of keys (faster there than libtorch's);
    /// elsewhere, and where a sliding window leaves out keys, libtorch's kernel on the two
    /// padded passes ([`PackedBatch::attend_padded`]).
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, scale: Option<f64>) -> Result<Tensor> {
        if spans::applies(q) && self.ctx_allowed.is_none() {
            spans::attend(q, k, v, &self.spans, scale)
        } else {
            self.attend_padded(q, k, v, scale)
        }
    }

    /// The positions `positions` of the batch (token indices, each once) as a [`Kept`]: the
    /// rows a pass carries through its last layer when only their hidden states are read
    /// ([`crate::model::Model::hidden_states_packed_at`]). An error names a position outside
    /// the batch or given twice.
    ///
    /// ```
    /// use evalkit_core::model::packed::{PackedBatch, PackedRequest};
    /// let batch = PackedBatch::new(&[PackedRequest { context: &[1, 2, 3], segments: &[] }], tch::Device::Cpu)?;
    /// assert_eq!(batch.keep(&[2, 0])?.len(), 2);
    /// assert!(batch.keep(&[3]).is_err());
    /// assert!(batch.keep(&[1, 1]).is_err());
    /// # Ok::<(), evalkit_core::Error>(())
    /// ```
    pub fn keep(&self, positions: &[usize]) -> Result<Kept> {
        let mut seen = vec![false; self.tokens];
        for &p in positions {
            match seen.get_mut(p) {
                None => {
                    return Err(Error::Unsupported(format!(
                        "kept position {p} is outside the batch's {} tokens",
                        self.tokens
                    )))
                }
                Some(true) => return Err(Error::Unsupported(format!("position {p} is kept twice"))),
                Some(s) => *s = true,
            }
        }
        let index: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        Ok(Kept {
            index: Tensor::from_slice(&index).to_device(self.ids.device()),
            spans: positions.iter().map(|&p| self.spans[p]).collect(),
            of_tokens: self.tokens,
        })
    }

    /// [`PackedBatch::attend`] for the queries of the `kept` positions alone: `q`
    /// `(1, heads, kept, head_dim)` over the keys and values of every token, `(1, kv_heads,
    /// tokens, head_dim)`; returns `(1, kept, heads × head_dim)`, each row what
    /// [`PackedBatch::attend`] gives at that position. On the padded path (GPUs, wide heads)
    /// the other queries are zeros and their rows are dropped: only the layer's other work is
    /// saved there. `kept` must come from this batch's [`PackedBatch::keep`].
    pub fn attend_kept(&self, q: &Tensor, k: &Tensor, v: &Tensor, kept: &Kept, scale: Option<f64>) -> Result<Tensor> {
        if kept.of_tokens != self.tokens {
            return Err(Error::Unsupported(format!(
                "kept positions of a batch of {} tokens, attending a batch of {}",
                kept.of_tokens, self.tokens
            )));
        }
        if spans::applies(q) && self.ctx_allowed.is_none() {
            return spans::attend(q, k, v, &kept.spans, scale);
        }
        let (_, heads, _, dim) = q.size4().op("attention query shape")?;
        let all = Tensor::f_zeros([1, heads, self.tokens as i64, dim], (q.kind(), q.device()))
            .and_then(|z| z.f_index_copy(2, &kept.index, q))
            .op("placing the kept queries")?;
        self.attend_padded(&all, k, v, scale)?
            .f_index_select(1, &kept.index)
            .op("selecting the kept rows")
    }

    /// [`PackedBatch::attend`] as libtorch's scaled_dot_product_attention on the contexts and
    /// the segment rows, each padded to a rectangle (the path for GPUs and wide heads).
    pub fn attend_padded(&self, q: &Tensor, k: &Tensor, v: &Tensor, scale: Option<f64>) -> Result<Tensor> {
        let (_, heads, _, dim) = q.size4().op("attention query shape")?;
        // (1, h, T, d) → rows of `index` as (rows, h, width, d)
        let gather = |x: &Tensor, index: &Tensor, rows: i64, width: i64| -> Tensor {
            let h = x.size()[1];
            x.squeeze_dim(0)
                .transpose(0, 1)
                .index_select(0, index)
                .view([rows, width, h, dim])
                .transpose(1, 2)
        };
        let (b, lc) = (self.ctx_rows, self.ctx_width);
        let kc = gather(k, &self.ctx_index, b, lc);
        let vc = gather(v, &self.ctx_index, b, lc);
        let qc = gather(q, &self.ctx_index, b, lc);
        let yc = match &self.ctx_allowed {
            None => super::mask::sdpa(&qc, &kc, &vc, None, true, scale)?,
            Some(allowed) => {
                let bias = cached_bias(&self.ctx_bias, allowed, q.kind())?;
                super::mask::sdpa(&qc, &kc, &vc, Some(bias), false, scale)?
            }
        }
        .transpose(1, 2)
        .reshape([b * lc, heads * dim]);
        let all = match &self.seg_allowed {
            None => yc,
            Some(allowed) => {
                let bias = cached_bias(&self.seg_bias, allowed, q.kind())?;
                let (n, lk) = (self.seg_rows, self.seg_width);
                let qs = gather(q, &self.seg_index, n, lk);
                let ks = Tensor::cat(
                    &[kc.index_select(0, &self.seg_request), gather(k, &self.seg_index, n, lk)],
                    2,
                );
                let vs = Tensor::cat(
                    &[vc.index_select(0, &self.seg_request), gather(v, &self.seg_index, n, lk)],
                    2,
                );
                let ys = super::mask::sdpa(&qs, &ks, &vs, Some(bias), false, scale)?
                    .transpose(1, 2)
                    .reshape([n * lk, heads * dim]);
                Tensor::cat(&[yc, ys], 0)
            }
        };
        Ok(all.index_select(0, &self.back).unsqueeze(0))
    }
}

/// The additive bias of `allowed` in `kind`, made once (by the first layer) and kept in `cell`.
fn cached_bias<'a>(cell: &'a OnceCell<Tensor>, allowed: &Tensor, kind: tch::Kind) -> Result<&'a Tensor> {
    match cell.get() {
        Some(b) => Ok(b),
        None => {
            let b = super::mask::bias(allowed, kind)?;
            Ok(cell.get_or_init(|| b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PackedBatch, PackedRequest};
    use tch::{Device, Kind, Tensor};

    /// A batch on the CPU of requests given as (context length, segment lengths), every token 0.
    fn batch_of(requests: &[(usize, &[usize])]) -> PackedBatch {
        let tokens: Vec<(Vec<i64>, Vec<Vec<i64>>)> = requests
            .iter()
            .map(|&(context, segments)| (vec![0; context], segments.iter().map(|&n| vec![0; n]).collect()))
            .collect();
        let segments: Vec<Vec<&[i64]>> = tokens
            .iter()
            .map(|(_, segments)| segments.iter().map(Vec::as_slice).collect())
            .collect();
        let requests: Vec<PackedRequest<'_>> = tokens
            .iter()
            .zip(&segments)
            .map(|((context, _), segments)| PackedRequest { context, segments })
            .collect();
        PackedBatch::new(&requests, Device::Cpu).expect("layout")
    }

    /// Every token's packed attention equals attention over its own (context + continuation)
    /// row, with grouped-query heads, contexts and segments of unequal lengths, a one-token
    /// continuation (an empty segment), short segments sharing a row and a long one that
    /// takes its own.
    #[test]
    fn packed_attention_equals_each_row_alone() {
        tch::manual_seed(0);
        let batch = batch_of(&[(5, &[3, 0]), (2, &[1, 4]), (3, &[20, 20, 40])]);
        let t = batch.tokens() as i64;
        assert_eq!(t, 5 + 3 + 2 + 1 + 4 + 3 + 80);
        // Rows: request 0's segment, request 1's two, request 2's first two (40 tokens, the
        // longest segment), then its third.
        assert_eq!((batch.seg_rows, batch.seg_width), (4, 40));
        let (heads, kv_heads, dim) = (4, 2, 8);
        let q = Tensor::randn([1, heads, t, dim], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([1, kv_heads, t, dim], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([1, kv_heads, t, dim], (Kind::Float, Device::Cpu));
        // Both paths: the span kernel (CPU, 8 wide) and libtorch's on the padded passes.
        let y = batch.attend(&q, &k, &v, None).expect("attend");
        let y_padded = batch.attend_padded(&q, &k, &v, None).expect("attend padded");
        assert_eq!(y.size(), [1, t, heads * dim]);
        assert_eq!(y_padded.size(), [1, t, heads * dim]);
        // Each row alone (its tokens' indices in the packed order), attended causally; the
        // one-token continuation of request 0 runs no segment.
        let rows: [Vec<i64>; 6] = [
            (0..8).collect(),                 // context 0, segment 0.0
            (8..11).collect(),                // context 1, segment 1.0
            (8..10).chain(11..15).collect(),  // context 1, segment 1.1
            (15..38).collect(),               // context 2, segment 2.0
            (15..18).chain(38..58).collect(), // context 2, segment 2.1
            (15..18).chain(58..98).collect(), // context 2, segment 2.2
        ];
        for (r, idx) in rows.iter().enumerate() {
            let index = Tensor::from_slice(idx);
            let pick = |x: &Tensor| {
                x.index_select(2, &index)
                    .repeat_interleave_self_int(heads / x.size()[1], 1, None)
            };
            let alone = Tensor::scaled_dot_product_attention(
                &q.index_select(2, &index),
                &pick(&k),
                &pick(&v),
                None::<Tensor>,
                0.0,
                true,
                None,
                false,
            )
            .transpose(1, 2)
            .reshape([idx.len() as i64, heads * dim]);
            for (path, y) in [("spans", &y), ("padded", &y_padded)] {
                let packed = y.squeeze_dim(0).index_select(0, &index);
                let diff = (&alone - packed).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{path}, row {r}: max difference {diff}");
            }
        }
    }

    /// The CPU span path and libtorch's padded passes agree at every head size the span path
    /// takes, with grouped-query heads and an explicit scale.
    #[test]
    fn span_path_equals_padded_path() {
        tch::manual_seed(1);
        let batch = batch_of(&[(37, &[5, 1, 19]), (1, &[70])]);
        let t = batch.tokens() as i64;
        let cpu = |dim: i64| Tensor::zeros([1, 1, 1, dim], (Kind::Float, Device::Cpu));
        assert!(!super::spans::applies(&cpu(32)) && !super::spans::applies(&cpu(64)));
        for (dim, heads, kv_heads, scale) in [(8, 8, 4, None), (16, 6, 6, Some(0.3)), (16, 4, 1, None)] {
            assert!(super::spans::applies(&cpu(dim)));
            let q = Tensor::randn([1, heads, t, dim], (Kind::Float, Device::Cpu));
            let k = Tensor::randn([1, kv_heads, t, dim], (Kind::Float, Device::Cpu)) * 3.0;
            let v = Tensor::randn([1, kv_heads, t, dim], (Kind::Float, Device::Cpu));
            let fast = batch.attend(&q, &k, &v, scale).expect("span path");
            let padded = batch.attend_padded(&q, &k, &v, scale).expect("padded path");
            let diff = (fast - padded).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "head size {dim}: max difference {diff}");
        }
    }

    /// The queries of some positions alone (out of order, the first and the last among them)
    /// give those positions' rows of the whole attention, on the span path (float32) and on
    /// the padded one (float64).
    #[test]
    fn kept_queries_give_their_rows() {
        tch::manual_seed(2);
        let batch = batch_of(&[(37, &[5, 19]), (3, &[21])]);
        let t = batch.tokens() as i64;
        let positions = [t as usize - 1, 0, 40, 36, 41, 61, 64];
        let kept = batch.keep(&positions).expect("kept positions");
        assert_eq!(kept.len(), positions.len());
        for (kind, spans) in [(Kind::Float, true), (Kind::Double, false)] {
            let (heads, kv_heads, dim) = (4, 2, 8);
            let q = Tensor::randn([1, heads, t, dim], (kind, Device::Cpu));
            let k = Tensor::randn([1, kv_heads, t, dim], (kind, Device::Cpu));
            let v = Tensor::randn([1, kv_heads, t, dim], (kind, Device::Cpu));
            let q_kept = q.index_select(2, kept.index());
            assert_eq!(super::spans::applies(&q_kept), spans);
            let got = batch.attend_kept(&q_kept, &k, &v, &kept, None).expect("kept");
            let want = batch
                .attend(&q, &k, &v, None)
                .expect("all")
                .index_select(1, kept.index());
            assert_eq!(got.size(), [1, positions.len() as i64, heads * dim]);
            let diff = (got - want).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{kind:?}: max difference {diff}");
            // Positions kept in another batch are refused.
            let other = batch_of(&[(3, &[21])]);
            let theirs = other.keep(&[0]).expect("kept");
            let e = batch
                .attend_kept(&q.narrow(2, 0, 1), &k, &v, &theirs, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("a batch of 24 tokens, attending a batch of 85"), "{e}");
        }
    }
}
