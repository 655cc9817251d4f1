"""GPU paths, run only where CUDA is visible (`pytest -m gpu`); skipped on CPU-only machines."""

from __future__ import annotations

import pytest
import torch

from hedgespec_cli.config import ModelSpec
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.models import load_pool

from test_engine import PROMPTS, Fixed, reference_greedy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_engine_is_lossless_and_times_with_sync(tiny_models):
    names = ["copy", "near", "far", "random"]
    pool = load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec(n, tiny_models[n]) for n in names], device="cuda")
    assert pool.target.device.type == "cuda"
    engine = Engine(pool, DecodeSettings(K=3, max_new_tokens=24, stop_at_eos=False))
    for prompt in PROMPTS:
        ids = pool.tokenizer(prompt)["input_ids"]
        want = reference_greedy(pool.target.model, ids, 24, None)
        for arm in range(4):
            rec = engine.decode(ids, Fixed(arm, 4))
            assert rec.output_ids == want
            assert sum(rec.phase_ns.values()) == rec.wall_ns


def test_nvml_sampler_sees_the_gpu(tmp_path):
    from hedgespec_cli.telemetry import TelemetrySampler

    with TelemetrySampler(0.05, sink=tmp_path / "t.jsonl") as sampler:
        torch.ones(1024, 1024, device="cuda").matmul(torch.ones(1024, 1024, device="cuda")).sum().item()
    summary = sampler.summary()
    assert summary["gpu_available"], summary["reason"]
    assert summary["devices"][0]["mem_peak_mib"] > 0
