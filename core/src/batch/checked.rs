//! The model's outputs, checked against what [`Model`] promises before the engine reads them:
//! a model of one's own that returns another shape, width or type gets an error naming the
//! method and what it returned, not a panic deep in the engine, a libtorch backtrace, or
//! (a head wider than `vocab_size`, integer logits) silently wrong numbers.

use crate::error::{Error, Result, TorchContext};
use crate::model::{Kept, KvCache, Model, PackedBatch};
use tch::Tensor;

fn wrong<M: Model + ?Sized>(model: &M, method: &'static str, message: String) -> Error {
    Error::ModelOutput {
        model: model.describe(),
        method,
        message,
    }
}

/// [`Model::hidden_states`], which must return `(batch, seq, hidden)` for `(batch, seq)` ids.
pub(crate) fn hidden_states<M: Model + ?Sized>(
    model: &M,
    ids: &Tensor,
    mask: &Tensor,
    cache: Option<&mut KvCache>,
) -> Result<Tensor> {
    let h = model.hidden_states(ids, mask, cache)?;
    let (got, input) = (h.size(), ids.size());
    if got.len() != 3 || got[..2] != input[..] {
        return Err(wrong(
            model,
            "hidden_states",
            format!(
                "returned shape {got:?} for ids of shape {input:?}: expected (batch, seq, hidden), [{}, {}, _]",
                input[0],
                input.get(1).copied().unwrap_or(0)
            ),
        ));
    }
    Ok(h)
}

/// [`Model::hidden_states_packed_at`], which must return `(1, kept, hidden)`.
pub(crate) fn hidden_states_packed_at<M: Model + ?Sized>(
    model: &M,
    batch: &PackedBatch,
    kept: &Kept,
) -> Result<Tensor> {
    let h = model.hidden_states_packed_at(batch, kept)?;
    let (got, n) = (h.size(), kept.index().size()[0]);
    if got.len() != 3 || got[0] != 1 || got[1] != n {
        return Err(wrong(
            model,
            "hidden_states_packed_at",
            format!("returned shape {got:?} for {n} kept positions: expected (1, kept, hidden), [1, {n}, _]"),
        ));
    }
    Ok(h)
}

/// [`Model::head`], which must return float32 logits of `vocab_size` columns over the hidden
/// states' leading shape (half, bfloat16 and double logits are read as float32).
pub(crate) fn head<M: Model + ?Sized>(model: &M, hidden: &Tensor) -> Result<Tensor> {
    let logits = model.head(hidden)?;
    let (got, lead) = (logits.size(), hidden.size());
    let lead = &lead[..lead.len().saturating_sub(1)];
    let vocab = model.vocab_size() as i64;
    if got.len() != lead.len() + 1 || got[..lead.len()] != *lead || got.last() != Some(&vocab) {
        return Err(wrong(
            model,
            "head",
            format!("returned shape {got:?} for hidden states of shape {:?}: expected {lead:?} and vocab_size() {vocab} logits", hidden.size()),
        ));
    }
    match logits.kind() {
        tch::Kind::Float => Ok(logits),
        // Log-probabilities are taken in float32 at least (DESIGN §3), on every device.
        tch::Kind::Half | tch::Kind::BFloat16 | tch::Kind::Double => {
            logits.f_to_kind(tch::Kind::Float).op("logits to float32")
        }
        other => Err(wrong(
            model,
            "head",
            format!("returned {other:?} logits: expected float32"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::batch::{generate_batch, score_batch, TokenCounts};
    use crate::model::{Kept, KvCache, Model, PackedBatch};
    use crate::request::{GenerateParams, GenerateRequest, Sampling, ScoreRequest};
    use crate::Error;
    use tch::{Device, Kind, Tensor};

    /// A four-token model with uniform logits, broken in one way.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Broken {
        Not,
        DropsARow,
        ShortSequence,
        FlatHidden,
        WideHead,
        IntegerLogits,
        /// Packs, and returns every position where it should return the kept ones.
        PacksAll,
        /// Returns bfloat16 logits, which are read as float32.
        HalfLogits,
    }
    impl Model for Broken {
        fn max_len(&self) -> usize {
            32
        }
        fn vocab_size(&self) -> usize {
            4
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn describe(&self) -> String {
            format!("{self:?}")
        }
        fn hidden_states(&self, ids: &Tensor, _: &Tensor, cache: Option<&mut KvCache>) -> crate::Result<Tensor> {
            let (b, s) = (ids.size()[0], ids.size()[1]);
            if let Some(c) = cache {
                c.advance(s as usize)
            }
            let h = ids.to_kind(Kind::Float).unsqueeze(-1);
            Ok(match self {
                Broken::DropsARow => h.narrow(0, 0, b - 1),
                Broken::ShortSequence => h.narrow(1, 0, s - 1),
                Broken::FlatHidden => h.squeeze_dim(-1),
                _ => h,
            })
        }
        fn head(&self, h: &Tensor) -> crate::Result<Tensor> {
            let width = if *self == Broken::WideHead { 5 } else { 4 };
            let logits = h.matmul(&Tensor::zeros([1, width], (Kind::Float, Device::Cpu)));
            Ok(match self {
                Broken::IntegerLogits => logits.to_kind(Kind::Int64),
                Broken::HalfLogits => logits.to_kind(Kind::BFloat16),
                _ => logits,
            })
        }
        fn new_cache(&self) -> Option<KvCache> {
            Some(KvCache::new(0, 64))
        }
        fn packs(&self) -> bool {
            *self == Broken::PacksAll
        }
        fn hidden_states_packed(&self, batch: &PackedBatch) -> crate::Result<Tensor> {
            Ok(Tensor::zeros([1, batch.tokens() as i64, 1], (Kind::Float, Device::Cpu)))
        }
        fn hidden_states_packed_at(&self, batch: &PackedBatch, _: &Kept) -> crate::Result<Tensor> {
            self.hidden_states_packed(batch)
        }
    }

    #[test]
    fn a_model_that_breaks_its_contract_is_named_not_read() {
        let reqs = [
            ScoreRequest {
                context: vec![0, 1],
                continuations: vec![vec![2], vec![2, 3]],
            },
            ScoreRequest {
                context: vec![0, 1, 1],
                continuations: vec![vec![3]],
            },
        ];
        let reqs: Vec<&ScoreRequest> = reqs.iter().collect();
        let prompts = [
            GenerateRequest {
                prompt: vec![0, 1],
                seed: 0,
            },
            GenerateRequest {
                prompt: vec![0, 2, 1],
                seed: 0,
            },
        ];
        let prompts: Vec<&GenerateRequest> = prompts.iter().collect();
        let params = GenerateParams {
            max_new_tokens: 3,
            stop: vec![],
            sampling: Sampling::Greedy,
        };
        let tok = crate::test_support::abc_tokenizer();
        let counts = &mut TokenCounts::default();
        for share in [false, true] {
            assert!(score_batch(&Broken::Not, &reqs, share, counts).is_ok());
        }
        assert!(generate_batch(&Broken::Not, &tok, &prompts, &params, counts).is_ok());
        // Half-precision logits are read as float32: the same scores.
        for share in [false, true] {
            let half = score_batch(&Broken::HalfLogits, &reqs, share, counts).expect("bf16 logits");
            assert_eq!(half, score_batch(&Broken::Not, &reqs, share, counts).expect("float32"));
        }
        let e = score_batch(&Broken::PacksAll, &reqs, true, counts).expect_err("every position");
        assert!(
            matches!(
                &e,
                Error::ModelOutput {
                    method: "hidden_states_packed_at",
                    ..
                }
            ),
            "{e}"
        );
        for (broken, method) in [
            (Broken::DropsARow, "hidden_states"),
            (Broken::ShortSequence, "hidden_states"),
            (Broken::FlatHidden, "hidden_states"),
            (Broken::WideHead, "head"),
            (Broken::IntegerLogits, "head"),
        ] {
            let named = |e: Error| matches!(&e, Error::ModelOutput { method: m, .. } if *m == method);
            for share in [false, true] {
                let e = score_batch(&broken, &reqs, share, counts).expect_err("broken");
                assert!(named(e), "{broken:?} scoring (share {share})");
            }
            let e = generate_batch(&broken, &tok, &prompts, &params, counts).expect_err("broken");
            assert!(named(e), "{broken:?} generating");
        }
    }
}
