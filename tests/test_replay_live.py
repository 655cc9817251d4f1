"""Replay of a recorded T = 0 trace reproduces the live engine exactly (issue #4)."""

from __future__ import annotations

import pytest

from hedgespec_cli.bench.query import context_for
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.selection import SelectorSpec, make_selector
from hedgespec_cli.selection.replay import replay
from hedgespec_cli.selection.seeding import SelectorBank
from hedgespec_cli.selection.trace import Trace, TraceQuery

PROMPTS = ["the cat sat on", "a, b. c", "zzz", "hello world and more"]


@pytest.mark.parametrize("stop_at_eos", [False, True])
def test_replay_matches_live_rounds(tiny_pool, stop_at_eos):
    K, max_new = 3, 40
    engine = Engine(tiny_pool, DecodeSettings(K=K, max_new_tokens=max_new, stop_at_eos=stop_at_eos))
    names, N = tiny_pool.names, len(tiny_pool.names)
    prompts = [tiny_pool.tokenizer(p)["input_ids"] for p in PROMPTS]
    recorder = make_selector("fixed:random", N, names)
    queries = []
    for i, ids in enumerate(prompts):
        recorder.begin_query(context_for(tiny_pool, K, None))
        rec = engine.decode(ids, recorder, record_gamma=True)
        queries.append(TraceQuery(f"q{i}", None, rec.output_ids, rec.gamma, i))
    trace = Trace(K, 0.0, max_new, names, tiny_pool.domains, queries, seed=7, counterfactual=engine.counterfactual)
    methods = ["fixed:near", "fixed:far", "hedgespec", "hedgespec:loss=tap", "ucbspec", "random",
               "hedgespec:reset=never", "exp3spec"]
    result = replay(trace, methods, seed=7)
    assert result.exact
    for method in methods:
        bank = SelectorBank(names, 7, 0)  # seeded as the live bench seeds each query's selector
        for i, (ids, replayed) in enumerate(zip(prompts, result.runs[SelectorSpec.parse(method).label].queries)):
            live = bank.get(method, i)
            live.begin_query(context_for(tiny_pool, K, None))
            rec = engine.decode(ids, live)
            live.end_query()
            assert [r.drafter for r in rec.rounds] == replayed.arms.tolist(), method
            assert [r.n for r in rec.rounds] == replayed.n.tolist(), method
            assert rec.mat == pytest.approx(replayed.n.mean()), method
