//! Seeded random checkpoints: a Hugging Face checkpoint directory (`config.json`,
//! `model.safetensors`, the tokenizer's files) whose weights are drawn from a seed, so that a
//! machine without internet can measure throughput at a real model's shape, or test a harness
//! on a checkpoint nobody has to download.
//!
//! The weights follow transformers' initialisation: matrices and embeddings from a normal
//! distribution with the config's `initializer_range` (0.02 by default; GPT-2's residual
//! projections scaled by `1/√(2 · layers)`), norm weights one, biases zero. Each tensor is drawn
//! in float32 from a generator of its own, ChaCha8 seeded with the seed on the stream of the
//! tensor's place in [`parameters`] (normal values by `rand_distr`), then cast to the dtype asked
//! for: the same seed gives the same file on every machine, whatever else the process draws
//! (libtorch's global generator is not used) and however many threads draw.
//!
//! The tensor names and shapes are those the loaders of this crate (and transformers) read:
//! [`parameters`] lists them without allocating anything, so a shape's size is known before it
//! is written.

use super::gpt2::Gpt2ConfigFile;
use super::gpt_neox::GptNeoXConfigFile;
use super::llama::LlamaConfigFile;
use crate::device::Dtype;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The shapes [`preset`] knows, by name.
pub const PRESETS: &[&str] = &["llama-3.2-1b", "gpt2-small", "pythia-160m"];

/// Reads a `config.json`-shaped file for [`write()`], naming the file and line when it is not JSON,
/// and the file and field when it describes no model this can make ([`parameters`]).
///
/// ```no_run
/// # fn main() -> evalkit_core::Result<()> {
/// let config = evalkit_core::model::random::read_config("my-model/config.json".as_ref())?;
/// # Ok(()) }
/// ```
pub fn read_config(path: &Path) -> Result<Value> {
    let config: Value = crate::error::read_json(path)?;
    // Checked here, so that a config that cannot make a checkpoint names its own file.
    parameters(&config, path)?;
    Ok(config)
}

/// The `config.json` of a named model shape (see [`PRESETS`]): Llama-3.2-1B (16 layers,
/// 2048 wide, 32 query and 8 key/value heads, 128,256-token vocabulary, llama3 RoPE, tied head),
/// GPT-2 small (12 layers, 768 wide, 1024 positions, 50,257-token vocabulary) or Pythia-160M
/// (GPT-NeoX: 12 layers, 768 wide, a quarter of each head rotary, 2048 positions, 50,304-row
/// vocabulary, untied head).
///
/// ```
/// let config = evalkit_core::model::random::preset("llama-3.2-1b")?;
/// assert_eq!(config["num_hidden_layers"], 16);
/// assert!(evalkit_core::model::random::preset("llama-9").is_err());
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn preset(name: &str) -> Result<Value> {
    match name {
        "llama-3.2-1b" => Ok(json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "vocab_size": 128256,
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192
            },
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "tie_word_embeddings": true,
            "initializer_range": 0.02
        })),
        "gpt2-small" => Ok(json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "n_embd": 768,
            "n_layer": 12,
            "n_head": 12,
            "n_inner": null,
            "n_positions": 1024,
            "vocab_size": 50257,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "scale_attn_weights": true,
            "tie_word_embeddings": true,
            "initializer_range": 0.02
        })),
        "pythia-160m" => Ok(json!({
            "architectures": ["GPTNeoXForCausalLM"],
            "model_type": "gpt_neox",
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "vocab_size": 50304,
            "max_position_embeddings": 2048,
            "rotary_pct": 0.25,
            "rotary_emb_base": 10000,
            "use_parallel_residual": true,
            "layer_norm_eps": 1e-5,
            "hidden_act": "gelu",
            "tie_word_embeddings": false,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "initializer_range": 0.02
        })),
        other => Err(Error::Unsupported(format!(
            "no preset shape `{other}` (presets: {})",
            PRESETS.join(", ")
        ))),
    }
}

/// How a parameter is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation.
    Normal(f64),
    /// All ones (norm weights).
    Ones,
    /// All zeros (biases).
    Zeros,
}

/// One tensor of a checkpoint: its name, shape and initialisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// The name in `model.safetensors`.
    pub name: String,
    /// The shape.
    pub shape: Vec<i64>,
    /// How its values are drawn.
    pub init: Init,
}

/// The tensors a checkpoint of `config` holds, in the order they are drawn. `config` is a
/// `config.json` value of a Llama-family (`llama`, `mistral`, `qwen2`), GPT-2 or GPT-NeoX
/// model; `path` is what errors name.
///
/// ```
/// use evalkit_core::model::random::{parameters, preset};
/// let count = |p: &[evalkit_core::model::random::Parameter]| -> i64 {
///     p.iter().map(|p| p.shape.iter().product::<i64>()).sum()
/// };
/// let path = std::path::Path::new("preset");
/// assert_eq!(count(&parameters(&preset("llama-3.2-1b")?, path)?), 1_235_814_400);
/// assert_eq!(count(&parameters(&preset("gpt2-small")?, path)?), 124_439_808);
/// assert_eq!(count(&parameters(&preset("pythia-160m")?, path)?), 162_322_944);
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn parameters(config: &Value, path: &Path) -> Result<Vec<Parameter>> {
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or_default();
    let std = config.get("initializer_range").and_then(Value::as_f64).unwrap_or(0.02);
    if !(std.is_finite() && std >= 0.0) {
        return Err(Error::Config {
            path: path.to_path_buf(),
            field: "initializer_range".into(),
            message: format!("{std}: a deviation must be finite and not negative"),
        });
    }
    let parse_err = |e: serde_json::Error| Error::Parse {
        path: path.to_path_buf(),
        line: None,
        message: e.to_string(),
    };
    let p = |name: String, shape: &[i64], init: Init| Parameter {
        name,
        shape: shape.to_vec(),
        init,
    };
    let mut out = vec![];
    match model_type {
        "llama" | "mistral" | "qwen2" => {
            let file: LlamaConfigFile = serde_json::from_value(config.clone()).map_err(parse_err)?;
            let c = file.into_config(path)?;
            let (h, q, kv) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
            out.push(p("model.embed_tokens.weight".into(), &[c.vocab, h], Init::Normal(std)));
            for i in 0..c.layers {
                let l = format!("model.layers.{i}");
                out.push(p(format!("{l}.input_layernorm.weight"), &[h], Init::Ones));
                for (name, rows, cols) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h)] {
                    out.push(p(
                        format!("{l}.self_attn.{name}.weight"),
                        &[rows, cols],
                        Init::Normal(std),
                    ));
                    if c.qkv_bias {
                        out.push(p(format!("{l}.self_attn.{name}.bias"), &[rows], Init::Zeros));
                    }
                }
                out.push(p(format!("{l}.self_attn.o_proj.weight"), &[h, q], Init::Normal(std)));
                if c.o_bias {
                    out.push(p(format!("{l}.self_attn.o_proj.bias"), &[h], Init::Zeros));
                }
                out.push(p(format!("{l}.post_attention_layernorm.weight"), &[h], Init::Ones));
                for (name, rows, cols) in [
                    ("gate_proj", c.intermediate, h),
                    ("up_proj", c.intermediate, h),
                    ("down_proj", h, c.intermediate),
                ] {
                    out.push(p(format!("{l}.mlp.{name}.weight"), &[rows, cols], Init::Normal(std)));
                }
            }
            out.push(p("model.norm.weight".into(), &[h], Init::Ones));
            if !c.tied {
                out.push(p("lm_head.weight".into(), &[c.vocab, h], Init::Normal(std)));
            }
        }
        "gpt2" => {
            let c: Gpt2ConfigFile = serde_json::from_value(config.clone()).map_err(parse_err)?;
            let (h, layers) = (c.n_embd, c.n_layer);
            let inner = c.n_inner.unwrap_or(4 * h);
            let residual = Init::Normal(std / (2.0 * layers as f64).sqrt());
            let t = "transformer";
            out.push(p(format!("{t}.wte.weight"), &[c.vocab_size, h], Init::Normal(std)));
            out.push(p(
                format!("{t}.wpe.weight"),
                &[c.n_positions as i64, h],
                Init::Normal(std),
            ));
            for i in 0..layers {
                let l = format!("{t}.h.{i}");
                let norm = |out: &mut Vec<Parameter>, name: &str| {
                    out.push(p(format!("{l}.{name}.weight"), &[h], Init::Ones));
                    out.push(p(format!("{l}.{name}.bias"), &[h], Init::Zeros));
                };
                // Conv1D weights are stored `[in, out]`.
                let conv = |out: &mut Vec<Parameter>, name: &str, inp: i64, width: i64, init: Init| {
                    out.push(p(format!("{l}.{name}.weight"), &[inp, width], init));
                    out.push(p(format!("{l}.{name}.bias"), &[width], Init::Zeros));
                };
                norm(&mut out, "ln_1");
                conv(&mut out, "attn.c_attn", h, 3 * h, Init::Normal(std));
                conv(&mut out, "attn.c_proj", h, h, residual);
                norm(&mut out, "ln_2");
                conv(&mut out, "mlp.c_fc", h, inner, Init::Normal(std));
                conv(&mut out, "mlp.c_proj", inner, h, residual);
            }
            out.push(p(format!("{t}.ln_f.weight"), &[h], Init::Ones));
            out.push(p(format!("{t}.ln_f.bias"), &[h], Init::Zeros));
        }
        "gpt_neox" => {
            let file: GptNeoXConfigFile = serde_json::from_value(config.clone()).map_err(parse_err)?;
            let c = file.into_config(path)?;
            let h = c.hidden;
            let t = "gpt_neox";
            out.push(p(format!("{t}.embed_in.weight"), &[c.vocab, h], Init::Normal(std)));
            for i in 0..c.layers {
                let l = format!("{t}.layers.{i}");
                let linear = |out: &mut Vec<Parameter>, name: &str, rows: i64, cols: i64, bias: bool| {
                    out.push(p(format!("{l}.{name}.weight"), &[rows, cols], Init::Normal(std)));
                    if bias {
                        out.push(p(format!("{l}.{name}.bias"), &[rows], Init::Zeros));
                    }
                };
                for norm in ["input_layernorm", "post_attention_layernorm"] {
                    out.push(p(format!("{l}.{norm}.weight"), &[h], Init::Ones));
                    out.push(p(format!("{l}.{norm}.bias"), &[h], Init::Zeros));
                }
                linear(&mut out, "attention.query_key_value", 3 * h, h, c.attention_bias);
                linear(&mut out, "attention.dense", h, h, c.attention_bias);
                linear(&mut out, "mlp.dense_h_to_4h", c.intermediate, h, true);
                linear(&mut out, "mlp.dense_4h_to_h", h, c.intermediate, true);
            }
            out.push(p(format!("{t}.final_layer_norm.weight"), &[h], Init::Ones));
            out.push(p(format!("{t}.final_layer_norm.bias"), &[h], Init::Zeros));
            if !c.tied {
                out.push(p("embed_out.weight".into(), &[c.vocab, h], Init::Normal(std)));
            }
        }
        other => {
            return Err(Error::Config {
                path: path.to_path_buf(),
                field: "model_type".into(),
                message: format!(
                    "cannot make a random checkpoint of `{other}` (llama, mistral, qwen2, gpt2, gpt_neox)"
                ),
            })
        }
    }
    Ok(out)
}

/// A float32 tensor of `shape` with normal values of deviation `std`, from ChaCha8 seeded with
/// `seed` on stream `stream`.
fn normal(seed: u64, stream: u64, shape: &[i64], std: f64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let n: i64 = shape.iter().product();
    // (`parameters` refuses a deviation that is negative or not finite.)
    let normal = rand_distr::Normal::new(0.0f32, std as f32).expect("a finite, non-negative deviation");
    let values: Vec<f32> = (0..n).map(|_| rng.sample(normal)).collect();
    Tensor::from_slice(&values).view(shape)
}

/// What [`write()`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomCheckpoint {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Number of parameters (a tied head counted once).
    pub parameters: i64,
    /// Size of `model.safetensors` in bytes.
    pub bytes: u64,
}

/// The tokenizer's files copied next to the weights when present (`tokenizer.json` must be).
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

/// Writes a checkpoint of `config` (a `config.json` value) to `out`, weights drawn from `seed`
/// and stored in `dtype`, with the tokenizer files of `tokenizer_dir`. Refuses an `out` that
/// already holds a checkpoint and a tokenizer with more tokens than the model's vocabulary.
/// `config.json` is written last, so an interrupted run leaves no loadable half checkpoint.
///
/// ```no_run
/// use evalkit_core::model::random::{preset, write};
/// let made = write(
///     &preset("gpt2-small")?,
///     "models/tiny-gpt2-random".as_ref(),
///     0,
///     evalkit_core::Dtype::F32,
///     "/tmp/gpt2-small-random".as_ref(),
/// )?;
/// assert_eq!(made.parameters, 124_439_808);
/// # Ok::<(), evalkit_core::Error>(())
/// ```
pub fn write(config: &Value, tokenizer_dir: &Path, seed: u64, dtype: Dtype, out: &Path) -> Result<RandomCheckpoint> {
    let config_path = out.join("config.json");
    let params = parameters(config, &config_path)?;
    for existing in ["config.json", "model.safetensors", "model.safetensors.index.json"] {
        if out.join(existing).exists() {
            return Err(Error::Unsupported(format!(
                "{} already holds a checkpoint ({existing}); choose an empty directory",
                out.display()
            )));
        }
    }
    let tokenizer = Tokenizer::from_dir(tokenizer_dir)?;
    let vocab = config.get("vocab_size").and_then(Value::as_i64).unwrap_or_default();
    if tokenizer.vocab_size() as i64 > vocab {
        return Err(Error::Tokenizer {
            path: tokenizer_dir.join("tokenizer.json"),
            message: format!(
                "{} tokens do not fit the model's vocabulary of {vocab} (vocab_size)",
                tokenizer.vocab_size()
            ),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    let _guard = tch::no_grad_guard();
    let mut drawn: Vec<Option<Tensor>> = params.iter().map(|_| None).collect();
    let threads = tch::get_num_threads().max(1) as usize;
    crate::threads::parallel_parts(drawn.iter_mut().collect(), threads, |i, slot| {
        let p = &params[i];
        let t = match p.init {
            Init::Normal(std) => normal(seed, i as u64, &p.shape, std),
            Init::Ones => Tensor::ones(p.shape.as_slice(), (Kind::Float, Device::Cpu)),
            Init::Zeros => Tensor::zeros(p.shape.as_slice(), (Kind::Float, Device::Cpu)),
        };
        **slot = Some(t.to_kind(dtype.kind()));
    });
    let tensors = params
        .iter()
        .zip(drawn)
        .map(|(p, t)| (p.name.as_str(), t.expect("parallel_parts fills every slot")))
        .collect::<Vec<_>>();
    let weights = out.join("model.safetensors");
    let partial = out.join("model.safetensors.partial");
    Tensor::write_safetensors(&tensors, &partial)
        .map_err(|e| Error::torch(format!("writing {}", partial.display()), e))?;
    drop(tensors);
    std::fs::rename(&partial, &weights).map_err(|e| Error::io("renaming", &partial, e))?;
    for f in TOKENIZER_FILES {
        let from = tokenizer_dir.join(f);
        if from.exists() {
            // (Written afresh rather than copied: a copy keeps a read-only source's mode.)
            let bytes = std::fs::read(&from).map_err(|e| Error::io("reading", &from, e))?;
            let to = out.join(f);
            std::fs::write(&to, bytes).map_err(|e| Error::io("writing", &to, e))?;
        }
    }
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        // transformers 5 reads `dtype`, older ones `torch_dtype`: both say the weights' dtype
        // (a copied config's own would contradict them).
        map.insert("dtype".into(), json!(dtype.torch_name()));
        map.insert("torch_dtype".into(), json!(dtype.torch_name()));
        map.insert("evalkit_random_seed".into(), json!(seed));
    }
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Parse {
        path: config_path.clone(),
        line: None,
        message: e.to_string(),
    })?;
    std::fs::write(&config_path, text + "\n").map_err(|e| Error::io("writing", &config_path, e))?;
    let bytes = std::fs::metadata(&weights)
        .map_err(|e| Error::io("reading", &weights, e))?
        .len();
    Ok(RandomCheckpoint {
        dir: out.to_path_buf(),
        parameters: params.iter().map(|p| p.shape.iter().product::<i64>()).sum(),
        bytes,
    })
}
