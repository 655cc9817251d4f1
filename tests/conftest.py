"""Tiny random Llama checkpoints built inside the tests and loaded through the real loaders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine
# spinning OpenMP workers slow every matmul down by an order of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,"


def make_tokenizer(chars: str = ALPHABET):
    """A character-level tokenizer with BOS/EOS/UNK, in Hugging Face format."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def make_llama(path: Path, tokenizer, *, hidden: int, layers: int, seed: int, sharpen: float = 1.0):
    """Save a random LlamaForCausalLM (+ tokenizer) at path; sharpen scales the output logits."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpen)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_near_copy(src: Path, dst: Path, tokenizer, *, noise: float, seed: int) -> Path:
    """A drafter that agrees with the target often but not always: target weights + noise."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        for w in model.parameters():
            w.add_(noise * w.std() * torch.randn_like(w))
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return dst


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Target, an exact copy, two noisy copies and a random (terrible) drafter."""
    import shutil

    root = tmp_path_factory.mktemp("tiny")
    tok = make_tokenizer()
    target = make_llama(root / "target", tok, hidden=64, layers=2, seed=0, sharpen=8.0)
    copy = root / "copy"
    shutil.copytree(target, copy)
    return {
        "target": target,
        "copy": copy,
        "near": make_near_copy(target, root / "near", tok, noise=0.3, seed=1),
        "far": make_near_copy(target, root / "far", tok, noise=1.0, seed=2),
        "random": make_llama(root / "random", tok, hidden=32, layers=1, seed=3),
    }


@pytest.fixture(scope="session")
def tiny_pool(tiny_models):
    from hedgespec_cli.models import ModelSpec, load_pool

    names = ["copy", "near", "far", "random"]
    return load_pool(
        ModelSpec("target", tiny_models["target"]),
        [ModelSpec(n, tiny_models[n]) for n in names],
    )


@pytest.fixture(scope="session")
def zoo_eagle_pool():
    """The tiny zoo's target with three of its EAGLE-3 heads (same shape: they stack)."""
    from hedgespec_cli.models import ModelSpec, load_pool

    zoo = Path(__file__).resolve().parents[1] / "profiles" / "tiny"
    return load_pool(ModelSpec("target", zoo / "target"),
                     [ModelSpec(n, zoo / "eagle3" / n, kind="eagle3") for n in ("generic", "code", "math")],
                     tokenizer_path=zoo / "tokenizer")


@pytest.fixture(scope="session")
def tiny_bench(tiny_models, tmp_path_factory) -> dict[str, str]:
    """A profile over the tiny checkpoints and a two-domain workload, as YAML files."""
    import json

    from hedgespec_cli.selection.classifier import PromptClassifier

    root = tmp_path_factory.mktemp("bench")
    tok = make_tokenizer()
    # The router's classifier, "trained" on text like each domain's prompts.
    train = {"alpha": ["the cat sat on the mat"] * 3, "beta": ["zz yy xx ww zz yy"] * 3}
    PromptClassifier.fit({d: [tok(t)["input_ids"] for t in texts] for d, texts in train.items()},
                         len(tok)).save(root / "router.npz")
    (root / "profile.yaml").write_text(
        "name: testpool\ndescription: tiny random models\n"
        f"target: {{path: {tiny_models['target']}}}\n"
        "router: router.npz\n"
        "drafters:\n"
        f"  - {{name: near, path: {tiny_models['near']}, domain: alpha, role: generic}}\n"
        f"  - {{name: far, path: {tiny_models['far']}, domain: beta}}\n"
        f"  - {{name: rnd, path: {tiny_models['random']}}}\n"
        "decoding: {K: 3, temperature: 0.0, max_new_tokens: 16}\n"
    )
    for domain, text in (("alpha", "the cat sat"), ("beta", "zz yy xx")):
        rows = [{"id": f"{domain}-{i}", "domain": domain, "prompt": f"{text} {i}"} for i in range(3)]
        (root / f"{domain}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "workload.yaml").write_text(
        "name: testwl\ndescription: two domains\nschedule: mixed\nseed: 0\n"
        "sources: [{path: alpha.jsonl}, {path: beta.jsonl}]\n"
    )
    return {"profile": str(root / "profile.yaml"), "workload": str(root / "workload.yaml"), "root": str(root)}


@pytest.fixture
def run_main(capsys, monkeypatch):
    """`hedgespec ARGS` through the real entry point -> (exit code, stderr).

    transformers' log handler writes to the stderr of its import time (pytest's, not capsys's),
    so what reaches its handlers is added to the stderr returned: in a shell it lands there too."""
    import logging

    from transformers.utils import logging as hf_logging

    logged: list[str] = []

    class Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage() + "\n")

    root = hf_logging.get_logger()
    monkeypatch.setattr(root, "handlers", [*root.handlers, Record()])

    def run(*args: str) -> tuple[int, str]:
        logged.clear()
        monkeypatch.setattr(sys, "argv", ["hedgespec", *args])
        try:
            from hedgespec_cli.cli.app import main

            main()
            code = 0
        except SystemExit as stop:
            code = stop.code
        return code, "".join(logged) + capsys.readouterr().err

    return run
