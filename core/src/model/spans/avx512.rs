//! The span kernel on AVX-512 registers with the queries across the lanes: sixteen queries of
//! one packed request (a tile) per vector, so that every key and value is read once per tile
//! and query head and broadcast, the softmax's maximum and sum are lane-wise (no horizontal
//! reductions per query), and no accumulator is spilled. On the `packed_attention` benchmark
//! (one thread) it takes 0.97 ms at stories260K's heads (8 of 8 wide) and 1.93 ms at 8 of 16
//! wide, where the
//! kernel before it — sixteen keys per vector, one query (two heads) at a time — took 1.46 and
//! 3.13 ms: that one's per-query reductions and spilled accumulators dominated.
//!
//! The queries of a tile share their first span's start (the request's context) and attend
//! their own ends of it, and their own ranges of the request's segments: the tile runs over
//! the union of those ranges, each key under the mask of the lanes (queries) that attend it.
//! A key outside a query's spans never reaches it: its score lane is −∞ and left out of the
//! maximum, and its value is added under the mask (a NaN there stays in its own queries).

use super::{Shape, Spans};
use std::arch::x86_64::*;

/// Lanes of an AVX-512 float vector: queries per tile.
const W: usize = 16;

/// Up to [`W`] consecutive queries whose first spans start at the same key, and the key ranges
/// the tile runs over: `first` from that start to the furthest first-span end, `second` from
/// the earliest second-span start to the latest end, gaps between them included (`(0, 0)`
/// when none has one). Every end is a span's end, so within the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tile {
    from: usize,
    len: usize,
    first: (usize, usize),
    second: (usize, usize),
}

impl Tile {
    fn keys(&self) -> usize {
        self.first.1 - self.first.0 + self.second.1 - self.second.0
    }
}

/// The queries in tiles, in order.
fn tiles(spans: &[Spans]) -> Vec<Tile> {
    let mut out: Vec<Tile> = vec![];
    for (t, sp) in spans.iter().enumerate() {
        let (f0, f1) = (sp.first.0 as usize, sp.first.1 as usize);
        let (s0, s1) = (sp.second.0 as usize, sp.second.1 as usize);
        match out.last_mut() {
            Some(tile) if tile.len < W && tile.first.0 == f0 => {
                tile.len += 1;
                tile.first.1 = tile.first.1.max(f1);
                if s1 > s0 {
                    tile.second = if tile.second.1 > tile.second.0 {
                        (tile.second.0.min(s0), tile.second.1.max(s1))
                    } else {
                        (s0, s1)
                    };
                }
            }
            _ => out.push(Tile {
                from: t,
                len: 1,
                first: (f0, f1),
                second: if s1 > s0 { (s0, s1) } else { (0, 0) },
            }),
        }
    }
    out
}

/// The attention output `(Q, heads × d)`, row-major, of queries `(heads, d, Q)` (transposed),
/// keys and values `(kv_heads, T, d)`: runs of tiles of about equal work, a few per thread, on
/// `threads` of libtorch's threads.
///
/// # Safety
/// The CPU must have AVX-512F (`is_x86_feature_detected!("avx512f")`). Every other condition
/// the raw reads and writes rely on is asserted here (the operands' sizes computed without
/// overflow).
pub(super) unsafe fn compute<const D: usize>(
    s: &Shape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    spans: &[Spans],
    threads: usize,
) -> Vec<f32> {
    let kv_heads = s.heads / s.rep.max(1);
    assert!(
        s.rep > 0 && s.heads.is_multiple_of(s.rep),
        "query heads a whole multiple of the key heads"
    );
    assert_eq!(s.dim, D, "head size");
    let size = |a: usize, b: usize, c: usize| a.checked_mul(b).and_then(|ab| ab.checked_mul(c));
    assert_eq!(Some(q.len()), size(s.heads, D, s.queries), "queries (heads, d, Q)");
    assert_eq!(Some(k.len()), size(kv_heads, s.tokens, D), "keys (kv_heads, T, d)");
    assert_eq!(Some(v.len()), size(kv_heads, s.tokens, D), "values (kv_heads, T, d)");
    assert_eq!(spans.len(), s.queries, "spans per query");
    // Key indices are compared as unsigned 32-bit lanes.
    assert!(u32::try_from(s.tokens).is_ok(), "{} tokens", s.tokens);
    for (t, sp) in spans.iter().enumerate() {
        for (a, b) in [sp.first, sp.second] {
            assert!(
                a <= b && b as usize <= s.tokens,
                "query {t} attends {a}..{b} of {}",
                s.tokens
            );
        }
    }
    let width = s.heads * D;
    let mut out = vec![0f32; s.queries * width];
    let tiles = tiles(spans);
    // Runs of consecutive tiles of about equal keys (a tile costs its keys, whatever its lanes).
    let bounds = super::even_runs(tiles.iter().map(Tile::keys), threads);
    let mut parts = vec![];
    let mut rest = out.as_mut_slice();
    for pair in bounds.windows(2) {
        let run = &tiles[pair[0]..pair[1]];
        let rows: usize = run.iter().map(|t| t.len).sum();
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(rows * width);
        rest = tail;
        parts.push((run, chunk));
    }
    crate::threads::parallel_parts(parts, threads, |_, (run, chunk)| {
        let (mut masks, mut scores) = (vec![], vec![]);
        let mut rows = std::mem::take(chunk);
        for tile in run.iter() {
            let (here, next) = rows.split_at_mut(tile.len * width);
            rows = next;
            // SAFETY: AVX-512F as this function requires; the operands as asserted above.
            unsafe { run_tile::<D>(s, q, k, v, spans, tile, &mut masks, &mut scores, here) };
        }
    });
    out
}

/// All heads of one tile, into `out` (its `len` rows of `heads × D`).
///
/// # Safety
/// As [`compute`], whose assertions the reads rely on: every span within the tokens, the
/// operands' lengths, `tile` one of `tiles(spans)`.
#[inline]
#[target_feature(enable = "avx512f")]
// The body of `compute`'s loop: it takes the operands as they are rather than a struct.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile<const D: usize>(
    s: &Shape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    spans: &[Spans],
    tile: &Tile,
    masks: &mut Vec<u16>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let width = s.heads * D;
    assert!(tile.len <= W && tile.from + tile.len <= s.queries && out.len() == tile.len * width);
    // Each lane's bounds: its first span's end, its second span; lanes past the tile attend
    // nothing.
    let (mut f1, mut s0, mut s1) = ([0u32; W], [0u32; W], [0u32; W]);
    for (lane, sp) in spans[tile.from..tile.from + tile.len].iter().enumerate() {
        f1[lane] = sp.first.1;
        (s0[lane], s1[lane]) = sp.second;
    }
    let (f1, s0, s1) = (
        _mm512_loadu_si512(f1.as_ptr().cast()),
        _mm512_loadu_si512(s0.as_ptr().cast()),
        _mm512_loadu_si512(s1.as_ptr().cast()),
    );
    // The lanes that attend each key of the tile's ranges, in order (the same for every head).
    masks.clear();
    // (Every index is below the tokens, which fit in 32 bits: asserted by `compute`.)
    for j in tile.first.0..tile.first.1 {
        masks.push(_mm512_cmplt_epu32_mask(_mm512_set1_epi32(j as i32), f1));
    }
    for j in tile.second.0..tile.second.1 {
        let at = _mm512_set1_epi32(j as i32);
        masks.push(_mm512_cmple_epu32_mask(s0, at) & _mm512_cmplt_epu32_mask(at, s1));
    }
    let keys = masks.len();
    scores.resize(keys * W, 0.0);
    let live: __mmask16 = if tile.len >= W {
        u16::MAX
    } else {
        (1u16 << tile.len) - 1
    };
    let ranges = [tile.first, tile.second];
    let mut result = [[0f32; W]; D];
    for h in 0..s.heads {
        let kv = h / s.rep;
        // SAFETY (every pointer below): query row (h·D + d)·Q + from + lane with lane < len ≤
        // Q − from lies in `q`; key and value rows (kv·T + j)·D + d with j < T (each range's
        // ends are spans' ends, within the tokens as `compute` asserts, as it asserts the
        // operands' sizes, computed without overflow) lie in `k` and `v`; score row i < keys
        // (as many as the masks, pushed over the same ranges).
        let qh = q.as_ptr().add(h * D * s.queries + tile.from);
        let scale = _mm512_set1_ps(s.scale);
        let mut qt = [_mm512_setzero_ps(); D];
        for (d, qd) in qt.iter_mut().enumerate() {
            *qd = _mm512_mul_ps(_mm512_maskz_loadu_ps(live, qh.add(d * s.queries)), scale);
        }
        let (kh, vh) = (k.as_ptr().add(kv * s.tokens * D), v.as_ptr().add(kv * s.tokens * D));
        let sc = scores.as_mut_ptr();
        // Scores, each key broadcast against the tile's queries; −∞ where a lane does not
        // attend the key, so that the maximum is over the lane's own keys.
        let neg = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut max = neg;
        let mut i = 0;
        for (a, b) in ranges {
            for j in a..b {
                let kj = kh.add(j * D);
                let mut acc = _mm512_setzero_ps();
                for (d, qd) in qt.iter().enumerate() {
                    acc = _mm512_fmadd_ps(*qd, _mm512_set1_ps(*kj.add(d)), acc);
                }
                let acc = _mm512_mask_mov_ps(neg, *masks.get_unchecked(i), acc);
                // A NaN score may be lost from the maximum; its exponential is still NaN.
                max = _mm512_max_ps(max, acc);
                _mm512_storeu_ps(sc.add(i * W), acc);
                i += 1;
            }
        }
        // softmax · values: each key's weights (zero where a lane does not attend it) times
        // its broadcast value, added under the lanes' mask.
        let mut sum = _mm512_setzero_ps();
        let mut acc = [_mm512_setzero_ps(); D];
        let mut i = 0;
        for (a, b) in ranges {
            for j in a..b {
                let mask = *masks.get_unchecked(i);
                let e = exp(_mm512_sub_ps(_mm512_loadu_ps(sc.add(i * W)), max));
                let p = _mm512_maskz_mov_ps(mask, e);
                sum = _mm512_add_ps(sum, p);
                let vj = vh.add(j * D);
                for (d, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_mask3_fmadd_ps(p, _mm512_set1_ps(*vj.add(d)), *acc, mask);
                }
                i += 1;
            }
        }
        let inv = _mm512_div_ps(_mm512_set1_ps(1.0), sum);
        for (row, acc) in result.iter_mut().zip(acc) {
            _mm512_storeu_ps(row.as_mut_ptr(), _mm512_mul_ps(acc, inv));
        }
        for lane in 0..tile.len {
            let o = &mut out[lane * width + h * D..lane * width + (h + 1) * D];
            for (d, x) in o.iter_mut().enumerate() {
                *x = result[d][lane];
            }
        }
    }
}

/// `e^x` lane-wise for `x ≤ 0`: the eight-lane kernel's exp ([`super::super::lanes`]:
/// Cephes' expf) on sixteen lanes; below −87.3 it returns `e^−87.3`; NaN stays NaN.
///
/// # Safety
/// The CPU must have AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn exp(x: __m512) -> __m512 {
    // 1.5 × 2^23: adding it rounds to an integer.
    const ROUND: f32 = 12_582_912.0;
    // A function, not a closure: a closure would not inherit this function's target features.
    let s = _mm512_set1_ps;
    let x = _mm512_max_ps(s(-87.3), x);
    let t = _mm512_fmadd_ps(x, s(std::f32::consts::LOG2_E), s(ROUND));
    let n = _mm512_sub_ps(t, s(ROUND));
    let r = _mm512_fmadd_ps(n, s(2.121_944_4e-4), _mm512_fmadd_ps(n, s(-0.693_359_4), x));
    let p = _mm512_fmadd_ps(s(1.987_569_1e-4), r, s(1.398_199_9e-3));
    let p = _mm512_fmadd_ps(p, r, s(8.333_452e-3));
    let p = _mm512_fmadd_ps(p, r, s(4.166_579_6e-2));
    let p = _mm512_fmadd_ps(p, r, s(1.666_666_5e-1));
    let p = _mm512_fmadd_ps(p, r, s(0.5));
    let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), s(1.0));
    // 2^n from the rounded value's low bits: (bits − bits(ROUND) + 127) << 23.
    let bits = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4b40_0000));
    let pow2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(bits, _mm512_set1_epi32(127))));
    _mm512_mul_ps(e, pow2)
}

#[cfg(test)]
mod tests {
    use super::{tiles, Tile};
    use crate::model::spans::Spans;

    #[test]
    fn tiles_group_queries_of_one_first_span_start() {
        let span = |f: (u32, u32), s: (u32, u32)| Spans { first: f, second: s };
        let mut spans: Vec<Spans> = (0..20).map(|p| span((0, p + 1), (0, 0))).collect();
        spans.extend((0..3).map(|p| span((0, 20), (20, 21 + p))));
        spans.extend((0..2).map(|p| span((0, 20), (23, 24 + p))));
        spans.push(span((25, 26), (0, 0)));
        // Second spans with a gap between them: the tile runs over it.
        spans.push(span((26, 27), (30, 32)));
        spans.push(span((26, 27), (40, 41)));
        let got = tiles(&spans);
        assert_eq!(
            got,
            vec![
                Tile {
                    from: 0,
                    len: 16,
                    first: (0, 16),
                    second: (0, 0)
                },
                Tile {
                    from: 16,
                    len: 9,
                    first: (0, 20),
                    second: (20, 25)
                },
                Tile {
                    from: 25,
                    len: 1,
                    first: (25, 26),
                    second: (0, 0)
                },
                Tile {
                    from: 26,
                    len: 2,
                    first: (26, 27),
                    second: (30, 41)
                },
            ]
        );
    }
}
