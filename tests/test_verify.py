"""verify(): hand-built p and q, no models."""

import torch

from hedgespec_cli.decoding.verify import (
    gamma_greedy,
    gamma_sampling,
    process_logits,
    verify_greedy,
    verify_sampling,
)


def one_hot_logits(ids, V=6):
    logits = torch.full((len(ids), V), -5.0)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = 5.0
    return logits


def test_greedy_accepts_all_and_appends_bonus():
    v = verify_greedy(torch.tensor([1, 2, 3]), one_hot_logits([1, 2, 3, 4]))
    assert v.accepted == 3
    assert v.tokens.tolist() == [1, 2, 3, 4]


def test_greedy_rejects_at_k_and_appends_correction():
    v = verify_greedy(torch.tensor([1, 2, 3]), one_hot_logits([1, 5, 3, 4]))
    assert v.accepted == 1
    assert v.tokens.tolist() == [1, 5]


def test_greedy_with_no_draft_is_a_target_step():
    v = verify_greedy(torch.tensor([], dtype=torch.long), one_hot_logits([4]))
    assert (v.accepted, v.tokens.tolist()) == (0, [4])


def test_sampling_accepts_when_p_dominates_q():
    # p(d) >= q(d) everywhere on the draft: min(1, p/q) = 1, always accepted.
    q = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    p = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    v = verify_sampling(torch.tensor([1, 1]), q, p, g)
    assert v.accepted == 2 and v.tokens.tolist() == [1, 1, 2]


def test_sampling_rejection_resamples_from_residual():
    # p(d_1) = 0: always rejected; residual max(0, p - q) puts all mass on token 2.
    q = torch.tensor([[1.0, 0.0, 0.0]])
    p = torch.tensor([[0.0, 0.3, 0.7], [1.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    outs = {tuple(verify_sampling(torch.tensor([0]), q, p, g).tokens.tolist()) for _ in range(50)}
    assert outs <= {(1,), (2,)} and len(outs) == 2


def test_sampling_output_law_is_p():
    """d ~ q, verify: the first emitted token is distributed as p (TV < 0.02 over 20k draws)."""
    g = torch.Generator().manual_seed(1)
    q = torch.tensor([0.6, 0.3, 0.05, 0.05])
    p = torch.tensor([0.1, 0.2, 0.3, 0.4])
    counts = torch.zeros(4)
    for _ in range(20_000):
        d = torch.multinomial(q, 1, generator=g)
        v = verify_sampling(d, q.view(1, -1), torch.stack([p, p]), g)
        counts[v.tokens[0]] += 1
    tv = 0.5 * (counts / counts.sum() - p).abs().sum()
    assert tv < 0.02


def test_process_logits_top_p_keeps_smallest_prefix():
    probs = process_logits(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])), 1.0, top_p=0.7)
    assert torch.allclose(probs, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))


def test_gamma_primitives():
    p = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    q = torch.tensor([[0.6, 0.4], [0.9, 0.1]])
    assert gamma_greedy(p, q).tolist() == [1.0, 0.0]
    assert torch.allclose(gamma_sampling(p, q), torch.tensor([0.9, 0.3], dtype=torch.float64))


def test_argmax_matches_torch_including_ties_nan_and_other_dtypes():
    from hedgespec_cli.decoding.verify import argmax

    g = torch.Generator().manual_seed(0)
    for shape in [(4096,), (6, 4096), (3, 5, 17)]:
        x = torch.randn(shape, generator=g)
        assert torch.equal(argmax(x), x.argmax(dim=-1))
        assert argmax(x).dtype == torch.long
    tie = torch.tensor([[0.0, 2.0, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    assert argmax(tie).tolist() == [1, 0] == tie.argmax(-1).tolist()  # the first maximum
    nan = torch.tensor([0.0, float("nan"), 5.0])
    assert int(argmax(nan)) == int(nan.argmax()) == 1
    half = torch.randn(2, 300, generator=g).bfloat16()  # no numpy dtype: torch's own
    assert torch.equal(argmax(half), half.argmax(-1))
    assert argmax(torch.randn(9, generator=g)).dim() == 0


def test_gamma_sampling_stays_in_0_1_when_float32_sums_overshoot():
    p = torch.softmax(3 * torch.randn(1, 4096, generator=torch.Generator().manual_seed(5)), -1)
    assert float(p.sum()) > 1.0  # 1.0000001 in float32
    assert gamma_sampling(p, p).tolist() == [1.0]
