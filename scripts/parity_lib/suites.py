"""The evalkit suites the parity check covers, each tied to the lm-eval 0.4.13 task file whose
definitions it must reproduce (TASKS.md), and the writing of the parity task files.

A parity task file is a two-part YAML: ``include:`` of lm-eval's own task file (so prompt,
choices, target, metrics, description, filters and generation settings are lm-eval's, byte for
byte, including its ``!function`` helpers such as the WikiText detokenizer), then overrides
that only point it at our rows (``dataset_path: json`` + ``data_files``), switch off splits our
data does not have, rename it (``parity_<task>_<k>shot``, no clash with lm-eval's names) and
fix its number of few-shot examples. The one definition not taken from lm-eval is HellaSwag's
``process_docs``: our copy is already cleaned (no ``ctx_a``/``ctx_b``), see
``lmeval_utils/parity_hellaswag.py``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import data as D

MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology "
    "college_chemistry college_computer_science college_mathematics college_medicine college_physics "
    "computer_security conceptual_physics econometrics electrical_engineering elementary_mathematics "
    "formal_logic global_facts high_school_biology high_school_chemistry high_school_computer_science "
    "high_school_european_history high_school_geography high_school_government_and_politics "
    "high_school_macroeconomics high_school_mathematics high_school_microeconomics high_school_physics "
    "high_school_psychology high_school_statistics high_school_us_history high_school_world_history "
    "human_aging human_sexuality international_law jurisprudence logical_fallacies machine_learning "
    "management marketing medical_genetics miscellaneous moral_disputes moral_scenarios nutrition "
    "philosophy prehistory professional_accounting professional_law professional_medicine "
    "professional_psychology public_relations security_studies sociology us_foreign_policy virology "
    "world_religions"
).split()

# Kinds of comparison.
MC = "multiple_choice"  # several (context, continuation) pairs, argmax decisions
LL = "loglikelihood"  # one pair, is_greedy (LAMBADA)
ROLLING = "rolling"  # rolling loglikelihood of a page (WikiText)
GEN = "generate"  # greedy generation + answer extraction (GSM8K) or tests run (HumanEval)


@dataclass(frozen=True)
class Suite:
    name: str  # evalkit's task name
    kind: str
    base_yaml: str  # lm-eval's task file, relative to lm_eval/tasks
    eval_split: str  # the split lm-eval's task evaluates (its test_split, else validation_split)
    eval_rows: Callable[[Path], list[dict]]
    # Splits of the base file that our data lacks (set to null so lm-eval never reads them).
    null_splits: tuple[str, ...] = ()
    fewshot_split: str | None = None  # the base file's few-shot split, when it has one
    fewshot_rows: Callable[[Path], list[dict]] | None = None
    overrides: dict = field(default_factory=dict)  # extra keys, YAML text values
    helpers: tuple[str, ...] = ()  # files of lmeval_utils/ copied beside the task files
    # Generation: the most new tokens lm-eval's task asks for (its generation_kwargs, else the
    # HF model's max_gen_toks, 256), which evalkit's suite asks for too.
    max_new: int = 256


def suite(name: str) -> Suite:
    if name in ("arc_easy", "arc_challenge"):
        part = "ARC-Easy" if name == "arc_easy" else "ARC-Challenge"
        return Suite(name, MC, f"arc/{name}.yaml", "test", lambda d: D.arc(d, part),
                     null_splits=("training_split", "validation_split"))
    if name == "piqa":
        return Suite(name, MC, "piqa/piqa.yaml", "validation", D.piqa, null_splits=("training_split",))
    if name == "hellaswag":
        return Suite(name, MC, "hellaswag/hellaswag.yaml", "validation", D.hellaswag,
                     null_splits=("training_split",),
                     overrides={"process_docs": "!function parity_hellaswag.process_docs"},
                     helpers=("parity_hellaswag.py",))
    if name == "winogrande":
        return Suite(name, MC, "winogrande/default.yaml", "validation", D.winogrande, null_splits=("training_split",))
    if name == "boolq":
        return Suite(name, MC, "super_glue/boolq/default.yaml", "validation", D.boolq, null_splits=("training_split",))
    if name in ("truthfulqa_mc1", "truthfulqa_mc2"):
        return Suite(name, MC, f"truthfulqa/{name}.yaml", "validation", D.truthfulqa)
    if name == "lambada_openai":
        return Suite(name, LL, "lambada/lambada_openai.yaml", "test", D.lambada)
    if name == "wikitext":
        return Suite(name, ROLLING, "wikitext/wikitext.yaml", "test", D.wikitext,
                     null_splits=("training_split", "validation_split"))
    if name.startswith("mmlu_") and name[5:] in MMLU_SUBJECTS:
        s = name[5:]
        return Suite(name, MC, f"mmlu/default/mmlu_{s}.yaml", "test", lambda d: D.mmlu_test(d, s),
                     fewshot_split="dev", fewshot_rows=lambda d: D.mmlu_dev(d, s),
                     overrides={"task_alias": "null"})
    if name == "gsm8k":
        return Suite(name, GEN, "gsm8k/gsm8k.yaml", "test", lambda d: D.gsm8k(d, "test"),
                     fewshot_split="train", fewshot_rows=lambda d: D.gsm8k(d, "train"))
    if name == "humaneval":
        # Its pass@1 runs code through Hugging Face evaluate's `code_eval`, which lm-eval loads
        # from the hub; the parity run provides it offline (lmeval_utils/code_eval).
        return Suite(name, GEN, "humaneval/humaneval.yaml", "test", D.humaneval, max_new=1024)
    raise SystemExit(f"parity: no parity definition for task {name!r}")


def lmeval_task_name(task: str, k: int, rows: int) -> str:
    # The rows are in the name: a plan may hold one (task, k) at two row counts (chat modes).
    return f"parity_{task}_{k}shot_n{rows}"


def lmeval_tasks_dir() -> Path:
    """lm-eval's bundled task files, located without importing lm_eval (slow)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("parity: lm_eval is not importable from this Python")
    return Path(list(spec.submodule_search_locations)[0]) / "tasks"


def write_task(out_dir: Path, data_dir: Path, shared_data: Path, cache: D.Cache,
               s: Suite, k: int, rows: int) -> tuple[str, list[dict]]:
    """Writes the data files and the task file of (suite, k, rows); returns the lm-eval task
    name and the evaluated rows (what evalkit must see as rows 0..rows-1)."""
    base = lmeval_tasks_dir() / s.base_yaml
    if not base.is_file():
        raise SystemExit(f"parity: lm-eval's task file {base} is missing")
    all_rows = cache.rows((s.name, "eval"), lambda: s.eval_rows(shared_data))
    rows_used = all_rows[:rows]
    files = {s.eval_split: str(D.write_jsonl(data_dir / f"{s.name}.{s.eval_split}.n{len(rows_used)}.jsonl", rows_used))}
    if s.fewshot_split:
        pool = cache.rows((s.name, "fewshot"), lambda: s.fewshot_rows(shared_data))
        files[s.fewshot_split] = str(D.write_jsonl(data_dir / f"{s.name}.{s.fewshot_split}.jsonl", pool))
    name = lmeval_task_name(s.name, k, len(rows_used))
    lines = [
        f"# Parity task: lm-eval 0.4.13's {s.base_yaml} over the first {len(rows_used)} rows",
        "# of evalkit's data (written by scripts/parity; see scripts/parity_lib/suites.py).",
        f"include: {json.dumps(str(base))}",
        f"task: {name}",
        "tag: []",
        "dataset_path: json",
        "dataset_name: null",
        "dataset_kwargs:",
        "  data_files: " + json.dumps(files),
        *(f"{key}: null" for key in s.null_splits),
        f"num_fewshot: {k}",
        *(f"{key}: {val}" for key, val in s.overrides.items()),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for h in s.helpers:
        shutil.copyfile(Path(__file__).parent / "lmeval_utils" / h, out_dir / h)
    return name, rows_used
