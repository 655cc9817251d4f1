"""Stacked drafters: the batched forward reproduces transformers, and the engine's results do not depend on it."""

from __future__ import annotations

import numpy as np
import torch
from test_engine import PROMPTS, Fixed

from hedgespec_cli.decoding.drafters import LMGroup, StackedGroup
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.decoding.kinds import group_drafters
from hedgespec_cli.models.stacked import StackedLlama


def test_stacked_forward_matches_transformers(tiny_pool):
    lms = [tiny_pool.drafters[j] for j in range(3)]  # copy, near, far: one shape
    stack = StackedLlama([lm.model for lm in lms])
    # One copy of the weights: each model's parameters are now views of its slice of the stack.
    for j, lm in enumerate(lms):
        embed, q = lm.model.model.embed_tokens.weight, lm.model.model.layers[0].self_attn.q_proj.weight
        assert embed.data_ptr() == stack.embed[j].data_ptr() and torch.equal(q, stack.blocks[0]["q_proj"][j].T)
        assert q.untyped_storage().data_ptr() == stack.blocks[0]["q_proj"].untyped_storage().data_ptr()
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


def test_rotary_tables_grow_with_the_query(tiny_pool):
    """Rotary cos/sin are tabulated once per position and the table doubles as a query grows: a stacked
    forward far past the first table (64 rows), in uneven blocks, still matches transformers."""
    lms = [tiny_pool.drafters[j] for j in range(3)]
    stack = StackedLlama([lm.model for lm in lms])
    text = " ".join(["the cat sat on the mat and looked at the dog"] * 12)
    ids = torch.tensor(tiny_pool.tokenizer(text)["input_ids"])
    assert ids.numel() > 130
    cache = stack.new_cache(ids.numel())
    rows, a = [], 0
    for b in (5, 70, 71, 100, ids.numel()):
        rows.append(stack.forward(ids[a:b], cache))
        a = b
    got = torch.cat(rows, dim=1)
    for j, lm in enumerate(lms):
        with torch.inference_mode():
            want = lm.model(ids.view(1, -1)).logits[0]
        assert torch.allclose(got[j], want, atol=1e-4)


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


def test_only_a_greedy_run_builds_the_screen(tiny_pool):
    """The T = 0 screen (a bf16 copy of the heads) is only read at T = 0: a sampling run does not pay for it."""
    def stacks(**kw):
        engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=8, **kw))
        return [g.stack for g in engine.groups if isinstance(g, StackedGroup)]

    assert all(st.screen is not None for st in stacks())
    assert all(st.screen is None and st.extra_bytes == 0 for st in stacks(temperature=0.8))


def test_stacked_eagle3_heads_match_the_heads_one_by_one(zoo_eagle_pool):
    from hedgespec_cli.decoding.drafters import StackedEagle3Group
    from hedgespec_cli.models.stacked import StackedEagle3

    pool = zoo_eagle_pool
    assert [type(g) for g in group_drafters(pool)] == [StackedEagle3Group]
    heads = pool.drafters
    stack = StackedEagle3(heads)
    ids = torch.tensor(pool.tokenizer("The protein binds to the membrane and")["input_ids"])
    with torch.inference_mode():
        out = pool.target.model(ids.view(1, -1), output_hidden_states=True)
    feats = torch.cat([out.hidden_states[i][0] for i in (2, 4, 5)], dim=-1)  # the 8-layer target's fused layers
    T = len(ids) - 1
    cache = stack.new_cache(64)
    hidden = stack.layer(ids[1:], stack.fuse(feats[:T]), cache)  # (N, T, H), all heads
    deeper = stack.layer(ids[-1:], hidden[:, -1:], cache)  # one step on each head's own hidden
    for j, head in enumerate(heads):
        hc = head.new_cache()
        want, want_h = head.forward(ids[1:], head.fc(feats[:T]), hc)
        assert torch.allclose(stack.target_logits(hidden)[j], head.target_logits(want), atol=1e-4)
        want2, _ = head.forward(ids[-1:], want_h[-1:], hc)
        assert torch.allclose(stack.target_logits(deeper)[j], head.target_logits(want2), atol=1e-4)


def test_stacking_eagle3_heads_changes_no_token_and_no_gamma(zoo_eagle_pool):
    from hedgespec_cli.decoding.tree import TreeShape

    pool = zoo_eagle_pool
    prompts = ["def read_config(path):\n    with open(path) as f:\n", "And it came to pass in those days"]
    for tree in (None, TreeShape(top_k=3, total_tokens=12)):
        settings = DecodeSettings(K=4, max_new_tokens=32, stop_at_eos=False, tree=tree)
        stacked, single = Engine(pool, settings), Engine(pool, settings, stack_drafters=False)
        for prompt in prompts:
            ids = pool.tokenizer(prompt)["input_ids"]
            for arm in range(3):
                for full in (True, False):
                    a, b = stacked.decode(ids, Fixed(arm, 3, full)), single.decode(ids, Fixed(arm, 3, full))
                    assert a.output_ids == b.output_ids
                    assert [r.n for r in a.rounds] == [r.n for r in b.rounds], (prompt, arm, full, tree)
                    if full:
                        assert np.array_equal(a.gamma, b.gamma), (prompt, arm, tree)
