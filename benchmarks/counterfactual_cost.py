"""Evaluation cost of each EAGLE-3 counterfactual mode (DESIGN.md section 5), in one process.

hedgespec on the tiny-eagle3 profile, the first 7 mixed-domain prompts, 64 new
tokens, K = 5: per mode, the heads' stacked-layer calls and rows per round
made while evaluating (full-information feedback), and the engine's own
`evaluate` time per round. Two passes; the second is printed (the first warms
up). Counts are exact; times depend on the machine's load.

    python benchmarks/counterfactual_cost.py [TEMPERATURE]
"""

from __future__ import annotations

import sys

from hedgespec_cli.bench.query import run_query
from hedgespec_cli.config import load_profile
from hedgespec_cli.decoding import drafters
from hedgespec_cli.decoding.engine import Engine
from hedgespec_cli.decoding.settings import COUNTERFACTUAL_MODES, DecodeSettings
from hedgespec_cli.models.stacked import StackedEagle3
from hedgespec_cli.runner import open_pool
from hedgespec_cli.workloads import load_workload


def main(temperature: float = 0.0) -> None:
    pool = open_pool(load_profile("tiny-eagle3"))
    prompts = load_workload("mixed-domain", limit=7).prompts
    ids = [pool.tokenizer(p.text, verbose=False)["input_ids"] for p in prompts]
    count = {"on": False, "calls": 0, "rows": 0}
    layer, observe = StackedEagle3.layer, drafters.StackedEagle3Group.observe

    def counted_layer(self, token_ids, *args, **kwargs):
        if count["on"]:
            count["calls"] += 1
            count["rows"] += token_ids.numel()
        return layer(self, token_ids, *args, **kwargs)

    def counted_observe(self, *args, **kwargs):
        count["on"] = True
        try:
            return observe(self, *args, **kwargs)
        finally:
            count["on"] = False

    StackedEagle3.layer, drafters.StackedEagle3Group.observe = counted_layer, counted_observe
    for rep in range(2):
        for mode in COUNTERFACTUAL_MODES:
            engine = Engine(pool, DecodeSettings(K=5, temperature=temperature, max_new_tokens=64,
                                                 counterfactual=mode), seed=0)
            count.update(calls=0, rows=0)
            rounds = tokens = evaluate_ns = 0
            for i, (p, x) in enumerate(zip(prompts, ids)):
                engine.generator.manual_seed(i)
                rec = run_query(engine, x, "hedgespec", domain=p.domain, seed=0)
                rounds, tokens = rounds + len(rec.rounds), tokens + rec.new_tokens
                evaluate_ns += rec.phase_ns["evaluate"]
            if rep:
                print(f"{mode:8s} T={temperature}: {rounds} rounds, MAT {tokens / rounds:.3f}; per round in "
                      f"evaluation: {count['calls'] / rounds:.2f} head calls, {count['rows'] / rounds:.1f} head rows, "
                      f"{evaluate_ns / rounds / 1e6:.2f} ms")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
