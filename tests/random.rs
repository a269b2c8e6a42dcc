//! Seeded random checkpoints (`evalkit::core::model::random`, `evalkit random-checkpoint`):
//! they load in evalkit, the seed fixes every byte, the weights follow the initialisation
//! asked for, and bad requests are refused with the reason.

use crate::cli::{evalkit, text};
use crate::util::{data_dir, init, model_dir};
use evalkit::core::model::random::{parameters, write, Init};
use evalkit::core::{load_checkpoint, Dtype, Tokenizer};
use serde_json::{json, Value};
use std::path::Path;
use tch::{Kind, Tensor};

/// A small Llama with what the large ones have: grouped-query heads, llama3 RoPE scaling
/// (whose original length is short enough to matter here), a tied head.
fn tiny_llama() -> Value {
    json!({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 160,
        "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
        "vocab_size": 512, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "tie_word_embeddings": true, "initializer_range": 0.1
    })
}

fn tiny_gpt2() -> Value {
    json!({
        "model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": null,
        "n_positions": 128, "vocab_size": 50257, "initializer_range": 0.02
    })
}

fn bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).expect("weights")
}

/// Both families: the checkpoint loads, runs, names every tensor the loader reads, and the same
/// seed writes the same bytes (another seed other bytes) whatever else draws random numbers.
#[test]
fn random_checkpoints_load_run_and_are_fixed_by_their_seed() {
    init();
    let tmp = tempdir!("random");
    for (name, config, tokenizer) in [
        ("llama", tiny_llama(), "stories260K-hf"),
        ("gpt2", tiny_gpt2(), "tiny-gpt2-random"),
    ] {
        let dir = |s: &str| tmp.path().join(format!("{name}-{s}"));
        let made = write(&config, &model_dir(tokenizer), 3, Dtype::F32, &dir("a")).expect("writes");
        // The bytes depend on the seed alone: not on libtorch's global generator, nor on how
        // many threads draw.
        tch::manual_seed(99);
        tch::set_num_threads(2);
        write(&config, &model_dir(tokenizer), 3, Dtype::F32, &dir("b")).expect("writes again");
        tch::set_num_threads(1);
        write(&config, &model_dir(tokenizer), 4, Dtype::F32, &dir("c")).expect("writes seed 4");
        assert!(bytes(&dir("a")) == bytes(&dir("b")), "{name}: seed 3 twice differs");
        assert!(bytes(&dir("a")) != bytes(&dir("c")), "{name}: seeds 3 and 4 agree");
        let count: i64 = parameters(&config, Path::new("c"))
            .expect("shapes")
            .iter()
            .map(|p| p.shape.iter().product::<i64>())
            .sum();
        assert_eq!(made.parameters, count);
        assert!(
            made.bytes >= 4 * count as u64,
            "{name}: {} bytes for {count} f32",
            made.bytes
        );

        let model = load_checkpoint(&dir("a"), Default::default()).expect("loads");
        let tok = Tokenizer::from_dir(&dir("a")).expect("tokenizer copied");
        let ids = tok.encode("Once upon a time there was a cat").expect("encodes");
        let t = Tensor::from_slice(&ids).view([1, -1]);
        let logits = model.forward(&t, &Tensor::ones_like(&t)).expect("forward");
        assert_eq!(logits.size(), [1, ids.len() as i64, model.vocab_size() as i64]);
        assert!(
            bool::try_from(logits.isfinite().all()).expect("bool"),
            "{name}: non-finite logits"
        );
        assert!(logits.std(true).double_value(&[]) > 0.0, "{name}: constant logits");
    }
}

/// The values follow the initialisation the parameter list gives: normal with the configured
/// deviation (GPT-2's residual projections scaled down), norms one, biases zero; bf16 halves
/// the file.
#[test]
fn random_weights_follow_their_initialisation_in_the_dtype_asked() {
    init();
    let tmp = tempdir!("random-init");
    let config = tiny_gpt2();
    let (f32_dir, bf16_dir) = (tmp.path().join("f32"), tmp.path().join("bf16"));
    let tok = model_dir("tiny-gpt2-random");
    let a = write(&config, &tok, 0, Dtype::F32, &f32_dir).expect("f32");
    let b = write(&config, &tok, 0, Dtype::Bf16, &bf16_dir).expect("bf16");
    assert!(
        b.bytes * 2 <= a.bytes + 4096,
        "bf16 {} vs f32 {} bytes",
        b.bytes,
        a.bytes
    );
    let stored: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(bf16_dir.join("model.safetensors"))
            .expect("reads")
            .into_iter()
            .collect();
    let params = parameters(&config, Path::new("c")).expect("shapes");
    assert_eq!(stored.len(), params.len());
    for p in &params {
        let t = &stored[&p.name];
        assert_eq!(t.kind(), Kind::BFloat16, "{}", p.name);
        assert_eq!(t.size(), p.shape, "{}", p.name);
        let t = t.to_kind(Kind::Float);
        match p.init {
            Init::Normal(std) => {
                let got = t.std(true).double_value(&[]);
                assert!((got / std - 1.0).abs() < 0.1, "{}: std {got}, asked {std}", p.name);
                assert!(t.mean(Kind::Float).double_value(&[]).abs() < std / 5.0, "{}", p.name);
            }
            Init::Ones => assert!(bool::try_from(t.eq(1.0).all()).expect("bool"), "{}", p.name),
            Init::Zeros => assert!(bool::try_from(t.eq(0.0).all()).expect("bool"), "{}", p.name),
        }
    }
    let residual = params
        .iter()
        .find(|p| p.name == "transformer.h.0.attn.c_proj.weight")
        .expect("c_proj");
    assert_eq!(residual.init, Init::Normal(0.02 / 2.0));
}

#[test]
fn random_checkpoint_refusals_name_the_reason() {
    init();
    let tmp = tempdir!("random-errors");
    let out = tmp.path().join("m");
    // GPT-2's 50,257 tokens into a 512-token vocabulary.
    let e = write(&tiny_llama(), &model_dir("tiny-gpt2-random"), 0, Dtype::F32, &out).unwrap_err();
    assert!(
        e.to_string().contains("50257 tokens do not fit") && e.to_string().contains("vocab_size"),
        "{e}"
    );
    assert!(!out.join("config.json").exists());
    let mut bert = tiny_llama();
    bert["model_type"] = json!("bert");
    let e = write(&bert, &model_dir("stories260K-hf"), 0, Dtype::F32, &out).unwrap_err();
    assert!(
        e.to_string().contains("model_type") && e.to_string().contains("bert"),
        "{e}"
    );
    let mut odd = tiny_llama();
    odd["num_key_value_heads"] = json!(3);
    let e = write(&odd, &model_dir("stories260K-hf"), 0, Dtype::F32, &out).unwrap_err();
    assert!(e.to_string().contains("num_key_value_heads"), "{e}");
    let mut negative = tiny_llama();
    negative["initializer_range"] = json!(-0.1);
    let e = write(&negative, &model_dir("stories260K-hf"), 0, Dtype::F32, &out).unwrap_err();
    assert!(
        e.to_string().contains("initializer_range") && e.to_string().contains("not negative"),
        "{e}"
    );
    let e = write(&tiny_llama(), tmp.path(), 0, Dtype::F32, &out).unwrap_err();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    write(&tiny_llama(), &model_dir("stories260K-hf"), 0, Dtype::F32, &out).expect("writes");
    let e = write(&tiny_llama(), &model_dir("stories260K-hf"), 0, Dtype::F32, &out).unwrap_err();
    assert!(e.to_string().contains("already holds a checkpoint"), "{e}");
}

/// The command line: a checkpoint written from a config file is one `evalkit run` can score;
/// an unknown preset exits 2 naming the presets.
#[test]
fn random_checkpoint_command_writes_a_checkpoint_run_can_score() {
    let tmp = tempdir!("random-cli");
    let config = tmp.path().join("config.json");
    std::fs::write(&config, tiny_llama().to_string()).expect("config");
    let out = tmp.path().join("model");
    let (cfg, out_s) = (config.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let tok = model_dir("stories260K-hf");
    let tok = tok.to_str().expect("utf-8");
    // `evalkit random-checkpoint <shape> <value> --tokenizer <tok> --output <out> [extra]`
    let make = |shape: &str, value: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["random-checkpoint", shape, value, "--tokenizer", tok, "--output", out];
        args.extend_from_slice(extra);
        evalkit(&args)
    };
    let o = make("--config", cfg, out_s, &["--seed", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("parameters"), "{}", text(&o));
    let results = tmp.path().join("results");
    let data = data_dir();
    let o = evalkit(&[
        "run",
        "-q",
        "--model",
        out_s,
        "--tasks",
        "arc_easy",
        "--limit",
        "3",
        "--device",
        "cpu",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--output",
        results.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(results.join("samples_arc_easy.jsonl").exists());
    let o = make("--preset", "llama-9", out_s, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("llama-3.2-1b, gpt2-small"), "{}", text(&o));
    std::fs::write(&config, "{\n  \"model_type\": \"llama\",\n  oops\n}").expect("config");
    let fresh = tmp.path().join("fresh");
    let o = make("--config", cfg, fresh.to_str().expect("utf-8"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{cfg}:3")),
        "names the file and line: {}",
        text(&o)
    );
    assert!(!fresh.exists(), "nothing written for a config that does not parse");
    // A config of a model this cannot make names its own file, not the output's.
    let mut mamba = tiny_llama();
    mamba["model_type"] = json!("mamba");
    std::fs::write(&config, mamba.to_string()).expect("config");
    let o = make("--config", cfg, fresh.to_str().expect("utf-8"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{cfg}: field `model_type`")) && text(&o).contains("mamba"),
        "{}",
        text(&o)
    );
    // The dtype written is the one config.json says, in both spellings (a copied config's own
    // `dtype` would contradict it).
    let mut f32_config = tiny_llama();
    f32_config["dtype"] = json!("float32");
    std::fs::write(&config, f32_config.to_string()).expect("config");
    let half = tmp.path().join("half");
    let o = make("--config", cfg, half.to_str().expect("utf-8"), &["--dtype", "f16"]);
    assert!(o.status.success(), "{}", text(&o));
    let written: serde_json::Value = crate::util::read_json(&half.join("config.json"));
    assert_eq!(
        (&written["dtype"], &written["torch_dtype"]),
        (&json!("float16"), &json!("float16"))
    );
}
