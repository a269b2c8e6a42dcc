"""What a run compares: (model, task, few-shot k, rows, chat mode) for the full and the quick mode.

Rows are always the first ``rows`` of the task's file (lm-eval ``doc_id`` 0..rows-1). The
counts keep a full run well under 20 minutes and ``--quick`` at two to three minutes on two CPU
cores; WikiText pages are long (thousands of tokens, many windows each), hence few of them.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS = ("stories260K-hf", "tiny-gpt2-random")
CHAT_MODEL = "stories260K-chatml"  # made by checkpoints.py from stories260K-hf
LONG_MODEL = "stories260K-long"  # likewise: room for HumanEval's 1024 new tokens
WINDOW_MODEL = "stories260K-mistral"  # likewise: Mistral's sliding window (64 positions)
SERVED_MODEL = "stories260K-served"  # llama.cpp's server (checkpoints.Server)
# GPT-NeoX, made by checkpoints.py with transformers: Pythia's form, and the sequential residual.
PYTHIA_MODEL, NEOX_SEQUENTIAL_MODEL = "pythia-random", "neox-sequential"
SYSTEM = "You are a careful assistant. Answer the question."

# Prompt settings of a chat mode, for each side: lm-eval's CLI flags, evalkit's.
CHAT_MODES = {
    "": ([], []),
    "chat": (["--apply_chat_template"], ["--apply-chat-template"]),
    "chat-1turn": (["--apply_chat_template", "--fewshot_as_multiturn", "false"],
                   ["--apply-chat-template", "--fewshot-as-multiturn", "false"]),
    "chat+system": (["--apply_chat_template", "--system_instruction", SYSTEM],
                    ["--apply-chat-template", "--system-instruction", SYSTEM]),
    "system": (["--system_instruction", SYSTEM], ["--system-instruction", SYSTEM]),
}
MMLU_FULL = ("mmlu_abstract_algebra", "mmlu_anatomy", "mmlu_high_school_geography")


@dataclass(frozen=True)
class Item:
    model: str
    task: str
    k: int
    rows: int
    chat: str = ""  # a key of CHAT_MODES


def full() -> list[Item]:
    out = []
    for m in MODELS:
        out += [
            Item(m, "arc_easy", 0, 200),
            Item(m, "piqa", 0, 200),
            Item(m, "hellaswag", 0, 200),
            Item(m, "lambada_openai", 0, 200),
            Item(m, "wikitext", 0, 10),
            Item(m, "arc_challenge", 0, 100),
            Item(m, "winogrande", 0, 200),
            Item(m, "boolq", 0, 100),
            Item(m, "truthfulqa_mc1", 0, 100),
            Item(m, "truthfulqa_mc2", 0, 100),
        ]
        for k in (0, 5):
            out += [Item(m, t, k, 100) for t in MMLU_FULL]
        out += [Item(m, "gsm8k", k, 30) for k in (0, 5)]
    return out + chat_full() + [Item(LONG_MODEL, "humaneval", 0, 40)] + window_full() + served(200, 30) + neox_full()


def window_full() -> list[Item]:
    m = WINDOW_MODEL
    return [
        Item(m, "arc_easy", 0, 100),
        Item(m, "hellaswag", 0, 100),
        Item(m, "lambada_openai", 0, 100),
        Item(m, "wikitext", 0, 5),
        Item(m, "gsm8k", 0, 10),
    ]


def neox_full() -> list[Item]:
    p, s = PYTHIA_MODEL, NEOX_SEQUENTIAL_MODEL
    return [
        Item(p, "arc_easy", 0, 200),
        Item(p, "hellaswag", 0, 100),
        Item(p, "lambada_openai", 0, 200),
        Item(p, "wikitext", 0, 5),
        Item(p, "mmlu_anatomy", 5, 50),
        Item(p, "gsm8k", 0, 20),
        Item(s, "arc_easy", 0, 100),
        Item(s, "lambada_openai", 0, 100),
        Item(s, "wikitext", 0, 3),
        Item(s, "gsm8k", 0, 10),
    ]


def served(rows: int, gen_rows: int) -> list[Item]:
    # HellaSwag stops before row 25: there (and at 4 more of the first 200) the model's next
    # token after the ending is EOS, which llama.cpp's server does not echo, and lm-eval's
    # `token_logprobs[ctxlen:-1]` then drops the ending's last token (evalkit counts the echo).
    m = SERVED_MODEL
    return [Item(m, "arc_easy", 0, rows), Item(m, "hellaswag", 0, min(rows, 25)), Item(m, "lambada_openai", 0, rows),
            Item(m, "gsm8k", 0, gen_rows)]


def chat_full() -> list[Item]:
    m = CHAT_MODEL
    return [
        Item(m, "arc_easy", 0, 200, "chat"),
        Item(m, "arc_easy", 0, 50, "chat+system"),
        Item(m, "arc_easy", 0, 50, "system"),
        Item(m, "mmlu_anatomy", 5, 50, "chat"),
        Item(m, "mmlu_anatomy", 5, 50, "chat-1turn"),
        Item(m, "mmlu_anatomy", 0, 50, "chat+system"),
        Item(m, "lambada_openai", 0, 50, "chat"),
        Item(m, "gsm8k", 0, 30, "chat"),
        Item(m, "gsm8k", 5, 30, "chat"),
        Item(m, "gsm8k", 5, 10, "chat-1turn"),
    ]


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
            out += [Item(m, "winogrande", 0, 20), Item(m, "boolq", 0, 10), Item(m, "truthfulqa_mc2", 0, 10)]
            # lm-eval's default sampler (random.Random(1234).sample per row) stays guarded.
            out.append(Item(m, "gsm8k", 5, 10))
    m = CHAT_MODEL
    return out + [
        Item(m, "arc_easy", 0, 20, "chat"),
        Item(m, "mmlu_anatomy", 5, 10, "chat+system"),
        Item(m, "gsm8k", 5, 5, "chat"),
        Item(LONG_MODEL, "humaneval", 0, 3),
        Item(WINDOW_MODEL, "lambada_openai", 0, 10),
        Item(WINDOW_MODEL, "wikitext", 0, 1),
        Item(WINDOW_MODEL, "gsm8k", 0, 3),
        Item(PYTHIA_MODEL, "arc_easy", 0, 20),
        Item(PYTHIA_MODEL, "lambada_openai", 0, 20),
        Item(PYTHIA_MODEL, "wikitext", 0, 2),
        Item(PYTHIA_MODEL, "gsm8k", 0, 5),
        Item(NEOX_SEQUENTIAL_MODEL, "arc_easy", 0, 10),
        Item(NEOX_SEQUENTIAL_MODEL, "lambada_openai", 0, 10),
    ] + served(10, 3)
