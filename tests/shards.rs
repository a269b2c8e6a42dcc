//! Data-parallel runs, as real processes: `--shards 3` on one machine, shards launched one by
//! one with torchrun's variables (one killed with SIGKILL and rerun alone, one started with
//! other settings and refused, a dead merger's work finished by `evalkit merge` without the
//! checkpoint's weights), and torchrun itself with `--no-python`. Each run's samples and
//! results must be those of one process (values to 1e-5 relative, everything else equal).

use crate::util::{data_dir, model_dir, read_json as read};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One task of each kind that scores, and generation.
const TASKS: &[&str] = &["arc_easy", "lambada_openai", "wikitext", "gsm8k"];
/// Scoring only (fast enough to run many chunks).
const SCORING: &[&str] = &["arc_easy", "hellaswag"];

/// `evalkit run` of `tasks` on stories260K with `extra` arguments, into `out`.
fn evalkit(out: &Path, tasks: &[&str], limit: usize, extra: &[&str]) -> Command {
    evalkit_on(&model_dir("stories260K-hf"), out, tasks, limit, extra)
}

/// [`evalkit`] on the checkpoint in `model`.
fn evalkit_on(model: &Path, out: &Path, tasks: &[&str], limit: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evalkit"));
    c.args(["run", "-q", "--threads", "1", "--device", "cpu", "--tasks"])
        .arg(tasks.join(","))
        .args(["--limit", &limit.to_string(), "--batch-size", "2", "--chunk-size", "1"])
        .arg("--model")
        .arg(model)
        .arg("--data-dir")
        .arg(data_dir())
        .arg("--output")
        .arg(out)
        .args(extra)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("SLURM_NTASKS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The same command as shard `rank` of `world`, launched as torchrun launches it.
fn shard(out: &Path, tasks: &[&str], limit: usize, rank: usize, world: usize, extra: &[&str]) -> Command {
    as_shard(evalkit(out, tasks, limit, extra), rank, world)
}

fn as_shard(mut c: Command, rank: usize, world: usize) -> Command {
    c.env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string());
    c
}

fn ok(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "failed: {err}\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// Equal, numbers to 1e-5 relative.
fn close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().expect("f64"), y.as_f64().expect("f64"));
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1e-30),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(x), keys(y), "{at}: keys");
            for (k, v) in x {
                close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// The run in `b` has the samples and the results of the one-process run in `a` (up to the
/// counters of chunks and seconds, which describe how it ran).
fn same_run(a: &Path, b: &Path, tasks: &[&str]) {
    for &t in tasks {
        let f = format!("samples_{t}.jsonl");
        let (x, y) = (crate::util::samples(a, t), crate::util::samples(b, t));
        assert!(!x.is_empty(), "{f}");
        close(&Value::Array(x), &Value::Array(y), &f);
    }
    let strip = |mut v: Value| {
        for (_, r) in v["results"].as_object_mut().expect("results").iter_mut() {
            for k in [
                "chunks_computed",
                "chunks_resumed",
                "seconds",
                "wall_seconds",
                "floor_seconds",
                "efficiency",
                "by_shard",
            ] {
                r.as_object_mut().expect("entry").remove(k);
            }
        }
        json_pick(v)
    };
    let (x, y) = (
        strip(read(&a.join("results.json"))),
        strip(read(&b.join("results.json"))),
    );
    close(&x, &y, "results.json");
    assert!(
        !b.join(".journal").exists(),
        "the journals go once the results are written"
    );
}

fn json_pick(v: Value) -> Value {
    serde_json::json!({"results": v["results"], "groups": v["groups"]})
}

fn reference(root: &Path, tasks: &[&str], limit: usize) -> PathBuf {
    let dir = root.join("one-process");
    ok(evalkit(&dir, tasks, limit, &[]).output().expect("runs"));
    dir
}

#[test]
fn three_local_shards_give_the_samples_of_one_process() {
    let tmp = crate::tempdir!("shards-local");
    let one = reference(tmp.path(), TASKS, 24);
    let three = tmp.path().join("three");
    // (--floor: each shard measures its own speed; that must not read as other settings.)
    let o = evalkit(&three, TASKS, 24, &["--shards", "3", "--floor"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    ok(o);
    // The process that started the workers prints the table once.
    assert_eq!(stdout.matches("lambada_openai  perplexity").count(), 1, "{stdout}");
    same_run(&one, &three, TASKS);
    let r = read(&three.join("results.json"));
    assert_eq!(r["config"]["shards"], 3);
    // (same_run compared tokens_forwarded too: the shares add up to the one process's work.)
    // The records are the shards', not the merging process's: every chunk computed by one
    // of them, and each shard's floor and seconds, priced at its own measured speed.
    assert_eq!(r["config"]["device"], "Cpu", "{r}");
    assert!(
        r["config"]["raw_throughput"].is_null(),
        "each shard's speed is in by_shard: {r}"
    );
    let o = read(&one.join("results.json"));
    for t in TASKS {
        let (e, single) = (&r["results"][t], &o["results"][t]);
        assert_eq!(e["chunks_computed"], single["chunks_computed"], "{t}: {e}");
        assert_eq!(e["chunks_resumed"], 0, "{t}: {e}");
        let shards = e["by_shard"].as_array().expect("by_shard");
        assert_eq!(shards.len(), 3, "{t}: {e}");
        let sum = |k: &str| shards.iter().map(|s| s[k].as_f64().expect(k)).sum::<f64>();
        let (wall, floor) = (sum("wall_seconds"), sum("floor_seconds"));
        assert!(wall > 0.0 && floor > 0.0, "{t}: {e}");
        assert!(
            (e["wall_seconds"].as_f64().expect("wall") - wall).abs() < 1e-9,
            "{t}: {e}"
        );
        assert!(
            (e["efficiency"].as_f64().expect("efficiency") - floor / wall).abs() < 1e-9,
            "{t}: {e}"
        );
    }
}

#[test]
fn a_shard_with_nothing_to_compute_has_no_efficiency() {
    let tmp = crate::tempdir!("shards-empty-share");
    let out = tmp.path().join("out");
    // Two rows in batches of two: one batch, so shards 1 and 2 have empty shares.
    ok(evalkit(&out, &["arc_easy"], 2, &["--shards", "3", "--floor"])
        .output()
        .expect("runs"));
    let r = read(&out.join("results.json"));
    let e = &r["results"]["arc_easy"];
    let shards = e["by_shard"].as_array().expect("by_shard");
    let computed: Vec<u64> = shards
        .iter()
        .map(|s| s["chunks_computed"].as_u64().expect("n"))
        .collect();
    assert_eq!(computed.iter().filter(|&&c| c == 0).count(), 2, "{e}");
    for s in shards {
        // Every shard's seconds count in the run's; an empty share has no efficiency of its own.
        assert!(s["wall_seconds"].as_f64() > Some(0.0), "{s}");
        assert_eq!(s["efficiency"].is_null(), s["chunks_computed"] == 0, "{s}");
        assert!(
            s["raw_throughput"]["body_tokens_per_second"].as_f64() > Some(0.0),
            "{s}"
        );
    }
    assert!(e["efficiency"].as_f64() > Some(0.0), "{e}");
}

/// Sum of `key` over `tasks`' results in `r`.
fn total(r: &Value, tasks: &[&str], key: &str) -> u64 {
    tasks.iter().map(|t| r["results"][t][key].as_u64().expect(key)).sum()
}

#[test]
fn shards_that_fail_before_the_run_ask_for_the_command_again() {
    let tmp = crate::tempdir!("shards-unknown-task");
    let out = tmp.path().join("out");
    // A checkpoint that is not there: each shard fails opening it.
    let missing = tmp.path().join("no-checkpoint");
    let o = evalkit_on(&missing, &out, &["arc_easy"], 4, &["--shards", "2"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("no-checkpoint"), "{err}");
    assert!(
        err.contains("of 2 failed before any began the run") && !err.contains("Rerun each failed shard alone"),
        "no shard to rerun alone: {err}"
    );
    // An unknown task is refused before any shard starts.
    let o = evalkit(&out, &["no_such_task"], 4, &["--shards", "2"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown task `no_such_task`") && !err.contains("shard"),
        "{err}"
    );
}

/// A run journaled with `--shards 2` and started again with `--shards 3` is told to use 2 or
/// to start afresh, not to rerun shards with the settings that were refused; when every shard
/// fails on its settings, no shard is offered to rerun alone.
#[test]
fn shards_started_with_other_settings_are_told_how_to_resume() {
    let tmp = crate::tempdir!("shards-other-settings");
    let out = tmp.path().join("out");
    let partial = |world: &str| {
        let o = evalkit(&out, SCORING, 4, &["--shards", world]).output().expect("runs");
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // The settings record an unfinished run of 2 shards leaves (trimmed to its shard count:
    // its other settings then differ from any run's).
    std::fs::create_dir_all(out.join(".journal")).expect("journal folder");
    std::fs::write(out.join(".journal/shards.json"), r#"{"shards": 2}"#).expect("record");
    let (ok, err) = partial("3");
    assert!(!ok, "{err}");
    assert!(
        err.contains("holds the journal of a run with --shards 2: rerun that with --shards 2")
            && !err.contains("Rerun each failed shard alone"),
        "{err}"
    );
    // Same number of shards, other settings: every shard is refused.
    let (ok, err) = partial("2");
    assert!(!ok, "{err}");
    assert!(
        err.contains("started with settings other than the run's")
            && err.contains("every shard failed")
            && !err.contains("Rerun each failed shard alone"),
        "{err}"
    );
}

/// `evalkit merge out`, from another directory than the run's (it enters the run's own).
fn merge(out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evalkit"))
        .args(["-q", "merge"])
        .arg(out)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("runs")
}

fn journaled(out: &Path, rank: usize, world: usize) -> usize {
    crate::util::journaled_in(&out.join(".journal").join(format!("rank-{rank}-of-{world}")))
}

#[test]
fn a_killed_shard_rerun_alone_completes_the_run() {
    let tmp = crate::tempdir!("shards-killed");
    let limit = 120;
    let one = reference(tmp.path(), SCORING, limit);
    let out = tmp.path().join("sharded");
    for rank in [0, 2] {
        let err = ok(shard(&out, SCORING, limit, rank, 3, &[]).output().expect("runs"));
        assert!(err.contains("not done yet"), "{err}");
    }
    assert!(!out.join("results.json").exists(), "shard 1 has not run");

    let mut child = shard(&out, SCORING, limit, 1, 3, &[])
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let start = Instant::now();
    while journaled(&out, 1, 3) < 4 {
        assert!(
            child.try_wait().expect("alive").is_none(),
            "shard 1 finished before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "shard 1 journaled nothing in time"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // While it runs (stopped, so that it cannot finish meanwhile), neither a second shard 1
    // nor a whole run joins it.
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sends SIGSTOP to the child this test started (and has not reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let twin = shard(&out, SCORING, limit, 1, 3, &[]).output().expect("runs");
    let err = String::from_utf8_lossy(&twin.stderr);
    assert!(
        !twin.status.success() && err.contains("shard 1 of 3 is already running"),
        "{err}"
    );
    let whole = evalkit(&out, SCORING, limit, &[]).output().expect("runs");
    let err = String::from_utf8_lossy(&whole.stderr);
    assert!(!whole.status.success() && err.contains("is writing into"), "{err}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let at_kill = journaled(&out, 1, 3);
    assert!(!out.join("results.json").exists(), "killed before the end");

    // Merging now names the shard whose share is missing.
    let m = merge(&out);
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(
        !m.status.success() && err.contains("waits for shard(s) 1 of 3"),
        "{err}"
    );

    // A shard with other settings is refused, naming what differs.
    let bad = shard(&out, SCORING, limit, 1, 3, &["--seed", "7"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("seed 7 here, 1234 in the run") && err.contains("shards.json"),
        "{err}"
    );

    // Rerun alone, shard 1 resumes its journal, finishes last and writes the results.
    let o = shard(&out, SCORING, limit, 1, 3, &[]).output().expect("reruns");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    ok(o);
    assert!(
        stdout.contains("arc_easy"),
        "the merging shard prints the table: {stdout}"
    );
    same_run(&one, &out, SCORING);
    // The rerun resumed what the killed process had journaled, and only that.
    let (r, o) = (read(&out.join("results.json")), read(&one.join("results.json")));
    let resumed = total(&r, SCORING, "chunks_resumed");
    assert!(
        (4..=at_kill as u64).contains(&resumed),
        "{resumed} resumed, {at_kill} journaled at the kill"
    );
    assert_eq!(
        total(&r, SCORING, "chunks_computed") + resumed,
        total(&o, SCORING, "chunks_computed"),
        "{r}"
    );
}

/// The process that started the shards stopped with SIGTERM (`timeout`, a cancelled job):
/// its workers end with it, and the same command run again resumes and completes the run.
#[test]
fn workers_end_with_the_process_that_started_them() {
    let tmp = crate::tempdir!("shards-launcher-stopped");
    let limit = 120;
    let one = reference(tmp.path(), SCORING, limit);
    let out = tmp.path().join("sharded");
    let mut launcher = evalkit(&out, SCORING, limit, &["--shards", "2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let start = Instant::now();
    while journaled(&out, 0, 2) + journaled(&out, 1, 2) < 4 {
        assert!(launcher.try_wait().expect("alive").is_none(), "the run ended too soon");
        assert!(start.elapsed() < Duration::from_secs(120), "nothing journaled in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = libc::pid_t::try_from(launcher.id()).expect("pid");
    // SAFETY: sends SIGTERM to the child this test started (and has not reaped).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    launcher.wait().expect("reaped");
    // The workers stop journaling within moments (an orphan would go on to the end).
    std::thread::sleep(Duration::from_millis(500));
    let stopped = journaled(&out, 0, 2) + journaled(&out, 1, 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        journaled(&out, 0, 2) + journaled(&out, 1, 2),
        stopped,
        "a worker runs on"
    );
    assert!(!out.join("results.json").exists(), "stopped before the end");
    ok(evalkit(&out, SCORING, limit, &["--shards", "2"])
        .output()
        .expect("reruns"));
    same_run(&one, &out, SCORING);
    let r = read(&out.join("results.json"));
    assert!(total(&r, SCORING, "chunks_resumed") >= stopped as u64, "{r}");
}

#[test]
fn merge_writes_the_results_a_dead_merger_left() {
    let tmp = crate::tempdir!("shards-merge");
    let one = reference(tmp.path(), TASKS, 12);
    // A copy of the checkpoint, whose weights go before the merge: a merge loads no model.
    let model = crate::util::copy_checkpoint("stories260K-hf", &tmp.path().join("stories260K-hf"));
    let out = tmp.path().join("sharded");
    // At a training step, which every shard must share (it keys their journals).
    let at_step = |rank, step: &str| as_shard(evalkit_on(&model, &out, TASKS, 12, &["--step", step]), rank, 2);
    let shard = |rank| at_step(rank, "7");
    ok(shard(0).output().expect("runs"));
    let other = at_step(1, "8").output().expect("runs");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        !other.status.success() && err.contains("settings other than the run's") && err.contains("step"),
        "{err}"
    );
    // The shard that would merge finds the lock of one that died while merging.
    std::fs::write(out.join(".journal").join("merge.lock"), "").expect("lock");
    let err = ok(shard(1).output().expect("runs"));
    assert!(err.contains("another shard is writing the results"), "{err}");
    assert!(!out.join("results.json").exists());
    std::fs::remove_file(model.join("model.safetensors")).expect("weights");
    ok(merge(&out));
    same_run(&one, &out, TASKS);
    // The results record the shards' command, devices and chunks, not the merge's.
    let (r, o) = (read(&out.join("results.json")), read(&one.join("results.json")));
    assert_eq!(r["config"]["command"][0], "run");
    assert_eq!(r["config"]["step"], 7);
    assert_eq!(r["config"]["device"], "Cpu");
    for t in TASKS {
        assert_eq!(
            r["results"][t]["by_shard"].as_array().map(Vec::len),
            Some(2),
            "{t}: {r}"
        );
        assert!(r["results"][t]["wall_seconds"].as_f64() > Some(0.0), "{t}: {r}");
        assert_eq!(
            r["results"][t]["chunks_computed"], o["results"][t]["chunks_computed"],
            "{t}"
        );
    }
    let again = merge(&out);
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to merge"));
}

/// torchrun: `$EVALKIT_TORCHRUN`, else the parity venv's (scripts/parity --setup), else PATH.
fn torchrun() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EVALKIT_TORCHRUN") {
        return Some(p.into());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let venv = home.join(".cache/evalkit/parity-venv/bin/torchrun");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("torchrun"))
        .find(|p| p.is_file())
}

#[test]
fn torchrun_no_python_launch_gives_the_samples_of_one_process() {
    let Some(torchrun) = torchrun() else {
        return crate::util::skip_unless_required(
            "EVALKIT_REQUIRE_TORCHRUN",
            "torchrun was not found (set EVALKIT_TORCHRUN, or run scripts/parity --setup)",
        );
    };
    let tmp = crate::tempdir!("shards-torchrun");
    let one = reference(tmp.path(), TASKS, 12);
    let out = tmp.path().join("torchrun");
    let run = evalkit(&out, TASKS, 12, &[]);
    let mut c = Command::new(&torchrun);
    c.args(["--standalone", "--nnodes", "1", "--nproc-per-node", "3", "--no-python"])
        .arg(run.get_program())
        .args(run.get_args())
        .env("OMP_NUM_THREADS", "1");
    ok(c.output().expect("torchrun runs"));
    same_run(&one, &out, TASKS);
    assert_eq!(read(&out.join("results.json"))["config"]["shards"], 3);
}
