//! GPT-2: learned absolute positions, pre-norm LayerNorm with bias, `gelu_new` (tanh
//! approximation), fused `c_attn`, and a head tied to the token embedding (or its own, where
//! `tie_word_embeddings` is false).
//!
//! Follows Radford et al. 2019 as implemented by Hugging Face
//! `transformers/models/gpt2/modeling_gpt2.py`. Its `Conv1D` layers store weights as
//! `[in, out]` (the transpose of `nn.Linear`); they are transposed once at load time.
//! Positions come from the padding mask, so a padded row sees the positions it would have alone.

use super::cache::KvCache;
use super::mask::check_ids;
use super::weights::Weights;
use super::{dense_pass, fused_qkv, Attend, IdOrList, Kept, LayerNorm, Linear, Model, PackedBatch};
use crate::device::Dtype;
use crate::error::{read_json, Error, Result, TorchContext};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// `config.json` of a GPT-2 checkpoint.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Gpt2ConfigFile {
    /// Width of the residual stream (`hidden_size` elsewhere).
    pub n_embd: i64,
    /// Number of layers.
    pub n_layer: usize,
    /// Number of heads.
    pub n_head: i64,
    /// MLP width; `null` means 4 × n_embd.
    pub n_inner: Option<i64>,
    /// Longest sequence (learned positions).
    pub n_positions: usize,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_epsilon: f64,
    /// Activation; only `gelu_new` (and its aliases) is supported.
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Scale attention by 1/√head_dim.
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    /// End-of-sequence id(s).
    pub eos_token_id: Option<IdOrList>,
    /// The head is the token embedding (`wte`), as in every GPT-2 release; `false` reads
    /// `lm_head.weight` (as does a tied model whose checkpoint stores an `lm_head.weight` with
    /// other values, as transformers reads it: [`crate::model::weights::Weights::embedding_and_head`]).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_ln_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}
fn default_true() -> bool {
    true
}

/// A `Conv1D` weight `[in, out]`, loaded as a [`Linear`] `[out, in]`.
fn conv1d(w: &Weights, p: &str, inp: i64, out: i64) -> Result<Linear> {
    Ok(Linear {
        weight: w.get(&format!("{p}.weight"), &[inp, out])?.tr().contiguous(),
        bias: Some(w.get(&format!("{p}.bias"), &[out])?),
    })
}

/// Causal self-attention (`h.{i}.attn`): fused q/k/v projection, then the output projection.
#[derive(Debug)]
struct Attention {
    c_attn: Linear,
    c_proj: Linear,
    heads: i64,
    hidden: i64,
    scale: Option<f64>,
}

impl Attention {
    fn forward(&self, x: &Tensor, attend: Attend<'_>, layer: usize, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (q, k, v) = fused_qkv(&self.c_attn, x, attend, self.heads, self.hidden)?;
        Ok(self
            .c_proj
            .forward(&attend.attention(&q, &k, &v, layer, cache, self.scale)?))
    }
}

/// The feed-forward layer (`h.{i}.mlp`): `c_proj(gelu_new(c_fc(x)))`.
#[derive(Debug)]
struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.c_proj.forward(&self.c_fc.forward(x).gelu("tanh"))
    }
}

/// One transformer block (`h.{i}`), pre-norm with residuals.
#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
    span: tracing::Span,
}

impl Block {
    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(·))`; with [`Attend::PackedKept`], at the kept
    /// positions alone.
    fn forward(&self, x: &Tensor, attend: Attend<'_>, layer: usize, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let _enter = self.span.enter();
        let x = attend.at_queries(x, 1)? + self.attn.forward(&self.ln_1.forward(x), attend, layer, cache)?;
        Ok(&x + self.mlp.forward(&self.ln_2.forward(&x)))
    }
}

/// A loaded GPT-2 model.
#[derive(Debug)]
pub struct Gpt2 {
    wte: Tensor,
    /// The output head: `wte` itself where tied.
    lm_head: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    vocab: i64,
    max_len: usize,
    kind: Kind,
    device: Device,
    path: PathBuf,
    /// [`Model::weights_stamp`]: the stamp of the checkpoint's files.
    stamp: Option<String>,
}

impl Gpt2 {
    /// Loads `config.json` and the safetensors weights from a checkpoint directory.
    pub fn load(dir: &Path, dtype: Dtype, device: Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let c: Gpt2ConfigFile = read_json(&cfg_path)?;
        if !matches!(
            c.activation_function.as_str(),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast"
        ) {
            return Err(Error::Config {
                path: cfg_path,
                field: "activation_function".into(),
                message: format!("unsupported activation `{}` (gelu_new)", c.activation_function),
            });
        }
        if c.n_head <= 0 || c.n_embd % c.n_head != 0 {
            return Err(Error::Config {
                path: cfg_path,
                field: "n_head".into(),
                message: format!("{} does not divide n_embd {}", c.n_head, c.n_embd),
            });
        }
        if c.n_layer == 0 {
            return Err(Error::Config {
                path: cfg_path,
                field: "n_layer".into(),
                message: "0: a model needs at least one layer".into(),
            });
        }
        let w = Weights::from_dir(dir, dtype.kind(), device)?;
        let _guard = tch::no_grad_guard();
        // `GPT2LMHeadModel` saves under `transformer.`, a bare `GPT2Model` without it.
        let root = if w.contains("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        if let Some(name) = w.layer_beyond(&format!("{root}h."), c.n_layer) {
            return Err(Error::Config {
                path: cfg_path,
                field: "n_layer".into(),
                message: format!("{}, but the checkpoint has tensor `{name}` of a later layer", c.n_layer),
            });
        }
        let (h, eps) = (c.n_embd, c.layer_norm_epsilon);
        let inner = c.n_inner.unwrap_or(4 * h);
        let head_dim = (h / c.n_head) as f64;
        let scale = if c.scale_attn_weights {
            1.0 / head_dim.sqrt()
        } else {
            1.0
        };
        let blocks = (0..c.n_layer)
            .map(|i| {
                let p = format!("{root}h.{i}");
                Ok(Block {
                    ln_1: LayerNorm::load(&w, &format!("{p}.ln_1"), h, eps)?,
                    attn: Attention {
                        c_attn: conv1d(&w, &format!("{p}.attn.c_attn"), h, 3 * h)?,
                        c_proj: conv1d(&w, &format!("{p}.attn.c_proj"), h, h)?,
                        heads: c.n_head,
                        hidden: h,
                        scale: Some(scale),
                    },
                    ln_2: LayerNorm::load(&w, &format!("{p}.ln_2"), h, eps)?,
                    mlp: Mlp {
                        c_fc: conv1d(&w, &format!("{p}.mlp.c_fc"), h, inner)?,
                        c_proj: conv1d(&w, &format!("{p}.mlp.c_proj"), inner, h)?,
                    },
                    span: tracing::trace_span!("gpt2-block", layer = i),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (wte, lm_head) = w.embedding_and_head(
            &format!("{root}wte.weight"),
            &["lm_head.weight"],
            &[c.vocab_size, h],
            c.tie_word_embeddings,
        )?;
        let model = Gpt2 {
            wte,
            lm_head,
            wpe: w.get(&format!("{root}wpe.weight"), &[c.n_positions as i64, h])?,
            blocks,
            ln_f: LayerNorm::load(&w, &format!("{root}ln_f"), h, eps)?,
            vocab: c.vocab_size,
            max_len: c.n_positions,
            kind: dtype.kind(),
            device,
            path: dir.to_path_buf(),
            stamp: super::checkpoint_stamp(dir)?,
        };
        // Older checkpoints store the causal mask (`attn.bias`, `attn.masked_bias`).
        w.warn_unused(|n| n.ends_with(".attn.bias") || n.ends_with(".attn.masked_bias"));
        Ok(model)
    }
}

impl Gpt2 {
    /// The blocks on `ids` at positions `pos` with attention as `attend` says (per block,
    /// [`Attend::for_layer`]), then the final norm.
    fn body(&self, ids: &Tensor, pos: &Tensor, attend: Attend<'_>, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let mut x = Tensor::f_embedding(&self.wte, ids, -1, false, false).op("embedding")?
            + Tensor::f_embedding(&self.wpe, pos, -1, false, false).op("position embedding")?;
        for (i, blk) in self.blocks.iter().enumerate() {
            x = blk.forward(&x, attend.for_layer(i, self.blocks.len()), i, cache.as_deref_mut())?;
        }
        Ok(self.ln_f.forward(&x))
    }

    /// The body on a packed batch, its ids and positions checked first.
    fn packed_body(&self, batch: &PackedBatch, attend: Attend<'_>) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        check_ids(batch.ids(), self.vocab)?;
        if batch.positions().max().int64_value(&[]) >= self.max_len as i64 {
            return Err(Error::Unsupported(format!(
                "a position beyond the model's {} learned positions",
                self.max_len
            )));
        }
        self.body(batch.ids(), batch.positions(), attend, None)
    }
}

impl Model for Gpt2 {
    fn max_len(&self) -> usize {
        self.max_len
    }
    fn vocab_size(&self) -> usize {
        self.vocab as usize
    }
    fn device(&self) -> Device {
        self.device
    }
    fn describe(&self) -> String {
        format!("gpt2:{} ({:?})", self.path.display(), self.kind)
    }
    fn weights_stamp(&self) -> Option<String> {
        self.stamp.clone()
    }

    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let model = (self.vocab, self.device, self.kind, None);
        dense_pass(ids, mask, cache, model, |ids, pos, attend, cache| {
            self.body(ids, pos, attend, cache)
        })
    }

    fn packs(&self) -> bool {
        true
    }

    fn hidden_states_packed(&self, batch: &PackedBatch) -> Result<Tensor> {
        self.packed_body(batch, Attend::Packed(batch))
    }

    fn hidden_states_packed_at(&self, batch: &PackedBatch, kept: &Kept) -> Result<Tensor> {
        self.packed_body(batch, Attend::PackedKept(batch, kept))
    }

    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        Ok(hidden.linear::<Tensor>(&self.lm_head, None).to_kind(Kind::Float))
    }

    fn new_cache(&self) -> Option<KvCache> {
        Some(KvCache::new(self.blocks.len(), 2 * self.max_len))
    }
}
