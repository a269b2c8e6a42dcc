"""process_docs of the parity HellaSwag task (copied beside the generated task files).

lm-eval 0.4.13's hellaswag/utils.py builds
``query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`` and
``choices = [preprocess(e) for e in endings]`` from the original Hugging Face rows. Our copy
(klosax's cleaned text, TASKS.md) has only ``ctx`` (already ``activity_label: ...`` and already
cleaned upstream) and ``endings``, which evalkit uses verbatim; so does this function. (Of the
10042 rows, 14 would still be changed by lm-eval's ``preprocess``, the first at row 3505.)
The output fields are the ones lm-eval's hellaswag.yaml reads: query, choices, gold, label.
"""


def process_docs(dataset):
    def _process_doc(doc):
        return {"query": doc["ctx"], "choices": list(doc["endings"]), "gold": int(doc["label"])}

    return dataset.map(_process_doc)
