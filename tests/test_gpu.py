"""GPU paths, run only where CUDA is visible (`pytest -m gpu`); skipped on CPU-only machines."""

from __future__ import annotations

import pytest
import torch

from hedgespec_cli.config import ModelSpec
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.decoding.tree import TreeShape
from hedgespec_cli.models import load_pool

from test_eagle_engine import eagle_pool  # noqa: F401  (fixture)
from test_engine import PROMPTS, Fixed, assert_every_arm_lossless, reference_greedy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_engine_is_lossless_and_times_with_sync(tiny_models, monkeypatch):
    names = ["copy", "near", "far", "random"]
    pool = load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec(n, tiny_models[n]) for n in names], device="cuda")
    assert pool.target.device.type == "cuda"
    engine = Engine(pool, DecodeSettings(K=3, max_new_tokens=24, stop_at_eos=False))
    syncs, real = [], torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: (syncs.append(device), real(device))[1])
    for prompt in PROMPTS:
        ids = pool.tokenizer(prompt)["input_ids"]
        want = reference_greedy(pool.target.model, ids, 24, None)
        for arm in range(4):
            syncs.clear()
            rec = engine.decode(ids, Fixed(arm, 4))
            assert rec.output_ids == want
            # Every phase boundary of every round reads the clock after synchronising the device.
            assert len(syncs) >= 5 * len(rec.rounds)


@pytest.mark.parametrize("shape", [TreeShape(top_k=2, total_tokens=6), TreeShape(top_k=4, total_tokens=16)])
def test_cuda_tree_decoding_is_lossless(tiny_models, shape):
    """Tree verification passes a custom 4D attention mask: the CUDA attention kernels must honour it."""
    names = ["copy", "near", "far", "random"]
    pool = load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec(n, tiny_models[n]) for n in names], device="cuda")
    assert_every_arm_lossless(Engine(pool, DecodeSettings(K=3, max_new_tokens=24, stop_at_eos=False, tree=shape)), pool)


def test_cuda_eagle_heads_are_lossless_on_chains_and_trees(eagle_pool):  # noqa: F811
    specs = eagle_pool.specs
    pool = load_pool(ModelSpec("target", specs[2].path.parent / "target"), list(specs), device="cuda")
    for tree in (None, TreeShape(top_k=3, total_tokens=10)):  # trained head, random head, LM drafter
        engine = Engine(pool, DecodeSettings(K=4, max_new_tokens=24, stop_at_eos=False, tree=tree))
        assert_every_arm_lossless(engine, pool, min_prompt=2)


def test_nvml_sampler_sees_the_gpu(tmp_path):
    from hedgespec_cli.telemetry import TelemetrySampler

    with TelemetrySampler(0.05, sink=tmp_path / "t.jsonl") as sampler:
        torch.ones(1024, 1024, device="cuda").matmul(torch.ones(1024, 1024, device="cuda")).sum().item()
    summary = sampler.summary()
    assert summary["gpu_available"], summary["reason"]
    assert summary["devices"][0]["mem_peak_mib"] > 0
