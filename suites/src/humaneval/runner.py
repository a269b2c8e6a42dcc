# evalkit's HumanEval test runner, run as `python -c <this> PROGRAM_FILE SECONDS` in a fresh
# process of its own group whose working directory is an empty temporary folder (evalkit makes
# it, removes it afterwards, and kills the group when the run ends). It runs the program as
# lm-eval's `humaneval` task does through Hugging Face evaluate's `code_eval` metric, whose
# `execute.py` comes from OpenAI's human-eval (`human_eval/execution.py`):
#   - destructive functions are disabled first (`reliability_guard`: `exit` and `quit`, the
#     `os` calls that kill, fork, remove, rename, chmod or change directory, `shutil.rmtree`,
#     `move` and `chown`, `subprocess.Popen`, `help`, and the modules ipdb, joblib, resource,
#     psutil and tkinter), with `OMP_NUM_THREADS=1`;
#   - the program is `exec`'d in fresh globals (so `__name__` is not "__main__") with stdout and
#     stderr swallowed and a stdin that raises when read, under a wall-clock alarm of SECONDS;
#   - it passes when `exec` returns; any exception fails it, `SystemExit` included, and the
#     alarm makes it time out;
#   - the process ends right after the verdict (`os._exit`, as human-eval's child ends once its
#     result is recorded): threads the program left running and its exit handlers do not delay
#     or change it.
# There the program runs in a process forked from lm-eval's, where numpy, multiprocessing and
# the like are already imported; imported after the guard, some of them fail (numpy calls
# `os.putenv`, multiprocessing `os.getcwd`). So the modules the program's import statements
# name are imported before the guard (those that fail to import are left to fail in the program).
# The verdict goes, after the token from $EVALKIT_HUMANEVAL_TOKEN (removed from the environment
# before the program runs), to a duplicate of the original stdout that the program's processes
# do not inherit; file descriptor 1 itself is pointed at /dev/null. A process that ends itself
# (`os._exit(0)`) reports no verdict: it fails, as in human-eval, where it records no result.
import contextlib
import faulthandler
import io
import os
import re
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


def preload(program):
    names = set()
    for m in re.finditer(r"^[ \t]*(import|from)[ \t]+([^\n#;]+)", program, re.M):
        for part in [m.group(2)] if m.group(1) == "from" else m.group(2).split(","):
            name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", part)
            if name:
                names.add(name.group(1))
    for name in sorted(names):
        try:
            __import__(name)
        except BaseException:
            pass


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    token = os.environ.pop("EVALKIT_HUMANEVAL_TOKEN", "")
    with open(path, encoding="utf-8") as f:
        program = f.read()
    # The verdict's channel: not inherited by the program's processes (os.dup's default), and
    # written with functions saved before the guard.
    verdict_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    write, end = os.write, os._exit

    def on_alarm(signum, frame):
        raise TimedOut()

    preload(program)
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
    write(verdict_fd, f"{token} {verdict}\n".encode("utf-8", "replace"))
    end(0)


main()
