//! A killed run resumes: the CLI is run as a real process, killed with SIGKILL once some chunks
//! are journaled, and rerun; the results equal an uninterrupted run's, and only the unfinished
//! chunks are recomputed.

use crate::util::{data_dir, model_dir, read_json as read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn evalkit(out: &Path) -> Command {
    evalkit_on(&model_dir("stories260K-hf"), out)
}

fn evalkit_on(model: &Path, out: &Path) -> Command {
    evalkit_tasks(model, out, "hellaswag,synthetic_sort")
}

fn evalkit_tasks(model: &Path, out: &Path, tasks: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evalkit"));
    c.args([
        "run",
        "--device",
        "cpu",
        "--tasks",
        tasks,
        "--limit",
        "240",
        "--batch-size",
        "1",
        "--chunk-size",
        "1",
        "-q",
    ])
    .arg("--model")
    .arg(model)
    .arg("--data-dir")
    .arg(data_dir())
    .arg("--output")
    .arg(out)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

/// Waits until the running `child` has journaled `n` chunks into `out`.
fn wait_for_chunks(child: &mut std::process::Child, out: &Path, n: usize) {
    let start = Instant::now();
    while journaled_chunks(out) < n {
        assert!(
            child.try_wait().expect("alive").is_none(),
            "the run finished before it could be stopped"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no chunk journaled in time");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn journaled_chunks(out: &Path) -> usize {
    crate::util::journaled_in(&out.join(".journal"))
}

fn without_counters(mut results: serde_json::Value) -> serde_json::Value {
    for (_, r) in results.as_object_mut().expect("results").iter_mut() {
        let r = r.as_object_mut().expect("task");
        for k in ["chunks_computed", "chunks_resumed", "seconds", "wall_seconds"] {
            r.remove(k);
        }
    }
    results
}

/// Seconds journaled per evaluation (the cost of the chunks finished so far).
fn journaled_seconds(out: &Path, task: &str) -> f64 {
    let text = std::fs::read_to_string(out.join(".journal").join(format!("{task}.journal.jsonl"))).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["work"]["seconds"].as_f64())
        .sum()
}

#[test]
fn killed_run_resumes_with_identical_results() {
    let tmp = crate::tempdir!("resume");
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    let status = evalkit(&full).status().expect("runs");
    assert!(status.success());

    let mut child = evalkit(&killed).spawn().expect("starts");
    wait_for_chunks(&mut child, &killed, 20);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let done_before = journaled_chunks(&killed);
    let seconds_before: Vec<f64> = ["hellaswag", "synthetic_sort"]
        .iter()
        .map(|t| journaled_seconds(&killed, t))
        .collect();
    assert!(!killed.join("results.json").exists(), "killed before the end");
    assert!(done_before < 480, "some chunks were left");

    let out = evalkit(&killed).output().expect("reruns");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (read(&full.join("results.json")), read(&killed.join("results.json")));
    let resumed: u64 = ["hellaswag", "synthetic_sort"]
        .iter()
        .map(|t| b["results"][t]["chunks_resumed"].as_u64().expect("n"))
        .sum();
    let computed: u64 = ["hellaswag", "synthetic_sort"]
        .iter()
        .map(|t| b["results"][t]["chunks_computed"].as_u64().expect("n"))
        .sum();
    assert_eq!(resumed as usize, done_before, "every journaled chunk is reused");
    assert_eq!(resumed + computed, 240 + 100, "the rest is computed once");
    // Everything but the counters and times is identical, the token counts included: the
    // resumed run reports the journaled chunks' tokens with its own.
    assert_eq!(
        without_counters(a["results"].clone()),
        without_counters(b["results"].clone())
    );
    for (t, before) in ["hellaswag", "synthetic_sort"].iter().zip(seconds_before) {
        assert!(b["results"][t]["tokens_forwarded"].as_u64() > Some(0), "{t}");
        let seconds = b["results"][t]["seconds"].as_f64().expect("seconds");
        assert!(
            seconds >= before && seconds > 0.0,
            "{t}: {seconds} s, {before} s journaled"
        );
    }
    for t in ["hellaswag", "synthetic_sort"] {
        let f = format!("samples_{t}.jsonl");
        assert_eq!(
            std::fs::read(full.join(&f)).expect("samples"),
            std::fs::read(killed.join(&f)).expect("samples"),
            "{f}"
        );
    }
    assert!(
        !killed.join(".journal").exists(),
        "the journal goes once results are written"
    );
}

/// Ctrl-C (SIGINT) stops a run as the signal does (the shell sees status 130), saying where the
/// finished chunks are journaled and that the same command resumes from them.
#[test]
fn ctrl_c_says_how_to_resume() {
    let tmp = crate::tempdir!("ctrl-c");
    let out = tmp.path().join("out");
    let mut command = evalkit(&out);
    use std::os::unix::process::CommandExt;
    // SAFETY: only resets the signal's disposition between fork and exec (async-signal-safe),
    // so that a test run started with SIGINT ignored (a background job) still tests Ctrl-C.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("starts");
    wait_for_chunks(&mut child, &out, 5);
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sends SIGINT to the child this test started (and has not reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let o = child.wait_with_output().expect("reaped");
    let stderr = String::from_utf8_lossy(&o.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGINT), "{stderr}");
    assert!(
        stderr.contains("interrupted: the finished chunks are journaled in")
            && stderr.contains("the same command resumes from them"),
        "{stderr}"
    );
    assert!(journaled_chunks(&out) >= 5 && !out.join("results.json").exists());
}

/// A checkpoint overwritten at the same path (`checkpoints/latest`) is another model: the rerun
/// discards what the old weights journaled, says so, and computes everything afresh.
#[test]
fn other_weights_at_the_same_path_start_afresh() {
    let tmp = crate::tempdir!("resume-weights");
    let (model, out) = (tmp.path().join("latest"), tmp.path().join("out"));
    crate::util::copy_checkpoint("stories260K-hf", &model);
    let mut child = evalkit_on(&model, &out).spawn().expect("starts");
    wait_for_chunks(&mut child, &out, 5);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // New weights of the same shape, as a training step would write them.
    let other = tmp.path().join("other");
    let made = Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .args(["random-checkpoint", "--seed", "1", "--config"])
        .arg(model.join("config.json"))
        .arg("--tokenizer")
        .arg(&model)
        .arg("--output")
        .arg(&other)
        .output()
        .expect("random-checkpoint runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::copy(other.join("model.safetensors"), model.join("model.safetensors")).expect("overwrite");
    let o = evalkit_on(&model, &out).output().expect("reruns");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Said as the journal is opened (a run interrupted again has said it), and in the end.
    assert!(
        stderr.contains("hellaswag.journal.jsonl: ") && stderr.contains("are discarded; this run computes them afresh"),
        "{stderr}"
    );
    assert!(stderr.contains("discarded, and computed afresh"), "{stderr}");
    let results = read(&out.join("results.json"));
    for task in ["hellaswag", "synthetic_sort"] {
        assert_eq!(results["results"][task]["chunks_resumed"], 0, "{task}");
    }
    assert!(results["results"]["hellaswag"]["chunks_discarded"].as_u64() >= Some(5));
}

/// A run of fewer tasks into the folder of an interrupted run removes only its own journals:
/// the others' finished chunks stay (with a warning naming them), and the interrupted run's
/// command resumes them.
#[test]
fn a_run_of_other_tasks_keeps_the_interrupted_runs_journals() {
    let tmp = crate::tempdir!("resume-other-tasks");
    let out = tmp.path().join("out");
    let mut child = evalkit(&out).spawn().expect("starts");
    wait_for_chunks(&mut child, &out, 5);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let journaled = journaled_chunks(&out);

    let o = evalkit_tasks(&model_dir("stories260K-hf"), &out, "synthetic_sort")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("keeps the journals of another run into this folder (hellaswag.journal.jsonl)"),
        "{stderr}"
    );
    let journal = out.join(".journal");
    assert!(
        !journal.join("synthetic_sort.journal.jsonl").exists(),
        "its own journal goes"
    );
    assert_eq!(journaled_chunks(&out), journaled, "the other run's chunks stay");

    let o = evalkit(&out).output().expect("resumes");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results = read(&out.join("results.json"));
    assert_eq!(
        results["results"]["hellaswag"]["chunks_resumed"].as_u64(),
        Some(journaled as u64)
    );
    assert!(!journal.exists(), "nothing is left to keep");
}
