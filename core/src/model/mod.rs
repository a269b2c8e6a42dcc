//! Models: the [`Model`] trait the engine runs, and its implementations — Hugging Face
//! checkpoint directories ([`llama`], [`gpt2`], [`gpt_neox`], opened by [`load_checkpoint`]), TorchScript
//! modules ([`torchscript`]), served models ([`served`]), and the stand-in a merge of shards
//! runs with ([`unloaded`]). Model code never knows about benchmarks: it maps token ids and a
//! padding mask to hidden states, and hidden states to float32 logits.

pub mod cache;
pub mod gpt2;
pub mod gpt_neox;
pub(crate) mod lanes;
pub mod llama;
pub mod mask;
pub mod packed;
pub mod random;
pub(crate) mod rotary;
pub mod served;
pub(crate) mod spans;
pub mod torchscript;
pub mod unloaded;
pub mod weights;

pub use cache::KvCache;
pub use packed::{Kept, PackedBatch, PackedRequest};

use crate::batch::TokenCounts;
use crate::device::{DeviceSpec, Dtype};
use crate::error::{read_json, Error, Result, TorchContext};
use crate::request::{ContinuationScore, GenerateParams, GenerateRequest, Generation, ScoreRequest};
use crate::tokenizer::Tokenizer;
use std::path::Path;
use tch::{Device, Tensor};

/// A causal language model as the engine sees it.
///
/// `ids` are `(batch, seq)` int64, `mask` is `(batch, past + seq)` with 1 for tokens and 0 for
/// padding (left or right), where `past` is the length of the cache passed in (0 without one).
/// Scoring needs log-probs only at scored positions, so the body ([`Model::hidden_states`]) and
/// the output head ([`Model::head`]) are separate: the engine gathers the positions it scores
/// and applies the head to those alone.
pub trait Model {
    /// Longest sequence (context + continuation) the model accepts.
    fn max_len(&self) -> usize;
    /// Size of the output vocabulary.
    fn vocab_size(&self) -> usize;
    /// The device the weights live on.
    fn device(&self) -> Device;
    /// A short description for results (architecture and path).
    fn describe(&self) -> String;
    /// What tells the model's files apart when they change at the same path (a checkpoint
    /// overwritten, `checkpoints/latest`): a stamp of their contents
    /// ([`crate::fingerprint::files_stamp`]), or `None` for a model not read from files. Part
    /// of each journal's key and of results.json's `model_fingerprint`, so that a rerun on
    /// other weights starts afresh rather than resuming the old weights' work.
    fn weights_stamp(&self) -> Option<String> {
        None
    }
    /// The sliding window of its attention (Mistral's `sliding_window`: each query attends
    /// only its last `window` positions), or `None` where every query attends all before it.
    /// A packed batch for the model is laid out with it ([`PackedBatch::with_window`]).
    fn attention_window(&self) -> Option<usize> {
        None
    }
    /// Runs the body on `ids`, appending to `cache` when given; returns `(batch, seq, hidden)`.
    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor>;
    /// Applies the output head to hidden states of any leading shape; returns float32 logits.
    fn head(&self, hidden: &Tensor) -> Result<Tensor>;
    /// An empty KV cache, or `None` when the model cannot cache (the engine then recomputes).
    fn new_cache(&self) -> Option<KvCache>;
    /// Whether [`Model::hidden_states_packed`] is implemented.
    fn packs(&self) -> bool {
        false
    }
    /// Runs the body on a packed batch: every context with all its continuations in one row,
    /// each continuation at the positions after its context and attending only the context
    /// and itself (a tree of prefixes, [`PackedBatch::attend`]); returns `(1, tokens, hidden)`
    /// in the batch's token order. Without it ([`Model::packs`] false) the engine copies the
    /// context's KV cache to one row per continuation.
    fn hidden_states_packed(&self, _batch: &PackedBatch) -> Result<Tensor> {
        Err(Error::Unsupported(format!(
            "{} does not run packed batches",
            self.describe()
        )))
    }
    /// [`Model::hidden_states_packed`] at the `kept` positions alone: `(1, kept, hidden)`, row
    /// `i` the hidden state at the `i`-th kept position. Of the other positions the last layer
    /// needs only the keys and values, so a model may skip the rest of its work there (its
    /// queries, attention, output projection and MLP); by default the whole pass runs and the
    /// kept rows are selected. Scoring keeps the positions whose logits it reads.
    fn hidden_states_packed_at(&self, batch: &PackedBatch, kept: &Kept) -> Result<Tensor> {
        self.hidden_states_packed(batch)?
            .f_index_select(1, kept.index())
            .op("selecting the kept positions")
    }
    /// Full forward: `(batch, seq, vocab)` float32 logits.
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.head(&self.hidden_states(ids, mask, None)?)
    }
    /// Scores a batch of requests — the request-level interface every scoring kind runs
    /// through. The default runs [`Model::hidden_states`] and [`Model::head`] on libtorch
    /// ([`crate::batch::score_batch`], contexts shared through the KV cache where `share` is
    /// set); a model that is not a tensor program (one served over HTTP) implements this and
    /// [`Model::generate`] instead.
    fn score(
        &self,
        reqs: &[&ScoreRequest],
        share: bool,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        crate::batch::score_batch(self, reqs, share, counts)
    }
    /// Generates a continuation of each prompt (the request-level interface of generation;
    /// the default is [`crate::batch::generate_batch`] on libtorch).
    fn generate(
        &self,
        tok: &Tokenizer,
        reqs: &[&GenerateRequest],
        params: &GenerateParams,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Generation>> {
        crate::batch::generate_batch(self, tok, reqs, params, counts)
    }
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn max_len(&self) -> usize {
        (**self).max_len()
    }
    fn vocab_size(&self) -> usize {
        (**self).vocab_size()
    }
    fn device(&self) -> Device {
        (**self).device()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn weights_stamp(&self) -> Option<String> {
        (**self).weights_stamp()
    }
    fn attention_window(&self) -> Option<usize> {
        (**self).attention_window()
    }
    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        (**self).hidden_states(ids, mask, cache)
    }
    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        (**self).head(hidden)
    }
    fn new_cache(&self) -> Option<KvCache> {
        (**self).new_cache()
    }
    fn packs(&self) -> bool {
        (**self).packs()
    }
    fn hidden_states_packed(&self, batch: &PackedBatch) -> Result<Tensor> {
        (**self).hidden_states_packed(batch)
    }
    fn hidden_states_packed_at(&self, batch: &PackedBatch, kept: &Kept) -> Result<Tensor> {
        (**self).hidden_states_packed_at(batch, kept)
    }
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        (**self).forward(ids, mask)
    }
    fn score(
        &self,
        reqs: &[&ScoreRequest],
        share: bool,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        (**self).score(reqs, share, counts)
    }
    fn generate(
        &self,
        tok: &Tokenizer,
        reqs: &[&GenerateRequest],
        params: &GenerateParams,
        counts: &mut TokenCounts,
    ) -> Result<Vec<Generation>> {
        (**self).generate(tok, reqs, params, counts)
    }
}

/// What a decoder layer's attention sees: dense rows under an additive bias (with the KV
/// cache, if any, alongside), or a packed batch's tree of prefixes, all of whose queries are
/// computed or, in a last layer, those of its kept positions alone.
#[derive(Clone, Copy)]
pub(crate) enum Attend<'a> {
    /// `(batch, 1, queries, keys)` additive bias ([`mask::attention_bias`]).
    Dense(&'a Tensor),
    /// A packed batch ([`PackedBatch::attend`]).
    Packed(&'a PackedBatch),
    /// A packed batch whose last layer's queries, and the rows after them, are those of the
    /// kept positions alone ([`Model::hidden_states_packed_at`]; [`Attend::for_layer`]).
    PackedKept(&'a PackedBatch, &'a Kept),
}

impl<'a> Attend<'a> {
    /// How layer `layer` of `layers` attends: [`Attend::PackedKept`] is the last layer's
    /// alone, the layers before it compute every query ([`Attend::Packed`]).
    pub(crate) fn for_layer(self, layer: usize, layers: usize) -> Attend<'a> {
        match self {
            Attend::PackedKept(batch, _) if layer + 1 < layers => Attend::Packed(batch),
            other => other,
        }
    }

    /// `t` along `dim` at the positions whose queries this layer computes: the kept ones
    /// under [`Attend::PackedKept`], else all (`t` itself).
    pub(crate) fn at_queries(&self, t: &Tensor, dim: i64) -> Result<Tensor> {
        match self {
            Attend::PackedKept(_, kept) => t.f_index_select(dim, kept.index()).op("selecting the kept positions"),
            _ => Ok(t.shallow_clone()),
        }
    }

    /// Attention of `q` `(batch, heads, queries, head_dim)` over `k` and `v` `(batch,
    /// kv_heads, seq, head_dim)` as this layer attends (on the dense path appending `k` and
    /// `v` to layer `layer` of `cache` first); `scale` defaults to 1/√head_dim. Returns the
    /// heads side by side, `(batch, queries, heads × head_dim)`, for the output projection.
    pub(crate) fn attention(
        self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        layer: usize,
        cache: Option<&mut KvCache>,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        let bias = match self {
            Attend::Packed(p) => return p.attend(q, k, v, scale),
            Attend::PackedKept(p, kept) => return p.attend_kept(q, k, v, kept, scale),
            Attend::Dense(bias) => bias,
        };
        let (k, v) = match cache {
            Some(c) => c.update(layer, k, v)?,
            None => (k.shallow_clone(), v.shallow_clone()),
        };
        let (b, heads, queries, dim) = q.size4().op("attention query shape")?;
        let y = mask::sdpa(q, &k, &v, Some(bias), false, scale)?;
        Ok(y.transpose(1, 2).reshape([b, queries, heads * dim]))
    }
}

/// The dense pass of a checkpoint family's [`Model::hidden_states`]: `ids` and `mask` checked
/// against `vocab` and moved to `device`, positions from the mask, the additive attention bias
/// in `kind` (through a sliding `window` where the model has one), then `body(ids, positions, attend, cache)`, and the cache advanced past the new
/// tokens.
pub(crate) fn dense_pass(
    ids: &Tensor,
    mask: &Tensor,
    mut cache: Option<&mut KvCache>,
    (vocab, device, kind, window): (i64, Device, tch::Kind, Option<usize>),
    body: impl FnOnce(&Tensor, &Tensor, Attend<'_>, Option<&mut KvCache>) -> Result<Tensor>,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let past = cache.as_ref().map_or(0, |c| c.current_seq_len() as i64);
    let (ids, mask, s) = mask::check_inputs(ids, mask, past, vocab, device)?;
    let pos = mask::positions(&mask, s)?;
    let bias = mask::attention_bias_windowed(&mask, s, kind, window)?;
    let x = body(&ids, &pos, Attend::Dense(&bias), cache.as_deref_mut())?;
    if let Some(c) = cache {
        c.advance(s as usize);
    }
    Ok(x)
}

/// The [`Model::weights_stamp`] of a checkpoint directory: its files' stamp
/// ([`crate::fingerprint::checkpoint_files`]).
pub(crate) fn checkpoint_stamp(dir: &Path) -> Result<Option<String>> {
    let files = crate::fingerprint::checkpoint_files(dir)?;
    crate::fingerprint::files_stamp(&files).map(Some)
}

/// How to open a model: device and dtype.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Where to run.
    pub device: DeviceSpec,
    /// Precision of weights and activations.
    pub dtype: Dtype,
}

#[derive(serde::Deserialize)]
struct ModelType {
    model_type: Option<String>,
}

/// The context length a checkpoint's `config.json` declares: `max_position_embeddings`,
/// `n_positions` or `n_ctx` (the keys lm-eval reads), for a model evalkit does not load itself
/// (one served by an engine).
///
/// ```no_run
/// assert_eq!(evalkit_core::model::read_max_len("models/stories260K-hf".as_ref())?, 512);
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn read_max_len(dir: &Path) -> Result<usize> {
    let path = dir.join("config.json");
    let config: serde_json::Value = read_json(&path)?;
    ["max_position_embeddings", "n_positions", "n_ctx"]
        .iter()
        .find_map(|k| config[k].as_u64())
        .map(|n| n as usize)
        .ok_or_else(|| Error::Config {
            path,
            field: "max_position_embeddings".into(),
            message: "no context length (max_position_embeddings, n_positions or n_ctx)".into(),
        })
}

/// Opens a Hugging Face checkpoint directory (`config.json` + safetensors), choosing the
/// architecture from `model_type`.
///
/// ```no_run
/// use evalkit_core::model::{load_checkpoint, LoadOptions, Model};
/// let model = load_checkpoint("models/stories260K-hf".as_ref(), LoadOptions::default())?;
/// assert_eq!(model.vocab_size(), 512);
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn load_checkpoint(dir: &Path, opts: LoadOptions) -> Result<Box<dyn Model>> {
    let config = dir.join("config.json");
    if !dir.is_dir() {
        let what = if dir.exists() {
            "a file, not a folder"
        } else {
            "no such folder"
        };
        return Err(Error::MissingFile {
            path: dir.to_path_buf(),
            hint: Some(format!(
                "{what}: expected a checkpoint directory with config.json and model.safetensors"
            )),
        });
    }
    let ty: ModelType = read_json(&config)?;
    let device = opts.device.resolve()?;
    let _guard = tch::no_grad_guard();
    match ty.model_type.as_deref() {
        Some("llama" | "mistral" | "qwen2") => Ok(Box::new(llama::Llama::load(dir, opts.dtype, device)?)),
        Some("gpt2") => Ok(Box::new(gpt2::Gpt2::load(dir, opts.dtype, device)?)),
        Some("gpt_neox") => Ok(Box::new(gpt_neox::GptNeoX::load(dir, opts.dtype, device)?)),
        Some(other) => Err(Error::Config {
            path: config,
            field: "model_type".into(),
            message: format!("unknown model_type `{other}` (supported: llama, mistral, qwen2, gpt2, gpt_neox)"),
        }),
        None => Err(Error::Config {
            path: config,
            field: "model_type".into(),
            message: "missing".into(),
        }),
    }
}

/// `id` or `[id, ...]`, as `eos_token_id` appears in Hugging Face configs.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum IdOrList {
    /// A single id.
    One(i64),
    /// Several ids.
    Many(Vec<i64>),
}

impl IdOrList {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            IdOrList::One(i) => vec![*i],
            IdOrList::Many(v) => v.clone(),
        }
    }
}

/// `x @ w^T (+ b)`: a linear layer stored as `[out, in]`.
#[derive(Debug)]
pub(crate) struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn load(w: &weights::Weights, prefix: &str, out: i64, inp: i64, bias: bool) -> Result<Self> {
        let weight = w.get(&format!("{prefix}.weight"), &[out, inp])?;
        let bias = if bias {
            Some(w.get(&format!("{prefix}.bias"), &[out])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// LayerNorm over the last dimension, with weight and bias (GPT-2, GPT-NeoX).
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    width: i64,
}

impl LayerNorm {
    /// `{prefix}.weight` and `{prefix}.bias`, each `[width]`.
    pub fn load(w: &weights::Weights, prefix: &str, width: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: w.get(&format!("{prefix}.weight"), &[width])?,
            bias: w.get(&format!("{prefix}.bias"), &[width])?,
            eps,
            width,
        })
    }

    /// `x` normalised over its last dimension, scaled and shifted.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.width], Some(&self.weight), Some(&self.bias), self.eps, false)
    }
}

/// Queries, keys and values `(batch, heads, seq, head_dim)` from a fused projection whose
/// output rows are `[q; k; v]`, each `hidden` wide: the queries at the positions whose queries
/// the layer computes ([`Attend::at_queries`]: under [`Attend::PackedKept`] only that part of
/// the projection runs there), keys and values at every position.
pub(crate) fn fused_qkv(
    qkv: &Linear,
    x: &Tensor,
    attend: Attend<'_>,
    heads: i64,
    hidden: i64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, _, _) = x.size3().op("attention input shape")?;
    let split = |t: &Tensor| t.view([b, -1, heads, hidden / heads]).transpose(1, 2);
    Ok(match attend {
        Attend::PackedKept(..) => {
            let part = |from: i64, len: i64| Linear {
                weight: qkv.weight.narrow(0, from, len),
                bias: qkv.bias.as_ref().map(|b| b.narrow(0, from, len)),
            };
            let q = part(0, hidden).forward(&attend.at_queries(x, 1)?);
            let kv = part(hidden, 2 * hidden).forward(x).split(hidden, 2);
            (split(&q), split(&kv[0]), split(&kv[1]))
        }
        _ => {
            let all = qkv.forward(x).split(hidden, 2);
            (split(&all[0]), split(&all[1]), split(&all[2]))
        }
    })
}
