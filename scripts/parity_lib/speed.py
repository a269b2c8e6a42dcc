"""Side-by-side speed of evalkit and lm-eval 0.4.13 (HF backend) on the same rows, CPU,
float32, the same batch size and thread count; prints per workload both harnesses' seconds
(process start to exit; for evalkit less the seconds its `--floor` measurement took, which a
plain run does not spend), the ratio, and evalkit's forward-pass floor and efficiency from
that measurement (evalkit_core::throughput).

Workloads (issue 12):
  stories      stories260K-hf on ARC-Easy, PIQA, HellaSwag, LAMBADA, 200 rows each
  gpt2-small   a seeded random checkpoint of GPT-2 small's shape (124M parameters, made by
               `evalkit random-checkpoint`, the shared GPT-2 tokenizer) on ARC-Easy and HellaSwag
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .data import Cache
from .runners import OFFLINE
from .suites import suite, write_task

WORKLOADS = {
    "stories": ("stories260K-hf", ["arc_easy", "piqa", "hellaswag", "lambada_openai"]),
    "gpt2-small": ("gpt2-small-random", ["arc_easy", "hellaswag"]),
}


def make_gpt2_small(binary: str, shared: Path, out: Path) -> Path:
    """GPT-2 small's shape (12 layers, 768 wide, 1024 positions) as `evalkit random-checkpoint`
    makes it (transformers' initialisation, seed 0), with the real GPT-2 tokenizer."""
    if (out / "config.json").is_file():
        return out
    subprocess.run([binary, "random-checkpoint", "--preset", "gpt2-small", "--seed", "0",
                    "--tokenizer", str(shared / "models" / "tiny-gpt2-random"), "--output", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def timed(cmd: list[str], log: Path, environ: dict) -> float:
    t0 = time.monotonic()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=environ).returncode
    dt = time.monotonic() - t0
    if rc != 0:
        sys.exit(f"speed: exit status {rc}: {' '.join(cmd)} (log {log})")
    return dt


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="scripts/speed")
    p.add_argument("--workloads", default="stories,gpt2-small")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--binary", required=True)
    p.add_argument("--shared", type=Path, required=True)
    p.add_argument("--work", type=Path)
    p.add_argument("--skip-lmeval", action="store_true", help="evalkit only (its floor and efficiency)")
    p.add_argument("--repeat", type=int, default=3,
                   help="evalkit runs per workload, the median reported (lm-eval runs once)")
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error("--repeat needs at least one run")
    work = a.work or Path(tempfile.mkdtemp(prefix="evalkit-speed."))
    work.mkdir(parents=True, exist_ok=True)
    environ = dict(os.environ, **OFFLINE, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
                   TOKENIZERS_PARALLELISM="false", HF_DATASETS_CACHE=str(work / "hf-datasets"))
    ek_env = dict(environ)
    ek_env.pop("HF_HUB_OFFLINE", None)
    cache = Cache(a.shared / "data")
    lines = []
    for w in a.workloads.split(","):
        model, tasks = WORKLOADS[w]
        mdir = make_gpt2_small(a.binary, a.shared, work / model) if model == "gpt2-small-random" else a.shared / "models" / model
        # evalkit's runs are short (a few seconds for stories260K), so one run on a shared
        # machine is noisy: each repetition measures its floor and times itself afresh, and the
        # median run (by efficiency) is reported, with the range.
        runs = []
        for i in range(a.repeat):
            out = work / "evalkit" / w
            shutil.rmtree(out, ignore_errors=True)
            ek = timed([a.binary, "run", "--model", str(mdir), "--tasks", ",".join(tasks), "--limit", str(a.rows),
                        "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--device", "cpu",
                        "--data-dir", str(a.shared / "data"), "--output", str(out), "--floor", "-q"],
                       work / f"evalkit-{w}-{i}.log", ek_env)
            res = json.loads((out / "results.json").read_text())
            r = res["results"]
            raw = res["config"]["raw_throughput"]
            # The time of a run without --floor: the measurement itself is not the harness's work.
            runs.append(dict(ek=ek - raw["seconds"], raw=raw,
                             floor=sum(r[t]["floor_seconds"] for t in tasks),
                             evals=sum(r[t]["wall_seconds"] for t in tasks),
                             fwd=sum(r[t]["tokens_forwarded"] for t in tasks),
                             scored=sum(r[t]["tokens_scored"] for t in tasks),
                             pruned=sum(r[t].get("tokens_pruned", 0) for t in tasks)))
        runs.sort(key=lambda run: run["floor"] / run["evals"])
        m = runs[len(runs) // 2]
        ek, raw, floor, evals, fwd, scored, pruned = (m[k] for k in ("ek", "raw", "floor", "evals", "fwd", "scored",
                                                                      "pruned"))
        spread = "" if len(runs) == 1 else (
            f" (median of {len(runs)} runs; efficiency {runs[0]['floor'] / runs[0]['evals']:.0%}"
            f"–{runs[-1]['floor'] / runs[-1]['evals']:.0%}, evalkit {min(x['ek'] for x in runs):.1f}"
            f"–{max(x['ek'] for x in runs):.1f} s)")
        lm = None
        if not a.skip_lmeval:
            names = []
            for t in tasks:
                n, _ = write_task(work / "lmeval-tasks", work / "lmeval-data", a.shared / "data", cache, suite(t), 0,
                                  a.rows)
                names.append(n)
            lm = timed([sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
                        f"pretrained={mdir},dtype=float32", "--device", "cpu", "--batch_size", str(a.batch_size),
                        "--tasks", ",".join(names), "--include_path", str(work / "lmeval-tasks"),
                        "--output_path", str(work / "lmeval-out" / w)],
                       work / f"lmeval-{w}.log", environ)
        lines.append(
            f"{w:<11} {model:<18} lm-eval {'-' if lm is None else f'{lm:7.1f} s'}  evalkit {ek:6.1f} s  "
            f"ratio {'-' if lm is None else f'{lm / ek:5.2f}x'}  | tokens {fwd} body ({pruned} pruned) + {scored} head; "
            f"raw {raw['body_tokens_per_second']:.0f} tok/s ({raw['body_batch']}x{raw['body_seq']}; "
            f"{raw.get('body_pruned_tokens_per_second', 0):.0f} pruned), head "
            f"{raw['head_seconds_per_position'] * 1e3:.3f} ms/pos; floor {floor:.2f} s; efficiency "
            f"{floor / evals:.0%} of the evaluations' {evals:.2f} s, {floor / ek:.0%} end to end{spread}")
        print(lines[-1], flush=True)
    print(f"speed: {a.rows} rows per task, batch {a.batch_size}, {a.threads} threads, float32, CPU; work dir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
