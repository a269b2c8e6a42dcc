"""Checkpoints the parity run makes for itself (into its work directory), from the shared ones.

``stories260K-chatml``: stories260K-hf made an instruct model the way people make one with
transformers — ``<|im_start|>`` and ``<|im_end|>`` added as special tokens, the embeddings
resized (new rows drawn by transformers' mean resizing under ``torch.manual_seed(0)``; the
head is tied), then ``<|im_end|>``'s row set to 1.05 × the row of ``.`` so that the model ends its
turn where it would end a sentence (generation must stop there), Qwen2's ChatML template (as committed in
core/tests/fixtures/chat-templates/qwen2.jinja) as its chat template, and ``<|im_end|>``
added to generation_config.json's EOS list — saved with ``save_pretrained`` (transformers 5
writes the template to chat_template.jinja).

``stories260K-long``: stories260K-hf with ``max_position_embeddings`` 1280 (its rotary positions
need no table, so the weights are unchanged), for HumanEval's 1024 new tokens: both sides keep
the last 256 tokens of a longer prompt (about half of HumanEval's), the rest whole.

``stories260K-mistral``: stories260K-hf read as a Mistral checkpoint with ``sliding_window``
64 (weights unchanged): each query attends its last 64 positions, so longer rows (HellaSwag,
LAMBADA, WikiText's 512-token windows, GSM8K's prompts) differ from the Llama reading, and both
sides must apply the window alike.

``pythia-random`` and ``neox-sequential``: seeded random ``GPTNeoXForCausalLM`` models
made by transformers (nothing shared holds GPT-NeoX weights) with the real GPT-NeoX-20B /
Pythia tokenizer of ``gpt-neox-20b-tokenizer``. ``pythia-random`` has Pythia's shape choices
(a quarter of each head rotary, attention and MLP side by side, exact GELU, an untied head
named ``embed_out``) and its ``config.json`` in the hub's older layout (``rotary_pct``,
``rotary_emb_base``); ``neox-sequential`` adds attention and MLP one after the other,
rotates half of each head, uses the tanh GELU and keeps transformers 5's layout
(``rope_parameters``). Both use ``initializer_range`` 0.3, so that next-token distributions are
far from uniform.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHATML_TEMPLATE = REPO / "core" / "tests" / "fixtures" / "chat-templates" / "qwen2.jinja"

LONG_POSITIONS = 1280
SLIDING_WINDOW = 64
# Served by llama.cpp's server (scripts/install-llama-server: llama-cpp-python[server]==0.3.36
# and a GGUF of the checkpoint); both sides reach it over HTTP, with the checkpoint's tokenizer.
SERVED = {"stories260K-served": "stories260K-hf"}


def is_generated(name: str) -> bool:
    return name in GENERATED or name in SERVED


class Server:
    """llama.cpp's server on a free port of 127.0.0.1 for the duration of a `with`."""

    def __init__(self, log: Path):
        import os
        import socket
        import subprocess

        out = subprocess.run([str(REPO / "scripts" / "install-llama-server")], check=True, capture_output=True,
                             text=True).stdout.split()
        paths = dict(kv.split("=", 1) for kv in out)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.gguf = paths["EVALKIT_SERVED_GGUF"]
        self.log = log.open("w")
        # n_ctx 1024: a 512-token window and the token echo asks for.
        self.proc = subprocess.Popen([paths["EVALKIT_LLAMA_PYTHON"], "-m", "llama_cpp.server", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--n_ctx", "1024", "--model", self.gguf],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "Server":
        import socket
        import time

        t0 = time.monotonic()
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() - t0 > 60 or self.proc.poll() is not None:
                    raise SystemExit(f"parity: llama.cpp's server did not start (log {self.log.name})")
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def model_dir(name: str, shared: Path, work: Path) -> Path:
    """The checkpoint folder of `name`: shared/models/<name>, or made under the work dir (for
    a served model, the checkpoint it serves: its tokenizer and max length)."""
    if name in SERVED:
        return shared / "models" / SERVED[name]
    if name not in GENERATED:
        return shared / "models" / name
    out = work / "models" / name
    if not (out / "config.json").is_file():
        source, make = GENERATED[name]
        make(shared / "models" / source, out)
    return out


def with_config(src: Path, out: Path, **changes) -> None:
    """A copy of the checkpoint `src` in `out` (its weights and tokenizer) whose config.json
    differs by `changes`."""
    import json
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("config.json", "reference.json"):
            shutil.copyfile(f, out / f.name)
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    cfg.update(changes)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def make_long(src: Path, out: Path) -> None:
    with_config(src, out, max_position_embeddings=LONG_POSITIONS)


def make_mistral(src: Path, out: Path) -> None:
    with_config(src, out, model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=SLIDING_WINDOW)


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


def make_neox(src: Path, out: Path, *, parallel: bool, rotary: float, act: str, hub_layout: bool) -> None:
    import json
    import shutil

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "20B_tokenizer.json", out / "tokenizer.json")
    eot = "<|endoftext|>"
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPTNeoXTokenizer", "bos_token": eot, "eos_token": eot, "unk_token": eot,
        "add_prefix_space": False}, indent=2) + "\n", encoding="utf-8")
    config = GPTNeoXConfig(vocab_size=50304, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=256, max_position_embeddings=1024, rotary_pct=rotary,
                           rotary_emb_base=10000, use_parallel_residual=parallel, hidden_act=act,
                           initializer_range=0.3, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(1234)
    model = GPTNeoXForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    if hub_layout:
        cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
        rope = cfg.pop("rope_parameters")
        cfg.update(rotary_pct=rope["partial_rotary_factor"], rotary_emb_base=rope["rope_theta"])
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    # transformers reads the files back as they are written, and tokenizes as the file does.
    again = GPTNeoXForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert again.config.rope_parameters["partial_rotary_factor"] == rotary, again.config.rope_parameters
    ids = torch.tensor([[510, 3158, 8516, 30013, 27287, 689, 253, 22658, 4370, 15]])
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
    text = "Hello world,   caf\u00e9\n\tdone"
    want = Tokenizer.from_file(str(out / "tokenizer.json")).encode(text).ids
    assert AutoTokenizer.from_pretrained(out)(text)["input_ids"] == want


def make_pythia(src: Path, out: Path) -> None:
    make_neox(src, out, parallel=True, rotary=0.25, act="gelu", hub_layout=True)


def make_neox_sequential(src: Path, out: Path) -> None:
    make_neox(src, out, parallel=False, rotary=0.5, act="gelu_new", hub_layout=False)


# The checkpoints made here: the shared checkpoint each starts from, and what makes it.
GENERATED = {
    "stories260K-chatml": ("stories260K-hf", make_chatml),
    "stories260K-long": ("stories260K-hf", make_long),
    "stories260K-mistral": ("stories260K-hf", make_mistral),
    "pythia-random": ("gpt-neox-20b-tokenizer", make_pythia),
    "neox-sequential": ("gpt-neox-20b-tokenizer", make_neox_sequential),
}
