//! HumanEval (lm-eval `humaneval`): generate a completion of `prompt` until a new top-level
//! statement (`\nclass`, `\ndef`, `\n#`, `\nif`, `\nprint`), greedy, up to 1024 new tokens;
//! pass@1 runs `prompt + completion + test + check(entry_point)` in a separate Python process
//! with a 3 s timeout — never in-process. Without a Python interpreter the task is refused with
//! a clear message.

use crate::data::read_jsonl;
use crate::error::{Error, Result};
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One HumanEval problem.
#[derive(Debug, Clone, Deserialize, Evaluation)]
#[eval(name = "humaneval", kind = generate, max_new_tokens = 1024,
       stop("\nclass", "\ndef", "\n#", "\nif", "\nprint"), score = self.run_tests, metrics("pass@1"))]
pub struct HumanEval {
    /// `HumanEval/N`.
    pub task_id: String,
    /// Signature and docstring.
    #[eval(prompt)]
    pub prompt: String,
    /// Reference solution (not used for scoring).
    pub canonical_solution: String,
    /// The `check(candidate)` test code.
    pub test: String,
    /// Function under test.
    #[eval(target)]
    pub entry_point: String,
}

/// The Python interpreter tests run with (`EVALKIT_PYTHON`, else `python3`), if it works.
pub fn python() -> Option<String> {
    let py = std::env::var("EVALKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&py)
        .arg("-c")
        .arg("pass")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| py)
}

/// Runs `program` in a fresh Python process; true when it exits 0 within `timeout`.
pub fn passes(python: &str, program: &str, timeout: Duration) -> bool {
    let Ok(mut file) = tempfile::Builder::new()
        .prefix("evalkit-humaneval-")
        .suffix(".py")
        .tempfile()
    else {
        return false;
    };
    if file.write_all(program.as_bytes()).is_err() {
        return false;
    }
    let Ok(mut child) = Command::new(python)
        .arg(file.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

impl HumanEval {
    /// pass@1 of a completion: `prompt + completion + test + check(entry_point)` exits 0 in a
    /// fresh Python process within 3 s.
    fn run_tests(&self, _entry_point: &str, completion: &str) -> Vec<(String, f64)> {
        let program = format!(
            "{}{}\n\n{}\n\ncheck({})\n",
            self.prompt, completion, self.test, self.entry_point
        );
        let ok = python().is_some_and(|py| passes(&py, &program, Duration::from_secs(3)));
        vec![("pass@1".into(), f64::from(u8::from(ok)))]
    }
}

/// Loads `humaneval`, refusing when no Python interpreter can run the tests.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    opts.no_fewshot(name)?;
    let rows: Vec<HumanEval> = read_jsonl(
        &opts.data_dir.join("humaneval/HumanEval.jsonl"),
        "HumanEval problems",
        "https://github.com/openai/human-eval (data/HumanEval.jsonl.gz, unpacked)",
    )?;
    if python().is_none() {
        return Err(Error::Setting {
            task: name.into(),
            message: "skipped: pass@1 runs each completion's tests in a Python process, and no `python3` (or $EVALKIT_PYTHON) was found".into(),
        });
    }
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}
