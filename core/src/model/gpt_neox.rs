//! GPT-NeoX (Pythia, GPT-NeoX-20B): pre-norm LayerNorm with bias, a fused query/key/value
//! projection laid out head by head, rotary embeddings on the first `partial_rotary_factor`
//! share of each head (a quarter in Pythia), exact GELU, attention and MLP added to the
//! residual side by side (`use_parallel_residual`, as Pythia) or one after the other, and an
//! untied output head (`embed_out`).
//!
//! Follows Black et al. 2022 (arXiv:2204.06745) as implemented by Hugging Face
//! `transformers/models/gpt_neox/modeling_gpt_neox.py`. The fused projection's rows come as
//! `[q, k, v]` of head 0, then of head 1, ...; they are reordered once at load time to all
//! queries, then all keys, then all values (GPT-2's layout), so that a pass computes queries
//! only where it reads them.

use super::cache::KvCache;
use super::llama::RopeParameters;
use super::mask::check_ids;
use super::rotary::{self, Rotary};
use super::weights::Weights;
use super::{dense_pass, fused_qkv, Attend, IdOrList, Kept, LayerNorm, Linear, Model, PackedBatch};
use crate::device::Dtype;
use crate::error::{read_json, Error, Result, TorchContext};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// `config.json` of a GPT-NeoX checkpoint, in the older layout (`rotary_pct`,
/// `rotary_emb_base`, as Pythia's) or transformers 5's (`rope_parameters`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GptNeoXConfigFile {
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the MLP.
    pub intermediate_size: i64,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: i64,
    /// Vocabulary size (rows of the embedding and the head).
    pub vocab_size: i64,
    /// Longest sequence.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// The MLP's activation: `gelu` (exact, the default) or a tanh approximation.
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Share of each head's dimensions that rotate, older layout (default 0.25).
    pub rotary_pct: Option<f64>,
    /// RoPE base, older layout (default 10000).
    pub rotary_emb_base: Option<f64>,
    /// RoPE settings, newer layout (`rope_theta`, `partial_rotary_factor`).
    pub rope_parameters: Option<RopeParameters>,
    /// RoPE scaling, older layout; takes precedence over `rope_parameters` as in transformers.
    pub rope_scaling: Option<RopeParameters>,
    /// `x + attn(ln1(x)) + mlp(ln2(x))` (true, Pythia) or `x + attn(ln1(x))` then
    /// `+ mlp(ln2(·))`.
    #[serde(default = "default_true")]
    pub use_parallel_residual: bool,
    /// Biases on the attention's projections.
    #[serde(default = "default_true")]
    pub attention_bias: bool,
    /// The head is the token embedding (`embed_in`); false in every Pythia.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// End-of-sequence id(s).
    pub eos_token_id: Option<IdOrList>,
}

fn default_max_positions() -> usize {
    2048
}
fn default_ln_eps() -> f64 {
    1e-5
}
fn default_activation() -> String {
    "gelu".into()
}
fn default_true() -> bool {
    true
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gelu {
    Exact,
    Tanh,
}

/// The resolved configuration: nothing optional left.
#[derive(Debug, Clone)]
pub struct GptNeoXConfig {
    /// Width of the residual stream.
    pub hidden: i64,
    /// Width of the MLP.
    pub intermediate: i64,
    /// Layers.
    pub layers: usize,
    /// Heads.
    pub heads: i64,
    /// Vocabulary size.
    pub vocab: i64,
    /// Longest sequence.
    pub max_len: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
    /// Inverse frequencies of the rotated dimensions (half as many as those).
    pub inv_freq: Vec<f64>,
    /// Side-by-side residual.
    pub parallel_residual: bool,
    /// Biases on the attention's projections.
    pub attention_bias: bool,
    /// Tied head.
    pub tied: bool,
    gelu: Gelu,
}

impl GptNeoXConfigFile {
    /// Resolves defaults as transformers does (rotary share 0.25, base 10000); `path` is named
    /// in errors.
    pub fn into_config(self, path: &Path) -> Result<GptNeoXConfig> {
        let cfg_err = |field: &str, message: String| Error::Config {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        let gelu = match self.hidden_act.as_str() {
            "gelu" => Gelu::Exact,
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Gelu::Tanh,
            other => {
                return Err(cfg_err(
                    "hidden_act",
                    format!("unsupported activation `{other}` (gelu, gelu_new)"),
                ))
            }
        };
        if self.max_position_embeddings == 0 {
            return Err(cfg_err(
                "max_position_embeddings",
                "0: a model needs a context of at least one position".into(),
            ));
        }
        if self.num_hidden_layers == 0 {
            return Err(cfg_err(
                "num_hidden_layers",
                "0: a model needs at least one layer".into(),
            ));
        }
        let heads = self.num_attention_heads;
        if heads <= 0 || self.hidden_size % heads != 0 {
            return Err(cfg_err(
                "num_attention_heads",
                format!("{heads} does not divide hidden_size {}", self.hidden_size),
            ));
        }
        // As transformers: `rope_scaling` (when not empty) in place of `rope_parameters`, whose
        // values come before the older top-level keys. Each value is named by its key in errors.
        let (rope, rope_key) = match (&self.rope_scaling, &self.rope_parameters) {
            (Some(r), _) if *r != RopeParameters::default() => (Some(r), "rope_scaling"),
            (_, r) => (r.as_ref(), "rope_parameters"),
        };
        if let Some(other) = rope.and_then(|r| r.rope_type.as_deref()).filter(|t| *t != "default") {
            return Err(cfg_err(
                &format!("{rope_key}.rope_type"),
                format!("unsupported RoPE type `{other}` (default)"),
            ));
        }
        let theta = rope
            .and_then(|r| r.rope_theta)
            .or(self.rotary_emb_base)
            .unwrap_or(10000.0);
        let (share, share_key) = match (rope.and_then(|r| r.partial_rotary_factor), self.rotary_pct) {
            (Some(f), _) => (f, format!("{rope_key}.partial_rotary_factor")),
            (None, Some(p)) => (p, "rotary_pct".to_string()),
            (None, None) => (0.25, "rotary_pct".to_string()),
        };
        let head_dim = self.hidden_size / heads;
        if !(0.0..=1.0).contains(&share) {
            return Err(cfg_err(&share_key, format!("{share}: not a share between 0 and 1")));
        }
        // transformers: int(head_size * partial_rotary_factor); with an odd count its tables
        // come out one dimension wider than the rotated part.
        let rotated = (head_dim as f64 * share) as i64;
        if rotated % 2 != 0 {
            return Err(cfg_err(
                &share_key,
                format!("{share}: rotates {rotated} of a head's {head_dim} dimensions, an odd number, which does not pair up"),
            ));
        }
        Ok(GptNeoXConfig {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            heads,
            vocab: self.vocab_size,
            max_len: self.max_position_embeddings,
            eps: self.layer_norm_eps,
            inv_freq: rotary::inverse_frequencies(theta, rotated),
            parallel_residual: self.use_parallel_residual,
            attention_bias: self.attention_bias,
            tied: self.tie_word_embeddings,
            gelu,
        })
    }
}

/// The fused projection `[q_0, k_0, v_0, q_1, ...]` (head by head) reordered to `[q; k; v]`.
fn fused_by_role(w: &Weights, p: &str, c: &GptNeoXConfig) -> Result<Linear> {
    let (h, heads) = (c.hidden, c.heads);
    let by_role = |t: Tensor, cols: &[i64]| -> Tensor {
        let mut shape = vec![heads, 3, h / heads];
        shape.extend_from_slice(cols);
        let mut out = vec![3 * h];
        out.extend_from_slice(cols);
        t.view(shape.as_slice()).transpose(0, 1).reshape(out.as_slice())
    };
    let fused = Linear::load(w, p, 3 * h, h, c.attention_bias)?;
    Ok(Linear {
        weight: by_role(fused.weight, &[h]),
        bias: fused.bias.map(|b| by_role(b, &[])),
    })
}

/// Self-attention (`attention`): the fused projection, rotary embeddings on queries and keys,
/// then the output projection (`dense`).
#[derive(Debug)]
struct Attention {
    query_key_value: Linear,
    dense: Linear,
    heads: i64,
    hidden: i64,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        attend: Attend<'_>,
        layer: usize,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (q, k, v) = fused_qkv(&self.query_key_value, x, attend, self.heads, self.hidden)?;
        let q = rotary::apply(&q, &attend.at_queries(cos, 2)?, &attend.at_queries(sin, 2)?);
        let k = rotary::apply(&k, cos, sin);
        Ok(self.dense.forward(&attend.attention(&q, &k, &v, layer, cache, None)?))
    }
}

/// The feed-forward layer (`mlp`): `dense_4h_to_h(gelu(dense_h_to_4h(x)))`.
#[derive(Debug)]
struct Mlp {
    dense_h_to_4h: Linear,
    dense_4h_to_h: Linear,
    gelu: Gelu,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        let approximate = match self.gelu {
            Gelu::Exact => "none",
            Gelu::Tanh => "tanh",
        };
        self.dense_4h_to_h
            .forward(&self.dense_h_to_4h.forward(x).gelu(approximate))
    }
}

/// One layer (`layers.{i}`).
#[derive(Debug)]
struct Block {
    input_layernorm: LayerNorm,
    attention: Attention,
    post_attention_layernorm: LayerNorm,
    mlp: Mlp,
    parallel: bool,
    span: tracing::Span,
}

impl Block {
    fn load(w: &Weights, p: &str, i: usize, c: &GptNeoXConfig) -> Result<Self> {
        let (h, eps) = (c.hidden, c.eps);
        Ok(Block {
            input_layernorm: LayerNorm::load(w, &format!("{p}.input_layernorm"), h, eps)?,
            attention: Attention {
                query_key_value: fused_by_role(w, &format!("{p}.attention.query_key_value"), c)?,
                dense: Linear::load(w, &format!("{p}.attention.dense"), h, h, c.attention_bias)?,
                heads: c.heads,
                hidden: h,
            },
            post_attention_layernorm: LayerNorm::load(w, &format!("{p}.post_attention_layernorm"), h, eps)?,
            mlp: Mlp {
                dense_h_to_4h: Linear::load(w, &format!("{p}.mlp.dense_h_to_4h"), c.intermediate, h, true)?,
                dense_4h_to_h: Linear::load(w, &format!("{p}.mlp.dense_4h_to_h"), h, c.intermediate, true)?,
                gelu: c.gelu,
            },
            parallel: c.parallel_residual,
            span: tracing::trace_span!("gpt-neox-block", layer = i),
        })
    }

    /// `mlp(ln2(x)) + attn(ln1(x)) + x` (parallel), else `a = attn(ln1(x)) + x` then
    /// `mlp(ln2(a)) + a`, summed in transformers' order; with [`Attend::PackedKept`], at the kept
    /// positions alone.
    fn forward(
        &self,
        x: &Tensor,
        rope: (&Tensor, &Tensor),
        attend: Attend<'_>,
        layer: usize,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let attn = self
            .attention
            .forward(&self.input_layernorm.forward(x), rope, attend, layer, cache)?;
        let x = attend.at_queries(x, 1)?;
        Ok(if self.parallel {
            self.mlp.forward(&self.post_attention_layernorm.forward(&x)) + attn + x
        } else {
            let a = attn + x;
            self.mlp.forward(&self.post_attention_layernorm.forward(&a)) + a
        })
    }
}

/// A loaded GPT-NeoX model.
#[derive(Debug)]
pub struct GptNeoX {
    embed_in: Tensor,
    layers: Vec<Block>,
    final_layer_norm: LayerNorm,
    /// The output head: `embed_in` itself where tied.
    embed_out: Tensor,
    rotary: Rotary,
    config: GptNeoXConfig,
    kind: Kind,
    device: Device,
    path: PathBuf,
    /// [`Model::weights_stamp`]: the stamp of the checkpoint's files.
    stamp: Option<String>,
}

impl GptNeoX {
    /// Loads `config.json` and the safetensors weights from a checkpoint directory.
    pub fn load(dir: &Path, dtype: Dtype, device: Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let file: GptNeoXConfigFile = read_json(&cfg_path)?;
        let c = file.into_config(&cfg_path)?;
        let w = Weights::from_dir(dir, dtype.kind(), device)?;
        let _guard = tch::no_grad_guard();
        // `GPTNeoXForCausalLM` saves under `gpt_neox.`, a bare `GPTNeoXModel` without it.
        let root = if w.contains("gpt_neox.embed_in.weight") {
            "gpt_neox."
        } else {
            ""
        };
        if let Some(name) = w.layer_beyond(&format!("{root}layers."), c.layers) {
            return Err(Error::Config {
                path: cfg_path,
                field: "num_hidden_layers".into(),
                message: format!("{}, but the checkpoint has tensor `{name}` of a later layer", c.layers),
            });
        }
        let layers = (0..c.layers)
            .map(|i| Block::load(&w, &format!("{root}layers.{i}"), i, &c))
            .collect::<Result<Vec<_>>>()?;
        // Checkpoints name the head `embed_out` (transformers 5 too, which calls it `lm_head`
        // in memory only); `lm_head` is read where a converter wrote that name.
        let (embed_in, embed_out) = w.embedding_and_head(
            &format!("{root}embed_in.weight"),
            &["embed_out.weight", "lm_head.weight"],
            &[c.vocab, c.hidden],
            c.tied,
        )?;
        let model = GptNeoX {
            embed_in,
            layers,
            final_layer_norm: LayerNorm::load(&w, &format!("{root}final_layer_norm"), c.hidden, c.eps)?,
            embed_out,
            rotary: Rotary::new(&c.inv_freq, dtype.kind(), device),
            config: c,
            kind: dtype.kind(),
            device,
            path: dir.to_path_buf(),
            stamp: super::checkpoint_stamp(dir)?,
        };
        // Older checkpoints store the causal mask and the rotary frequencies, which the model
        // computes.
        w.warn_unused(|n| {
            n.ends_with(".attention.bias")
                || n.ends_with(".attention.masked_bias")
                || n.ends_with(".rotary_emb.inv_freq")
        });
        Ok(model)
    }

    /// The resolved configuration.
    pub fn config(&self) -> &GptNeoXConfig {
        &self.config
    }

    /// The layers on `ids` at positions `pos` with attention as `attend` says (per layer,
    /// [`Attend::for_layer`]), then the final norm.
    fn body(&self, ids: &Tensor, pos: &Tensor, attend: Attend<'_>, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (cos, sin) = self.rotary.tables(pos);
        let mut x = Tensor::f_embedding(&self.embed_in, ids, -1, false, false).op("embedding")?;
        for (i, block) in self.layers.iter().enumerate() {
            let attend = attend.for_layer(i, self.layers.len());
            x = block.forward(&x, (&cos, &sin), attend, i, cache.as_deref_mut())?;
        }
        Ok(self.final_layer_norm.forward(&x))
    }

    /// The body on a packed batch, its ids checked first.
    fn packed_body(&self, batch: &PackedBatch, attend: Attend<'_>) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        check_ids(batch.ids(), self.config.vocab)?;
        self.body(batch.ids(), batch.positions(), attend, None)
    }
}

impl Model for GptNeoX {
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
        format!("gpt_neox:{} ({:?})", self.path.display(), self.kind)
    }
    fn weights_stamp(&self) -> Option<String> {
        self.stamp.clone()
    }

    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let model = (self.config.vocab, self.device, self.kind, None);
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
        Ok(hidden.linear::<Tensor>(&self.embed_out, None).to_kind(Kind::Float))
    }

    fn new_cache(&self) -> Option<KvCache> {
        Some(KvCache::new(self.config.layers, 2 * self.config.max_len))
    }
}

#[cfg(test)]
mod tests {
    use super::GptNeoXConfigFile;
    use std::path::Path;

    fn resolve(extra: serde_json::Value) -> crate::Result<super::GptNeoXConfig> {
        let mut config = serde_json::json!({
            "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 100
        });
        for (k, v) in extra.as_object().expect("object") {
            config[k] = v.clone();
        }
        let file: GptNeoXConfigFile = serde_json::from_value(config).expect("parses");
        file.into_config(Path::new("config.json"))
    }

    /// transformers' precedence: `rope_scaling` (unless empty) over `rope_parameters`, whose
    /// values come before `rotary_pct` and `rotary_emb_base`; 0.25 and 10000 by default.
    #[test]
    fn a_context_of_no_positions_is_refused() {
        let e = resolve(serde_json::json!({"max_position_embeddings": 0}))
            .expect_err("no positions")
            .to_string();
        assert!(e.contains("`max_position_embeddings`: 0"), "{e}");
    }

    #[test]
    fn rotary_settings_resolve_as_transformers_resolves_them() {
        let rotated = |extra| resolve(extra).expect("resolves").inv_freq;
        // 16-wide heads: a quarter is 4 dimensions, 2 pairs.
        assert_eq!(rotated(serde_json::json!({})), vec![1.0, 0.01]);
        assert_eq!(
            rotated(serde_json::json!({"rotary_pct": 0.5, "rotary_emb_base": 100.0})).len(),
            4
        );
        let newer = serde_json::json!({"rotary_pct": 0.5, "rotary_emb_base": 100.0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}});
        assert_eq!(rotated(newer), vec![1.0, 0.01]);
        let scaled = serde_json::json!({"rope_scaling": {"partial_rotary_factor": 1.0},
            "rope_parameters": {"partial_rotary_factor": 0.25}});
        assert_eq!(rotated(scaled).len(), 8);
        let empty = serde_json::json!({"rope_scaling": {}, "rope_parameters": {"partial_rotary_factor": 0.5}});
        assert_eq!(rotated(empty).len(), 4);
        assert!(rotated(serde_json::json!({"rotary_pct": 0.0})).is_empty());
    }

    #[test]
    fn unsupported_settings_name_their_key() {
        let error = |extra| resolve(extra).expect_err("refused").to_string();
        let e = error(serde_json::json!({"rope_scaling": {"type": "linear", "factor": 2.0}}));
        assert!(e.contains("`rope_scaling.rope_type`") && e.contains("`linear`"), "{e}");
        let e = error(serde_json::json!({"rope_parameters": {"partial_rotary_factor": 1.5}}));
        assert!(
            e.contains("`rope_parameters.partial_rotary_factor`") && e.contains("not a share"),
            "{e}"
        );
        let e = error(serde_json::json!({"rotary_pct": 0.0625}));
        assert!(
            e.contains("`rotary_pct`") && e.contains("rotates 1 of a head's 16"),
            "{e}"
        );
        let e = error(serde_json::json!({"hidden_act": "relu"}));
        assert!(e.contains("`hidden_act`") && e.contains("`relu`"), "{e}");
    }
}
