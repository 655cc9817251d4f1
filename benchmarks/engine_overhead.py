"""Harness overhead: rounds/s of the engine with zero-cost stub models.

The stub target and drafters return a fixed logits tensor without computing
anything, so what is measured is the engine's own per-round Python and torch
bookkeeping (choose, draft loop, verify, roll-back, feedback, learner).

Two pools: `equal`, every drafter predicts what the target does (every draft
is accepted; HedgeSpec's learner then never prefers one, so it evaluates after
every round), and `expert`, drafter d0 does and the others never do (the
learner becomes confident and lazy evaluation lets rounds wait).

    python benchmarks/engine_overhead.py
"""

from __future__ import annotations

import time

import torch

from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.models.causal_lm import ForwardOut
from hedgespec_cli.selection import make_selector
from hedgespec_cli.selection.feedback import QueryContext

V = 4096


class StubCache:
    def __init__(self) -> None:
        self.length = 0

    def crop(self, length: int) -> None:
        self.length = length


class StubLM:
    """Always predicts one token (the target's, 7: that drafter's drafts are all accepted)."""

    def __init__(self, name: str, token: int = 7) -> None:
        self.name, self.device, self.vocab_size, self.max_positions = name, torch.device("cpu"), V, None
        self.logits = torch.zeros(256, V)  # more rows than any call feeds (lazy evaluation: up to 8 rounds)
        self.logits[:, token] = 1.0

    def new_cache(self) -> StubCache:
        return StubCache()

    def forward(
        self, ids: torch.Tensor, cache: StubCache, *, hidden: bool = False, last: int | None = None
    ) -> ForwardOut:
        cache.length += ids.numel()
        return ForwardOut(self.logits[: ids.numel() if last is None else min(last, ids.numel())])


class StubTokenizer:
    eos_token_id = None


class StubSpec:
    kind = "lm"


class StubPool:
    def __init__(self, n: int, expert: bool = False) -> None:
        self.target = StubLM("target")
        self.drafters = [StubLM(f"d{i}", 9 if expert and i else 7) for i in range(n)]
        self.specs = [StubSpec() for _ in range(n)]
        self.tokenizer = StubTokenizer()
        self.names = tuple(d.name for d in self.drafters)
        self.domains = (None,) * n


RUNS = (
    ("equal", 1, "ar"), ("equal", 2, "fixed:d0"), ("equal", 8, "fixed:d0"), ("equal", 8, "ucbspec"),
    *((pool, n, m) for pool in ("equal", "expert") for m in ("hedgespec:every=1", "hedgespec") for n in (2, 8, 16)),
)


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'pool':<8}{'method':<20}{'N':>4}{'rounds/s':>11}   per-round ms by phase")
    for kind, n, method in RUNS:
        pool = StubPool(n, expert=kind == "expert")
        engine = Engine(pool, DecodeSettings(K=5, max_new_tokens=12_000, stop_at_eos=False))
        selector = None if method == "ar" else make_selector(method, n, pool.names)
        if selector is not None:
            selector.begin_query(QueryContext(None, pool.names, pool.domains, 5))
        t = time.perf_counter()
        rec = engine.decode([1, 2, 3], selector)
        rate = len(rec.rounds) / (time.perf_counter() - t)
        split = "  ".join(f"{k} {v / 1e6 / len(rec.rounds):.3f}" for k, v in rec.phase_ns.items() if k != "prefill")
        print(f"{kind:<8}{method:<20}{n:>4}{rate:>11,.0f}   {split}")


if __name__ == "__main__":
    main()
