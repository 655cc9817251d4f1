"""The T = 0 screen (models/screen.py): its answer is the float32 argmax test, row for row."""

from __future__ import annotations

import pytest
import torch

from hedgespec_cli.config import load_profile
from hedgespec_cli.models.screen import Screen, float32_accumulation
from hedgespec_cli.models.stacked import StackedLlama
from hedgespec_cli.runner import open_pool
from hedgespec_cli.workloads import load_workload


def reference(h: torch.Tensor, Wt: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """What the screen must equal: argmax of the float32 logits (first maximum) == target."""
    return (h @ Wt.mT).argmax(dim=-1) == target


@pytest.fixture(scope="module")
def zoo_stack():
    pool = open_pool(load_profile("tiny"))
    return pool, StackedLlama([d.model for d in pool.drafters])


def test_screen_equals_the_float32_argmax_on_the_zoo(zoo_stack):
    """Every drafter's hidden states over held-out prompts, against the target's own next tokens and
    against each drafter's second choice (rows a screen finds hard): no row differs, and the bound
    left some rows to the float32 check, which then decided them."""
    pool, stack = zoo_stack
    screen = stack.screen
    assert screen is not None
    unsure = rows = 0
    for p in load_workload("mixed-domain", limit=7).prompts:
        ids = torch.tensor(pool.tokenizer(p.text)["input_ids"])
        h = stack.hidden(ids, stack.new_cache(ids.numel()))  # (8, T, H)
        with torch.inference_mode():
            target = pool.target.model(ids[None]).logits[0].argmax(-1)
            second = (h @ screen.Wt.mT).topk(2, dim=-1).indices[0, :, 1]  # drafter 0's runner-up
        for t in (target, second):
            assert torch.equal(screen.hits(h, t), reference(h, screen.Wt, t))
            approx = (h.to(torch.bfloat16) @ screen.W16.mT).float()
            S = h.norm(dim=-1) * screen.col_max[:, None]
            top2 = approx.topk(2, dim=-1).values
            unsure += int(((top2[..., 0] - top2[..., 1]) < 2 * screen.alpha * S).sum())
            rows += h.shape[0] * h.shape[1]
    assert rows > 1000 and unsure > 0  # the near-tie path ran


def test_near_ties_and_exact_ties_are_settled_as_argmax_settles_them():
    """Tokens whose logits differ by far less than the bf16 bound, or not at all: the first maximum wins."""
    g = torch.Generator().manual_seed(0)
    Wt = torch.randn(2, 64, 32, generator=g)  # (N, V, H)
    Wt[:, 10] = Wt[:, 20]  # tokens 10 and 20: identical rows, an exact tie
    Wt[:, 30] = Wt[:, 40] * (1 + 1e-5)  # 30 a hair above 40 where the logit is positive
    screen = Screen(Wt)
    h = torch.randn(2, 6, 32, generator=g)
    # make the tied tokens the top ones: h along their rows
    h[:, 0:3] = Wt[:, 20].unsqueeze(1) * 5
    h[:, 3:6] = Wt[:, 40].unsqueeze(1) * 5
    for target in ([10, 20, 10, 30, 40, 30], [20, 20, 20, 40, 40, 40], [1, 2, 3, 4, 5, 6]):
        t = torch.tensor(target)
        want = reference(h, Wt, t)
        assert torch.equal(screen.hits(h, t), want), target
    assert reference(h, Wt, torch.tensor([10] * 6))[:, :3].all()  # the tie goes to the first index
    h[1, 2] = float("nan")  # no bound holds: the row goes to the float32 argmax
    h[0, 4] = 0.0
    h[0, 4, 0] = float("inf")  # logits of +-inf (U and l_t infinite): likewise
    for target in ([0] * 6, [5] * 6, Wt[0, :, 0].argsort()[:6].tolist(), Wt[0, :, 0].argsort()[-6:].tolist()):
        t = torch.tensor(target)
        assert torch.equal(screen.hits(h, t), reference(h, Wt, t)), target


def test_the_screen_stays_off_where_its_bound_fails_or_cannot_pay():
    Wt = torch.randn(2, 64, 32)
    assert Screen.build(Wt.to(torch.bfloat16)) is None  # a bf16 head has nothing to gain
    screen = Screen(Wt)
    probe = torch.randn(2, 16, 32)
    assert screen.bound_holds(probe)
    assert float32_accumulation(32) and float32_accumulation(128)  # this CPU's bf16 GEMM adds up in float32
    screen.alpha = screen.beta = screen.gamma = 0.0  # a bound that bf16 rounding breaks
    assert not screen.bound_holds(probe)
