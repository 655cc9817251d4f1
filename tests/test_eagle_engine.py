"""EAGLE-3 heads in the engine: lossless, and their full-information counterfactual is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hedgespec_cli.config import ModelSpec
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.errors import CheckpointError, WorkloadError
from hedgespec_cli.models import load_pool

from conftest import make_llama, make_tokenizer
from test_engine import PROMPTS, Fixed, assert_lazy_matches_eager, reference_greedy


@pytest.fixture(scope="module")
def eagle_pool(tiny_models, tmp_path_factory):
    """A 4-layer target, a briefly trained EAGLE-3 head, a random head and an LM drafter."""
    from hedgespec_cli.zoo.eagle import train_eagle_heads

    root = tmp_path_factory.mktemp("eagle")
    tok = make_tokenizer()
    target = make_llama(root / "target", tok, hidden=64, layers=4, seed=11, sharpen=8.0)
    text = ["the cat sat on the mat. " * 20, "a b c d e f g. " * 20]
    ids = {"mix": torch.tensor(tok("".join(text))["input_ids"])}
    train_eagle_heads(target, ids, root / "heads", seed=0, time_budget_s=60, max_steps=40, seq_len=32,
                      batch_size=4, draft_vocab_size=len(tok))
    untrained = root / "heads_random"
    train_eagle_heads(target, ids, untrained, seed=1, time_budget_s=60, max_steps=1, seq_len=8,
                      batch_size=1, draft_vocab_size=12)  # a 12-token draft vocabulary: mostly wrong
    lm = make_llama(root / "lm", tok, hidden=32, layers=1, seed=12)
    specs = [
        ModelSpec("eagle", root / "heads" / "generic", kind="eagle3"),
        ModelSpec("rand", untrained / "generic", kind="eagle3"),
        ModelSpec("lm", lm),
    ]
    return load_pool(ModelSpec("target", target), specs)


@pytest.mark.parametrize("K", [1, 4])
def test_eagle_heads_are_lossless(eagle_pool, K):
    engine = Engine(eagle_pool, DecodeSettings(K=K, max_new_tokens=24, stop_at_eos=False))
    for prompt in PROMPTS:
        ids = eagle_pool.tokenizer(prompt)["input_ids"]
        if len(ids) < 2:
            continue
        want = reference_greedy(eagle_pool.target.model, ids, 24, None)
        for arm in range(3):
            for full in (True, False):
                assert engine.decode(ids, Fixed(arm, 3, full)).output_ids == want, (prompt, arm, full)


@pytest.mark.parametrize("mode", ["exact", "aligned"])
def test_counterfactual_predicts_each_heads_live_rounds(eagle_pool, mode):
    """Gamma recorded while head 0 drafts predicts, round by round, what each head accepts when it
    drafts itself: every head in the exact mode, only the recording head when aligned."""
    from hedgespec_cli.selection.replay import run_length

    K = 4
    engine = Engine(eagle_pool, DecodeSettings(K=K, max_new_tokens=40, stop_at_eos=False, counterfactual=mode))
    assert engine.counterfactual == (mode, mode, "positional")
    total_accepted, wrong = 0, {0: 0, 1: 0, 2: 0}
    for prompt in PROMPTS:
        ids = eagle_pool.tokenizer(prompt)["input_ids"]
        if len(ids) < 2:
            continue
        rec = engine.decode(ids, Fixed(0, 3))
        accept = rec.gamma_depth if mode == "exact" else rec.gamma
        assert (rec.gamma_depth is not None) == (mode == "exact")
        for j in range(3):
            live = engine.decode(ids, Fixed(j, 3, False))  # bandit feedback: no evaluation at all
            s = 0
            for r in live.rounds:
                wrong[j] += run_length(accept, s, r.drafted, j) != r.accepted
                total_accepted += r.accepted
                s += r.n
    assert total_accepted > 0  # the trained head is accepted sometimes: the check has teeth
    assert wrong[0] == 0 and wrong[2] == 0  # the recording head (its own rounds) and the plain LM
    if mode == "exact":
        assert wrong[1] == 0


def test_depth1_scores_every_position_from_target_features(eagle_pool):
    """depth1: one call a round; gamma at a round's first position equals the exact mode's depth 1."""
    out = {}
    for mode in ("depth1", "exact"):
        engine = Engine(eagle_pool, DecodeSettings(K=4, max_new_tokens=30, stop_at_eos=False, counterfactual=mode))
        ids = eagle_pool.tokenizer(PROMPTS[0])["input_ids"]
        out[mode] = engine.decode(ids, Fixed(1, 3))
    assert out["depth1"].output_ids == out["exact"].output_ids
    np.testing.assert_array_equal(out["depth1"].gamma, out["exact"].gamma_depth[:, 0])


@pytest.mark.parametrize("mode", ["depth1", "aligned", "exact"])
def test_lazy_evaluation_scores_heads_as_evaluating_every_round_does(eagle_pool, mode):
    engine = Engine(eagle_pool, DecodeSettings(K=4, max_new_tokens=24, stop_at_eos=False, counterfactual=mode))
    assert_lazy_matches_eager(engine, eagle_pool, every=3, steps=24, min_prompt=2)


def test_mismatched_heads_fail_clearly(eagle_pool, tmp_path):
    cfg_path = eagle_pool.specs[0].path / "config.json"
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in eagle_pool.specs[0].path.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads(cfg_path.read_text())
    cfg["architectures"] = ["MysteryForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="MysteryForCausalLM"):
        load_pool(ModelSpec("target", eagle_pool.specs[2].path.parent / "target"), [ModelSpec("bad", bad, kind="eagle3")])


def test_a_head_trained_on_shorter_contexts_runs_to_the_targets_limit_with_one_warning(eagle_pool, capsys):
    """Released EAGLE heads say max_position_embeddings 2048: the limit is the target's, with a warning."""
    head = eagle_pool.drafters[0]
    assert head.max_positions is None and head.trained_positions == head.config.max_position_embeddings
    saved = head.trained_positions
    head.trained_positions = 16  # as if trained on 16-token contexts
    try:
        engine = Engine(eagle_pool, DecodeSettings(K=4, max_new_tokens=40, stop_at_eos=False))
        ids = eagle_pool.tokenizer(PROMPTS[0])["input_ids"]
        want = reference_greedy(eagle_pool.target.model, ids, 40, None)
        for _ in range(2):
            engine.check_prompt(ids)
            assert engine.decode(ids, Fixed(0, 3, True)).output_ids == want
        err = capsys.readouterr().err
        assert err.count("warning:") == 1 and "'eagle' was trained on contexts of 16 tokens" in err
        assert err.count("\n") == 1
        target_limit = eagle_pool.target.max_positions
        with pytest.raises(WorkloadError, match=f"context of {target_limit} tokens"):
            Engine(eagle_pool, DecodeSettings(K=4, max_new_tokens=target_limit)).check_prompt(ids)
    finally:
        head.trained_positions = saved
