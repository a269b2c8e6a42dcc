"""Reads the benchmark files under ``$EVALKIT_SHARED/data`` as evalkit does (TASKS.md) and
writes their first ``n`` rows as JSON Lines in the field layout of the Hugging Face dataset
that lm-eval 0.4.13's task of the same name reads, so that lm-eval's own task definitions
(prompt, choices, target, metrics) apply to them unchanged.

Every reader returns rows in file order; row ``i`` here is evalkit's sample ``index`` ``i``
and lm-eval's ``doc_id`` ``i``.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Callable, Iterator


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def arc(data: Path, part: str) -> list[dict]:
    """ARC (``allenai/ai2_arc`` layout): question, choices {text, label}, answerKey."""
    path = data / "arc" / part / f"{part}-Test.jsonl"
    rows = []
    for r in _jsonl(path):
        q = r["question"]
        rows.append(
            {
                "id": r["id"],
                "question": q["stem"],
                "choices": {
                    "text": [c["text"] for c in q["choices"]],
                    "label": [c["label"] for c in q["choices"]],
                },
                "answerKey": r["answerKey"],
            }
        )
    return rows


def piqa(data: Path) -> list[dict]:
    """PIQA (``baber/piqa`` layout): goal, sol1, sol2, label (from valid-labels.lst)."""
    rows = list(_jsonl(data / "piqa" / "valid.jsonl"))
    labels = (data / "piqa" / "valid-labels.lst").read_text(encoding="utf-8").split()
    if len(labels) != len(rows):
        raise ValueError(f"piqa: {len(rows)} rows but {len(labels)} labels")
    return [
        {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(lab)}
        for r, lab in zip(rows, labels)
    ]


def hellaswag(data: Path) -> list[dict]:
    """HellaSwag, klosax's cleaned copy (three parts in order): ctx, endings, label.

    This copy has no ``activity_label``/``ctx_a``/``ctx_b``; the parity task's
    ``process_docs`` (``parity_hellaswag.py``) uses ``ctx`` and ``endings`` verbatim, as
    TASKS.md says evalkit does."""
    rows = []
    for k in (1, 2, 3):
        for r in _jsonl(data / "hellaswag" / f"hellaswag_val_klosax.part{k}of3.jsonl"):
            rows.append(
                {"idx": r["idx"], "ctx": r["ctx"], "endings": r["endings"], "label": int(r["label"])}
            )
    return rows


def lambada(data: Path) -> list[dict]:
    """LAMBADA, OpenAI version (``EleutherAI/lambada_openai`` layout): text."""
    return [{"text": r["text"]} for r in _jsonl(data / "lambada" / "lambada_test.jsonl")]


_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext(data: Path) -> list[dict]:
    """WikiText-2 raw test as pages (``EleutherAI/wikitext_document_level`` layout: page).

    TASKS.md: a page starts at each top-level heading line and runs to the next one; its
    text is its lines joined with "\\n"; the blank line before the first heading belongs to
    no page."""
    raw = (data / "wikitext2" / "wiki.test.raw").read_text(encoding="utf-8")
    lines = raw.split("\n")
    if raw.endswith("\n"):
        lines.pop()  # the empty string after the final newline is no line
    pages: list[list[str]] = []
    for line in lines:
        if _HEADING.match(line):
            pages.append([line])
        elif pages:
            pages[-1].append(line)
    return [{"page": "\n".join(p)} for p in pages]


def _mmlu_csv(path: Path, subject: str) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for rec in csv.reader(f):
            if len(rec) != 6:
                raise ValueError(f"{path}: a row with {len(rec)} fields")
            rows.append(
                {
                    "question": rec[0],
                    "subject": subject,
                    "choices": rec[1:5],
                    "answer": "ABCD".index(rec[5].strip()),
                }
            )
    return rows


def mmlu_test(data: Path, subject: str) -> list[dict]:
    """MMLU (``cais/mmlu`` layout): question, subject, choices, answer (index)."""
    return _mmlu_csv(data / "mmlu" / "test" / f"{subject}_test.csv", subject)


def mmlu_dev(data: Path, subject: str) -> list[dict]:
    """The few-shot split of an MMLU subject (all of it: lm-eval takes its first k)."""
    return _mmlu_csv(data / "mmlu" / "dev" / f"{subject}_dev.csv", subject)


def gsm8k(data: Path, split: str) -> list[dict]:
    """GSM8K (``openai/gsm8k`` ``main`` layout): question, answer."""
    return [{"question": r["question"], "answer": r["answer"]} for r in _jsonl(data / "gsm8k" / f"{split}.jsonl")]


def humaneval(data: Path) -> list[dict]:
    """HumanEval (``openai/openai_humaneval`` layout): task_id, prompt, canonical_solution, test,
    entry_point."""
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return [{k: r[k] for k in keys} for r in _jsonl(data / "humaneval" / "HumanEval.jsonl")]


def winogrande(data: Path) -> list[dict]:
    """WinoGrande (``allenai/winogrande`` ``winogrande_xl`` layout): sentence, option1, option2,
    answer ("1"/"2")."""
    return [
        {"sentence": r["sentence"], "option1": r["option1"], "option2": r["option2"], "answer": r["answer"]}
        for r in _jsonl(data / "winogrande" / "dev.jsonl")
    ]


def boolq(data: Path) -> list[dict]:
    """BoolQ (``aps/super_glue`` ``boolq`` layout): passage, question, idx, label (1 for true)."""
    return [
        {"passage": r["passage"], "question": r["question"], "idx": i, "label": int(bool(r["answer"]))}
        for i, r in enumerate(_jsonl(data / "boolq" / "dev.jsonl"))
    ]


def truthfulqa(data: Path) -> list[dict]:
    """TruthfulQA (``truthfulqa/truthful_qa`` ``multiple_choice`` layout): question, and
    mc1_targets / mc2_targets as {choices, labels}, from ``mc_task.json``'s answer -> label
    objects in file order."""
    rows = json.loads((data / "truthfulqa" / "mc_task.json").read_text(encoding="utf-8"))
    targets = lambda t: {"choices": list(t), "labels": [int(v) for v in t.values()]}  # noqa: E731
    return [
        {"question": r["question"], "mc1_targets": targets(r["mc1_targets"]), "mc2_targets": targets(r["mc2_targets"])}
        for r in rows
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


class Cache:
    """Reads each source once per run."""

    def __init__(self, data: Path):
        self.data = data
        self._rows: dict[tuple, list[dict]] = {}

    def rows(self, key: tuple, read: Callable[[], list[dict]]) -> list[dict]:
        if key not in self._rows:
            self._rows[key] = read()
        return self._rows[key]
