//! The Llama family (Llama 1–3, Mistral, Qwen2): pre-norm decoder with RMSNorm, rotary position
//! embeddings in the `rotate_half` layout, grouped-query attention, SwiGLU, optional q/k/v
//! biases (Qwen2) and a tied or untied output head.
//!
//! Follows Touvron et al. 2023 (arXiv:2302.13971) as implemented by Hugging Face
//! `transformers/models/llama/modeling_llama.py`, and candle's
//! `candle-transformers/src/models/llama.rs`. RMSNorm is computed in float32 and cast back
//! before the weight multiply, as transformers' `LlamaRMSNorm` does.

use super::cache::KvCache;
use super::mask::check_ids;
use super::rotary::{self, Rotary};
use super::weights::Weights;
use super::{dense_pass, Attend, IdOrList, Kept, Linear, Model, PackedBatch};
use crate::device::Dtype;
use crate::error::{read_json, Error, Result, TorchContext};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// `rope_parameters` (newer transformers) or `rope_scaling` (older): the RoPE variant.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct RopeParameters {
    /// Base of the frequencies (newer layout keeps it here).
    pub rope_theta: Option<f64>,
    /// `default`, `linear` or `llama3`; `type` is the older spelling.
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    /// linear, llama3: frequency scaling factor.
    pub factor: Option<f64>,
    /// llama3: low-frequency factor.
    pub low_freq_factor: Option<f64>,
    /// llama3: high-frequency factor.
    pub high_freq_factor: Option<f64>,
    /// llama3: the context length the model was trained with before scaling.
    pub original_max_position_embeddings: Option<f64>,
    /// The share of each head's dimensions that rotate (GPT-NeoX; the Llama family's default
    /// RoPE rotates all of them whatever it says, as transformers does).
    pub partial_rotary_factor: Option<f64>,
}

/// `config.json` of a Llama-family checkpoint, field for field.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LlamaConfigFile {
    /// `llama`, `mistral` or `qwen2`.
    pub model_type: String,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: i64,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: i64,
    /// Key/value heads (GQA); defaults to the query heads.
    pub num_key_value_heads: Option<i64>,
    /// Per-head width; defaults to hidden_size / heads.
    pub head_dim: Option<i64>,
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Longest supported sequence.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base, older layout (top level).
    pub rope_theta: Option<f64>,
    /// RoPE settings, newer layout.
    pub rope_parameters: Option<RopeParameters>,
    /// RoPE scaling, older layout.
    pub rope_scaling: Option<RopeParameters>,
    /// Whether the head reuses the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v/o projections (Llama); Qwen2 always has q/k/v biases.
    pub attention_bias: Option<bool>,
    /// The MLP's activation (SwiGLU's gate): `silu` (the default) is the one this model runs.
    pub hidden_act: Option<String>,
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<IdOrList>,
    /// End-of-sequence id(s).
    pub eos_token_id: Option<IdOrList>,
    /// Mistral, Qwen2: each query attends only its last `sliding_window` positions. Absent
    /// and `null` differ: Mistral's default is 4096, as transformers' `MistralConfig` has it.
    #[serde(default, deserialize_with = "present")]
    pub sliding_window: Option<Option<usize>>,
    /// Qwen2: whether `sliding_window` applies at all (false by default).
    pub use_sliding_window: Option<bool>,
    /// Qwen2: the layers before this one attend in full (28 by default).
    pub max_window_layers: Option<usize>,
    /// Newer layout: each layer's attention, `full_attention` or `sliding_attention`.
    pub layer_types: Option<Vec<String>>,
}

/// A field that may be `null`: `Some(None)` then, `None` (the default) when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<usize>>, D::Error> {
    <Option<usize> as serde::Deserialize>::deserialize(d).map(Some)
}

fn default_max_positions() -> usize {
    2048
}
fn default_rms_eps() -> f64 {
    1e-6
}

/// The resolved configuration: nothing optional left.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    /// Width of the residual stream.
    pub hidden: i64,
    /// SwiGLU width.
    pub intermediate: i64,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: i64,
    /// Key/value heads.
    pub kv_heads: i64,
    /// Per-head width.
    pub head_dim: i64,
    /// Vocabulary size.
    pub vocab: i64,
    /// Longest sequence.
    pub max_len: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// Inverse frequencies of RoPE (head_dim / 2 of them).
    pub inv_freq: Vec<f64>,
    /// Tied head.
    pub tied: bool,
    /// q/k/v projections carry a bias.
    pub qkv_bias: bool,
    /// o projection carries a bias.
    pub o_bias: bool,
    /// Every layer's queries attend only their last `window` positions (Mistral's
    /// `sliding_window`); `None` where no sequence the model takes is longer.
    pub window: Option<usize>,
}

impl LlamaConfigFile {
    /// Resolves defaults and the RoPE variant; `path` is named in errors.
    pub fn into_config(self, path: &Path) -> Result<LlamaConfig> {
        let cfg_err = |field: &str, message: String| Error::Config {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        if let Some(act) = self.hidden_act.as_deref().filter(|a| !matches!(*a, "silu" | "swish")) {
            return Err(cfg_err("hidden_act", format!("unsupported activation `{act}` (silu)")));
        }
        if self.num_hidden_layers == 0 {
            return Err(cfg_err(
                "num_hidden_layers",
                "0: a model needs at least one layer".into(),
            ));
        }
        if self.max_position_embeddings == 0 {
            return Err(cfg_err(
                "max_position_embeddings",
                "0: a model needs a context of at least one position".into(),
            ));
        }
        let heads = self.num_attention_heads;
        if heads <= 0 {
            return Err(cfg_err("num_attention_heads", format!("{heads}: must be positive")));
        }
        let kv_heads = self.num_key_value_heads.unwrap_or(heads);
        if kv_heads <= 0 {
            return Err(cfg_err("num_key_value_heads", format!("{kv_heads}: must be positive")));
        }
        if heads % kv_heads != 0 {
            return Err(cfg_err(
                "num_key_value_heads",
                format!("{kv_heads} does not divide num_attention_heads {heads}"),
            ));
        }
        let head_dim = self.head_dim.unwrap_or(self.hidden_size / heads);
        let rope = self.rope_parameters.clone().or(self.rope_scaling.clone());
        // The field errors name: the layout the file uses.
        let layout = if self.rope_parameters.is_some() {
            "rope_parameters"
        } else {
            "rope_scaling"
        };
        let theta = rope
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10000.0);
        let mut inv_freq = super::rotary::inverse_frequencies(theta, head_dim);
        match rope.as_ref().and_then(|r| r.rope_type.as_deref()) {
            None | Some("default") => {}
            Some("llama3") => {
                let r = rope.as_ref().expect("matched Some");
                let need = |v: Option<f64>, f: &str| {
                    v.ok_or_else(|| cfg_err(&format!("{layout}.{f}"), "missing for rope_type llama3".into()))
                };
                let factor = need(r.factor, "factor")?;
                let low = need(r.low_freq_factor, "low_freq_factor")?;
                let high = need(r.high_freq_factor, "high_freq_factor")?;
                let old = need(r.original_max_position_embeddings, "original_max_position_embeddings")?;
                let (low_wl, high_wl) = (old / low, old / high);
                for f in inv_freq.iter_mut() {
                    let wl = 2.0 * std::f64::consts::PI / *f;
                    if wl > low_wl {
                        *f /= factor;
                    } else if wl >= high_wl {
                        let smooth = (old / wl - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            Some("linear") => {
                // Positions divided by the factor: the frequencies are.
                let field = format!("{layout}.factor");
                let factor = rope
                    .as_ref()
                    .and_then(|r| r.factor)
                    .ok_or_else(|| cfg_err(&field, "missing for rope_type linear".into()))?;
                if factor <= 0.0 {
                    return Err(cfg_err(&field, format!("{factor}: must be positive")));
                }
                inv_freq.iter_mut().for_each(|f| *f /= factor);
            }
            Some(other) => {
                return Err(cfg_err(
                    &format!("{layout}.rope_type"),
                    format!("unsupported RoPE type `{other}` (default, linear, llama3)"),
                ))
            }
        }
        let qwen = self.model_type == "qwen2";
        let window = self.window(cfg_err)?.filter(|&w| w < self.max_position_embeddings);
        Ok(LlamaConfig {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            heads,
            kv_heads,
            head_dim,
            vocab: self.vocab_size,
            max_len: self.max_position_embeddings,
            eps: self.rms_norm_eps,
            inv_freq,
            tied: self.tie_word_embeddings,
            qkv_bias: qwen || self.attention_bias.unwrap_or(false),
            o_bias: !qwen && self.attention_bias.unwrap_or(false),
            window,
        })
    }

    /// The sliding window every layer attends through, as transformers 5 reads the config:
    /// Mistral's `sliding_window` (4096 where absent, none where `null`); Qwen2's where
    /// `use_sliding_window` is set, for the layers from `max_window_layers` on (or as
    /// `layer_types` lists them); none for Llama. A window on some layers only is refused.
    /// `cfg_err` names a field of the file in an error, as [`LlamaConfigFile::into_config`]'s do.
    fn window(&self, cfg_err: impl Fn(&str, String) -> Error) -> Result<Option<usize>> {
        let window = match self.model_type.as_str() {
            "mistral" => self.sliding_window.unwrap_or(Some(4096)),
            "qwen2" if self.use_sliding_window == Some(true) => self.sliding_window.unwrap_or(Some(4096)),
            _ => None,
        };
        let Some(w) = window else { return Ok(None) };
        if w == 0 {
            return Err(cfg_err("sliding_window", "0: a query attends at least itself".into()));
        }
        let layers = self.num_hidden_layers;
        let sliding: Vec<bool> = match &self.layer_types {
            Some(types) => {
                if types.len() != layers {
                    return Err(cfg_err(
                        "layer_types",
                        format!("{} entries for {layers} layers", types.len()),
                    ));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "sliding_attention" => Ok(true),
                        "full_attention" => Ok(false),
                        other => Err(cfg_err(
                            "layer_types",
                            format!("unsupported layer type `{other}` (full_attention, sliding_attention)"),
                        )),
                    })
                    .collect::<Result<_>>()?
            }
            None if self.model_type == "qwen2" => {
                let from = self.max_window_layers.unwrap_or(28);
                (0..layers).map(|i| i >= from).collect()
            }
            None => vec![true; layers],
        };
        if sliding.iter().all(|&s| s) {
            Ok(Some(w))
        } else if sliding.iter().all(|&s| !s) {
            Ok(None)
        } else {
            Err(cfg_err(
                if self.layer_types.is_some() {
                    "layer_types"
                } else {
                    "max_window_layers"
                },
                format!(
                    "a sliding window of {w} on some layers only ({} of {layers}): not supported",
                    sliding.iter().filter(|&&s| s).count()
                ),
            ))
        }
    }
}

#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(w: &Weights, name: &str, cfg: &LlamaConfig) -> Result<Self> {
        Ok(RmsNorm {
            weight: w.get(&format!("{name}.weight"), &[cfg.hidden])?,
            eps: cfg.eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = (xf * (var + self.eps).rsqrt()).to_kind(kind);
        normed * &self.weight
    }
}

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn load(w: &Weights, p: &str, c: &LlamaConfig) -> Result<Self> {
        let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        Ok(Attention {
            q_proj: Linear::load(w, &format!("{p}.q_proj"), q, c.hidden, c.qkv_bias)?,
            k_proj: Linear::load(w, &format!("{p}.k_proj"), kv, c.hidden, c.qkv_bias)?,
            v_proj: Linear::load(w, &format!("{p}.v_proj"), kv, c.hidden, c.qkv_bias)?,
            o_proj: Linear::load(w, &format!("{p}.o_proj"), c.hidden, q, c.o_bias)?,
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        attend: Attend<'_>,
        layer: usize,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, s, _) = x.size3().op("attention input shape")?;
        // Queries at the kept positions alone where the layer keeps some (with their rotary
        // angles); keys and values at every position.
        let (xq, cos_q, sin_q) = (
            attend.at_queries(x, 1)?,
            attend.at_queries(cos, 2)?,
            attend.at_queries(sin, 2)?,
        );
        let (_, queries, _) = xq.size3().op("attention query input shape")?;
        let q = self
            .q_proj
            .forward(&xq)
            .view([b, queries, self.heads, self.head_dim])
            .transpose(1, 2);
        let k = self
            .k_proj
            .forward(x)
            .view([b, s, self.kv_heads, self.head_dim])
            .transpose(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .view([b, s, self.kv_heads, self.head_dim])
            .transpose(1, 2);
        let q = rotary::apply(&q, &cos_q, &sin_q);
        let k = rotary::apply(&k, cos, sin);
        Ok(self.o_proj.forward(&attend.attention(&q, &k, &v, layer, cache, None)?))
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj
            .forward(&(self.gate_proj.forward(x).silu() * self.up_proj.forward(x)))
    }
}

#[derive(Debug)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    span: tracing::Span,
}

impl Block {
    fn load(w: &Weights, i: usize, c: &LlamaConfig) -> Result<Self> {
        let p = format!("model.layers.{i}");
        let mlp = Mlp {
            gate_proj: Linear::load(w, &format!("{p}.mlp.gate_proj"), c.intermediate, c.hidden, false)?,
            up_proj: Linear::load(w, &format!("{p}.mlp.up_proj"), c.intermediate, c.hidden, false)?,
            down_proj: Linear::load(w, &format!("{p}.mlp.down_proj"), c.hidden, c.intermediate, false)?,
        };
        Ok(Block {
            input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), c)?,
            self_attn: Attention::load(w, &format!("{p}.self_attn"), c)?,
            post_attention_layernorm: RmsNorm::load(w, &format!("{p}.post_attention_layernorm"), c)?,
            mlp,
            span: tracing::trace_span!("llama-block", layer = i),
        })
    }

    /// Pre-norm residual block: `x + attn(norm(x))`, then `+ mlp(norm(·))`; with
    /// [`Attend::PackedKept`], at the kept positions alone.
    fn forward(
        &self,
        x: &Tensor,
        rope: (&Tensor, &Tensor),
        attend: Attend<'_>,
        layer: usize,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (cos, sin) = rope;
        let h = self
            .self_attn
            .forward(&self.input_layernorm.forward(x), cos, sin, attend, layer, cache)?;
        let x = attend.at_queries(x, 1)? + h;
        Ok(&x + self.mlp.forward(&self.post_attention_layernorm.forward(&x)))
    }
}

/// A loaded Llama-family model.
#[derive(Debug)]
pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
    config: LlamaConfig,
    kind: Kind,
    device: Device,
    path: PathBuf,
    /// [`Model::weights_stamp`]: set by `load`, none for weights built in memory.
    stamp: Option<String>,
}

impl Llama {
    /// Loads `config.json` and the safetensors weights from a checkpoint directory.
    pub fn load(dir: &Path, dtype: Dtype, device: Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let file: LlamaConfigFile = read_json(&cfg_path)?;
        let config = file.into_config(&cfg_path)?;
        let weights = Weights::from_dir(dir, dtype.kind(), device)?;
        if let Some(name) = weights.layer_beyond("model.layers.", config.layers) {
            return Err(Error::Config {
                path: cfg_path,
                field: "num_hidden_layers".into(),
                message: format!(
                    "{}, but the checkpoint has tensor `{name}` of a later layer",
                    config.layers
                ),
            });
        }
        let model = Self::from_weights(&weights, config, dtype, device, dir)?;
        // Older checkpoints store the rotary frequencies, which the model computes.
        weights.warn_unused(|n| n.ends_with(".rotary_emb.inv_freq"));
        Ok(Llama {
            stamp: super::checkpoint_stamp(dir)?,
            ..model
        })
    }

    /// Builds the model from named weights and a resolved configuration.
    pub fn from_weights(w: &Weights, c: LlamaConfig, dtype: Dtype, device: Device, path: &Path) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        let (embed_tokens, lm_head) = w.embedding_and_head(
            "model.embed_tokens.weight",
            &["lm_head.weight"],
            &[c.vocab, c.hidden],
            c.tied,
        )?;
        let layers = (0..c.layers)
            .map(|i| Block::load(w, i, &c))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(w, "model.norm", &c)?;
        let rotary = Rotary::new(&c.inv_freq, dtype.kind(), device);
        Ok(Llama {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            config: c,
            kind: dtype.kind(),
            device,
            path: path.to_path_buf(),
            stamp: None,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The decoder on `ids` at positions `pos` with attention as `attend` says (per layer,
    /// [`Attend::for_layer`]), then the final norm.
    fn body(&self, ids: &Tensor, pos: &Tensor, attend: Attend<'_>, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (cos, sin) = self.rotary.tables(pos);
        let mut x = Tensor::f_embedding(&self.embed_tokens, ids, -1, false, false).op("embedding")?;
        for (i, block) in self.layers.iter().enumerate() {
            let attend = attend.for_layer(i, self.layers.len());
            x = block.forward(&x, (&cos, &sin), attend, i, cache.as_deref_mut())?;
        }
        Ok(self.norm.forward(&x))
    }

    /// The body on a packed batch, its ids checked first, and its layout that of the model's
    /// sliding window.
    fn packed_body(&self, batch: &PackedBatch, attend: Attend<'_>) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        check_ids(batch.ids(), self.config.vocab)?;
        batch.check_window(self.config.window)?;
        self.body(batch.ids(), batch.positions(), attend, None)
    }
}

impl Model for Llama {
    fn max_len(&self) -> usize {
        self.config.max_len
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab as usize
    }
    fn device(&self) -> Device {
        self.device
    }
    fn describe(&self) -> String {
        format!("llama:{} ({:?})", self.path.display(), self.kind)
    }
    fn weights_stamp(&self) -> Option<String> {
        self.stamp.clone()
    }
    fn attention_window(&self) -> Option<usize> {
        self.config.window
    }

    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let model = (self.config.vocab, self.device, self.kind, self.config.window);
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
        Some(KvCache::new(self.config.layers, 2 * self.config.max_len))
    }
}
