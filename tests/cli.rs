//! The `evalkit` binary: `list`, `run` (results table, files, gates, exit codes), `show`,
//! `compare`, and errors that name what is wrong.

use crate::util::{data_dir, model_dir};
use std::process::{Command, Output};

/// Runs the `evalkit` binary with `args`.
pub fn evalkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .args(args)
        .output()
        .expect("runs")
}

/// Runs the `evalkit` binary with `args` and its stdout a pipe closed before it writes
/// (`evalkit ... | head -1`, the reader gone before evalkit, which takes a few milliseconds to
/// start, prints anything).
pub fn evalkit_into_closed_pipe(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    child.wait_with_output().expect("waits")
}

/// Its stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn list_prints_every_suite() {
    let o = evalkit(&["list"]);
    assert!(o.status.success());
    let out = text(&o);
    for name in [
        "arc_easy",
        "hellaswag",
        "mmlu_anatomy",
        "truthfulqa_mc2",
        "gsm8k",
        "humaneval",
        "synthetic_copy",
    ] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name} missing:\n{out}");
    }
    assert!(out.contains("multiple_choice") && out.contains("14042"));
    let json: serde_json::Value = serde_json::from_slice(&evalkit(&["list", "--format", "json"]).stdout).expect("json");
    // 17 suites, MMLU's 4 category groups and its 57 subjects.
    assert_eq!(json.as_array().expect("array").len(), 17 + 4 + 57);
    assert!(
        out.lines().any(|l| l.starts_with("mmlu_stem ") && l.contains("3153")),
        "{out}"
    );
    let md = text(&evalkit(&["list", "--format", "md"]));
    assert!(
        md.starts_with("| task | kind | metrics | split | rows | fewshot |\n|---|")
            && md.contains("| hellaswag | multiple_choice |"),
        "{md}"
    );
}

#[test]
fn a_closed_stdout_pipe_ends_the_command_quietly() {
    // `evalkit list | head -1`: every write meets the closed pipe.
    for format in ["text", "json"] {
        let o = evalkit_into_closed_pipe(&["list", "--format", format]);
        assert!(
            o.status.success(),
            "{format}: {:?} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stderr.is_empty(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn list_with_a_data_dir_shows_the_rows_found_or_why_not() {
    // The shared data: every task loads, with its official row count.
    let dir = data_dir();
    let o = evalkit(&["list", "--data-dir", dir.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().next().expect("header").ends_with("found"), "{out}");
    for line in out.lines().skip(2) {
        let cols: Vec<&str> = line.split_whitespace().rev().collect();
        assert_eq!(cols[2], cols[0], "rows found are the official count: {line}");
    }
    assert!(o.stderr.is_empty(), "{}", text(&o));

    // A folder with one malformed file and nothing else: that task names the file's line,
    // the others what is missing; synthetic tasks are generated.
    let tmp = crate::tempdir!("cli-list-data");
    std::fs::create_dir_all(tmp.path().join("truthfulqa")).expect("mkdir");
    std::fs::write(
        tmp.path().join("truthfulqa/mc_task.json"),
        "[\n  {\"question\": 1}\n]\n",
    )
    .expect("write");
    let o = evalkit(&[
        "list",
        "--format",
        "json",
        "--data-dir",
        tmp.path().to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let entry = |name: &str| {
        json.as_array()
            .expect("array")
            .iter()
            .find(|e| e["name"] == name)
            .expect("listed")
            .clone()
    };
    assert_eq!(entry("synthetic_copy")["rows_found"], 100);
    let e = entry("truthfulqa_mc1")["data_error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(
        e.ends_with("mc_task.json:2: field `[0].question`: missing or not a string"),
        "{e}"
    );
    let e = entry("arc_easy")["data_error"].as_str().expect("an error").to_string();
    assert!(e.starts_with("missing file "), "{e}");
    let o = evalkit(&["list", "--data-dir", tmp.path().to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tasks do not load from") && err.contains("  truthfulqa_mc2: "),
        "{err}"
    );

    let o = evalkit(&[
        "list",
        "--data-dir",
        tmp.path().join("nowhere").to_str().expect("utf-8"),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("nowhere: no such folder"),
        "{}",
        text(&o)
    );
}

#[test]
fn run_writes_results_and_gates_set_the_exit_code() {
    let tmp = crate::tempdir!("cli-run");
    let out = tmp.path().join("out");
    let model = model_dir("stories260K-hf");
    let data = data_dir();
    let base = [
        "run",
        "-q",
        "--device",
        "cpu",
        "--tasks",
        "arc_easy,synthetic_brackets",
        "--limit",
        "6",
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--model",
        model.to_str().expect("utf8"),
        "--data-dir",
        data.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
    ]);
    let o = evalkit(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("arc_easy") && text(&o).contains("acc_norm"));
    assert!(out.join("results.json").is_file() && out.join("samples_arc_easy.jsonl").is_file());
    assert!(evalkit::core::Evaluator::done(&out));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["results"]["arc_easy"]["n"], 6);
    assert_eq!(
        doc["results"]["arc_easy"]["fingerprint"].as_str().map(str::len),
        Some(16),
        "data fingerprint recorded"
    );
    assert!(doc["config"]["model"]
        .as_str()
        .expect("model")
        .contains("stories260K-hf"));
    assert!(doc["versions"]["libtorch"].is_string());
    let shown = evalkit(&["show", out.to_str().expect("utf8")]);
    assert!(text(&shown).contains("synthetic_brackets"));
    let report = text(&evalkit(&["report", "--format", "md", out.to_str().expect("utf8")]));
    assert!(
        report.starts_with("## evalkit results") && report.contains("| arc_easy | acc | "),
        "{report}"
    );
    let cmp = evalkit(&["compare", out.to_str().expect("utf8"), out.to_str().expect("utf8")]);
    assert!(text(&cmp).contains("+0.0000"));

    // A gate above any possible score fails with exit code 1.
    let gated = tmp.path().join("gated");
    let mut g = args.clone();
    let n = g.len();
    g[n - 1] = gated.to_str().expect("utf8");
    g.extend(["--min", "arc_easy.acc=1.01"]);
    let o = evalkit(&g);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("gate failed: arc_easy.acc"));
    // The failure shows the score with its standard error and the rows that went wrong first;
    // --max bounds a metric from above (perplexities).
    assert!(
        text(&o).contains("must be ≥ 1.01")
            && text(&o).contains("row(s) on the wrong side")
            && text(&o).contains("row 0: value"),
        "{}",
        text(&o)
    );
    // With stdout a closed pipe (`evalkit run ... | head -1`), the failed gate still exits 1.
    let piped = tmp.path().join("piped");
    g[n - 1] = piped.to_str().expect("utf8");
    let o = evalkit_into_closed_pipe(&g);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gate failed: arc_easy.acc"));
    let capped = tmp.path().join("capped");
    let mut c = args.clone();
    let n = c.len();
    c[n - 1] = capped.to_str().expect("utf8");
    c.extend(["--max", "arc_easy.acc=-1", "--min", "arc_easy.acc=0"]);
    let o = evalkit(&c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("must be ≤ -1") && !text(&o).contains("must be ≥ 0"),
        "{}",
        text(&o)
    );
    // A gate on an evaluation the run lacks, or on a metric its kind never reports, is refused
    // before anything runs (exit 2, not a gate's 1); a gate on a generation's metric, which
    // only its scoring knows, fails at the end naming those reported.
    let typo = tmp.path().join("typo");
    let mut t = args.clone();
    let n = t.len();
    t[n - 1] = typo.to_str().expect("utf8");
    let mut misnamed = t.clone();
    misnamed.extend(["--min", "arc_eazy.acc=0.5"]);
    let o = evalkit(&misnamed);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("arc_eazy.acc names no evaluation of this run (it has arc_easy")
            && !typo.join("results.json").exists(),
        "{}",
        text(&o)
    );
    let mut wrong_metric = t.clone();
    wrong_metric.extend(["--min", "arc_easy.accuracy=0.5"]);
    let o = evalkit(&wrong_metric);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "arc_easy.accuracy names a metric arc_easy does not report (a multiple_choice evaluation reports acc, \
             acc_norm, acc_bytes, acc_token_norm)"
        ) && !typo.join("results.json").exists(),
        "{}",
        text(&o)
    );
    // Standard errors and the run's records gate too.
    let mut records = t.clone();
    records.extend(["--max", "arc_easy.acc_stderr=1", "--min", "arc_easy.tokens_scored=1"]);
    let o = evalkit(&records);
    assert!(o.status.success(), "{}", text(&o));
    let arith: Vec<&str> = t
        .iter()
        .map(|&a| {
            if a == "arc_easy,synthetic_brackets" {
                "synthetic_arithmetic"
            } else {
                a
            }
        })
        .collect();
    let mut generated = arith.clone();
    generated.extend(["--min", "synthetic_arithmetic.accuracy=0.5"]);
    let o = evalkit(&generated);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("synthetic_arithmetic.accuracy was not reported (synthetic_arithmetic reports"),
        "{}",
        text(&o)
    );
}

/// A task asked twice, or also through its group, is evaluated once, with a note, and its
/// chunks count as computed (not as read back from a journal); gates on a group are checked
/// against its members' metrics.
#[test]
fn a_task_asked_twice_is_evaluated_once() {
    let tmp = crate::tempdir!("cli-twice");
    let out = tmp.path().join("out");
    let (model, data) = (model_dir("stories260K-hf"), data_dir());
    let o = evalkit(&[
        "run",
        "--threads",
        "1",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "arc_easy,mmlu_anatomy,arc_easy,mmlu",
        "--limit",
        "1",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
        "--min",
        "mmlu.acc=0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o)
            .contains("note: arc_easy, mmlu_anatomy asked more than once (by name or through a group): evaluated once"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("read back"), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["results"]["arc_easy"]["chunks_resumed"], 0);
    assert_eq!(doc["results"]["mmlu_anatomy"]["chunks_resumed"], 0);
    assert_eq!(doc["groups"]["mmlu"]["n"], 57);
    // A gate on a group takes its members' metrics, and no others.
    let refused = tmp.path().join("refused");
    let o = evalkit(&[
        "run",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "mmlu",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--output",
        refused.to_str().expect("utf8"),
        "--min",
        "mmlu.accuracy=0.5",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("mmlu.accuracy names a metric mmlu does not report"),
        "{}",
        text(&o)
    );
    assert!(!refused.join("results.json").exists());
}

/// Paths given relative to the current directory are recorded absolute, so that results.json
/// says which checkpoint and data wherever it is read; the run is named after the folder.
#[test]
fn results_record_absolute_paths() {
    let tmp = crate::tempdir!("cli-relative");
    let model = model_dir("stories260K-hf");
    let parent = model.parent().expect("models folder");
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .current_dir(parent)
        .args([
            "run",
            "-q",
            "--device",
            "cpu",
            "--tasks",
            "synthetic_copy",
            "--limit",
            "2",
        ])
        .args(["--model", "./stories260K-hf/", "--data-dir", "some-data"])
        .arg("--output")
        .arg(&out)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    let config = &doc["config"];
    let recorded = config["model"].as_str().expect("model");
    assert!(
        recorded.contains(&parent.join("stories260K-hf").display().to_string()),
        "{recorded}"
    );
    assert_eq!(config["data_dir"], parent.join("some-data").display().to_string());
    assert_eq!(config["model_name"], "stories260K-hf");
}

#[test]
fn errors_exit_2_and_name_the_problem() {
    let o = evalkit(&[
        "run",
        "--model",
        "/nonexistent/model",
        "--tasks",
        "arc_easy",
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("/nonexistent/model"), "{}", text(&o));
    let model = model_dir("stories260K-hf");
    let tmp = crate::tempdir!("cli-err");
    let o = evalkit(&[
        "run",
        "-q",
        "--device",
        "cpu",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "arc_eazy",
        "--output",
        tmp.path().to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unknown task `arc_eazy`") && text(&o).contains("arc_easy"),
        "{}",
        text(&o)
    );
    // A format the command does not print is refused.
    let o = evalkit(&["show", tmp.path().to_str().expect("utf8"), "--format", "html"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("`show` prints text, json or md, not --format html"),
        "{}",
        text(&o)
    );
    let o = evalkit(&["compare", "a", "b", "--format", "md"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("`compare` prints text or json, not --format md"),
        "{}",
        text(&o)
    );
    // Before any model loads (this one does not exist), whatever case the name is in.
    let o = evalkit(&[
        "run",
        "--model",
        "/nonexistent/model",
        "--tasks",
        "arc_easy,ARC_CHALLENGE",
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unknown task `ARC_CHALLENGE`")
            && text(&o).contains("close matches: arc_challenge")
            && !text(&o).contains("/nonexistent/model"),
        "{}",
        text(&o)
    );
    let o = evalkit(&[
        "run",
        "--device",
        "cuda:7",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "arc_easy",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("cuda:7"), "{}", text(&o));
    // An output that is a file says so.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").expect("write");
    let data = data_dir();
    let o = evalkit(&[
        "run",
        "-q",
        "--threads",
        "1",
        "--model",
        model.to_str().expect("utf8"),
        "--data-dir",
        data.to_str().expect("utf8"),
        "--tasks",
        "synthetic_copy",
        "--limit",
        "1",
        "--output",
        file.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("a-file: it is a file, not a directory"),
        "{}",
        text(&o)
    );
    // --batch-size takes a positive number or `auto`; --max-batch-size goes with auto.
    let m = model.to_str().expect("utf8");
    let out = tmp.path().join("auto");
    let data = data_dir();
    let d = data.to_str().expect("utf8");
    let base = [
        "run",
        "-q",
        "--device",
        "cpu",
        "--model",
        m,
        "--data-dir",
        d,
        "--tasks",
        "arc_easy",
        "--limit",
        "6",
    ];
    for (extra, says) in [
        (&["--batch-size", "0"][..], "neither a positive number nor `auto`"),
        (
            &["--max-batch-size", "8"][..],
            "--max-batch-size goes with --batch-size auto",
        ),
        (
            &["--limit", "0"][..],
            "`0` is neither a positive whole number of rows nor a share",
        ),
        (
            &["--limit", "1.5"][..],
            "`1.5` is neither a positive whole number of rows nor a share",
        ),
        (&["--chunk-size", "0"][..], "`0` is not a positive whole number"),
        (
            &["--gen-kwargs", "until=x"][..],
            "`until` is not a setting evalkit takes",
        ),
    ] {
        let refused = tmp.path().join("refused");
        // (`--limit 0` in place of the base's `--limit 6`.)
        let own = if extra[0] == "--limit" {
            &base[..base.len() - 2]
        } else {
            &base[..]
        };
        let o = evalkit(&[own, extra, &["--output", refused.to_str().expect("utf8")]].concat());
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(says), "{}", text(&o));
        assert!(!refused.exists(), "a refused run makes no output folder");
    }
    let auto = [
        "--batch-size",
        "auto",
        "--max-batch-size",
        "4",
        "--output",
        out.to_str().expect("utf8"),
    ];
    let o = evalkit(&[&base[..], &auto[..]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert_eq!(
        (&doc["config"]["batch_size"], &doc["config"]["auto_batch_size"]),
        (&4.into(), &true.into())
    );
    // A --limit below 1 is a share of the rows, rounded up as lm-eval rounds it: ⌈2376 × 0.003⌉.
    let share = tmp.path().join("share");
    let o = evalkit(
        &[
            &base[..base.len() - 2],
            &[
                "--limit",
                "0.003",
                "--sample",
                "--output",
                share.to_str().expect("utf8"),
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&share.join("results.json"));
    assert_eq!(doc["results"]["arc_easy"]["n"], 8);
    assert_eq!(doc["config"]["subset"], serde_json::json!({"sample_share": 0.003}));
    // lm-eval's --gen_kwargs: at most 3 new tokens, greedy; HumanEval confirmed through the
    // variable (`1`, as lm-eval's HF_ALLOW_CODE_EVAL takes it).
    let gen = tmp.path().join("gen");
    let o = Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .env("EVALKIT_CONFIRM_RUN_UNSAFE_CODE", "1")
        // (The base's run, model and data, with tasks of its own.)
        .args(&base[..8])
        .args([
            "--tasks",
            "gsm8k,humaneval",
            "--num-fewshot",
            "0",
            "--limit",
            "3",
            "--temperature",
            "0.7",
            "--gen-kwargs",
            "max_gen_toks=3,do_sample=False",
            "--output",
            gen.to_str().expect("utf8"),
        ])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&gen.join("results.json"));
    assert_eq!(
        (&doc["config"]["max_new_tokens"], &doc["config"]["sampling"]),
        (&3.into(), &serde_json::Value::Null)
    );
    for task in ["gsm8k", "humaneval"] {
        for s in crate::util::samples(&gen, task) {
            assert_eq!(s["finish"], serde_json::json!(["length"]), "{s}");
        }
    }
}

#[test]
fn compare_pairs_rows_with_bootstrap_intervals_and_mcnemar() {
    let tmp = crate::tempdir!("cli-compare");
    let data = data_dir();
    let run = |model: &str, out: &std::path::Path| {
        let m = model_dir(model);
        let o = evalkit(&[
            "run",
            "-q",
            "--device",
            "cpu",
            "--tasks",
            "arc_easy,wikitext",
            "--limit",
            "40",
            "--model",
            m.to_str().expect("utf8"),
            "--data-dir",
            data.to_str().expect("utf8"),
            "--output",
            out.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    };
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run("stories260K-hf", &a);
    run("tiny-gpt2-random", &b);
    // `compare --format json` of two runs: its lines.
    let compared = |a: &std::path::Path, b: &std::path::Path| -> Vec<serde_json::Value> {
        let o = evalkit(&[
            "compare",
            "--format",
            "json",
            a.to_str().expect("utf8"),
            b.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let lines = compared(&a, &b);
    let acc = lines
        .iter()
        .find(|l| l["task"] == "arc_easy" && l["metric"] == "acc")
        .expect("arc_easy acc");
    // Discordant pairs counted by hand from the two samples files.
    let per_row = |dir: &std::path::Path| -> Vec<f64> {
        std::fs::read_to_string(dir.join("samples_arc_easy.jsonl"))
            .expect("samples")
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("row")["metrics"]["acc"]
                    .as_f64()
                    .expect("acc")
            })
            .collect()
    };
    let (pa, pb) = (per_row(&a), per_row(&b));
    let only_a = pa.iter().zip(&pb).filter(|&(&x, &y)| x == 1.0 && y == 0.0).count();
    let only_b = pa.iter().zip(&pb).filter(|&(&x, &y)| x == 0.0 && y == 1.0).count();
    let d = &acc["paired"];
    assert_eq!(d["discordant"], serde_json::json!([only_a, only_b]));
    // McNemar's exact p by direct summation: 2 · Σ_{j ≤ min} C(m, j) / 2^m, capped at 1.
    let m = (only_a + only_b) as u32;
    let choose = |n: u32, k: u32| (0..k).fold(1u128, |c, j| c * u128::from(n - j) / u128::from(j + 1));
    let tail: u128 = (0..=only_a.min(only_b) as u32).map(|j| choose(m, j)).sum();
    let want = (2.0 * tail as f64 / 2f64.powi(m as i32)).min(1.0);
    assert!(
        (d["mcnemar_p"].as_f64().expect("p") - want).abs() < 1e-12,
        "{d} vs {want}"
    );
    // The interval brackets the difference of the means, from the stated resamples.
    let diff = pb.iter().sum::<f64>() / 40.0 - pa.iter().sum::<f64>() / 40.0;
    assert!((acc["diff"].as_f64().expect("diff") - diff).abs() < 1e-12);
    let (lo, hi) = (d["lo"].as_f64().expect("lo"), d["hi"].as_f64().expect("hi"));
    assert!(lo <= diff && diff <= hi && lo < hi, "[{lo}, {hi}] around {diff}");
    assert_eq!((d["resamples"].as_u64(), d["n"].as_u64()), (Some(10_000), Some(40)));
    // 0/1 values: significant by McNemar's exact test, not by the bootstrap interval.
    assert_eq!(acc["significant"], serde_json::json!(want < 0.05));
    // Corpus metrics have no per-row values: no interval.
    let wpp = lines
        .iter()
        .find(|l| l["metric"] == "word_perplexity")
        .expect("wikitext");
    assert!(wpp["paired"].is_null());

    // A samples file cut short of the rows results.json counts is not the run's: refused.
    let half = tmp.path().join("half");
    std::fs::create_dir_all(&half).expect("folder");
    for f in ["results.json", "samples_wikitext.jsonl"] {
        std::fs::copy(b.join(f), half.join(f)).expect("copy");
    }
    let rows = std::fs::read_to_string(b.join("samples_arc_easy.jsonl")).expect("samples");
    let first: Vec<&str> = rows.lines().take(20).collect();
    std::fs::write(half.join("samples_arc_easy.jsonl"), first.join("\n")).expect("write");
    let o = evalkit(&["compare", a.to_str().expect("utf8"), half.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("holds 20 records, but results.json counts 40 rows of arc_easy"),
        "{}",
        text(&o)
    );
    // A run of fewer rows is paired on the rows both have, and says so.
    let mut fewer: serde_json::Value = crate::util::read_json(&b.join("results.json"));
    fewer["results"]["arc_easy"]["n"] = 20.into();
    std::fs::write(half.join("results.json"), fewer.to_string()).expect("write");
    let o = evalkit(&["compare", a.to_str().expect("utf8"), half.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("arc_easy: paired on the 20 rows both runs evaluated (a has 40, b has 20)"),
        "{}",
        text(&o)
    );
    // A corpus metric of a run over fewer rows: both values recomputed over the common rows,
    // not each run's aggregate over its own (which would pass for a difference).
    let pages = std::fs::read_to_string(b.join("samples_wikitext.jsonl")).expect("samples");
    let five: Vec<&str> = pages.lines().take(5).collect();
    std::fs::write(half.join("samples_wikitext.jsonl"), five.join("\n")).expect("write");
    fewer["results"]["wikitext"]["n"] = 5.into();
    std::fs::write(half.join("results.json"), fewer.to_string()).expect("write");
    let lines = compared(&a, &half);
    let word_perplexity = |dir: &std::path::Path| {
        let (mut nll, mut words) = (0.0, 0.0);
        for l in std::fs::read_to_string(dir.join("samples_wikitext.jsonl"))
            .expect("samples")
            .lines()
            .take(5)
        {
            let v: serde_json::Value = serde_json::from_str(l).expect("row");
            nll -= v["loglikelihood"].as_f64().expect("ll");
            words += v["words"].as_f64().expect("words");
        }
        (nll / words).exp()
    };
    let wpp = lines
        .iter()
        .find(|l| l["task"] == "wikitext" && l["metric"] == "word_perplexity")
        .expect("compared");
    for (side, dir) in [("a", &a), ("b", &b)] {
        let (got, want) = (wpp[side].as_f64().expect("value"), word_perplexity(dir));
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "{side}: {got} vs {want} over the 5 common pages"
        );
    }
    // An evaluation of one run alone is said to be left out; one whose rows the runs do not
    // share is not compared (unpaired means would pass for a difference), and with nothing
    // left the comparison is refused.
    let mut arc_only: serde_json::Value = crate::util::read_json(&b.join("results.json"));
    arc_only["results"].as_object_mut().expect("results").remove("wikitext");
    arc_only["results"]["arc_easy"]["n"] = 20.into();
    let (some, disjoint) = (tmp.path().join("some"), tmp.path().join("disjoint"));
    for (dir, shift) in [(&some, 0), (&disjoint, 1000)] {
        std::fs::create_dir_all(dir).expect("folder");
        std::fs::write(dir.join("results.json"), arc_only.to_string()).expect("write");
        let moved: Vec<String> = first
            .iter()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("sample");
                v["index"] = (v["index"].as_u64().expect("index") + shift).into();
                v.to_string()
            })
            .collect();
        std::fs::write(dir.join("samples_arc_easy.jsonl"), moved.join("\n")).expect("write");
    }
    let o = evalkit(&["compare", a.to_str().expect("utf8"), some.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("only {} has wikitext: not compared", a.display())),
        "{}",
        text(&o)
    );
    let o = evalkit(&["compare", a.to_str().expect("utf8"), disjoint.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("arc_easy: the runs evaluated no row in common (a has 40, b has 20)")
            && text(&o).contains("nothing to compare"),
        "{}",
        text(&o)
    );
    // Runs with no evaluation in common are refused, naming what each has.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).expect("folder");
    let renamed = std::fs::read_to_string(b.join("results.json"))
        .expect("results")
        .replace("\"arc_easy\"", "\"arc_other\"")
        .replace("\"wikitext\"", "\"wiki_other\"");
    std::fs::write(other.join("results.json"), renamed).expect("write");
    let o = evalkit(&["compare", a.to_str().expect("utf8"), other.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("share no evaluation") && text(&o).contains("arc_other"),
        "{}",
        text(&o)
    );

    // A run that asked a different question on a shared row is refused.
    let c = tmp.path().join("c");
    run("stories260K-hf", &c);
    let path = c.join("samples_arc_easy.jsonl");
    let changed = std::fs::read_to_string(&path)
        .expect("samples")
        .replacen("Question: ", "Question: Really, ", 1);
    std::fs::write(&path, changed).expect("write");
    let results = std::fs::read_to_string(c.join("results.json")).expect("results");
    let fp = serde_json::from_str::<serde_json::Value>(&results).expect("json")["results"]["arc_easy"]["fingerprint"]
        .as_str()
        .expect("fp")
        .to_string();
    std::fs::write(c.join("results.json"), results.replace(&fp, "0123456789abcdef")).expect("write");
    let o = evalkit(&["compare", a.to_str().expect("utf8"), c.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("asked different questions") && text(&o).contains("row 0"),
        "{}",
        text(&o)
    );
}

/// An evaluation that fails on a row of its own (an ending longer than the model, found when
/// the row is tokenized) does not stop the others: their results are written, the exit code is
/// 2, and the journal is kept, so the same command after the fix reuses their work.
#[test]
fn one_failing_evaluation_leaves_the_others_results() {
    let tmp = crate::tempdir!("cli-partial");
    let data = tmp.path().join("data");
    let arc = data.join("arc/ARC-Easy");
    std::fs::create_dir_all(&arc).expect("mkdir");
    let real = std::fs::read_to_string(data_dir().join("arc/ARC-Easy/ARC-Easy-Test.jsonl")).expect("arc");
    let head: Vec<&str> = real.lines().take(6).collect();
    std::fs::write(arc.join("ARC-Easy-Test.jsonl"), head.join("\n")).expect("write");
    let hs = data.join("hellaswag");
    std::fs::create_dir_all(&hs).expect("mkdir");
    let write_hellaswag = |long_ending: bool| {
        let row = |i: u32, label: u32, first: &str| {
            format!(
                r#"{{"idx": {i}, "ctx": "A man is sitting on a roof. he", "label": {label}, "endings": ["{first}", "is ripping tiles off.", "is holding a cube.", "starts pulling up roofing."]}}"#
            )
        };
        let long = "is using wrap ".repeat(if long_ending { 200 } else { 1 });
        let part1 = [
            row(0, 3, "is using wrap."),
            row(1, 1, long.trim_end()),
            row(2, 0, "is using wrap."),
        ]
        .join("\n");
        std::fs::write(hs.join("hellaswag_val_klosax.part1of3.jsonl"), part1).expect("write");
        let part2 = row(3, 1, "is using wrap.");
        std::fs::write(hs.join("hellaswag_val_klosax.part2of3.jsonl"), part2).expect("write");
        let part3 = row(4, 2, "is using wrap.");
        std::fs::write(hs.join("hellaswag_val_klosax.part3of3.jsonl"), part3).expect("write");
    };
    write_hellaswag(true);
    let out = tmp.path().join("out");
    let model = model_dir("stories260K-hf");
    let args = [
        "run",
        "-q",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "arc_easy,hellaswag",
        "--chunk-size",
        "1",
        "--batch-size",
        "2",
        "--limit",
        "10",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
        // (Holds wherever hellaswag is reported; says why where it is not.)
        "--min",
        "hellaswag.acc=0",
    ];
    let o = evalkit(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o)
            .contains("gate failed: hellaswag.acc was not reported: hellaswag failed (evaluation `hellaswag`, row 1"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("evaluation `hellaswag`, row 1: a continuation of 1800 tokens is longer"),
        "{}",
        text(&o)
    );
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["results"]["arc_easy"]["n"], 6);
    assert!(doc["results"].get("hellaswag").is_none());
    assert!(out.join(".journal").is_dir(), "the journal is kept");
    assert!(doc["failed"]["hellaswag"].as_str().is_some_and(|m| m.contains("row 1")));
    let shown = evalkit(&["show", out.to_str().expect("utf8")]);
    assert!(
        text(&shown).contains("note: hellaswag: evaluation `hellaswag`, row 1: a continuation of 1800 tokens"),
        "{}",
        text(&shown)
    );
    // Reports say what is missing and why.
    let md = text(&evalkit(&["report", "--format", "md", out.to_str().expect("utf8")]));
    assert!(
        md.contains("**Not reported:**\n\n- `hellaswag`: evaluation `hellaswag`, row 1: a continuation"),
        "{md}"
    );
    let page = tmp.path().join("page");
    let o = evalkit(&[
        "report",
        out.to_str().expect("utf8"),
        "--output",
        page.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(page.join("report.html")).expect("report.html");
    assert!(
        html.contains("<li><strong>hellaswag</strong>: evaluation `hellaswag`, row 1: a continuation"),
        "no failure in the page"
    );

    write_hellaswag(false);
    let o = evalkit(&args);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert_eq!(doc["results"]["hellaswag"]["n"], 5);
    assert_eq!(doc["results"]["arc_easy"]["chunks_computed"], 0, "{doc:#}");
    assert!(!out.join(".journal").exists());
    // What it says: the work read back, and that --limit asked for more rows than there are.
    assert!(
        text(&o).contains("note: arc_easy: 3 of 3 chunks were read back from the journal"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains(
            "note: --limit 10: 2 task(s) have fewer rows, all of which were evaluated: arc_easy 6, hellaswag 5"
        ),
        "{}",
        text(&o)
    );
    // A later run of fewer tasks into the same folder says which samples files are not its own.
    let arc_only: Vec<&str> = args
        .iter()
        .filter(|&&a| a != "--min" && a != "hellaswag.acc=0")
        .map(|&a| if a == "arc_easy,hellaswag" { "arc_easy" } else { a })
        .collect();
    // (A report of this run, in its folder, is one of the earlier run once the next one writes.)
    let md = evalkit(&[
        "report",
        "--format",
        "md",
        out.to_str().expect("utf8"),
        "--output",
        out.to_str().expect("utf8"),
    ]);
    assert!(md.status.success(), "{}", text(&md));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = evalkit(&arc_only);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("also holds samples_hellaswag.jsonl from an earlier run"),
        "{}",
        text(&o)
    );
    let d = out.display();
    assert!(
        text(&o).contains(&format!(
            "also holds report.md of an earlier run; `evalkit report --format md --output {d} {d}` writes this run's"
        )),
        "{}",
        text(&o)
    );
    // A task whose data does not load (no PIQA files here) is named in results.json too, so
    // that `show` and reports never pass the run off as complete.
    let with_piqa: Vec<&str> = arc_only
        .iter()
        .map(|&a| if a == "arc_easy" { "arc_easy,piqa" } else { a })
        .collect();
    let o = evalkit(&with_piqa);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    assert!(
        doc["failed"]["piqa"]
            .as_str()
            .is_some_and(|m| m.starts_with("not loaded: ") && m.contains("missing file")),
        "{doc:#}"
    );
    let shown = evalkit(&["show", out.to_str().expect("utf8")]);
    assert!(text(&shown).contains("note: piqa: not loaded: "), "{}", text(&shown));
}

#[test]
fn checkpoint_tensors_the_model_does_not_use_are_warned_of() {
    use tch::{Kind, Tensor};
    let tmp = crate::tempdir!("cli-unused-tensors");
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let shared = model_dir("stories260K-hf");
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(shared.join(f), dir.join(f)).expect("copy");
    }
    // A query bias the config does not ask for (`attention_bias`), and the rotary frequencies
    // older checkpoints stored (the model computes them: no warning).
    let mut tensors = Tensor::read_safetensors(shared.join("model.safetensors")).expect("read");
    let extra = |name: &str, n: i64| (name.to_string(), Tensor::zeros([n], (Kind::Float, tch::Device::Cpu)));
    tensors.push(extra("model.layers.0.self_attn.q_proj.bias", 64));
    tensors.push(extra("model.layers.0.self_attn.rotary_emb.inv_freq", 4));
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).expect("write");
    let out = tmp.path().join("out");
    let run_on = |model: &std::path::Path, log: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_evalkit"));
        c.args([
            "run",
            "-q",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--tasks",
            "arc_easy",
            "--limit",
            "1",
        ])
        .arg("--model")
        .arg(model)
        .arg("--data-dir")
        .arg(data_dir())
        .arg("--output")
        .arg(&out)
        .env_remove("EVALKIT_LOG");
        if let Some(level) = log {
            c.env("EVALKIT_LOG", level);
        }
        c.output().expect("runs")
    };
    let run = |log: Option<&str>| run_on(&dir, log);
    // The test checkpoints as they are: nothing to warn of.
    for name in ["stories260K-hf", "tiny-gpt2-random"] {
        let o = run_on(&model_dir(name), None);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("warning"),
            "{name}: {}",
            text(&o)
        );
    }
    let o = run(None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: ")
            && err.contains(
                "1 tensor of the checkpoint is not used by the model: `model.layers.0.self_attn.q_proj.bias`"
            )
            && !err.contains("inv_freq"),
        "{err}"
    );
    let o = run(Some("off"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"), "{}", text(&o));
    let o = run(Some("loud"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("EVALKIT_LOG=\"loud\" is no level"), "{err}");
}

/// `evalkit run -q` on one CPU thread of `tasks` with `--limit 1`, the model in `model`, the
/// data in `data`, into `out`, with `extra` arguments.
fn run_one_row(
    model: &std::path::Path,
    data: &std::path::Path,
    out: &std::path::Path,
    tasks: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "run",
        "-q",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--tasks",
        tasks,
        "--limit",
        "1",
    ];
    args.extend_from_slice(extra);
    let paths = [
        ("--model", model.to_str().expect("utf-8")),
        ("--data-dir", data.to_str().expect("utf-8")),
        ("--output", out.to_str().expect("utf-8")),
    ];
    args.extend(paths.iter().flat_map(|(flag, path)| [*flag, *path]));
    evalkit(&args)
}

/// A model too short for a task's generation length: generation is lowered as lm-eval lowers
/// it, recorded in results.json, and said on the console with the rows cut to fit.
#[test]
fn a_short_model_says_its_generation_was_lowered() {
    let tmp = crate::tempdir!("cli-short-model");
    let dir = crate::util::copy_checkpoint("stories260K-hf", &tmp.path().join("model"));
    let mut config: serde_json::Value = crate::util::read_json(&dir.join("config.json"));
    config["max_position_embeddings"] = 64.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let out = tmp.path().join("out");
    let o = run_one_row(&dir, &data_dir(), &out, "gsm8k", &["--num-fewshot", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note: gsm8k: at most 32 new tokens were generated, not the 256 asked (no room for a prompt in max length 64)"),
        "{err}"
    );
}

/// Generation settings in a run where no task generates are said to be ignored.
#[test]
fn generation_settings_without_a_generating_task_are_noted() {
    let tmp = crate::tempdir!("cli-generation-settings");
    let out = tmp.path().join("out");
    let flags = ["--samples-per-prompt", "3", "--temperature", "0.5"];
    let run = |tasks: &str| run_one_row(&model_dir("stories260K-hf"), &data_dir(), &out, tasks, &flags);
    let note =
        "note: --samples-per-prompt, --temperature only apply to tasks that generate, and none of these does: ignored";
    let o = run("arc_easy");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(note), "{}", text(&o));
    let o = run("arc_easy,gsm8k");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("only apply to tasks that generate"), "{}", text(&o));
}

/// An MMLU subject whose file is malformed fails alone: the other subjects run, and the
/// subject and its groups are named under `failed` (exit status 2), as a task that does not
/// load is.
#[test]
fn a_malformed_mmlu_subject_fails_alone() {
    let tmp = crate::tempdir!("cli-mmlu-subject");
    let data = tmp.path().join("data");
    for split in ["dev", "test"] {
        let (from, to) = (data_dir().join("mmlu").join(split), data.join("mmlu").join(split));
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in std::fs::read_dir(&from).expect("mmlu") {
            let f = f.expect("entry").path();
            std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let bad = data.join("mmlu/test/abstract_algebra_test.csv");
    std::fs::write(&bad, "\"Too few columns\",0,4,B\n").expect("write");
    let out = tmp.path().join("out");
    let o = run_one_row(
        &model_dir("stories260K-hf"),
        &data,
        &out,
        "mmlu_stem",
        &["--num-fewshot", "0"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("abstract_algebra_test.csv"), "{}", text(&o));
    let doc: serde_json::Value = crate::util::read_json(&out.join("results.json"));
    let results = doc["results"].as_object().expect("results");
    assert_eq!(results.len(), 18, "the other STEM subjects: {doc}");
    assert!(results.contains_key("mmlu_anatomy") && !results.contains_key("mmlu_abstract_algebra"));
    assert!(
        doc["failed"]["mmlu_abstract_algebra"]
            .as_str()
            .is_some_and(|m| m.contains("not loaded")),
        "{doc}"
    );
    assert_eq!(
        doc["failed"]["mmlu_stem"],
        "not reported: its member `mmlu_abstract_algebra` failed"
    );
}
