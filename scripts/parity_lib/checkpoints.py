"""Checkpoints the parity run makes for itself (into its work directory), from the shared ones.

``stories260K-chatml``: stories260K-hf made an instruct model the way people make one with
transformers — ``<|im_start|>`` and ``<|im_end|>`` added as special tokens, the embeddings
resized (new rows drawn by transformers' mean resizing under ``torch.manual_seed(0)``; the
head is tied), then ``<|im_end|>``'s row set to 1.05 × the row of ``.`` so that the model ends its
turn where it would end a sentence (generation must stop there), Qwen2's ChatML template (as committed in
core/tests/fixtures/chat-templates/qwen2.jinja) as its chat template, and ``<|im_end|>``
added to generation_config.json's EOS list — saved with ``save_pretrained`` (transformers 5
writes the template to chat_template.jinja).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHATML_TEMPLATE = REPO / "core" / "tests" / "fixtures" / "chat-templates" / "qwen2.jinja"

GENERATED = {"stories260K-chatml": "stories260K-hf"}


def is_generated(name: str) -> bool:
    return name in GENERATED


def model_dir(name: str, shared: Path, work: Path) -> Path:
    """The checkpoint folder of `name`: shared/models/<name>, or made under the work dir."""
    if name not in GENERATED:
        return shared / "models" / name
    out = work / "models" / name
    if not (out / "config.json").is_file():
        make_chatml(shared / "models" / GENERATED[name], out)
    return out


def make_chatml(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()

    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    torch.manual_seed(0)
    model.resize_token_embeddings(len(tok))
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[tok.convert_tokens_to_ids("<|im_end|>")] = 1.05 * emb[tok.convert_tokens_to_ids(".")]
    tok.chat_template = CHATML_TEMPLATE.read_text(encoding="utf-8")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = [tok.eos_token_id, im_end]
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    # The tokens must be single added tokens, the template where transformers 5 puts it.
    ids = tok("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and im_end in ids, ids
    assert (out / "chat_template.jinja").is_file(), sorted(p.name for p in out.iterdir())
