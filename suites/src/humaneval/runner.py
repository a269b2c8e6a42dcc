# evalkit's HumanEval test runner, run as `python -c <this> PROGRAM_FILE SECONDS` in a fresh
# process whose working directory is an empty temporary folder (evalkit makes it, and removes it
# afterwards). It runs the program as lm-eval's `humaneval` task does through Hugging Face
# evaluate's `code_eval` metric, whose `execute.py` comes from OpenAI's human-eval
# (`human_eval/execution.py`):
#   - destructive functions are disabled first (`reliability_guard`: `exit` and `quit`, the
#     `os` calls that kill, fork, remove, rename, chmod or change directory, `shutil.rmtree`,
#     `move` and `chown`, `subprocess.Popen`, `help`, and the modules ipdb, joblib, resource,
#     psutil and tkinter), with `OMP_NUM_THREADS=1`;
#   - the program is `exec`'d in fresh globals (so `__name__` is not "__main__") with stdout and
#     stderr swallowed and a stdin that raises when read, under a wall-clock alarm of SECONDS;
#   - it passes when `exec` returns; any exception fails it, `SystemExit` included, and the
#     alarm makes it time out.
# The verdict is written to the real stdout after the token from $EVALKIT_HUMANEVAL_TOKEN
# (removed from the environment before the program runs), so that a program that ends the
# process itself (`os._exit(0)`) or prints to file descriptor 1 reports no verdict: it fails,
# as in human-eval, where such a process appends no result.
import contextlib
import faulthandler
import io
import os
import signal
import sys


class TimedOut(Exception):
    pass


class WriteOnly(io.StringIO):
    def read(self, *args, **kwargs):
        raise IOError

    def readline(self, *args, **kwargs):
        raise IOError

    def readlines(self, *args, **kwargs):
        raise IOError

    def readable(self, *args, **kwargs):
        return False


class RedirectStdin(contextlib._RedirectStream):
    _stream = "stdin"


def guard():
    import builtins
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    builtins.help = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    token = os.environ.pop("EVALKIT_HUMANEVAL_TOKEN", "")
    with open(path, encoding="utf-8") as f:
        program = f.read()
    write, fd = os.write, sys.__stdout__.fileno()

    def on_alarm(signum, frame):
        raise TimedOut()

    guard()
    try:
        stream = WriteOnly()
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream), RedirectStdin(stream):
            signal.setitimer(signal.ITIMER_REAL, seconds)
            signal.signal(signal.SIGALRM, on_alarm)
            try:
                exec(program, {})
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        verdict = "passed"
    except TimedOut:
        verdict = "timed out"
    except BaseException as e:
        verdict = "failed: " + " ".join(f"{type(e).__name__}: {e}".split())[:200]
    write(fd, f"\n{token} {verdict}\n".encode("utf-8", "replace"))


main()
