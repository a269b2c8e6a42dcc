"""What a run compares: (model, task, few-shot k, rows) for the full and the quick mode.

Rows are always the first ``rows`` of the task's file (lm-eval ``doc_id`` 0..rows-1). The
counts keep a full run well under 20 minutes and ``--quick`` at about two minutes on two CPU
cores; WikiText pages are long (thousands of tokens, many windows each), hence few of them.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS = ("stories260K-hf", "tiny-gpt2-random")
MMLU_FULL = ("mmlu_abstract_algebra", "mmlu_anatomy", "mmlu_high_school_geography")


@dataclass(frozen=True)
class Item:
    model: str
    task: str
    k: int
    rows: int


def full() -> list[Item]:
    out = []
    for m in MODELS:
        out += [
            Item(m, "arc_easy", 0, 200),
            Item(m, "piqa", 0, 200),
            Item(m, "hellaswag", 0, 200),
            Item(m, "lambada_openai", 0, 200),
            Item(m, "wikitext", 0, 10),
        ]
        for k in (0, 5):
            out += [Item(m, t, k, 100) for t in MMLU_FULL]
        out += [Item(m, "gsm8k", k, 30) for k in (0, 5)]
    return out


def quick() -> list[Item]:
    out = []
    for m in MODELS:
        out += [
            Item(m, "arc_easy", 0, 20),
            Item(m, "lambada_openai", 0, 20),
            Item(m, "wikitext", 0, 3),
            Item(m, "mmlu_anatomy", 0, 20),
            Item(m, "mmlu_anatomy", 5, 20),
            Item(m, "gsm8k", 0, 20 if m == MODELS[0] else 10),
        ]
        if m == MODELS[0]:
            # lm-eval's default sampler (random.Random(1234).sample per row) stays guarded.
            out.append(Item(m, "gsm8k", 5, 10))
    return out
