"""Per-sample comparison of lm-eval's ``--log_samples`` records with evalkit's
``samples_<task>.jsonl`` (DESIGN.md section 2), row by row (lm-eval ``doc_id`` = evalkit
``index``).

Tolerances (float32 on both sides):
- a log-likelihood ``ll`` (lm-eval's value) may differ by ``1e-4 * (1 + |ll| / 100)``;
- a WikiText page's rolling log-likelihood by ``1e-4 * |ll|`` (relative);
deviations are reported in units of the tolerance, so anything <= 1 passes.

Everything else must be equal: context and continuation strings, ``is_greedy``, the argmax
prediction, the gold index and the per-sample acc / acc_norm / acc_bytes (multiple choice;
TruthfulQA MC2's acc, a probability mass, within what the log-likelihoods' tolerances allow),
acc (LAMBADA), word and byte counts (WikiText), and for generation the prompt, the
generated text and each filter's exact_match (GSM8K strict-match / flexible-extract) or
pass@1 (HumanEval: the tests run on prompt + generation, on each side by its own runner). A
differing argmax decision is not counted as a failure when lm-eval's own scores of the two
picks are within tolerance of a tie (then float rounding decides; it is reported as a tie).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .suites import GEN, LL, ROLLING

TOL_ABS = 1e-4
TOL_REL_PPL = 1e-4
SHOW = 3  # failing rows shown in detail per check


def ll_tol(ll: float) -> float:
    return TOL_ABS * (1.0 + abs(ll) / 100.0)


@dataclass
class Check:
    model: str
    task: str
    k: int
    rows: int
    kind: str
    compared: int = 0
    max_dev: float = 0.0  # in tolerance units
    decisions: int = 0  # rows with a differing decision
    strings: int = 0  # rows with differing contexts/continuations/prompts/texts
    generations: int = 0  # rows with differing generated text
    counts: int = 0  # rows with differing word/byte counts
    ll_fail: int = 0  # rows with a log-likelihood beyond tolerance
    ties: int = 0  # rows whose differing decision is a near-tie
    missing: int = 0  # rows absent on one side
    failing: list[tuple[int, list[str]]] = field(default_factory=list)
    n_failing: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    chat: str = ""  # the chat mode (plan.CHAT_MODES)

    @property
    def label(self) -> str:
        return f"{self.task} [{self.chat}]" if self.chat else self.task

    @property
    def ok(self) -> bool:
        return self.error is None and self.n_failing == 0 and self.compared == self.rows

    def fail_row(self, idx: int, lines: list[str]) -> None:
        self.n_failing += 1
        if len(self.failing) < SHOW:
            self.failing.append((idx, lines))


def _f(x) -> float:
    return float(x)


def _b(x) -> bool:
    return x is True or x == "True" or x == "true"


def _args(sample: dict) -> list[tuple]:
    """lm-eval's request arguments in request order (``gen_args_<i>`` -> (arg_0, arg_1, ...))."""
    a = sample["arguments"]
    if isinstance(a, dict):
        keys = sorted(a, key=lambda s: int(s.rsplit("_", 1)[1]))
        return [tuple(a[k][f"arg_{j}"] for j in range(len(a[k]))) for k in keys]
    return [tuple(x) for x in a]


def _argmax(xs: list[float]) -> int:
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def _short(s: str, n: int = 160) -> str:
    """repr of a string, keeping its end (where prompts differ after left truncation, and
    where the question is) when long."""
    r = repr(s)
    return r if len(r) <= n else f"[{len(s)} chars] ...{r[-n:]}"


def _first_diff(a: str, b: str) -> str:
    i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"first difference at char {i} (lengths {len(a)} vs {len(b)}): "
            f"lm-eval {a[max(0, i - 40):i + 40]!r} | evalkit {b[max(0, i - 40):i + 40]!r}")


def _decision(name: str, lm_scores: list[float], lm_tols: list[float], lm_pick: int,
              ek_pick: int, out: list[str]) -> str:
    """'' if equal, 'tie' for a within-tolerance tie, 'diff' otherwise."""
    if lm_pick == ek_pick:
        return ""
    if 0 <= ek_pick < len(lm_scores):
        gap = abs(lm_scores[lm_pick] - lm_scores[ek_pick])
        if gap <= lm_tols[lm_pick] + lm_tols[ek_pick]:
            out.append(f"{name}: lm-eval {lm_pick} vs evalkit {ek_pick}: a tie within tolerance (gap {gap:.3g})")
            return "tie"
    out.append(f"{name}: lm-eval picks {lm_pick}, evalkit {ek_pick}")
    return "diff"


def _mc2_acc(c: Check, lm: dict, lm_ll: list[float], tols: list[float], ek_acc: float, out: list[str]) -> str:
    """TruthfulQA MC2's acc, the probability mass on the true answers (lm-eval's
    ``process_results_mc2``: the choices before the first false label are the true ones), is a
    value, not a decision: it may differ by what the log-likelihoods' tolerances allow,
    ``sum_j |d acc / d ll_j| * tol_j`` (``p_j (1 - acc)`` for a true choice, ``p_j acc`` for a
    false one, ``p`` normalised), counted in ``max dev`` like a log-likelihood."""
    lm_acc = _f(lm["acc"])
    labels = list(lm["doc"]["mc2_targets"]["labels"])
    split = labels.index(0) if 0 in labels else len(labels)
    top = max(lm_ll)
    p = [math.exp(x - top) for x in lm_ll]
    total = sum(p)
    slack = sum((q / total) * ((1.0 - lm_acc) if j < split else lm_acc) * t
                for j, (q, t) in enumerate(zip(p, tols)))
    d = abs(lm_acc - ek_acc) / (slack + 1e-9)  # (a floor for rounding where acc is 0 or 1)
    c.max_dev = max(c.max_dev, d)
    if d <= 1.0:
        return ""
    out.append(f"acc (mc2 true mass): lm-eval {lm_acc!r} vs evalkit {ek_acc!r} ({d:.2f} tol)")
    return "diff"


def compare_mc(c: Check, lm: dict, ek: dict, loglikelihood_only: bool) -> None:
    args = _args(lm)
    lm_ll = [_f(r[0][0]) for r in lm["resps"]]
    lm_gr = [_b(r[0][1]) for r in lm["resps"]]
    ek_ll = [float(x) for x in ek.get("loglikelihoods", [])]
    ek_gr = [bool(x) for x in ek.get("is_greedy", [])]
    ctxs, conts = ek.get("contexts", []), ek.get("continuations", [])
    lines: list[str] = []
    bad_str = bad_ll = bad_dec = False
    tie = False
    n = len(args)
    if len(ctxs) != n or len(conts) != n or len(ek_ll) != n or len(ek_gr) != n:
        lines.append(f"lm-eval has {n} requests, evalkit {len(ctxs)} contexts / {len(conts)} continuations / {len(ek_ll)} lls")
        c.strings += 1
        c.fail_row(lm["doc_id"], lines)
        return
    shared_ctx = len({a[0] for a in args}) == 1 and len(set(ctxs)) == 1
    for j, (ctx, cont) in enumerate(args):
        if ctx != ctxs[j] and not (shared_ctx and j > 0):
            bad_str = True
            what = "context" if n == 1 else "context (all choices)" if shared_ctx else f"choice {j} context"
            lines.append(f"{what}: " + _first_diff(ctx, ctxs[j]))
        if cont != conts[j]:
            bad_str = True
            lines.append(f"choice {j} continuation: lm-eval {cont!r} vs evalkit {conts[j]!r}")
    devs = []
    for j in range(n):
        d = abs(lm_ll[j] - ek_ll[j]) / ll_tol(lm_ll[j])
        devs.append(d)
        c.max_dev = max(c.max_dev, d)
        if d > 1.0:
            bad_ll = True
        if lm_gr[j] != ek_gr[j]:
            bad_dec = True
            lines.append(f"choice {j} is_greedy: lm-eval {lm_gr[j]} vs evalkit {ek_gr[j]}")
    if loglikelihood_only:  # LAMBADA: acc is is_greedy
        lm_acc = lm.get("acc")
        ek_acc = ek.get("metrics", {}).get("acc")
        if lm_acc is not None and ek_acc is not None and _f(lm_acc) != _f(ek_acc):
            bad_dec = True
            lines.append(f"acc: lm-eval {lm_acc} vs evalkit {ek_acc}")
    else:
        tols = [ll_tol(x) for x in lm_ll]
        choices = [cont[1:] if cont.startswith(" ") else cont for _, cont in args]
        gold = int(lm["target"]) if str(lm["target"]).lstrip("-").isdigit() else None
        if c.task == "winogrande":  # partial scoring: the gold is doc_to_text's, the target a string
            gold = {"1": 0, "2": 1}.get(str(lm["doc"].get("answer")))
        if gold is not None and ek.get("answer") is not None and gold != int(ek["answer"]):
            bad_dec = True
            lines.append(f"gold: lm-eval {gold} vs evalkit {ek['answer']}")
        lm_pred = _argmax(lm_ll)
        em = ek.get("metrics", {})
        verdicts = [_decision("prediction", lm_ll, tols, lm_pred, int(ek.get("prediction", -1)), lines)]
        # acc / acc_norm / acc_bytes: lm-eval's logged value where it has one, else its formula
        # (argmax of ll / len(choice), of ll / utf-8 bytes) on lm-eval's log-likelihoods.
        for metric, denom in (("acc", None), ("acc_norm", len), ("acc_bytes", lambda s: len(s.encode("utf-8")))):
            if metric not in em:
                continue
            if metric == "acc" and c.task == "truthfulqa_mc2":
                verdicts.append(_mc2_acc(c, lm, lm_ll, tols, _f(em["acc"]), lines))
                continue
            ds = [1.0] * n if denom is None else [float(denom(s)) or 1.0 for s in choices]
            scores = [x / d for x, d in zip(lm_ll, ds)]
            stols = [t / d for t, d in zip(tols, ds)]
            lm_pick = _argmax(scores)
            ek_pick = _argmax([x / d for x, d in zip(ek_ll, ds)])
            lm_val = _f(lm[metric]) if metric in lm else float(lm_pick == gold)
            if lm_val == _f(em[metric]):
                verdicts.append("")
                continue
            lines.append(f"{metric}: lm-eval {lm_val} vs evalkit {em[metric]}")
            v = _decision(f"{metric} pick", scores, stols, lm_pick, ek_pick, lines)
            if v == "":  # same pick from both sides' log-likelihoods, yet different values
                lines.append(f"{metric}: both sides' log-likelihoods pick {lm_pick} (gold {gold})")
                v = "diff"
            verdicts.append(v)
        if "diff" in verdicts:
            bad_dec = True
        elif "tie" in verdicts:
            tie = True
    c.strings += bad_str
    c.ll_fail += bad_ll
    c.decisions += bad_dec
    c.ties += tie and not bad_dec
    if bad_str or bad_ll or bad_dec:
        detail = [f"context {_short(args[0][0])}"]
        for j in range(n):
            detail.append(f"  choice {j} {args[j][1]!r:.60}: ll lm-eval {lm_ll[j]:.6f} evalkit {ek_ll[j]:.6f}"
                          f" (|d| {abs(lm_ll[j] - ek_ll[j]):.2e} = {devs[j]:.2f} tol)"
                          f" greedy {lm_gr[j]}/{ek_gr[j]}")
        c.fail_row(lm["doc_id"], detail + lines)


def compare_rolling(c: Check, lm: dict, ek: dict) -> None:
    (text,) = _args(lm)[0][:1]
    lm_ll = _f(lm["resps"][0][0])
    ek_ll = float(ek["loglikelihood"])
    lines = []
    bad = False
    if text != ek.get("text"):
        c.strings += 1
        bad = True
        lines.append("scored text: " + _first_diff(text, ek.get("text") or ""))
    d = abs(lm_ll - ek_ll) / (TOL_REL_PPL * max(abs(lm_ll), 1e-30))
    c.max_dev = max(c.max_dev, d)
    if d > 1.0:
        c.ll_fail += 1
        bad = True
    words = int(_f(lm["word_perplexity"][1]))
    nbytes = int(_f(lm["byte_perplexity"][1]))
    if words != ek.get("words") or nbytes != ek.get("bytes"):
        c.counts += 1
        bad = True
        lines.append(f"words lm-eval {words} evalkit {ek.get('words')}; bytes lm-eval {nbytes} evalkit {ek.get('bytes')}")
    if bad:
        lines.insert(0, f"page {_short(text, 80)}: ll lm-eval {lm_ll:.4f} evalkit {ek_ll:.4f}"
                        f" (rel {abs(lm_ll - ek_ll) / max(abs(lm_ll), 1e-30):.2e} = {d:.2f} tol),"
                        f" evalkit tokens {ek.get('tokens')}")
        c.fail_row(lm["doc_id"], lines)


GSM8K_FILTERS = {"strict-match": "exact_match_strict", "flexible-extract": "exact_match_flexible"}


def compare_gen(c: Check, lms: dict[str, dict], ek: dict) -> None:
    """``lms``: lm-eval's records of one doc, one per filter."""
    first = next(iter(lms.values()))
    prompt = _args(first)[0][0]
    gen = first["resps"][0][0]
    lines = []
    bad_str = bad_gen = bad_dec = False
    if prompt != ek.get("prompt"):
        bad_str = True
        lines.append("prompt: " + _first_diff(prompt, ek.get("prompt") or ""))
    ek_gen = (ek.get("generations") or [None])[0]
    if gen != ek_gen:
        bad_gen = True
        lines.append("generation: " + _first_diff(gen, ek_gen or ""))
    em = ek.get("metrics", {})
    if c.task == "humaneval" and not any("pass@1" in rec for rec in lms.values()):
        bad_dec = True
        lines.append(f"lm-eval's records ({sorted(lms)}) have no pass@1")
    for filt, rec in sorted(lms.items()):
        if "pass@1" in rec:  # HumanEval: whether prompt + generation passed its tests
            if "pass@1" not in em:
                bad_dec = True
                lines.append(f"{filt}: evalkit has no pass@1")
            elif _f(rec["pass@1"]) != _f(em["pass@1"]):
                bad_dec = True
                lines.append(f"{filt}: lm-eval pass@1 {rec['pass@1']}; evalkit {em['pass@1']}")
            continue
        metric = GSM8K_FILTERS.get(filt)
        if metric is None:
            continue
        ans = rec["filtered_resps"][0]
        if metric not in em:
            bad_dec = True
            lines.append(f"{filt}: evalkit has no {metric}")
        elif _f(rec["exact_match"]) != _f(em[metric]):
            bad_dec = True
            lines.append(f"{filt}: lm-eval extracts {ans!r}, exact_match {rec['exact_match']}; evalkit {metric} {em[metric]}")
    if bad_str or bad_gen or bad_dec:
        lines.insert(0, f"prompt {_short(prompt)}")
        lines.insert(1, f"  lm-eval generated {_short(gen, 200)}")
        lines.insert(2, f"  evalkit generated {_short(ek_gen or '', 200)} (finish {ek.get('finish')})")
    c.strings += bad_str
    c.generations += bad_gen
    c.decisions += bad_dec
    if bad_str or bad_gen or bad_dec:
        c.fail_row(first["doc_id"], lines)


def compare(c: Check, lm_samples: list[dict], ek_samples: list[dict], skip_truncated: bool = False) -> None:
    """Compares every row; with `skip_truncated`, rows evalkit left-truncated to the model's
    length are counted but not compared (lm-eval's local-completions sends them whole)."""
    skipped = []
    ek_by = {int(s["index"]): s for s in ek_samples}
    lm_by: dict[int, dict[str, dict]] = {}
    for s in lm_samples:
        lm_by.setdefault(int(s["doc_id"]), {})[s.get("filter", "none")] = s
    for idx in range(c.rows):
        lms, ek = lm_by.get(idx), ek_by.get(idx)
        if lms is None or ek is None:
            c.missing += 1
            c.fail_row(idx, [f"row missing from {'lm-eval' if lms is None else 'evalkit'}"])
            continue
        c.compared += 1
        if skip_truncated and ek.get("truncated"):
            skipped.append(idx)
            continue
        if c.kind == GEN:
            compare_gen(c, lms, ek)
        else:
            lm = lms.get("none") or next(iter(lms.values()))
            if c.kind == ROLLING:
                compare_rolling(c, lm, ek)
            else:
                compare_mc(c, lm, ek, loglikelihood_only=(c.kind == LL))
    if skipped:
        c.notes.append(f"rows {skipped} are longer than the model: evalkit left-truncates them (as lm-eval's HF model "
                       f"does), lm-eval's local-completions sends them whole; not compared")
    extra = sorted(set(ek_by) - set(range(c.rows)))
    if extra:
        c.notes.append(f"evalkit logged {len(extra)} rows beyond the first {c.rows} (e.g. {extra[:3]})")


def fmt_dev(x: float) -> str:
    return "-" if math.isnan(x) else (f"{x:.3f}" if x < 10 else f"{x:.3g}")
