"""Draft trees: growth, masks, verification (greedy and sampling), tree gamma, and the engine on trees."""

from __future__ import annotations

import pytest
import torch
from test_eagle_engine import eagle_pool  # noqa: F401  (fixture)
from test_engine import (
    PROMPTS,
    Fixed,
    assert_every_arm_lossless,
    assert_fits,
    reference_greedy,
    sample_two_tokens,
    small_vocab_pool,
    two_token_law,
)

from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.decoding.tree import (
    DraftTree,
    TreeShape,
    gamma_tree_greedy,
    gamma_tree_sampling,
    grow_tree,
    tree_attention,
    verify_tree_greedy,
    verify_tree_sampling,
)
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.models import ModelSpec, load_pool

V = 7


def _table_feed(calls: list):
    """A fake drafter: the next-token logits depend on the fed token only (row t of a fixed table)."""
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(0))

    def feed(tokens, depth, parent_slots, visible):
        calls.append((tokens.clone(), depth, parent_slots.clone(), visible.clone()))
        return table[tokens]

    return feed, table


def test_grow_tree_is_an_eagle2_dynamic_tree():
    calls: list = []
    feed, table = _table_feed(calls)
    root = torch.randn(V, generator=torch.Generator().manual_seed(1))
    shape = TreeShape(top_k=3, total_tokens=10)
    tree = grow_tree(root, feed, depth=4, shape=shape)

    assert len(calls) == 3  # depth - 1 drafter calls, each with top_k nodes
    assert all(c[0].numel() == 3 and c[1] == d for c, d in zip(calls, (1, 2, 3)))
    assert tree.size == 10
    parents, depths = tree.parents.tolist(), tree.depths.tolist()
    for i, p in enumerate(parents):  # parents first, one level up, and scores never rise
        assert p < i
        assert depths[i] == (1 if p < 0 else depths[p] + 1)
        if p >= 0:
            assert tree.scores[i] <= tree.scores[p]
    # Depth 1 is the root's top_k by log-probability.
    logp = torch.log_softmax(root, -1)
    assert set(tree.tokens[tree.depths == 1].tolist()) == set(logp.topk(3).indices.tolist())
    # Fed rows see exactly their fed ancestors and themselves.
    _, _, slots2, vis2 = calls[1]
    assert vis2.shape == (3, 6) and (vis2[:, 3:] == torch.eye(3, dtype=torch.bool)).all()
    assert all(vis2[i, :3].sum() == 1 and vis2[i, int(slots2[i])] for i in range(3))
    # Each kept node's score is its path's cumulative log-probability under the fake drafter.
    for i in range(tree.size):
        path, node = [], i
        while node >= 0:
            path.append(node)
            node = parents[node]
        path.reverse()
        lp, prev = 0.0, None
        for n in path:
            dist = logp if prev is None else torch.log_softmax(table[tree.tokens[prev]], -1)
            lp += float(dist[tree.tokens[n]])
            prev = n
        assert float(tree.scores[i]) == pytest.approx(lp, abs=1e-5)


def test_tree_attention_mask_and_positions():
    tree = _hand_tree()
    visible, depth = tree_attention(tree, prefix=2)
    assert depth.tolist() == [0, 1, 1, 2]
    # rows: root, a (child of root), b (child of root), c (child of a)
    want = [
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 0, 1, 0],
        [1, 1, 1, 1, 0, 1],
    ]
    assert visible.int().tolist() == want


def _hand_tree() -> DraftTree:
    """root -> a=1, b=2; a -> c=3."""
    return DraftTree(
        tokens=torch.tensor([1, 2, 3]), depths=torch.tensor([1, 1, 2]), parents=torch.tensor([-1, -1, 0]),
        scores=torch.tensor([-0.1, -0.5, -0.3]), q_rows=torch.zeros(2, V), slots=torch.tensor([0, -1, -1]),
    )


def _onehot_logits(*best: int) -> torch.Tensor:
    out = torch.zeros(len(best), V)
    out[torch.arange(len(best)), torch.tensor(best)] = 5.0
    return out


def test_verify_tree_greedy_follows_the_target():
    tree = _hand_tree()
    # target: root -> 1, after a -> 3, after c -> 6: accept a, c, then bonus 6
    v = verify_tree_greedy(tree, _onehot_logits(1, 3, 0, 6))
    assert v.path == [0, 2] and v.tokens.tolist() == [1, 3, 6]
    # target wants 2 at the root: accept b, which is a leaf -> bonus from b's row
    v = verify_tree_greedy(tree, _onehot_logits(2, 3, 5, 0))
    assert v.path == [1] and v.tokens.tolist() == [2, 5]
    # nothing matches: the correction only
    v = verify_tree_greedy(tree, _onehot_logits(4, 3, 5, 0))
    assert v.path == [] and v.tokens.tolist() == [4]


def test_verify_tree_sampling_keeps_the_target_law():
    """Per node, the first token's law is p at the root, and after child a the next token's is p at a."""
    tree = _hand_tree()
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(4, V, generator=g), -1)
    draws = 20000
    first = torch.zeros(V)
    second_after_a = torch.zeros(V)
    for _ in range(draws):
        v = verify_tree_sampling(tree, p, g)
        first[v.tokens[0]] += 1
        if v.path[:1] == [0]:
            second_after_a[v.tokens[1]] += 1
    assert_fits(first, p[0])
    assert_fits(second_after_a, p[1])


def test_tree_gamma_is_target_mass_on_the_top_k():
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    q = torch.tensor([[[0.0, 2.0, 1.0, 3.0]], [[3.0, 0.5, 0.0, 0.2]]])  # drafters' logits (N=2, n=1, V=4)
    got = gamma_tree_sampling(p, q, 2)
    assert got[0, 0] == pytest.approx(0.3)  # drafter 0's top-2 = {3, 1}
    assert got[1, 0] == pytest.approx(0.5 + 0.3)  # drafter 1's top-2 = {0, 1}
    assert gamma_tree_greedy(p.log(), q, 2).tolist() == [[0.0], [1.0]]
    assert gamma_tree_greedy(p.log(), q, 3).tolist() == [[0.0], [1.0]]


def test_tree_shape_validation(tiny_pool):
    with pytest.raises(ConfigError, match="top_k"):
        TreeShape(top_k=0)
    with pytest.raises(ConfigError, match="total"):
        TreeShape(total_tokens=0)
    with pytest.raises(ConfigError, match="exceeds the vocabulary"):
        Engine(tiny_pool, DecodeSettings(tree=TreeShape(top_k=tiny_pool.target.vocab_size + 1)))
    assert TreeShape.from_options(0, 60) is None and TreeShape.from_options(4, None) == TreeShape(4, 60)


# -- the engine on trees -------------------------------------------------------

TREES = [TreeShape(top_k=2, total_tokens=6), TreeShape(top_k=4, total_tokens=16)]


@pytest.mark.parametrize("shape", TREES)
def test_tree_decoding_is_lossless(tiny_pool, shape):
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=24, stop_at_eos=False, tree=shape))
    tok, N = tiny_pool.tokenizer, engine.n_drafters
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        want = reference_greedy(tiny_pool.target.model, ids, 24, None)
        for arm in range(N):  # exact copy, near copy, far copy (stacked), random (own group)
            for full in (True, False):
                rec = engine.decode(ids, Fixed(arm, N, full))
                assert rec.output_ids == want, (prompt, arm, full)
                assert all(r.tree_nodes <= shape.total_tokens for r in rec.rounds)


def test_tree_decoding_is_lossless_with_eagle_heads(eagle_pool):  # noqa: F811
    shape = TreeShape(top_k=3, total_tokens=10)
    engine = Engine(eagle_pool, DecodeSettings(K=4, max_new_tokens=24, stop_at_eos=False, tree=shape))
    assert_every_arm_lossless(engine, eagle_pool, min_prompt=2)  # trained head, random head, LM drafter


def test_a_one_child_tree_is_the_chain(tiny_pool):
    """top_k = 1 grows exactly the greedy chain: same rounds as chain drafting, for every drafter."""
    K, tok = 4, tiny_pool.tokenizer
    chain = Engine(tiny_pool, DecodeSettings(K=K, max_new_tokens=20, stop_at_eos=False))
    tree = Engine(tiny_pool, DecodeSettings(K=K, max_new_tokens=20, stop_at_eos=False,
                                            tree=TreeShape(top_k=1, total_tokens=K)))
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        for arm in range(4):
            a, b = chain.decode(ids, Fixed(arm, 4)), tree.decode(ids, Fixed(arm, 4))
            assert [r.n for r in a.rounds] == [r.n for r in b.rounds], (prompt, arm)
            assert (a.gamma == b.gamma).all()  # top-1 membership is argmax agreement
    copy = tree.decode(tok("the cat")["input_ids"], Fixed(0, 4))
    assert copy.mat == pytest.approx(K + 1)


def test_tree_gamma_at_the_root_predicts_the_first_acceptance(tiny_pool):
    """Depth 1 holds the drafter's full top_k, so gamma at a round's first position is exact."""
    shape = TreeShape(top_k=2, total_tokens=6)
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=30, stop_at_eos=False, tree=shape))
    for prompt in PROMPTS:
        for arm in range(4):
            rec = engine.decode(tiny_pool.tokenizer(prompt)["input_ids"], Fixed(arm, 4))
            s = 0
            for r in rec.rounds:
                if r.drafted:
                    assert rec.gamma[s, arm] == float(r.accepted >= 1), (prompt, arm, s)
                s += r.n


def test_tree_sampling_matches_target_distribution(tiny_models):
    """First two tokens at T = 1 through a tree and a poor drafter vs the exact target law."""
    pool = small_vocab_pool(tiny_models, "small_vocab_tree")
    settings = DecodeSettings(K=2, temperature=1.0, max_new_tokens=2, stop_at_eos=False,
                              tree=TreeShape(top_k=2, total_tokens=4))
    engine = Engine(pool, settings, seed=0)
    prompt = pool.tokenizer("ab")["input_ids"]
    assert_fits(sample_two_tokens(engine, prompt), two_token_law(pool, prompt))


@pytest.mark.parametrize("kind", ["lm", "eagle3"])
def test_tree_mat_is_at_least_chain_mat_on_the_zoo(kind):
    """The zoo's generic drafter (LM or EAGLE-3 head): a depth-K tree accepts at least as much as a K chain."""
    from pathlib import Path

    zoo = Path(__file__).resolve().parents[1] / "profiles" / "tiny"
    path = zoo / ("eagle3/generic" if kind == "eagle3" else "drafters/generic")
    pool = load_pool(ModelSpec("target", zoo / "target"), [ModelSpec("generic", path, kind=kind)],
                     tokenizer_path=zoo / "tokenizer")
    prompts = ["def read_config(path):\n    with open(path) as f:\n",
               "And it came to pass in those days, that there went out a decree",
               "The protein binds to the membrane and"]
    mats = {}
    for label, tree in (("chain", None), ("tree", TreeShape(top_k=4, total_tokens=24))):
        engine = Engine(pool, DecodeSettings(K=4, max_new_tokens=48, stop_at_eos=False, tree=tree))
        recs = [engine.decode(pool.tokenizer(p)["input_ids"], Fixed(0, 1)) for p in prompts]
        mats[label] = sum(r.new_tokens for r in recs) / sum(len(r.rounds) for r in recs)
    assert mats["tree"] >= mats["chain"], mats
