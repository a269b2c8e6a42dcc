//! `--model openai-compatible:URL`: evalkit against a real engine, llama.cpp's server as
//! `llama-cpp-python[server]==0.3.36` packages it, serving stories260K-hf converted to GGUF by
//! the converter in that package's sdist (scripts/install-llama-server builds both, cached; the
//! test starts the server on 127.0.0.1 and stops it). It checks that scores come back per
//! continuation for every scoring kind and generation, that a server killed mid-run and
//! restarted gives a run that resumes to the same samples, and the errors: nothing at the URL, a
//! tokenizer that is not the served model's, an engine that returns no prompt log-probs (a
//! stand-in server in the test); and that a sharded run without `--output` writes where one
//! process would, and `evalkit merge` merges with the server gone. Per-sample parity with lm-eval's `local-completions` against
//! the same server is scripts/parity's.
//!
//! Without the server installed the test notes the skip, unless EVALKIT_REQUIRE_SERVED is set
//! (as .ci/run sets it), when it fails.

use crate::cli::{evalkit, text};
use crate::util::{data_dir, model_dir, samples};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The engine's Python and the GGUF, where scripts/install-llama-server put them.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let cache = PathBuf::from(std::env::var_os("HOME")?).join(".cache/evalkit");
    let python = std::env::var_os("EVALKIT_LLAMA_PYTHON").map_or(cache.join("llama-venv/bin/python"), PathBuf::from);
    let gguf =
        std::env::var_os("EVALKIT_SERVED_GGUF").map_or(cache.join("served/stories260K-hf-f32.gguf"), PathBuf::from);
    (python.is_file() && gguf.is_file()).then_some((python, gguf))
}

/// A llama.cpp server on a free port of 127.0.0.1, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(python: &Path, gguf: &Path, port: u16, log: &Path) -> Server {
        let mut command = Command::new(python);
        // 1024: a 512-token window of rolling perplexity and the one token echo asks for.
        command
            .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--n_ctx", "1024"])
            .arg("--model")
            .arg(gguf)
            .args(["--port", &port.to_string()]);
        Server::spawn(command, port, log)
    }

    /// Starts `command`, a server that listens on `port`, logging to `log`.
    fn spawn(mut command: Command, port: u16, log: &Path) -> Server {
        let log = std::fs::File::create(log).expect("log");
        let child = command
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the server starts");
        let s = Server { child, port };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn url(&self) -> String {
        format!("openai-compatible:http://127.0.0.1:{}/v1", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `evalkit run` of the model served at `url` into `out`, with `extra` arguments.
fn command(url: &str, tokenizer: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evalkit"));
    c.args(["run", "-q", "--model", url, "--output"])
        .arg(out)
        .arg("--tokenizer")
        .arg(tokenizer)
        .arg("--data-dir")
        .arg(data_dir())
        .args(extra);
    c
}

fn run(url: &str, tokenizer: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    command(url, tokenizer, out, extra).output().expect("runs")
}

/// `evalkit run --shards 2` of ARC-Easy's first 4 rows on the model served at `url`, without
/// `--output`, in the new folder `here` (the results go under `here/evalkit-results/`).
fn sharded_without_output(url: &str, tokenizer: &Path, here: &Path) -> std::process::Output {
    std::fs::create_dir_all(here).expect("folder");
    Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .args([
            "run", "-q", "--model", url, "--shards", "2", "--tasks", "arc_easy", "--limit", "4",
        ])
        .arg("--tokenizer")
        .arg(tokenizer)
        .arg("--data-dir")
        .arg(data_dir())
        .current_dir(here)
        .output()
        .expect("runs")
}

#[test]
fn a_served_model_scores_resumes_and_refuses_a_wrong_tokenizer() {
    let Some((python, gguf)) = installed() else {
        return crate::util::skip_unless_required(
            "EVALKIT_REQUIRE_SERVED",
            "scripts/install-llama-server has not installed the server",
        );
    };
    let tmp = crate::tempdir!("served");
    let tok = model_dir("stories260K-hf");
    let port = free_port();
    let mut server = Server::start(&python, &gguf, port, &tmp.path().join("server.log"));
    let url = server.url();

    // Every scoring kind and generation, against the local libtorch run of the same weights:
    // the same rows, prompts and token counts; log-likelihoods close (llama.cpp's float32
    // kernels are not libtorch's) and the same greedy flags.
    let tasks = ["--tasks", "arc_easy,lambada_openai,gsm8k", "--limit", "4"];
    let served = tmp.path().join("served");
    let o = run(&url, &tok, &served, &tasks);
    assert!(o.status.success(), "{}", text(&o));
    let local = tmp.path().join("local");
    let (t, d) = (tok.to_str().unwrap(), data_dir());
    let mut args = vec![
        "run",
        "-q",
        "--device",
        "cpu",
        "--model",
        t,
        "--output",
        local.to_str().unwrap(),
    ];
    args.extend(["--data-dir", d.to_str().unwrap()]);
    args.extend(tasks);
    assert!(evalkit(&args).status.success());
    for task in ["arc_easy", "lambada_openai"] {
        let (a, b) = (samples(&served, task), samples(&local, task));
        assert_eq!(a.len(), 4);
        for (a, b) in a.iter().zip(&b) {
            for key in ["contexts", "continuations", "num_tokens", "is_greedy", "text", "tokens"] {
                assert_eq!(a.get(key), b.get(key), "{task} row {}: {key}", a["index"]);
            }
            let lls = |s: &serde_json::Value| -> Vec<f64> {
                match s.get("loglikelihoods") {
                    Some(v) => v.as_array().expect("lls").iter().filter_map(|x| x.as_f64()).collect(),
                    None => vec![s["loglikelihood"].as_f64().expect("ll")],
                }
            };
            for (x, y) in lls(a).iter().zip(lls(b)) {
                assert!(
                    (x - y).abs() <= 2e-3 * (1.0 + y.abs()),
                    "{task} row {}: served {x}, local {y}",
                    a["index"]
                );
            }
        }
    }
    let gens = samples(&served, "gsm8k");
    assert!(
        gens.iter()
            .all(|g| !g["generations"][0].as_str().unwrap_or("").is_empty()),
        "{gens:?}"
    );
    let results: serde_json::Value = crate::util::read_json(&served.join("results.json"));
    let model = results["config"]["model"].as_str().expect("model");
    assert!(
        model.starts_with(&format!("openai-compatible:http://127.0.0.1:{port}/v1 (model ")),
        "{model}"
    );
    assert!(
        model.contains("stories260K-hf-f32.gguf") && model.contains("engine uvicorn"),
        "{model}"
    );

    // A task the engine cannot run (llama.cpp gives no log-prob for the first token, where
    // WikiText's first rolling window starts, and would put its BOS before a later window)
    // fails alone: the others' results are written, it is named under `failed`, and the exit
    // status is 2.
    let partial = tmp.path().join("partial");
    let o = run(&url, &tok, &partial, &["--tasks", "wikitext,arc_easy", "--limit", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let results: serde_json::Value = crate::util::read_json(&partial.join("results.json"));
    assert!(results["results"]["arc_easy"]["acc"].is_number(), "{results}");
    let why = results["failed"]["wikitext"].as_str().expect("wikitext failed");
    assert!(
        why.contains("evaluation `wikitext`") && why.contains("rolling-perplexity window"),
        "{why}"
    );
    // The same in a sharded run: each shard records the failure and goes on, the merge lists
    // it, and no shard is called failed.
    let sharded = tmp.path().join("partial-sharded");
    let o = run(
        &url,
        &tok,
        &sharded,
        &["--tasks", "wikitext,arc_easy", "--limit", "2", "--shards", "2"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("Rerun each failed shard"), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&sharded.join("results.json"));
    assert_eq!(
        doc["results"]["arc_easy"]["acc"], results["results"]["arc_easy"]["acc"],
        "{doc}"
    );
    assert!(
        doc["failed"]["wikitext"]
            .as_str()
            .is_some_and(|w| w.contains("rolling-perplexity window")),
        "{doc}"
    );
    // Where every task fails so, no shard is offered to rerun alone: the command is.
    let all = tmp.path().join("all-failed");
    let o = run(
        &url,
        &tok,
        &all,
        &["--tasks", "wikitext", "--limit", "2", "--shards", "2"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("every evaluation failed on its own") && !text(&o).contains("Rerun each failed shard"),
        "{}",
        text(&o)
    );

    // Killed mid-run: the run stops with a message and keeps its chunks; with the server back,
    // the rerun resumes them and ends with the samples of a run that was never interrupted.
    let whole = tmp.path().join("whole");
    let resumed = tmp.path().join("resumed");
    let args = [
        "--tasks",
        "arc_easy",
        "--limit",
        "60",
        "--batch-size",
        "1",
        "--chunk-size",
        "1",
        "--in-flight",
        "1",
        "--retries",
        "0",
    ];
    assert!(run(&url, &tok, &whole, &args).status.success());
    let child = command(&url, &tok, &resumed, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let journal = resumed.join(".journal").join("arc_easy.journal.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 6 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no chunks journaled within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let killed = child.wait_with_output().expect("waits");
    assert!(!killed.status.success(), "the run must fail without its server");
    let msg = text(&killed);
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("rerun to resume"),
        "{msg}"
    );
    let mut server = Server::start(&python, &gguf, port, &tmp.path().join("server2.log"));
    let o = run(&url, &tok, &resumed, &args);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = crate::util::read_json(&resumed.join("results.json"));
    assert!(
        r["results"]["arc_easy"]["chunks_resumed"].as_u64().unwrap_or(0) >= 5,
        "{r}"
    );
    let strip = |mut v: Vec<serde_json::Value>| {
        for s in &mut v {
            s.as_object_mut().expect("object").remove("index");
        }
        v
    };
    let (a, b) = (strip(samples(&whole, "arc_easy")), strip(samples(&resumed, "arc_easy")));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["loglikelihoods"], y["loglikelihoods"]);
        assert_eq!(x["contexts"], y["contexts"]);
    }
    assert_eq!(a.len(), b.len());

    // Nothing listening; a tokenizer that is not the served model's.
    let nothing = format!("openai-compatible:http://127.0.0.1:{}/v1", free_port());
    let o = run(
        &nothing,
        &tok,
        &tmp.path().join("x"),
        &["--tasks", "arc_easy", "--limit", "2", "--retries", "0"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("/v1/models") && text(&o).contains("Connection refused"),
        "{}",
        text(&o)
    );
    let gpt2 = model_dir("tiny-gpt2-random");
    let o = run(
        &url,
        &gpt2,
        &tmp.path().join("y"),
        &["--tasks", "arc_easy", "--limit", "2"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--tokenizer is not the served model's"),
        "{}",
        text(&o)
    );

    // Sharded without --output: the results go under the served model's id, as one process's.
    let here = tmp.path().join("sharded-here");
    let o = sharded_without_output(&url, &tok, &here);
    assert!(o.status.success(), "{}", text(&o));
    let under: Vec<PathBuf> = std::fs::read_dir(here.join("evalkit-results"))
        .expect("evalkit-results/")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(under.len(), 1, "{under:?}");
    let r: serde_json::Value = crate::util::read_json(&under[0].join("results.json"));
    assert_eq!(
        under[0].file_name().and_then(|n| n.to_str()),
        r["config"]["model_name"].as_str(),
        "the folder is named after the served model's id"
    );
    let (x, y) = (samples(&under[0], "arc_easy"), samples(&served, "arc_easy"));
    assert_eq!(x.len(), 4);
    for (x, y) in x.iter().zip(&y) {
        assert_eq!((&x["contexts"], &x["is_greedy"]), (&y["contexts"], &y["is_greedy"]));
    }

    // Both shares journaled, the merging shard dead: `evalkit merge` writes the results with
    // the server gone (it computes nothing and asks nothing).
    let merged = tmp.path().join("merged");
    let shard_args = ["--tasks", "arc_easy", "--limit", "4", "--batch-size", "1"];
    for rank in 0..2 {
        if rank == 1 {
            std::fs::write(merged.join(".journal").join("merge.lock"), "").expect("lock");
        }
        let o = command(&url, &tok, &merged, &shard_args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .output()
            .expect("runs");
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(!merged.join("results.json").exists(), "the merger died");
    server.kill();
    let o = Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .args(["-q", "merge", merged.to_str().unwrap()])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o));
    for (x, y) in samples(&merged, "arc_easy").iter().zip(samples(&served, "arc_easy")) {
        assert_eq!(x["contexts"], y["contexts"]);
        assert_eq!(x["is_greedy"], y["is_greedy"]);
    }
    assert_eq!(samples(&merged, "arc_easy").len(), 4);
}

/// The parity environment's Python (scripts/parity --setup), where the vLLM-like fixture runs.
fn parity_python() -> Option<PathBuf> {
    let venv = std::env::var_os("EVALKIT_PARITY_VENV")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/evalkit/parity-venv")))?;
    Some(venv.join("bin/python")).filter(|p| p.is_file())
}

/// tests/fixtures/vllm_like_server.py serving `model` (transformers, float32) as vLLM does.
fn vllm_like(python: &Path, model: &str, dir: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let mut command = Command::new(python);
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vllm_like_server.py"))
        .arg(model_dir(model))
        .arg(port.to_string())
        .args(extra);
    Server::spawn(command, port, &dir.join(format!("{model}-{port}.log")))
}

/// An engine that serves as vLLM does (tests/fixtures/vllm_like_server.py): it echoes the BOS
/// it puts before a text prompt, lists its `max_model_len`, and answers a request longer than
/// that with a 400. Scores and generations equal the checkpoint's; the max length is fitted to
/// the engine's; a wrong tokenizer is refused before a run of generations alone; a request the
/// engine refuses fails its evaluation alone, with a hint.
#[test]
fn a_vllm_like_engine_scores_and_generates_as_the_checkpoint() {
    let Some(python) = parity_python() else {
        return crate::util::skip_unless_required(
            "EVALKIT_REQUIRE_SERVED",
            "the parity environment is missing (scripts/parity --setup)",
        );
    };
    let tmp = crate::tempdir!("served-vllm");
    let tok = model_dir("stories260K-hf");
    let server = vllm_like(&python, "stories260K-hf", tmp.path(), &[]);
    let tasks = [
        "--tasks",
        "arc_easy,lambada_openai,gsm8k",
        "--num-fewshot",
        "0",
        "--max-new-tokens",
        "16",
        "--limit",
        "6",
    ];
    let served = tmp.path().join("served");
    let o = run(&server.url(), &tok, &served, &tasks);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("at most 512 tokens (max_model_len)") && text(&o).contains("the max length is 508"),
        "{}",
        text(&o)
    );
    let config = &crate::util::read_json(&served.join("results.json"))["config"];
    assert_eq!(config["max_len"], 508);
    let local = tmp.path().join("local");
    let mut args = vec!["run", "-q", "--model", tok.to_str().expect("utf8"), "--output"];
    args.push(local.to_str().expect("utf8"));
    let data = data_dir();
    args.extend(["--data-dir", data.to_str().expect("utf8")]);
    args.extend(tasks);
    let o = evalkit(&args);
    assert!(o.status.success(), "{}", text(&o));
    for task in ["arc_easy", "lambada_openai", "gsm8k"] {
        let (a, b) = (samples(&served, task), samples(&local, task));
        assert_eq!(a.len(), 6, "{task}");
        for (x, y) in a.iter().zip(&b) {
            for k in [
                "contexts",
                "continuations",
                "is_greedy",
                "prediction",
                "generations",
                "num_tokens",
            ] {
                assert_eq!(x.get(k), y.get(k), "{task} row {}: {k}", x["index"]);
            }
            let lls = |s: &serde_json::Value| -> Vec<f64> {
                s["loglikelihoods"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_f64)
                    .collect()
            };
            for (u, v) in lls(x).into_iter().zip(lls(y)) {
                assert!(
                    (u - v).abs() <= 1e-4 * (1.0 + v.abs() / 100.0),
                    "{task} row {}: {u} served, {v} local",
                    x["index"]
                );
            }
        }
    }

    // Sharded without --output: the process that starts the shards asks the engine only for
    // the model's id; each shard checks the engine (one warning each, not one more).
    let here = tmp.path().join("sharded-here");
    let o = sharded_without_output(&server.url(), &tok, &here);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("(max_model_len)").count(), 2, "{}", text(&o));
    assert!(here.join("evalkit-results/stories260K-hf/results.json").is_file());

    // A run of generations alone with another model's tokenizer is refused up front.
    let o = run(
        &server.url(),
        &model_dir("tiny-gpt2-random"),
        &tmp.path().join("wrong"),
        &["--tasks", "gsm8k", "--limit", "2", "--max-new-tokens", "4"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("probe text") && text(&o).contains("--tokenizer is not the served model's"),
        "{}",
        text(&o)
    );

    // An engine that does not list its limit: GSM8K's 5-shot prompts, cut to the config's 512
    // tokens less the 16 to generate, re-split from text, run past it. The 400 fails GSM8K
    // alone, saying what to give; ARC's results are written.
    let hidden = vllm_like(&python, "stories260K-hf", tmp.path(), &["--hide-max-model-len"]);
    let out = tmp.path().join("refused");
    let o = run(
        &hidden.url(),
        &tok,
        &out,
        &["--tasks", "gsm8k,arc_easy", "--limit", "3", "--max-new-tokens", "16"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("evaluation `gsm8k`") && text(&o).contains("HTTP 400") && text(&o).contains("give --max-len"),
        "{}",
        text(&o)
    );
    let doc = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["results"]["arc_easy"]["n"], 3);
    assert!(
        doc["failed"]["gsm8k"].as_str().is_some_and(|w| w.contains("HTTP 400")),
        "{doc}"
    );

    // An engine with a short window: LAMBADA's passages are cut to fit it (the engine puts
    // its BOS back before a cut input), counted, and every request is served.
    let short = vllm_like(&python, "stories260K-hf", tmp.path(), &["--max-model-len", "64"]);
    let out = tmp.path().join("cut");
    let o = run(&short.url(), &tok, &out, &["--tasks", "lambada_openai", "--limit", "4"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["config"]["max_len"], 60);
    assert_eq!(doc["results"]["lambada_openai"]["truncated"], 4, "{doc}");
}

/// An engine that answers `/models` but returns completions without prompt log-probs (as
/// llama.cpp's server does without `logits_all`): a clear error, not a score.
#[test]
fn an_engine_without_prompt_logprobs_is_an_error() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                request.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = if request.starts_with("GET /v1/models") {
                r#"{"object":"list","data":[{"id":"fake","object":"model"}]}"#
            } else if request.starts_with("POST /v1/completions") {
                r#"{"choices":[{"index":0,"text":"x","finish_reason":"length"}]}"#
            } else {
                r#"{"error":"not found"}"#
            };
            let status = if answer.contains("error") {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    let tmp = crate::tempdir!("served-nologprobs");
    let url = format!("openai-compatible:http://127.0.0.1:{port}/v1");
    let o = run(
        &url,
        &model_dir("stories260K-hf"),
        tmp.path(),
        &["--tasks", "arc_easy", "--limit", "2"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not return prompt log-probs"), "{}", text(&o));
}
