"""Runs the two sides: lm-eval 0.4.13 (its own CLI, in this Python's environment) and
evalkit's CLI, on one checkpoint, and reads back their per-sample logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
FEWSHOT_SEED = 1234  # lm-eval's default fewshot seed; evalkit's default --seed


def env(threads: int, work: Path) -> dict:
    e = dict(os.environ)
    e.update(OFFLINE)
    e.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
        # Datasets' Arrow cache of our JSON files stays in the work directory.
        HF_DATASETS_CACHE=str(work / "hf-datasets"),
        PYTHONUNBUFFERED="1",
    )
    return e


class Failed(Exception):
    """A side's command failed; the message holds the command and the end of its log."""


def _run(cmd: list[str], log: Path, environ: dict, cwd: Path | None = None) -> float:
    t0 = time.monotonic()
    with log.open("w", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd) + "\n\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=environ, cwd=cwd).returncode
    dt = time.monotonic() - t0
    if rc != 0:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        # The end of the log, without progress bars and the caret lines of tracebacks.
        tail = [ln for ln in lines if ln.strip() and "it/s]" not in ln and set(ln.strip()) != {"^"}][-16:]
        raise Failed(f"exit status {rc} after {dt:.0f} s: {' '.join(cmd)}\n  log {log}:\n    " + "\n    ".join(tail))
    return dt


def max_length(model: Path) -> int:
    """The context length lm-eval resolves for a plain config (models/utils.py
    resolve_max_length: n_positions, max_position_embeddings, n_ctx, else 2048)."""
    cfg = json.loads((model / "config.json").read_text())
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return 2048


def run_lmeval(model: Path, tasks: list[str], include: Path, out: Path, log: Path,
               environ: dict, max_gen_toks: int | None, extra: list[str] = (), served=None) -> float:
    """lm-eval's HF model on `model`, or with `served` (checkpoints.Server) its
    `local-completions` model against that server, text prompts (llama.cpp's server takes no
    token ids) and `model`'s tokenizer."""
    if served is None:
        lm = ["--model", "hf", "--model_args", f"pretrained={model},dtype=float32,logits_cache=False"]
    else:
        lm = ["--model", "local-completions", "--model_args",
              f"base_url={served.base_url}/completions,model={served.gguf},tokenizer_backend=huggingface,"
              f"tokenizer={model},tokenized_requests=False,max_length={max_length(model)}"]
    cmd = [
        sys.executable, "-m", "lm_eval", "run",
        *lm,
        "--device", "cpu",
        "--batch_size", "1",
        "--tasks", ",".join(tasks),
        "--include_path", str(include),
        # Rows: each task's data file holds exactly the rows compared (--limit would take the
        # same first rows); few-shot: each task file sets its own num_fewshot.
        "--seed", f"0,1234,1234,{FEWSHOT_SEED}",
        "--log_samples",
        "--output_path", str(out),
    ]
    if max_gen_toks is not None:
        cmd += ["--gen_kwargs", f"max_gen_toks={max_gen_toks}"]
    # HumanEval: lm-eval runs model-written code only when told to, through the code_eval
    # metric that evaluate finds as code_eval/code_eval.py under the working directory.
    cmd += ["--confirm_run_unsafe_code", *extra]
    cwd = log.parent / "lmeval-cwd"
    shutil.copytree(Path(__file__).parent / "lmeval_utils" / "code_eval", cwd / "code_eval", dirs_exist_ok=True)
    return _run(cmd, log, dict(environ, HF_ALLOW_CODE_EVAL="1"), cwd)


def read_lmeval_samples(out: Path, task: str) -> list[dict]:
    files = sorted(out.rglob(f"samples_{task}_*.jsonl"))
    if not files:
        raise Failed(f"lm-eval wrote no samples_{task}_*.jsonl under {out}")
    with files[-1].open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_evalkit(binary: str, model: Path, tasks: list[str], limit: int, k: int, data: Path,
                out: Path, log: Path, environ: dict, extra: list[str], served=None) -> float:
    # One request at a time, as lm-eval's local-completions sends them (num_concurrent=1):
    # llama.cpp's server reuses the previous prompt's cache, so its float rounding (and a
    # greedy generation at a near-tie) depends on the order requests arrive in.
    target = ["--model", str(model)] if served is None else [
        "--model", f"openai-compatible:{served.base_url}", "--tokenizer", str(model), "--in-flight", "1"]
    cmd = [
        binary, "run",
        *target,
        "--tasks", ",".join(tasks),
        "--limit", str(limit),
        "--num-fewshot", str(k),
        "--seed", str(FEWSHOT_SEED),
        "--data-dir", str(data),
        "--device", "cpu",
        "--dtype", "f32",
        "--output", str(out),
        "-q",
        *extra,
    ]
    e = dict(environ)
    # evalkit's `run --offline` takes its value from HF_HUB_OFFLINE and requires --hub, so
    # HF_HUB_OFFLINE=1 alone makes a plain `evalkit run` a usage error; evalkit reads only
    # --data-dir without --hub anyway.
    e.pop("HF_HUB_OFFLINE", None)
    # HumanEval's tests run with the Python that lm-eval's run them with, confirmed as lm-eval's
    # are (--confirm_run_unsafe_code; the variable, unlike the flag, older binaries ignore).
    e["EVALKIT_PYTHON"] = sys.executable
    e["EVALKIT_CONFIRM_RUN_UNSAFE_CODE"] = "1"
    return _run(cmd, log, e)


def read_evalkit_samples(out: Path, task: str) -> list[dict]:
    path = out / f"samples_{task}.jsonl"
    if not path.is_file():
        raise Failed(f"evalkit wrote no {path}")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_evalkit_results(out: Path) -> dict:
    path = out / "results.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
