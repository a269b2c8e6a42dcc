//! Model backends against transformers' float64 reference outputs (`reference.json` of each
//! shared checkpoint), KV-cache and padding invariance, and clear errors on bad checkpoints.

use crate::util::{gpt_neox, model_dir, open, open_dir};
use evalkit::core::model::{KvCache, Model};
use evalkit::core::Tokenizer;
use serde_json::Value;
use std::path::Path;
use tch::{Kind, Tensor};

fn reference(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(model_dir(name).join("reference.json")).expect("reference.json");
    let v: Value = serde_json::from_str(&text).expect("reference parses");
    v["cases"].as_array().expect("cases").clone()
}

fn ids_of(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float"))
        .collect()
}

fn row_logits(model: &dyn Model, ids: &[i64]) -> Tensor {
    let t = Tensor::from_slice(ids).view([1, -1]);
    let mask = Tensor::ones_like(&t);
    model.forward(&t, &mask).expect("forward").squeeze_dim(0)
}

/// Greedy decoding with the KV cache, one token at a time.
fn greedy_cached(model: &dyn Model, ids: &[i64], n: usize) -> Vec<i64> {
    let mut cache = model.new_cache().expect("cache");
    let mut mask = Tensor::ones([1, ids.len() as i64], (Kind::Int64, tch::Device::Cpu));
    let mut h = model
        .hidden_states(&Tensor::from_slice(ids).view([1, -1]), &mask, Some(&mut cache))
        .expect("prefill");
    let mut out = vec![];
    for _ in 0..n {
        let last = h.narrow(1, h.size()[1] - 1, 1);
        let next = model.head(&last).expect("head").argmax(-1, false).int64_value(&[0, 0]);
        out.push(next);
        mask = Tensor::cat(&[&mask, &Tensor::ones([1, 1], (Kind::Int64, tch::Device::Cpu))], 1);
        h = model
            .hidden_states(&Tensor::from_slice(&[next]).view([1, 1]), &mask, Some(&mut cache))
            .expect("step");
    }
    out
}

fn check_reference(name: &str) {
    check_cases(name, &model_dir(name), &reference(name));
}

/// The checkpoint in `dir` gives transformers' outputs of each case: token ids, next-token
/// log-probs, the last position's top 5 and 20 greedy tokens (decoded with the KV cache).
fn check_cases(name: &str, dir: &Path, cases: &[Value]) {
    let (model, tok) = open_dir(dir);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let ids = ids_of(&case["input_ids"]);
        assert_eq!(tok.encode(text).expect("encode"), ids, "{name}: token ids of {text:?}");
        let logits = row_logits(model.as_ref(), &ids);
        let logp = logits.log_softmax(-1, Kind::Float);
        let got: Vec<f64> = (0..ids.len() - 1)
            .map(|i| logp.double_value(&[i as i64, ids[i + 1]]))
            .collect();
        crate::assert_close!(got, floats(&case["next_token_logprobs"]), 1e-4);
        let last = logits.get(ids.len() as i64 - 1);
        let (vals, idx) = last.topk(5, -1, true, true);
        let top_ids: Vec<i64> = Vec::<i64>::try_from(&idx).expect("ids");
        assert_eq!(
            top_ids,
            ids_of(&case["last_position_top5"]["ids"]),
            "{name}: top-5 of {text:?}"
        );
        let top_vals: Vec<f64> = Vec::<f32>::try_from(&vals)
            .expect("vals")
            .into_iter()
            .map(f64::from)
            .collect();
        crate::assert_close!(top_vals, floats(&case["last_position_top5"]["logits"]), 1e-3);
        let greedy = ids_of(&case["greedy_20"]);
        assert_eq!(
            greedy_cached(model.as_ref(), &ids, greedy.len()),
            greedy,
            "{name}: greedy tokens of {text:?}"
        );
    }
}

#[test]
fn stories260k_matches_transformers_reference() {
    check_reference("stories260K-hf");
}

#[test]
fn tiny_gpt2_matches_transformers_reference() {
    check_reference("tiny-gpt2-random");
}

/// GPT-NeoX, both residual forms (Pythia's side-by-side attention and MLP with a quarter of
/// each head rotary, hub config layout; one after the other with half rotary and the tanh
/// GELU, transformers 5's layout): transformers' float64 outputs on the seeded checkpoints of
/// tests/fixtures/gpt-neox (scripts/gpt-neox-reference), then the cache and padding
/// invariances.
#[test]
fn gpt_neox_matches_transformers_reference() {
    use sha2::Digest;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt-neox/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("reference")).expect("json");
    let tmp = tempdir!("gpt-neox");
    for variant in ["parallel", "sequential"] {
        let want = &reference["models"][variant];
        let dir = gpt_neox(variant, tmp.path());
        let bytes = std::fs::read(dir.join("model.safetensors")).expect("weights");
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sha, want["model_safetensors_sha256"],
            "{variant}: the seed made other weights than the reference's (rerun scripts/gpt-neox-reference)"
        );
        let name = format!("gpt-neox {variant}");
        check_cases(&name, &dir, want["cases"].as_array().expect("cases"));
        check_cache_equals_recompute(&name, &dir);
        check_padding(&name, &dir);
    }
}

/// Cached decoding must give the logits of full recomputation at every step.
fn check_cache_equals_recompute(name: &str, dir: &Path) {
    let (model, tok) = open_dir(dir);
    let ids = tok
        .encode("Tom and Sue went to the park. They saw a big dog!")
        .expect("encode");
    let full = row_logits(model.as_ref(), &ids);
    let mut cache: KvCache = model.new_cache().expect("cache");
    // Prefill 5 tokens, then feed 1, 2, 3, ... at a time.
    let mut start = 0usize;
    let mut step = 5usize;
    while start < ids.len() {
        let end = (start + step).min(ids.len());
        let mask = Tensor::ones([1, end as i64], (Kind::Int64, tch::Device::Cpu));
        let chunk = Tensor::from_slice(&ids[start..end]).view([1, -1]);
        let h = model
            .hidden_states(&chunk, &mask, Some(&mut cache))
            .expect("cached forward");
        let got = model.head(&h).expect("head").squeeze_dim(0);
        let want = full.narrow(0, start as i64, (end - start) as i64);
        let diff = (got - want).abs().max().double_value(&[]);
        assert!(
            diff < 1e-4,
            "{name}: cached logits differ by {diff} at positions {start}..{end}"
        );
        start = end;
        step = if step == 5 { 1 } else { step + 1 };
    }
    assert_eq!(cache.current_seq_len(), ids.len());
}

#[test]
fn kv_cache_matches_full_recomputation() {
    check_cache_equals_recompute("stories260K-hf", &model_dir("stories260K-hf"));
    check_cache_equals_recompute("tiny-gpt2-random", &model_dir("tiny-gpt2-random"));
}

/// A padded batch (left or right) gives each row the log-probs it has alone.
fn check_padding(name: &str, dir: &Path) {
    let (model, tok) = open_dir(dir);
    let texts = ["Once upon a time", "The quick brown fox jumps over the lazy dog", "Hi"];
    let rows: Vec<Vec<i64>> = texts.iter().map(|t| tok.encode(t).expect("encode")).collect();
    let width = rows.iter().map(Vec::len).max().expect("rows") as i64;
    for left in [false, true] {
        let mut ids: Vec<i64> = vec![];
        let mut mask: Vec<i64> = vec![];
        for r in &rows {
            let pad = width as usize - r.len();
            let (pi, pm) = (vec![0i64; pad], vec![0i64; pad]);
            let (ri, rm) = (r.clone(), vec![1i64; r.len()]);
            if left {
                ids.extend(pi.iter().chain(&ri));
                mask.extend(pm.iter().chain(&rm));
            } else {
                ids.extend(ri.iter().chain(&pi));
                mask.extend(rm.iter().chain(&pm));
            }
        }
        let ids_t = Tensor::from_slice(&ids).view([rows.len() as i64, width]);
        let mask_t = Tensor::from_slice(&mask).view([rows.len() as i64, width]);
        let batch = model
            .forward(&ids_t, &mask_t)
            .expect("batched forward")
            .log_softmax(-1, Kind::Float);
        for (b, r) in rows.iter().enumerate() {
            let alone = row_logits(model.as_ref(), r).log_softmax(-1, Kind::Float);
            let off = if left { width - r.len() as i64 } else { 0 };
            let got = batch.get(b as i64).narrow(0, off, r.len() as i64);
            let diff = (got - alone).abs().max().double_value(&[]);
            assert!(
                diff < 1e-4,
                "{name}: row {b} differs by {diff} with {} padding",
                if left { "left" } else { "right" }
            );
        }
    }
}

#[test]
fn padded_batches_match_rows_alone() {
    check_padding("stories260K-hf", &model_dir("stories260K-hf"));
    check_padding("tiny-gpt2-random", &model_dir("tiny-gpt2-random"));
}

#[test]
fn tokenizer_special_token_rules() {
    let llama = Tokenizer::from_dir(&model_dir("stories260K-hf")).expect("tokenizer");
    assert_eq!(llama.prefix_token().expect("prefix"), 1);
    assert_eq!(llama.eos_ids(), &[2]);
    let gpt2 = Tokenizer::from_dir(&model_dir("tiny-gpt2-random")).expect("tokenizer");
    assert_eq!(gpt2.prefix_token().expect("prefix"), 50256);
    assert_eq!(gpt2.encode("Hello world").expect("encode"), vec![15496, 995]);
    assert_eq!(gpt2.decode(&[15496, 995], true).expect("decode"), "Hello world");
}

/// Copies a shared checkpoint into a temp dir so a test can break it.
fn copy_checkpoint(name: &str, to: &std::path::Path) {
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(model_dir(name).join(f), to.join(f)).expect("copy");
    }
}

fn load_err(dir: &std::path::Path) -> String {
    match evalkit::core::load_checkpoint(dir, Default::default()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_checkpoints_name_the_file_and_field() {
    crate::util::init();
    let tmp = crate::tempdir!("bad-checkpoint");
    let dir = tmp.path();
    let msg = load_err(&dir.join("nope"));
    assert!(
        msg.contains("nope (no such folder: expected a checkpoint directory"),
        "{msg}"
    );
    std::fs::write(dir.join("file"), b"").expect("write");
    let msg = load_err(&dir.join("file"));
    assert!(
        msg.contains("file (a file, not a folder: expected a checkpoint directory"),
        "{msg}"
    );
    std::fs::remove_file(dir.join("file")).expect("rm");

    copy_checkpoint("stories260K-hf", dir);
    std::fs::remove_file(dir.join("model.safetensors")).expect("rm");
    let msg = load_err(dir);
    assert!(msg.contains("model.safetensors"), "{msg}");
    // A checkpoint of PyTorch pickles only is told how to convert it.
    std::fs::write(dir.join("pytorch_model.bin"), b"pickle").expect("write");
    let msg = load_err(dir);
    assert!(
        msg.contains("holds PyTorch pickles (pytorch_model.bin): convert it once"),
        "{msg}"
    );
    std::fs::remove_file(dir.join("pytorch_model.bin")).expect("rm");

    copy_checkpoint("stories260K-hf", dir);
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("config");
    std::fs::write(dir.join("config.json"), cfg.replace("\"llama\"", "\"bert\"")).expect("write");
    let msg = load_err(dir);
    assert!(
        msg.contains("config.json") && msg.contains("`model_type`") && msg.contains("unknown model_type `bert`"),
        "{msg}"
    );
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3"),
    )
    .expect("write");
    let msg = load_err(dir);
    assert!(msg.contains("`num_key_value_heads`"), "{msg}");
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"hidden_size\": 64", "\"hidden_size\": \"wide\""),
    )
    .expect("write");
    let msg = load_err(dir);
    assert!(
        msg.contains("config.json:") && msg.contains("field `hidden_size`: invalid type"),
        "{msg}"
    );
    // Text after the JSON value (Python's json, which transformers reads it with, refuses it).
    std::fs::write(dir.join("config.json"), format!("{cfg}}}")).expect("write");
    let msg = load_err(dir);
    assert!(
        msg.contains("config.json:") && msg.contains("trailing characters"),
        "{msg}"
    );

    // An activation this model does not run, no layers, and fewer layers than the checkpoint
    // holds are refused (the extra layers would be left out without a word).
    let with = |from: &str, to: &str| {
        assert!(cfg.contains(from), "{from}");
        std::fs::write(dir.join("config.json"), cfg.replace(from, to)).expect("write");
        load_err(dir)
    };
    let msg = with("\"hidden_act\": \"silu\"", "\"hidden_act\": \"relu\"");
    assert!(msg.contains("`hidden_act`: unsupported activation `relu`"), "{msg}");
    let msg = with("\"num_hidden_layers\": 5", "\"num_hidden_layers\": 0");
    assert!(msg.contains("`num_hidden_layers`: 0"), "{msg}");
    let msg = with("\"num_hidden_layers\": 5", "\"num_hidden_layers\": 4");
    assert!(
        msg.contains("`num_hidden_layers`: 4, but the checkpoint has tensor `model.layers.4."),
        "{msg}"
    );

    // The checkpoint's weights with one tensor replaced.
    let with_tensor = |name: &str, replace: &dyn Fn(Tensor) -> Tensor| {
        let tensors = Tensor::read_safetensors(model_dir("stories260K-hf").join("model.safetensors")).expect("read");
        let changed: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| if n == name { (n, replace(t)) } else { (n, t) })
            .collect();
        Tensor::write_safetensors(&changed, dir.join("model.safetensors")).expect("write");
    };
    let wrong_shape = |_| Tensor::zeros([16, 64], (Kind::Float, tch::Device::Cpu));

    // A tensor of the wrong shape: the file and the tensor are named.
    std::fs::write(dir.join("config.json"), &cfg).expect("write");
    with_tensor("model.layers.2.self_attn.k_proj.weight", &wrong_shape);
    let msg = load_err(dir);
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("`model.layers.2.self_attn.k_proj.weight`")
            && msg.contains("expected shape [32, 64], got [16, 64]"),
        "{msg}"
    );

    // A weight stored as integers.
    with_tensor("model.norm.weight", &|t: Tensor| t.to_kind(Kind::Int));
    let msg = load_err(dir);
    assert!(
        msg.contains("`model.norm.weight`: stored as Int: a weight must be floating point"),
        "{msg}"
    );
    with_tensor("model.layers.2.self_attn.k_proj.weight", &wrong_shape);

    // A truncated weights file, and one too short for a header: the file is named, and what
    // is wrong with it.
    let bytes = std::fs::read(dir.join("model.safetensors")).expect("read");
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).expect("write");
    let msg = load_err(dir);
    assert!(msg.contains("model.safetensors") && msg.contains("truncated"), "{msg}");
    std::fs::write(dir.join("model.safetensors"), &bytes[..4]).expect("write");
    let msg = load_err(dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("4 bytes, too short"),
        "{msg}"
    );

    // A tokenizer whose ids do not fit the model's vocabulary.
    copy_checkpoint("stories260K-hf", dir);
    std::fs::copy(
        model_dir("tiny-gpt2-random").join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .expect("copy");
    let model = evalkit::core::load_checkpoint(dir, Default::default()).expect("weights load");
    let tok = Tokenizer::from_dir(dir).expect("tokenizer loads");
    let msg = tok.check_fits(model.vocab_size()).expect_err("mismatch").to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("50256") && msg.contains("512"),
        "{msg}"
    );
}

#[test]
fn gpt2_reads_its_own_head_where_untied_or_stored_with_other_values() {
    crate::util::init();
    let tmp = crate::tempdir!("gpt2-head");
    let dir = tmp.path();
    copy_checkpoint("tiny-gpt2-random", dir);
    let ids = [15496i64, 995, 11, 314];
    let tied = evalkit::core::load_checkpoint(dir, Default::default()).expect("tied");
    let want = row_logits(tied.as_ref(), &ids);
    let weights = Tensor::read_safetensors(model_dir("tiny-gpt2-random").join("model.safetensors")).expect("read");
    let wte = weights
        .iter()
        .find(|(n, _)| n.ends_with("wte.weight"))
        .map(|(_, t)| t.shallow_clone())
        .expect("wte");
    let write = |head: Option<Tensor>| {
        let mut all: Vec<(String, Tensor)> = weights.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        all.extend(head.map(|h| ("lm_head.weight".to_string(), h)));
        Tensor::write_safetensors(&all, dir.join("model.safetensors")).expect("write");
    };
    // Tied (the default) with a head stored: the embedding where they are equal; where they
    // differ, the config does not describe the checkpoint, and transformers 5 unties them
    // ("both are present in the checkpoints with different values, so we will NOT tie them"):
    // a zero head gives zero logits there.
    write(Some(wte.copy()));
    let m = evalkit::core::load_checkpoint(dir, Default::default()).expect("tied, head = wte");
    assert!(row_logits(m.as_ref(), &ids).allclose(&want, 0.0, 0.0, false));
    write(Some(Tensor::zeros_like(&wte)));
    let m = evalkit::core::load_checkpoint(dir, Default::default()).expect("tied, other head stored");
    assert_eq!(row_logits(m.as_ref(), &ids).abs().max().double_value(&[]), 0.0);
    // Untied: the stored head is read (a zero head gives zero logits), and one missing is named.
    let cfg = std::fs::read_to_string(model_dir("tiny-gpt2-random").join("config.json")).expect("config");
    let mut v: Value = serde_json::from_str(&cfg).expect("json");
    v["tie_word_embeddings"] = Value::Bool(false);
    std::fs::write(dir.join("config.json"), v.to_string()).expect("write");
    let m = evalkit::core::load_checkpoint(dir, Default::default()).expect("untied");
    assert_eq!(row_logits(m.as_ref(), &ids).abs().max().double_value(&[]), 0.0);
    write(Some(wte.shallow_clone()));
    let m = evalkit::core::load_checkpoint(dir, Default::default()).expect("untied, head = wte");
    assert!(row_logits(m.as_ref(), &ids).allclose(&want, 1e-6, 1e-6, false));
    write(None);
    let msg = load_err(dir);
    assert!(msg.contains("`lm_head.weight`") && msg.contains("missing"), "{msg}");
}

#[test]
fn older_config_layout_and_reduced_precision_load() {
    crate::util::init();
    let tmp = crate::tempdir!("old-config");
    copy_checkpoint("stories260K-hf", tmp.path());
    // The older layout: top-level rope_theta, no rope_parameters.
    let cfg = std::fs::read_to_string(tmp.path().join("config.json")).expect("config");
    let mut v: Value = serde_json::from_str(&cfg).expect("json");
    let obj = v.as_object_mut().expect("object");
    obj.remove("rope_parameters");
    obj.insert("rope_theta".into(), 10000.0.into());
    std::fs::write(tmp.path().join("config.json"), v.to_string()).expect("write");
    let (model, _) = open("stories260K-hf");
    let old = evalkit::core::load_checkpoint(tmp.path(), Default::default()).expect("older layout loads");
    let ids = [1i64, 403, 407, 261, 378];
    let diff = (row_logits(model.as_ref(), &ids) - row_logits(old.as_ref(), &ids))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-6, "{diff}");
    // bf16 weights and activations still give f32 logits close to f32's.
    let opts = evalkit::core::LoadOptions {
        dtype: evalkit::core::Dtype::Bf16,
        ..Default::default()
    };
    let bf = evalkit::core::load_checkpoint(&model_dir("stories260K-hf"), opts).expect("bf16 loads");
    let lb = row_logits(bf.as_ref(), &ids);
    assert_eq!(lb.kind(), Kind::Float);
    let lf = row_logits(model.as_ref(), &ids);
    let top_b: Vec<i64> = Vec::try_from(&lb.argmax(-1, false)).expect("ids");
    let top_f: Vec<i64> = Vec::try_from(&lf.argmax(-1, false)).expect("ids");
    assert_eq!(top_b, top_f);
}

/// A TorchScript module exported from PyTorch 2.11 by tests/fixtures/make_torchscript.py loads,
/// reproduces PyTorch's own logits, and runs an evaluation (recomputing instead of caching).
#[test]
fn torchscript_export_loads_and_matches_pytorch() {
    use evalkit::core::model::torchscript::{TorchScriptModel, TorchScriptOptions};
    crate::util::init();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let opts = TorchScriptOptions {
        max_len: 64,
        takes_mask: true,
    };
    let model = TorchScriptModel::load(&fixtures.join("tiny_lm.pt"), tch::Device::Cpu, opts).expect("loads");
    assert_eq!(model.vocab_size(), 512);
    assert!(model.new_cache().is_none());
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("tiny_lm_reference.json")).expect("ref"))
            .expect("json");
    let rows = |k: &str| -> Vec<Vec<i64>> { r[k].as_array().expect("rows").iter().map(ids_of).collect() };
    let (ids, mask) = (rows("ids"), rows("mask"));
    let t = |v: &Vec<Vec<i64>>| Tensor::from_slice(&v.concat()).view([v.len() as i64, -1]);
    let logits = model.forward(&t(&ids), &t(&mask)).expect("forward");
    let want: Vec<f64> = r["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .flat_map(|b| b.as_array().expect("row").iter().flat_map(floats))
        .collect();
    let got: Vec<f64> = Vec::<f32>::try_from(logits.view([-1]))
        .expect("floats")
        .into_iter()
        .map(f64::from)
        .collect();
    crate::assert_close!(got, want, 1e-4);
    // The padded second row equals the row alone.
    let alone = model
        .forward(
            &Tensor::from_slice(&ids[1][2..]).view([1, -1]),
            &Tensor::ones([1, 4], (Kind::Int64, tch::Device::Cpu)),
        )
        .expect("forward");
    let diff = (logits.get(1).narrow(0, 2, 4) - alone.get(0))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-5, "{diff}");
    // An evaluation runs on it through the unshared scoring path.
    let tok = Tokenizer::from_dir(&model_dir("stories260K-hf")).expect("tokenizer");
    let eval = evalkit::suites::load(
        "synthetic_sort",
        &evalkit::suites::LoadOptions::new(crate::util::data_dir()),
    )
    .expect("suite");
    let run_opts = evalkit::core::RunOptions {
        subset: Some(evalkit::core::kinds::Subset::First(5)),
        ..Default::default()
    };
    let env = evalkit::core::kinds::Env {
        model: &model,
        tokenizer: &tok,
        options: &run_opts,
        journal_dir: None,
        progress: None,
    };
    let out = eval.evaluations[0].evaluate(&env).expect("evaluates");
    assert_eq!(out.n, 5);
    // Generation too, several rows to a batch: the module's logits at the rows' last positions
    // are a strided view (they panicked being read as one flat vector).
    let eval = evalkit::suites::load(
        "synthetic_arithmetic",
        &evalkit::suites::LoadOptions::new(crate::util::data_dir()),
    )
    .expect("suite");
    let out = eval.evaluations[0].evaluate(&env).expect("generates");
    assert_eq!((out.n, out.stats.chunks_computed), (5, 1));
    // The same weights exported as forward(ids), with no mask (tiny_lm_ids_only.pt): a batch
    // of prompts of several lengths generates what the masked module does, where left padding
    // would have been read as tokens.
    let ids_only = TorchScriptModel::load(
        &fixtures.join("tiny_lm_ids_only.pt"),
        tch::Device::Cpu,
        TorchScriptOptions {
            max_len: 64,
            takes_mask: false,
        },
    )
    .expect("loads");
    let generations = |m: &dyn evalkit::core::Model| -> Vec<Value> {
        let env = evalkit::core::kinds::Env { model: m, ..env };
        let o = eval.evaluations[0].evaluate(&env).expect("generates");
        o.samples.iter().map(|s| s["generations"].clone()).collect()
    };
    let prompts: std::collections::BTreeSet<usize> = out
        .samples
        .iter()
        .map(|s| s["prompt"].as_str().expect("prompt").len())
        .collect();
    assert!(prompts.len() > 1, "prompts of several lengths in one batch");
    assert_eq!(generations(&ids_only), generations(&model));
}

/// GPT-NeoX checkpoints in the other layouts transformers reads: a bare `GPTNeoXModel`'s
/// names with the head as `lm_head`, a tied head, no attention biases, and no rotary
/// dimensions at all.
#[test]
fn gpt_neox_layouts_load() {
    crate::util::init();
    let tmp = tempdir!("gpt-neox-layouts");
    let base_dir = gpt_neox("parallel", tmp.path());
    let (base, tok) = open_dir(&base_dir);
    let ids = tok.encode("Tom and Sue went to the park.").expect("encode");
    let want = row_logits(base.as_ref(), &ids);
    let tensors = Tensor::read_safetensors(base_dir.join("model.safetensors")).expect("read");
    let config: Value = crate::util::read_json(&base_dir.join("config.json"));
    let variant = |name: &str, edit: &dyn Fn(&mut Value), weights: &[(String, Tensor)]| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(base_dir.join(f), dir.join(f)).expect("tokenizer");
        }
        let mut c = config.clone();
        edit(&mut c);
        std::fs::write(dir.join("config.json"), c.to_string()).expect("config");
        Tensor::write_safetensors(weights, dir.join("model.safetensors")).expect("weights");
        evalkit::core::load_checkpoint(&dir, Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let close = |name: &str, got: Tensor, want: &Tensor| {
        let diff = (got - want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name}: logits differ by {diff}");
    };
    let renamed: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            let n = n.strip_prefix("gpt_neox.").unwrap_or(n).replace("embed_out", "lm_head");
            (n, t.shallow_clone())
        })
        .collect();
    let bare = variant("bare", &|_| {}, &renamed);
    close("bare, lm_head", row_logits(bare.as_ref(), &ids), &want);

    // Tied: the head is the embedding.
    let untied: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(n, _)| n != "embed_out.weight")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let tied = variant("tied", &|c| c["tie_word_embeddings"] = true.into(), &untied);
    let embed = tensors
        .iter()
        .find(|(n, _)| n == "gpt_neox.embed_in.weight")
        .expect("embed_in")
        .1
        .shallow_clone();
    let t = Tensor::from_slice(&ids).view([1, -1]);
    let hidden = base.hidden_states(&t, &Tensor::ones_like(&t), None).expect("body");
    close(
        "tied",
        row_logits(tied.as_ref(), &ids),
        &hidden.squeeze_dim(0).matmul(&embed.tr()),
    );

    // Without attention biases: as the base with those biases zero.
    let is_attention_bias = |n: &str| n.contains(".attention.") && n.ends_with(".bias");
    let zeroed: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                if is_attention_bias(n) {
                    t.zeros_like()
                } else {
                    t.shallow_clone()
                },
            )
        })
        .collect();
    let with_zeros = variant("zero-biases", &|_| {}, &zeroed);
    let without: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(n, _)| !is_attention_bias(n))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let no_bias = variant("no-biases", &|c| c["attention_bias"] = false.into(), &without);
    close(
        "no attention biases",
        row_logits(no_bias.as_ref(), &ids),
        &row_logits(with_zeros.as_ref(), &ids),
    );

    // No rotary dimensions: runs, and positions then matter only through the causal mask.
    let flat = variant("no-rotary", &|c| c["rotary_pct"] = 0.0.into(), &tensors);
    let logits = row_logits(flat.as_ref(), &ids);
    assert!(bool::try_from(logits.isfinite().all()).expect("bool"));
    assert!(
        (logits - &want).abs().max().double_value(&[]) > 1e-3,
        "rotation changes nothing"
    );
}

/// The same weights under other layouts give the same logits: a Qwen2 config (with zero q/k/v
/// biases), a Mistral config, an untied head, and shards listed in model.safetensors.index.json.
#[test]
fn checkpoint_layouts_and_family_configs_load() {
    crate::util::init();
    let (base, _) = open("stories260K-hf");
    let ids = [1i64, 403, 407, 261, 378, 432];
    let want = row_logits(base.as_ref(), &ids);
    let tensors = Tensor::read_safetensors(model_dir("stories260K-hf").join("model.safetensors")).expect("read");
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("stories260K-hf").join("config.json")).expect("config"),
    )
    .expect("json");
    let check =
        |label: &str, edit: &dyn Fn(&mut serde_json::Map<String, Value>), weights: &dyn Fn(&std::path::Path)| {
            let tmp = tempfile::tempdir().expect("tmp");
            copy_checkpoint("stories260K-hf", tmp.path());
            let mut c = cfg.clone();
            edit(c.as_object_mut().expect("object"));
            std::fs::write(tmp.path().join("config.json"), c.to_string()).expect("write");
            weights(tmp.path());
            let m = evalkit::core::load_checkpoint(tmp.path(), Default::default())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let diff = (row_logits(m.as_ref(), &ids) - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{label}: logits differ by {diff}");
        };
    let with_biases = |dir: &std::path::Path| {
        let mut t: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        for l in 0..5 {
            for (p, n) in [("q_proj", 64), ("k_proj", 32), ("v_proj", 32)] {
                t.push((
                    format!("model.layers.{l}.self_attn.{p}.bias"),
                    Tensor::zeros([n], (Kind::Float, tch::Device::Cpu)),
                ));
            }
        }
        Tensor::write_safetensors(&t, dir.join("model.safetensors")).expect("write");
    };
    check(
        "qwen2",
        &|c| {
            c.insert("model_type".into(), "qwen2".into());
        },
        &with_biases,
    );
    check(
        "mistral",
        &|c| {
            c.insert("model_type".into(), "mistral".into());
            c.insert("sliding_window".into(), 4096.into());
        },
        &|_| {},
    );
    check(
        "untied head",
        &|c| {
            c.insert("tie_word_embeddings".into(), false.into());
        },
        &|dir| {
            let mut t: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
            let emb = tensors
                .iter()
                .find(|(n, _)| n == "model.embed_tokens.weight")
                .expect("embed")
                .1
                .copy();
            t.push(("lm_head.weight".into(), emb));
            Tensor::write_safetensors(&t, dir.join("model.safetensors")).expect("write");
        },
    );
    check("sharded", &|_| {}, &|dir| {
        std::fs::remove_file(dir.join("model.safetensors")).expect("rm");
        let (a, b): (Vec<_>, Vec<_>) = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .partition(|(n, _)| n.contains("layers.0") || n.contains("embed"));
        Tensor::write_safetensors(&a, dir.join("model-00001-of-00002.safetensors")).expect("write");
        Tensor::write_safetensors(&b, dir.join("model-00002-of-00002.safetensors")).expect("write");
        let map: serde_json::Map<String, Value> = a
            .iter()
            .map(|(n, _)| (n.clone(), "model-00001-of-00002.safetensors".into()))
            .chain(
                b.iter()
                    .map(|(n, _)| (n.clone(), "model-00002-of-00002.safetensors".into())),
            )
            .collect();
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .expect("index");
    });
    // An untied config without lm_head.weight names the missing tensor.
    let tmp = tempfile::tempdir().expect("tmp");
    copy_checkpoint("stories260K-hf", tmp.path());
    let mut c = cfg.clone();
    c.as_object_mut()
        .expect("object")
        .insert("tie_word_embeddings".into(), false.into());
    std::fs::write(tmp.path().join("config.json"), c.to_string()).expect("write");
    let msg = load_err(tmp.path());
    assert!(msg.contains("`lm_head.weight`: missing"), "{msg}");
}

/// The raw speed measurement: its shape is one of those tried, its rates positive and finite,
/// and a tiny budget still times one shape (the first) and the head.
#[test]
fn raw_throughput_picks_a_tried_shape() {
    use evalkit::core::throughput::RawThroughput;
    let (model, _) = open("stories260K-hf");
    for (budget_ms, shapes) in [(2000u64, vec![4usize, 8, 16, 32, 64]), (1, vec![4])] {
        let raw =
            RawThroughput::measure(model.as_ref(), std::time::Duration::from_millis(budget_ms)).expect("measures");
        assert!(shapes.contains(&raw.body_batch), "{raw:?}");
        assert!([64, 128, 256].contains(&raw.body_seq), "{raw:?}");
        assert!(
            raw.body_tokens_per_second.is_finite() && raw.body_tokens_per_second > 0.0,
            "{raw:?}"
        );
        assert!(
            raw.head_seconds_per_position.is_finite() && raw.head_seconds_per_position > 0.0,
            "{raw:?}"
        );
        assert!(
            raw.body_pruned_tokens_per_second.is_finite() && raw.body_pruned_tokens_per_second > 0.0,
            "{raw:?}"
        );
    }
}

/// A packed pass that keeps some positions (the last layer's queries, attention and MLP at
/// those alone) gives their rows of the whole pass: every architecture, on the CPU span path
/// (float32) and libtorch's padded one (bfloat16).
#[test]
fn packed_pass_at_kept_positions_gives_their_rows() {
    use evalkit::core::model::{PackedBatch, PackedRequest};
    let tmp = tempdir!("packed-kept");
    let neox = gpt_neox("parallel", tmp.path());
    for (name, dir) in [
        ("stories260K-hf", model_dir("stories260K-hf")),
        ("tiny-gpt2-random", model_dir("tiny-gpt2-random")),
        ("gpt-neox", neox),
    ] {
        for (dtype, tolerance) in [(evalkit::core::Dtype::F32, 1e-5), (evalkit::core::Dtype::Bf16, 1e-2)] {
            crate::util::init();
            let opts = evalkit::core::LoadOptions {
                dtype,
                ..Default::default()
            };
            let model = evalkit::core::load_checkpoint(&dir, opts).expect("loads");
            let (c0, c1): (Vec<i64>, Vec<i64>) = ((1..30).collect(), (40..43).collect());
            let (s00, s01, s10): (Vec<i64>, Vec<i64>, Vec<i64>) = ((60..65).collect(), vec![], (70..90).collect());
            let (segs0, segs1): (Vec<&[i64]>, Vec<&[i64]>) = (vec![&s00, &s01], vec![&s10]);
            let reqs = [
                PackedRequest {
                    context: &c0,
                    segments: &segs0,
                },
                PackedRequest {
                    context: &c1,
                    segments: &segs1,
                },
            ];
            let batch = PackedBatch::new(&reqs, model.device()).expect("layout");
            let t = batch.tokens();
            let kept = batch.keep(&[t - 1, 28, 0, 33, 37, 36]).expect("kept");
            let all = model.hidden_states_packed(&batch).expect("whole pass");
            let got = model.hidden_states_packed_at(&batch, &kept).expect("kept pass");
            let want = all.index_select(1, kept.index());
            assert_eq!(got.size(), want.size(), "{name} {dtype:?}");
            let scale = want.abs().max().double_value(&[]).max(1.0);
            let diff = (got - want).to_kind(Kind::Double).abs().max().double_value(&[]) / scale;
            assert!(diff < tolerance, "{name} {dtype:?}: relative difference {diff}");
        }
    }
}

/// A Mistral checkpoint's sliding window (stories260K's weights with `sliding_window: 5`)
/// gives transformers' log-probabilities (tests/fixtures/sliding-window/reference.json, made by
/// make_reference.py there) on every path: a left-padded dense batch, the KV cache a token at a
/// time, and packed scoring of continuations past the window, shared and unshared; the same
/// weights read as Llama (no window) give other numbers. Family configs that ask for a window
/// on some layers only are refused.
#[test]
fn sliding_window_matches_transformers() {
    use evalkit::core::batch::{score_batch, TokenCounts};
    use evalkit::core::request::ScoreRequest;
    crate::util::init();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sliding-window/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    let window = reference["window"].as_u64().expect("window") as usize;
    let rows: Vec<(Vec<i64>, Vec<f64>)> = reference["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (ids_of(&r["ids"]), floats(&r["next_logprob"])))
        .collect();
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("stories260K-hf").join("config.json")).expect("config"),
    )
    .expect("json");
    let with = |edit: &dyn Fn(&mut Value)| {
        let tmp = tempfile::tempdir().expect("tmp");
        copy_checkpoint("stories260K-hf", tmp.path());
        let mut c = cfg.clone();
        edit(&mut c);
        std::fs::write(tmp.path().join("config.json"), c.to_string()).expect("write");
        (evalkit::core::load_checkpoint(tmp.path(), Default::default()), tmp)
    };
    let (mistral, _dir) = with(&|c| {
        c["model_type"] = "mistral".into();
        c["sliding_window"] = window.into();
    });
    let mistral = mistral.expect("mistral loads");
    assert_eq!(mistral.attention_window(), Some(window));
    let (llama, _) = open("stories260K-hf");
    let logp_at = |logits: &Tensor, row: i64, from: i64, ids: &[i64]| -> Vec<f64> {
        let logp = logits.get(row).log_softmax(-1, Kind::Float);
        (0..ids.len() - 1)
            .map(|i| logp.double_value(&[from + i as i64, ids[i + 1]]))
            .collect()
    };
    // A left-padded dense batch of both rows.
    let width = rows.iter().map(|(ids, _)| ids.len()).max().expect("rows");
    let (mut ids, mut mask) = (vec![], vec![]);
    for (r, _) in &rows {
        let pad = width - r.len();
        ids.extend(std::iter::repeat_n(0, pad).chain(r.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, r.len())));
    }
    let shape = [rows.len() as i64, width as i64];
    let logits = mistral
        .forward(
            &Tensor::from_slice(&ids).view(shape),
            &Tensor::from_slice(&mask).view(shape),
        )
        .expect("dense");
    for (b, (r, want)) in rows.iter().enumerate() {
        let got = logp_at(&logits, b as i64, (width - r.len()) as i64, r);
        crate::assert_close!(got, want.clone(), 1e-4);
        // Without the window: other numbers past it.
        let full = logp_at(&row_logits(llama.as_ref(), r).unsqueeze(0), 0, 0, r);
        let apart = full.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(apart > 1e-2, "row {b}: the window changes nothing ({apart})");
    }
    // The KV cache: the first 7 tokens, then one at a time.
    let (r, want) = &rows[0];
    let mut cache = mistral.new_cache().expect("cache");
    let ones = |n: usize| Tensor::ones([1, n as i64], (Kind::Int64, tch::Device::Cpu));
    let h = mistral
        .hidden_states(&Tensor::from_slice(&r[..7]).view([1, -1]), &ones(7), Some(&mut cache))
        .expect("prefill");
    let mut got = logp_at(&mistral.head(&h).expect("head"), 0, 0, &r[..8]);
    for i in 7..r.len() - 1 {
        let h = mistral
            .hidden_states(
                &Tensor::from_slice(&r[i..=i]).view([1, 1]),
                &ones(i + 1),
                Some(&mut cache),
            )
            .expect("step");
        let logp = mistral.head(&h).expect("head").get(0).log_softmax(-1, Kind::Float);
        got.push(logp.double_value(&[0, r[i + 1]]));
    }
    crate::assert_close!(got, want.clone(), 1e-4);
    // Scoring: continuations after an 8-token context (one past the window), packed (shared)
    // and padded (unshared); a short request in the same batch stays within it.
    let (r1, want1) = &rows[1];
    let reqs = [
        ScoreRequest {
            context: r[..8].to_vec(),
            continuations: vec![r[8..].to_vec(), r[8..12].to_vec()],
        },
        ScoreRequest {
            context: r1[..2].to_vec(),
            continuations: vec![r1[2..5].to_vec()],
        },
    ];
    let refs: Vec<&ScoreRequest> = reqs.iter().collect();
    for share in [true, false] {
        let scores = score_batch(mistral.as_ref(), &refs, share, &mut TokenCounts::default()).expect("scores");
        let as_f64 = |s: &[f32]| s.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
        crate::assert_close!(as_f64(&scores[0][0].token_logprobs), want[7..], 1e-4);
        crate::assert_close!(as_f64(&scores[0][1].token_logprobs), want[7..11], 1e-4);
        crate::assert_close!(as_f64(&scores[1][0].token_logprobs), want1[1..4], 1e-4);
    }
    // transformers' defaults: Mistral's window is 4096 where absent (longer than this model's
    // 512 positions: none), none where null; Qwen2's only with use_sliding_window, from
    // max_window_layers on (a window on some layers only is refused).
    use evalkit::core::model::llama::LlamaConfigFile;
    let resolve = |edit: &dyn Fn(&mut Value)| {
        let mut c = cfg.clone();
        edit(&mut c);
        let file: LlamaConfigFile = serde_json::from_value(c).expect("config");
        file.into_config(Path::new("config.json")).map(|c| c.window)
    };
    let mistral = |c: &mut Value| c["model_type"] = "mistral".into();
    let qwen = |c: &mut Value, use_window: bool, from: usize| {
        c["model_type"] = "qwen2".into();
        c["use_sliding_window"] = use_window.into();
        c["sliding_window"] = 5.into();
        c["max_window_layers"] = from.into();
    };
    assert_eq!(resolve(&mistral).expect("absent"), None);
    let null = |c: &mut Value| {
        mistral(c);
        c["sliding_window"] = Value::Null;
    };
    assert_eq!(resolve(&null).expect("null"), None);
    let short = |c: &mut Value| {
        mistral(c);
        c["sliding_window"] = 5.into();
    };
    assert_eq!(resolve(&short).expect("5"), Some(5));
    assert_eq!(resolve(&|c| qwen(c, false, 0)).expect("unused"), None);
    assert_eq!(resolve(&|c| qwen(c, true, 0)).expect("every layer"), Some(5));
    assert_eq!(resolve(&|c| qwen(c, true, 5)).expect("no layer"), None);
    let e = resolve(&|c| qwen(c, true, 2))
        .expect_err("some layers only")
        .to_string();
    assert!(
        e.contains("max_window_layers") && e.contains("some layers only (3 of 5)"),
        "{e}"
    );
}

/// Linear RoPE scaling (transformers' `linear`: the frequencies divided by the factor), in the
/// older `rope_scaling` layout, and errors that name the field as the file spells it.
#[test]
fn linear_rope_and_rope_field_names() {
    use evalkit::core::model::llama::LlamaConfigFile;
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir("stories260K-hf").join("config.json")).expect("config"),
    )
    .expect("json");
    let resolve = |edit: &dyn Fn(&mut Value)| {
        let mut c = cfg.clone();
        edit(&mut c);
        let file: LlamaConfigFile = serde_json::from_value(c).expect("config");
        file.into_config(Path::new("config.json"))
    };
    let plain = resolve(&|_| {}).expect("default").inv_freq;
    let older = |scaling: Value| {
        move |c: &mut Value| {
            c.as_object_mut().expect("object").remove("rope_parameters");
            c["rope_theta"] = 10000.0.into();
            c["rope_scaling"] = scaling.clone();
        }
    };
    let linear = resolve(&older(serde_json::json!({"type": "linear", "factor": 4.0}))).expect("linear");
    assert_eq!(linear.inv_freq.len(), plain.len());
    for (l, p) in linear.inv_freq.iter().zip(&plain) {
        assert!((l * 4.0 - p).abs() < 1e-15, "{l} × 4 vs {p}");
    }
    let e = resolve(&older(serde_json::json!({"type": "dynamic", "factor": 2.0})))
        .expect_err("dynamic")
        .to_string();
    assert!(e.contains("`rope_scaling.rope_type`") && e.contains("`dynamic`"), "{e}");
    let e = resolve(&older(serde_json::json!({"type": "linear"})))
        .expect_err("no factor")
        .to_string();
    assert!(e.contains("`rope_scaling.factor`"), "{e}");
    // A context of no positions would score nothing (a perplexity of 1.0 from no windows).
    let e = resolve(&|c| c["max_position_embeddings"] = 0.into())
        .expect_err("no positions")
        .to_string();
    assert!(e.contains("`max_position_embeddings`"), "{e}");
}
