"""Stacked drafters: the batched forward reproduces transformers, and the engine's results do not depend on it."""

from __future__ import annotations

import numpy as np
import torch

from hedgespec_cli.decoding.drafters import LMGroup, StackedGroup, group_drafters
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.models.stacked import StackedLlama

from test_engine import PROMPTS, Fixed


def test_stacked_forward_matches_transformers(tiny_pool):
    lms = [tiny_pool.drafters[j] for j in range(3)]  # copy, near, far: one shape
    stack = StackedLlama([lm.model for lm in lms])
    cache = stack.new_cache(64)
    ids = torch.tensor(tiny_pool.tokenizer("the cat sat on the mat")["input_ids"])
    head = stack.forward(ids[:10], cache)  # all members
    tail = stack.forward(ids[10:], cache)
    for j, lm in enumerate(lms):
        with torch.inference_mode():
            want = lm.model(ids.view(1, -1)).logits[0]
        assert torch.allclose(torch.cat([head[j], tail[j]]), want, atol=1e-4)
    cache.lengths[1] = 12  # one member rolled back, fed alone
    with torch.inference_mode():
        want = lms[1].model(ids[:15].view(1, -1)).logits[0, 12:]
    assert torch.allclose(stack.forward(ids[12:15], cache, member=1)[0], want, atol=1e-4)


def test_pool_grouping(tiny_pool):
    groups = group_drafters(tiny_pool)
    assert sorted(g.members for g in groups) == [(0, 1, 2), (3,)]
    assert {type(g) for g in groups} == {StackedGroup, LMGroup}
    assert all(isinstance(g, LMGroup) for g in group_drafters(tiny_pool, stack=False))


def test_stacking_changes_no_token_and_no_gamma(tiny_pool):
    settings = DecodeSettings(K=3, max_new_tokens=30, stop_at_eos=False)
    stacked, plain = Engine(tiny_pool, settings), Engine(tiny_pool, settings, stack_drafters=False)
    for prompt in PROMPTS:
        ids = tiny_pool.tokenizer(prompt)["input_ids"]
        for arm in range(4):
            a, b = stacked.decode(ids, Fixed(arm, 4)), plain.decode(ids, Fixed(arm, 4))
            assert a.output_ids == b.output_ids
            assert [r.n for r in a.rounds] == [r.n for r in b.rounds]
            np.testing.assert_array_equal(a.gamma, b.gamma)
