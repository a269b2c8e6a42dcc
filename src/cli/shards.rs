//! Data-parallel runs from the command line: `--shards N` starts N copies of this command as
//! worker processes (torchrun's variables set, so each is one shard), a launched process
//! takes its device by local rank, and `evalkit merge DIR` rebuilds a run from its shard
//! record to write the results. What a shard computes and how shares merge is
//! `evalkit_core::shard`.

use super::args::{Cli, Command, RunArgs};
use super::settings::RecordedModel;
use anyhow::{bail, Context, Result};
use evalkit::core::shard::Launch;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Set in the workers `--shards` starts: they leave the table and the gates to it.
pub const WORKER_VAR: &str = "EVALKIT_SHARD_WORKER";

/// How the process was launched: by a cluster launcher with more than one process, or not.
pub fn launch() -> Result<Option<Launch>> {
    Ok(Launch::from_env()?.filter(|l| l.world > 1))
}

/// A worker's exit status when it merged the run and wrote the results with evaluations that
/// failed on their own (listed under `failed`; it printed their errors): the run did not fail
/// as a shard does, and the process that started it exits 2 after the table.
pub const PARTIAL_EXIT: u8 = 3;

/// A worker's exit status when every evaluation of the run failed on its own (it printed
/// their errors; nothing to write): the failing shards were reopened, so the run's whole
/// command, not one shard, runs them again.
pub const ALL_FAILED_EXIT: u8 = 4;

/// True in a worker that `--shards` started.
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_VAR).is_some()
}

/// The device a shard at `local_rank` takes from `--device`: the list's entry at its local
/// rank (cycling), with `cuda` (and `auto` where CUDA is present) given the local rank's
/// index; without a launcher, a list is an error.
///
/// ```text
/// cuda:0,cuda:1 at local rank 1 → cuda:1      cuda at local rank 3 → cuda:3      cpu → cpu
/// ```
pub fn device_for(devices: &str, local_rank: Option<usize>) -> Result<String> {
    let list: Vec<&str> = devices.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    let Some(local) = local_rank else {
        if list.len() > 1 {
            bail!("--device {devices}: a list of devices needs --shards N (or a launcher such as torchrun)");
        }
        return Ok(devices.to_string());
    };
    let Some(&picked) = list.get(local % list.len().max(1)) else {
        bail!("--device is empty");
    };
    Ok(match picked {
        "cuda" if tch::Cuda::device_count() > 0 => format!("cuda:{}", local % tch::Cuda::device_count() as usize),
        "cuda" => format!("cuda:{local}"),
        "auto" if tch::Cuda::is_available() => format!("cuda:{}", local % tch::Cuda::device_count().max(1) as usize),
        "auto" => "cpu".into(),
        other => other.to_string(),
    })
}

/// Starts `shards` workers running this same command, waits for them, and returns the run's
/// results (written by the last worker to finish). A worker that fails is named with the
/// command that reruns it alone.
pub fn spawn(a: &RunArgs, shards: usize, threads: Option<i32>, output: &Path) -> Result<Value> {
    // A journal of a run with another number of shards resumes only with that number.
    let recorded = output.join(".journal").join("shards.json");
    let recorded_world = std::fs::read_to_string(&recorded)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["shards"].as_u64());
    if let Some(world) = recorded_world.filter(|&w| w != shards as u64) {
        bail!(
            "{} holds the journal of a run with --shards {world}: rerun that with --shards {world} to resume it, or remove {} (or give another --output) to start afresh with --shards {shards}",
            output.display(),
            output.join(".journal").display()
        );
    }
    let exe = std::env::current_exe().context("finding this program to start the shards")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let devices: Vec<&str> = a.model.device.split(',').collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut children = vec![];
    for rank in 0..shards {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(&args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", shards.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", shards.to_string())
            .env(WORKER_VAR, "1");
        // CPU shards split the cores unless the threads were set.
        if threads.is_none()
            && devices
                .iter()
                .all(|d| *d == "cpu" || (*d == "auto" && !tch::Cuda::is_available()))
        {
            cmd.env("EVALKIT_THREADS", (cores / shards).max(1).to_string());
        }
        // A worker ends with the process that started it (SIGTERM to it, `timeout`, a CI job
        // cancelled): none runs on as an orphan beside the workers of a rerun.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            let parent = std::process::id();
            // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid,
            // _exit); the death signal is kept across exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent died before the signal was asked for.
                    if libc::getppid() as u32 != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        match cmd.spawn() {
            Ok(child) => children.push((rank, child)),
            Err(e) => {
                for (_, mut c) in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(e).with_context(|| format!("starting shard {rank} of {shards}"));
            }
        }
    }
    let (mut failed, mut failed_ranks, mut all_failed) = (vec![], vec![], false);
    for (rank, mut child) in children {
        let status = child.wait().with_context(|| format!("waiting for shard {rank}"))?;
        if status.code() == Some(i32::from(ALL_FAILED_EXIT)) {
            all_failed = true;
        } else if !status.success() && status.code() != Some(i32::from(PARTIAL_EXIT)) {
            failed.push(format!("shard {rank} ({status})"));
            failed_ranks.push(rank);
        }
    }
    if all_failed && failed.is_empty() {
        bail!(
            "every evaluation failed on its own (the errors above): fix them, then run the same command again (the journal in {} keeps the shards' work)",
            output.join(".journal").display()
        );
    }
    if !failed.is_empty() && !output.join(".journal").exists() {
        bail!(
            "{} of {shards} failed before any began the run (nothing is journaled): fix what they report above, then run the command again",
            failed.join(", ")
        );
    }
    if failed.len() == shards {
        bail!(
            "every shard failed: fix what they report above, then run the command again (a shard started with settings other than the run's resumes only with the run's command; removing {} starts afresh)",
            output.join(".journal").display()
        );
    }
    if !failed.is_empty() {
        let rerun: Vec<String> = std::env::args().skip(1).map(|s| shell_quote(&s)).collect();
        let commands: Vec<String> = failed_ranks
            .iter()
            .map(|r| format!("  RANK={r} WORLD_SIZE={shards} evalkit {}", rerun.join(" ")))
            .collect();
        bail!(
            "{} of {shards} failed; each finished chunk is journaled in {}. Rerun each failed shard alone:\n{}\n(the last shard to finish writes the results; `evalkit merge {}` writes them when every shard is done)",
            failed.join(", "),
            output.join(".journal").display(),
            commands.join("\n"),
            output.display()
        );
    }
    let path = output.join("results.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| {
            format!(
                "every shard finished, but {} is missing (a merge failed or is still running; `evalkit merge {}` writes it)",
                path.display(),
                output.display()
            )
        })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What `evalkit merge DIR` reruns: the recorded command of the run in `dir` (parsed again),
/// the directory it ran in, the number of shards, and what the run recorded of its model.
pub struct Recorded {
    pub args: RunArgs,
    /// The command's arguments as the shards recorded them.
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub world: usize,
    pub model: RecordedModel,
}

/// Reads `dir/.journal/shards.json`.
pub fn recorded(dir: &Path) -> Result<Recorded> {
    let path = dir.join(".journal").join("shards.json");
    if !path.is_file() {
        if dir.join("results.json").is_file() {
            bail!(
                "{} holds results and no shard journals: nothing to merge",
                dir.display()
            );
        }
        bail!(
            "{} is missing: {} is not the output of a sharded run",
            path.display(),
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let command: Vec<String> = serde_json::from_value(v["command"].clone()).with_context(|| {
        format!(
            "{}: no `command` (the run was not started by the evalkit CLI; merge it with Evaluator::run_share and Share::Merge)",
            path.display()
        )
    })?;
    let world = v["shards"]
        .as_u64()
        .with_context(|| format!("{}: no `shards` count", path.display()))? as usize;
    let cwd = v["cwd"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("{}: no `cwd`", path.display()))?;
    let text_field = |k: &str| {
        v[k].as_str()
            .map(String::from)
            .with_context(|| format!("{}: no `{k}`", path.display()))
    };
    let count = |k: &str| {
        v[k].as_u64()
            .map(|n| n as usize)
            .with_context(|| format!("{}: no `{k}`", path.display()))
    };
    let model = RecordedModel {
        describe: text_field("model")?,
        max_len: count("max_len")?,
        vocab_size: v["vocab_size"].as_u64().map(|n| n as usize),
        name: text_field("model_name")?,
        weights_stamp: v["weights_stamp"].as_str().map(String::from),
    };
    let cli = <Cli as clap::Parser>::try_parse_from(std::iter::once("evalkit".to_string()).chain(command.clone()))
        .with_context(|| format!("{}: the recorded command no longer parses", path.display()))?;
    let Command::Run(args) = cli.command else {
        bail!("{}: the recorded command is not `evalkit run`", path.display());
    };
    Ok(Recorded {
        args: *args,
        command,
        cwd,
        world,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_by_local_rank() {
        assert_eq!(device_for("cuda:0,cuda:1", Some(1)).unwrap(), "cuda:1");
        assert_eq!(device_for("cuda:0,cuda:1", Some(2)).unwrap(), "cuda:0");
        assert_eq!(device_for("cuda", Some(3)).unwrap(), "cuda:3");
        assert_eq!(device_for("cpu", Some(3)).unwrap(), "cpu");
        assert_eq!(device_for("cuda:1", None).unwrap(), "cuda:1");
        assert!(device_for("cuda:0,cuda:1", None)
            .unwrap_err()
            .to_string()
            .contains("--shards"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--tasks=arc_easy,piqa"), "--tasks=arc_easy,piqa");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
