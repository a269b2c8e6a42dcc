"""Driver of scripts/parity: per model, write the parity task files, run lm-eval once (all its
tasks and few-shot settings in one process) and evalkit once per (k, rows) group, then compare
every sample and print one line per (model, task, k)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from . import plan as P
from .compare import Check, compare, fmt_dev
from .checkpoints import SERVED, Server, is_generated, model_dir
from .data import Cache
from .runners import (Failed, env, max_length, read_evalkit_samples, read_lmeval_samples,
                      run_evalkit, run_lmeval)
from .suites import GEN, ROLLING, suite, write_task


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/parity",
        description="Per-sample parity of evalkit with lm-eval 0.4.13 (see the top of scripts/parity).")
    ap.add_argument("--quick", action="store_true", help="the short check scripts/test runs")
    ap.add_argument("--models", help="comma-separated checkpoint names under $EVALKIT_SHARED/models (default: the plan's)")
    ap.add_argument("--tasks", help="comma-separated evalkit task names: compare only these")
    ap.add_argument("--num-fewshot", help="comma-separated few-shot counts: compare only these (and use them "
                                           "for --tasks the plan lacks; default 0)")
    ap.add_argument("--rows", type=int, help="compare this many rows of every task instead of the plan's")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("EVALKIT_PARITY_THREADS") or 1),
                    help="CPU threads of each side (OMP_NUM_THREADS / MKL_NUM_THREADS given to both; default "
                         "$EVALKIT_PARITY_THREADS, else 1: the test checkpoints are tiny, and two OpenMP "
                         "threads on two busy cores make a forward pass up to 100x slower)")
    ap.add_argument("--evalkit-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `evalkit run` (repeatable), e.g. --evalkit-arg=--no-share-prefix")
    ap.add_argument("--workdir", type=Path, help="work directory (default: a new one under $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory even when all passes")
    return ap.parse_args(argv)


def say(msg: str = "") -> None:
    print(msg, flush=True)


def header() -> str:
    return (f"{'model':<18} {'task':<28} {'k':>1}  {'rows':>7}  {'max dev':>8}  {'ll>tol':>6}  "
            f"{'decis.':>6}  {'strings':>7}  {'gens':>4}  {'counts':>6}  result")


def line(c: Check) -> str:
    if c.error:
        return f"{c.model:<18} {c.label:<28} {c.k:>1}  {'-':>7}  {'-':>8}  {'-':>6}  {'-':>6}  {'-':>7}  {'-':>4}  {'-':>6}  ERROR"
    gens = str(c.generations) if c.kind == GEN else "-"
    counts = str(c.counts) if c.kind == ROLLING else "-"
    dev = "-" if c.kind == GEN else fmt_dev(c.max_dev)
    ll = "-" if c.kind == GEN else str(c.ll_fail)
    verdict = "ok" if c.ok else "FAIL"
    if c.ties and c.ok:
        verdict += f" ({c.ties} tie{'s' * (c.ties > 1)})"
    return (f"{c.model:<18} {c.label:<28} {c.k:>1}  {f'{c.compared}/{c.rows}':>7}  {dev:>8}  {ll:>6}  "
            f"{c.decisions:>6}  {c.strings:>7}  {gens:>4}  {counts:>6}  {verdict}")


def generation_budget(its: list[P.Item], checks: dict[P.Item, Check], L: int) -> int | None:
    """lm-eval's --gen_kwargs max_gen_toks for one lm-eval process (`its`, one chat mode), or
    None. A generation budget that leaves no room for a prompt in max length `L` makes evalkit
    lower max_new_tokens to L / 2 (DESIGN.md section 3), where lm-eval would assert; lm-eval is
    then given the same, which holds for every task of its process: a lowered task can share it
    only with generation tasks lowered the same (or asking for that many anyway)."""
    gens = [it for it in its if suite(it.task).kind == GEN]
    if not any(suite(it.task).max_new >= L for it in gens):
        return None
    max_gen = max(L // 2, 1)
    for it in gens:
        asked = suite(it.task).max_new
        if asked >= L:
            checks[it].notes.append(f"{asked} new tokens leave no room for a prompt in max length {L}: both "
                                    f"sides generate at most {max_gen} (lm-eval: --gen_kwargs max_gen_toks={max_gen})")
        elif asked != max_gen:
            checks[it].error = (f"asks for {asked} new tokens, but lm-eval's process is given max_gen_toks="
                                f"{max_gen} for another task: compare it in a run of its own (--tasks)")
    return max_gen


def run_model(model: str, items: list[P.Item], shared: Path, work: Path, binary: str,
              args: argparse.Namespace, cache: Cache) -> list[Check]:
    if model in SERVED:
        with Server(work / f"server-{model}.log") as server:
            return run_model_on(model, items, shared, work, binary, args, cache, server)
    return run_model_on(model, items, shared, work, binary, args, cache, None)


def run_model_on(model: str, items: list[P.Item], shared: Path, work: Path, binary: str,
                 args: argparse.Namespace, cache: Cache, server) -> list[Check]:
    mdir = model_dir(model, shared, work)
    data = shared / "data"
    tasks_dir = work / "lmeval-tasks"
    environ = env(args.threads, work)
    checks: dict[P.Item, Check] = {}
    names: dict[P.Item, str] = {}
    for it in items:
        s = suite(it.task)
        names[it], rows = write_task(tasks_dir, work / "lmeval-data", data, cache, s, it.k, it.rows)
        checks[it] = Check(model, it.task, it.k, len(rows), s.kind, chat=it.chat)

    L = max_length(mdir)
    # lm-eval: one process per chat mode for all of this model's tasks.
    lm_outs: dict[P.Item, Path] = {}
    for mode in sorted({it.chat for it in items}):
        its = [it for it in items if it.chat == mode]
        max_gen = generation_budget(its, checks, L)
        flags = P.CHAT_MODES[mode][0]
        tag = f"{model}{'-' + mode if mode else ''}"
        lm_out = work / "lmeval-out" / tag
        for it in its:
            lm_outs[it] = lm_out
        lm_names = sorted({names[it] for it in its})
        say(f"[{tag}] lm-eval 0.4.13: {len(lm_names)} tasks (log {work / f'lmeval-{tag}.log'})")
        try:
            dt = run_lmeval(mdir, lm_names, tasks_dir, lm_out, work / f"lmeval-{tag}.log", environ, max_gen, flags,
                            server)
            say(f"[{tag}] lm-eval done in {dt:.0f} s")
        except Failed as e:
            if len(lm_names) == 1:
                for it in its:
                    checks[it].error = f"lm-eval failed: {e}"
                continue
            # One failing task stops the whole process: run each task alone to tell which.
            say(f"[{tag}] lm-eval failed; running its {len(lm_names)} tasks one by one")
            for n in lm_names:
                try:
                    run_lmeval(mdir, [n], tasks_dir, lm_out / n, work / f"lmeval-{tag}-{n}.log", environ, max_gen,
                               flags, server)
                except Failed as e1:
                    for it in its:
                        if names[it] == n:
                            checks[it].error = f"lm-eval failed: {e1}"

    # evalkit: one run per (k, rows, chat mode).
    groups: dict[tuple[int, int, str], list[P.Item]] = defaultdict(list)
    for it in items:  # also where lm-eval failed: whether evalkit fails too is worth telling
        groups[(it.k, checks[it].rows, it.chat)].append(it)
    ek_dirs: dict[P.Item, Path] = {}
    t_ek = 0.0
    runs = 0
    for (k, rows, mode), its in sorted(groups.items(), key=lambda g: g[0]):
        tasks = sorted({it.task for it in its})
        group = f"k{k}-n{rows}{'-' + mode if mode else ''}"
        extra = [*args.evalkit_arg, *P.CHAT_MODES[mode][1]]
        # One failing task stops the whole run: then each task alone, to tell which.
        for batch in [tasks] if len(tasks) == 1 else [tasks, *([t] for t in tasks)]:
            out = work / "evalkit-out" / model / group / ("all" if batch is tasks else batch[0])
            tag = group + ("" if batch is tasks else f"-{batch[0]}")
            runs += 1
            try:
                t_ek += run_evalkit(binary, mdir, batch, rows, k, data, out, work / f"evalkit-{model}-{tag}.log",
                                    environ, extra, server)
                for it in its:
                    if it.task in batch:
                        ek_dirs[it] = out
            except Failed as e:
                if batch is tasks and len(tasks) > 1:
                    say(f"[{model}] evalkit failed on {','.join(tasks)} ({group}); running them one by one")
                    continue
                for it in its:
                    if it.task in batch:
                        prev = checks[it].error
                        checks[it].error = (prev + "\n  and " if prev else "") + f"evalkit failed: {e}"
            if batch is tasks:
                break
    say(f"[{model}] evalkit done in {t_ek:.0f} s ({runs} run{'s' * (runs != 1)})")

    for it, c in checks.items():
        if c.error:
            continue
        try:
            compare(c, read_lmeval_samples(lm_outs[it], names[it]), read_evalkit_samples(ek_dirs[it], it.task),
                    skip_truncated=model in SERVED)
        except Failed as e:
            c.error = str(e)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            c.error = f"could not compare the samples: {type(e).__name__}: {e}"
    return list(checks.values())


def main(argv: list[str]) -> int:
    args = parse(argv)
    t0 = time.monotonic()
    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("EVALKIT_SHARED") or repo.parent / "shared").resolve()
    binary = os.environ.get("EVALKIT_BIN") or str(repo / "target" / "release" / "evalkit")
    if not Path(binary).is_file():
        say(f"parity: no evalkit binary at {binary} (build it, or set EVALKIT_BIN)")
        return 2
    items = P.quick() if args.quick else P.full()
    if args.models:
        # The plan's items of each named model; a model the plan lacks gets the first model's.
        template = [it for it in items if it.model == items[0].model]
        chosen = []
        for m in args.models.split(","):
            own = [it for it in items if it.model == m]
            chosen += own or [P.Item(m, it.task, it.k, it.rows, it.chat) for it in template]
        items = chosen
    if args.tasks:
        wanted = args.tasks.split(",")
        models = list(dict.fromkeys(it.model for it in items))
        # The plan's items of these tasks; a task the plan lacks (any suite.py knows, e.g.
        # arc_challenge or another MMLU subject) is added at 50 rows (or --rows), 0-shot (or
        # at each --num-fewshot).
        ks = [int(k) for k in args.num_fewshot.split(",")] if args.num_fewshot else [0]
        items = [it for it in items if it.task in wanted] + [
            P.Item(m, t, k, 50) for m in models for t in wanted if t not in {it.task for it in items} for k in ks]
        for t in wanted:
            suite(t)  # an unknown name stops here, with a message
    if args.num_fewshot:
        ks = {int(k) for k in args.num_fewshot.split(",")}
        items = [it for it in items if it.k in ks]
    if args.rows:
        items = [P.Item(it.model, it.task, it.k, args.rows, it.chat) for it in items]
    for m in sorted({it.model for it in items}):
        if not is_generated(m) and not (shared / "models" / m / "config.json").is_file():
            say(f"parity: no checkpoint {shared / 'models' / m}")
            return 2
    if not items:
        say("parity: nothing to compare")
        return 2

    # Absolute: lm-eval runs in a folder of its own inside (runners.run_lmeval).
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="evalkit-parity.", dir=os.environ.get("TMPDIR")))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say(f"parity: evalkit {binary} vs lm-eval 0.4.13 ({sys.executable}), {args.threads} threads, "
        f"{'quick' if args.quick else 'full'} mode, data {shared / 'data'}, work dir {work}")
    say("columns: rows compared/expected; max dev: the largest log-likelihood difference, in units of\n"
        "  the tolerance (<= 1 passes); then the number of rows with: a log-likelihood beyond tolerance,\n"
        "  a differing decision (is_greedy, prediction, gold, acc, acc_norm, acc_bytes, exact_match),\n"
        "  differing strings (contexts, continuations, prompts, scored text), differing generations,\n"
        "  differing word/byte counts")
    cache = Cache(shared / "data")
    checks: list[Check] = []
    by_model: dict[str, list[P.Item]] = defaultdict(list)
    for it in items:
        by_model[it.model].append(it)
    for model, its in by_model.items():
        t = time.monotonic()
        cs = run_model(model, its, shared, work, binary, args, cache)
        say(header())
        for c in cs:
            say(line(c))
        say(f"[{model}] {time.monotonic() - t:.0f} s")
        checks += cs

    bad = [c for c in checks if not c.ok]
    for c in checks:
        for n in c.notes:
            say(f"note: {c.model} {c.label} k={c.k}: {n}")
    shown_errors = set()
    for c in bad:
        say()
        if c.error in shown_errors:
            say(f"=== {c.model} {c.label} k={c.k}: the same failure as above")
            continue
        if c.error:
            shown_errors.add(c.error)
        say(f"=== {c.model} {c.label} k={c.k}: "
            + (c.error if c.error else f"{c.n_failing} of {c.rows} rows differ; the first {len(c.failing)}:"))
        for idx, lines in c.failing:
            say(f"--- row {idx}")
            for ln in lines:
                say(f"    {ln}")
    dt = time.monotonic() - t0
    if bad:
        say(f"\nparity: FAILED: {len(bad)} of {len(checks)} checks ({dt:.0f} s); work files kept in {work}")
        return 1
    say(f"\nparity: all {len(checks)} checks agree ({sum(c.compared for c in checks)} rows, {dt:.0f} s)")
    if args.keep or args.workdir:
        say(f"parity: work files in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0
