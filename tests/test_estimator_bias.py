"""The one-step estimator's bias at T > 0, on a case small enough to enumerate (DESIGN.md section 5).

Two tokens {a, b}, one drafter, K = 2. Position 1: p = (1/2, 1/2), q = (1, 0),
so the drafter always proposes a and gamma_1 = 1/2. Position 2 depends on
the committed first token: after a, q = p (gamma = 1); after b, q and p are
disjoint (gamma = 0).

- True expected round length: a real round continues only after an ACCEPTED
  draft, here always a, so E[n] = 1 + 1/2 + 1/2 * 1 = 2.
- The estimator reads the committed text, whose first token the target drew
  from p: after a (prob 1/2) A = 1 + 1/2 + 1/2 * 1 = 2, after b A = 1.5; its
  expectation is 1.75. It is biased low by 0.25 tokens: gamma at depth 2 is
  scored after a token drawn from p, not from the accepted-draft law
  min(p, q) / gamma_1.
"""

from __future__ import annotations

import pytest
import torch

from hedgespec_cli.decoding.verify import gamma_sampling, verify_sampling
from hedgespec_cli.selection.estimators import acceptance_lengths

A, B = 0, 1
P1, Q1 = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
P2 = {A: torch.tensor([0.3, 0.7]), B: torch.tensor([1.0, 0.0])}
Q2 = {A: torch.tensor([0.3, 0.7]), B: torch.tensor([0.0, 1.0])}
P3 = torch.tensor([0.5, 0.5])  # the bonus position: any law


def estimator_expectation() -> float:
    """E over the committed first token x1 ~ p1 of A_0 computed from the text's own gamma."""
    g1 = float(gamma_sampling(P1, Q1))
    total = 0.0
    for x1 in (A, B):
        g2 = float(gamma_sampling(P2[x1], Q2[x1]))
        A0 = acceptance_lengths([[g1], [g2]], 2, close=True)[0, 0]
        total += float(P1[x1]) * A0
    return total


def true_expectation_enumerated() -> float:
    """E[n] of a real round, enumerated: draft y1 ~ q1, y2 ~ q2(.|y1), each kept w.p. min(1, p/q)."""
    total = 1.0  # the correction or bonus token
    for y1 in (A, B):
        if Q1[y1] == 0:
            continue
        keep1 = float(Q1[y1] * torch.clamp(P1[y1] / Q1[y1], max=1.0))
        total += keep1
        for y2 in (A, B):
            if Q2[y1][y2] == 0:
                continue
            total += keep1 * float(Q2[y1][y2] * torch.clamp(P2[y1][y2] / Q2[y1][y2], max=1.0))
    return total


def test_the_worked_case_by_enumeration():
    assert estimator_expectation() == pytest.approx(1.75)
    assert true_expectation_enumerated() == pytest.approx(2.0)


def test_the_engines_speculative_sampling_agrees_with_the_enumeration():
    """The verify function the engine runs, sampled 20,000 times: mean round length 2.0, not 1.75."""
    g = torch.Generator().manual_seed(0)
    trials, total = 20_000, 0
    for _ in range(trials):
        y1 = int(torch.multinomial(Q1, 1, generator=g))
        y2 = int(torch.multinomial(Q2[y1], 1, generator=g))
        q = torch.stack([Q1, Q2[y1]])
        p = torch.stack([P1, P2[y1], P3])
        total += verify_sampling(torch.tensor([y1, y2]), q, p, g).tokens.numel()
    mean = total / trials
    se = 0.8 / trials ** 0.5  # n in {1, 2, 3}: standard deviation below 0.82
    assert abs(mean - 2.0) < 4 * se
    assert mean - estimator_expectation() > 0.2  # the estimator's bias is real, not sampling noise
