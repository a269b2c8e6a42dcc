//! `evalkit run --apply-chat-template`: a ChatML checkpoint made here from stories260K-hf
//! (`<|im_start|>`/`<|im_end|>` added as special tokens, embeddings grown by two rows, Qwen2's
//! template, `<|im_end|>` in generation_config.json's EOS list), its prompts as lm-eval 0.4.13
//! builds them, the results record, and the errors. Per-sample parity with lm-eval's
//! `--apply_chat_template` on a transformers-made twin of this checkpoint is scripts/parity's.

use crate::cli::{evalkit, text};
use crate::util::{data_dir, model_dir, samples};
use std::path::Path;
use tch::Tensor;

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/core/tests/fixtures/chat-templates");

/// stories260K-hf with ChatML's two tokens (ids 512, 513) and `template` as chat_template.jinja;
/// `<|im_end|>`'s embedding row (the head is tied) is 1.05 × the row of `.` (id 426), so the
/// model ends its turn where it would end a sentence.
fn chatml_checkpoint(dir: &Path, template: &str) {
    let src = model_dir("stories260K-hf");
    std::fs::create_dir_all(dir).expect("mkdir");
    let _guard = tch::no_grad_guard();
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(src.join("model.safetensors"))
        .expect("read")
        .into_iter()
        .map(|(name, t)| {
            if name == "model.embed_tokens.weight" {
                tch::manual_seed(0);
                let start = Tensor::randn([1, t.size()[1]], (t.kind(), t.device())) * t.std(true);
                let end = t.get(426).unsqueeze(0) * 1.05;
                (name, Tensor::cat(&[t, start, end], 0))
            } else {
                (name, t)
            }
        })
        .collect();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).expect("write");
    let read = |f: &str| -> serde_json::Value { crate::util::read_json(&src.join(f)) };
    let write = |f: &str, v: &serde_json::Value| {
        std::fs::write(dir.join(f), serde_json::to_string_pretty(v).expect("json")).expect("write")
    };
    let mut config = read("config.json");
    config["vocab_size"] = 514.into();
    write("config.json", &config);
    let mut tokenizer = read("tokenizer.json");
    for (id, content) in [(512, "<|im_start|>"), (513, "<|im_end|>")] {
        tokenizer["added_tokens"]
            .as_array_mut()
            .expect("added_tokens")
            .push(serde_json::json!({
                "id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }));
    }
    write("tokenizer.json", &tokenizer);
    write("tokenizer_config.json", &read("tokenizer_config.json"));
    let mut generation = read("generation_config.json");
    generation["eos_token_id"] = serde_json::json!([2, 513]);
    write("generation_config.json", &generation);
    std::fs::write(dir.join("chat_template.jinja"), template).expect("write");
}

fn qwen2() -> String {
    std::fs::read_to_string(Path::new(TEMPLATES).join("qwen2.jinja")).expect("fixture")
}

fn run(model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let (model, out, data) = (model.to_str().unwrap(), out.to_str().unwrap(), data_dir());
    let mut args = vec!["run", "-q", "--device", "cpu", "--model", model, "--output", out];
    args.extend(["--data-dir", data.to_str().unwrap(), "--limit", "3"]);
    args.extend(extra);
    evalkit(&args)
}

#[test]
fn the_tokens_are_single_and_end_generation() {
    crate::util::init();
    let tmp = crate::tempdir!("chat-tokens");
    chatml_checkpoint(tmp.path(), &qwen2());
    let tok = evalkit::core::Tokenizer::from_dir(tmp.path()).expect("tokenizer");
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>").expect("encode");
    assert_eq!(
        (ids[0], ids[1]),
        (1, 512),
        "BOS, then <|im_start|> as one token: {ids:?}"
    );
    assert_eq!(ids.last(), Some(&513));
    assert_eq!(tok.eos_ids(), &[2, 513]);
    // A text that starts with BOS gets no second one (lm-eval's tok_encode).
    assert_eq!(tok.encode("<s><|im_start|>").expect("encode"), vec![1, 512]);
}

#[test]
fn prompts_follow_lm_eval_and_results_record_the_template() {
    let tmp = crate::tempdir!("chat-run");
    let model = tmp.path().join("chatml");
    chatml_checkpoint(&model, &qwen2());
    let out = tmp.path().join("multi");
    let o = run(
        &model,
        &out,
        &[
            "--tasks",
            "mmlu_anatomy,gsm8k",
            "--num-fewshot",
            "2",
            "--apply-chat-template",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    // MMLU: the description is the system message, each example a user and an assistant turn,
    // the generation prompt last; the choices follow it without the target delimiter.
    let mmlu = &samples(&out, "mmlu_anatomy")[0];
    let ctx = mmlu["contexts"][0].as_str().expect("context");
    assert!(
        ctx.starts_with("<|im_start|>system\nThe following are multiple choice questions (with answers) about anatomy.\n\n<|im_end|>\n<|im_start|>user\n"),
        "{ctx}"
    );
    assert_eq!(ctx.matches("<|im_start|>user\n").count(), 3, "{ctx}");
    assert_eq!(ctx.matches("<|im_start|>assistant\n").count(), 3, "{ctx}");
    assert!(ctx.ends_with("Answer:<|im_end|>\n<|im_start|>assistant\n"), "{ctx}");
    assert_eq!(mmlu["continuations"], serde_json::json!(["A", "B", "C", "D"]));

    // GSM8K: no description, so Qwen2's template writes its own system message; then the same
    // turns, generated after the generation prompt.
    let gsm = &samples(&out, "gsm8k")[0];
    let prompt = gsm["prompt"].as_str().expect("prompt");
    assert!(
        prompt.starts_with("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nQuestion: "),
        "{prompt}"
    );
    assert!(prompt.contains("<|im_end|>\n<|im_start|>assistant\n"), "{prompt}");
    assert!(
        prompt.ends_with("Answer:<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt}"
    );
    // The turn ends at <|im_end|>, an EOS of generation_config.json, not written in the text.
    let gens = samples(&out, "gsm8k");
    assert!(gens.iter().any(|g| g["finish"][0] == "eos"), "{gens:?}");
    assert!(gens
        .iter()
        .all(|g| !g["generations"][0].as_str().unwrap_or("").contains("<|im_end|>")));

    let results: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    let chat = &results["config"]["chat_template"];
    let template = evalkit::core::chat::ChatTemplate::from_dir(&model, None).expect("template");
    assert_eq!(chat["hash"], template.hash().as_str());
    assert_eq!(chat["hash"].as_str().map(str::len), Some(64), "sha256 hex: {chat}");
    assert_eq!(chat["fewshot_as_multiturn"], true);
    assert!(
        chat["origin"]
            .as_str()
            .is_some_and(|o| o.ends_with("chat_template.jinja")),
        "{chat}"
    );
    assert_eq!(results["config"]["system_instruction"], serde_json::Value::Null);

    // One turn: the examples and the question in one user message; the system instruction
    // joins the description with a blank line.
    let single = tmp.path().join("single");
    let o = run(
        &model,
        &single,
        &[
            "--tasks",
            "mmlu_anatomy",
            "--num-fewshot",
            "2",
            "--apply-chat-template",
            "--fewshot-as-multiturn",
            "false",
            "--system-instruction",
            "Be brief.",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let ctx = samples(&single, "mmlu_anatomy")[0]["contexts"][0]
        .as_str()
        .expect("context")
        .to_string();
    assert!(
        ctx.starts_with("<|im_start|>system\nBe brief.\n\nThe following are"),
        "{ctx}"
    );
    assert_eq!(
        ctx.matches("<|im_start|>").count(),
        3,
        "system, user, generation prompt: {ctx}"
    );
    assert!(
        ctx.contains("Answer: "),
        "examples keep their delimiter inside the user message: {ctx}"
    );
    // Different prompts, different evaluation fingerprints: one run's chunks never resume the other.
    let fp = |dir: &Path| -> serde_json::Value {
        let r: serde_json::Value = crate::util::read_json(&dir.join("results.json"));
        r["results"]["mmlu_anatomy"]["fingerprint"].clone()
    };
    assert_ne!(fp(&out), fp(&single));
}

#[test]
fn chat_errors_name_the_checkpoint_and_the_line() {
    let tmp = crate::tempdir!("chat-errors");
    let model = tmp.path().join("raising");
    chatml_checkpoint(
        &model,
        "{% for m in messages %}\n{% if m.role == 'user' %}\n{{ raise_exception('Users are not welcome') }}\n{% endif %}\n{% endfor %}",
    );
    let out = tmp.path().join("out");
    let o = run(&model, &out, &["--tasks", "arc_easy", "--apply-chat-template"]);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("chat_template.jinja") && msg.contains("line 3") && msg.contains("Users are not welcome"),
        "{msg}"
    );
    assert!(msg.contains("arc_easy") && msg.contains("row 0"), "{msg}");

    // A system message the template refuses is dropped, as lm-eval drops it, and counted.
    let gemma = std::fs::read_to_string(Path::new(TEMPLATES).join("gemma.jinja")).expect("fixture");
    let model = tmp.path().join("gemma");
    chatml_checkpoint(&model, &gemma);
    let o = run(
        &model,
        &out,
        &[
            "--tasks",
            "arc_easy",
            "--apply-chat-template",
            "--system-instruction",
            "Be brief.",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let results: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    let note = &results["results"]["arc_easy"]["notes"]["chat_template"];
    assert_eq!(note["rows_without_system_message"], 3, "{results}");
    assert_eq!(note["reason"], "System role not supported");
    assert!(
        text(&o).contains(
            "note: arc_easy: the chat template refuses a system message (System role not supported), so 3 of 3 rows were rendered without it"
        ),
        "{}",
        text(&o)
    );
    assert!(!samples(&out, "arc_easy")[0]["contexts"][0]
        .as_str()
        .unwrap_or_default()
        .contains("Be brief."));

    // No template; an unknown name; multi-turn without a template.
    let plain = model_dir("stories260K-hf");
    let o = run(&plain, &out, &["--tasks", "arc_easy", "--apply-chat-template"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no chat template"), "{}", text(&o));
    let o = run(
        &model,
        &out,
        &["--tasks", "arc_easy", "--apply-chat-template", "tool_use"],
    );
    assert!(text(&o).contains("tool_use"), "{}", text(&o));
    let o = run(&model, &out, &["--tasks", "arc_easy", "--fewshot-as-multiturn"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--fewshot-as-multiturn needs --apply-chat-template"),
        "{}",
        text(&o)
    );
}
