"""Hindsight references: they read the whole query's gamma, so only replay can run them.

Both read `QueryContext.hindsight_gamma` (L, N) and learn nothing from
feedback. With 0/1 acceptance indicators (gamma at T = 0; replay's Bernoulli
draws at T > 0) every round length is exact. With acceptance probabilities
(a live bench at T > 0) they use the expected round length A_s of the
one-step estimator (DESIGN.md section 5) instead.

- `oracle`: the best fixed drafter for this query in hindsight (most tokens
  per round when replayed alone; with probabilities, the highest mean A_s),
  then played fixed. Regret against it is the paper's regret against the best
  fixed drafter per query.
- `oracle-round`: every round, the drafter with the longest accepted run from
  the current position. No selector appends more tokens in a round starting
  at the same position; over a whole query it is a greedy reference, which a
  different sequence of round starts can in rare cases beat.

`block_oracle` (a function over a whole trace, not a selector: it needs the
gamma of queries not yet decoded) is the reference of a learner kept across
queries: the best fixed drafter per block of consecutive prompts of one
domain (a `shift` workload's blocks), played fixed through the block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.base import (
    SelectorSetup,
    check_context,
    one_hot,
    register,
    require_bandit,
)
from hedgespec_cli.selection.estimators import expected_round_lengths, round_lengths
from hedgespec_cli.selection.feedback import Decision, Feedback, QueryContext
from hedgespec_cli.selection.trace import is_binary


def fixed_rounds(n_table: np.ndarray) -> np.ndarray:
    """Rounds each drafter needs to produce the query when played alone -> (N,) int.

    n_table: (L, N) from `round_lengths`, n_table[s, j] = tokens a round
    starting at s with drafter j appends.
    """
    L, N = n_table.shape
    rounds = np.zeros(N, dtype=np.int64)
    for j in range(N):
        s = 0
        while s < L:
            s += int(n_table[s, j])
            rounds[j] += 1
    return rounds


def domain_blocks(domains: Sequence[str | None]) -> list[range]:
    """Maximal runs of consecutive queries with the same domain label, in order."""
    blocks: list[range] = []
    start = 0
    for i in range(1, len(domains) + 1):
        if i == len(domains) or domains[i] != domains[start]:
            blocks.append(range(start, i))
            start = i
    return blocks


@dataclass(frozen=True)
class OracleBlock:
    """One block's hindsight reference: queries `queries` (indices), all of domain `domain`."""

    queries: range
    domain: str | None
    arm: int  # the drafter with the fewest rounds over the whole block (ties: lowest index)
    rounds: int  # its rounds over the block
    rounds_per_query: int  # the per-query oracle's rounds over the same queries (<= rounds)


def block_oracle(accept: Sequence[np.ndarray], domains: Sequence[str | None], K: int) -> list[OracleBlock]:
    """The best fixed drafter per block of one domain, in hindsight.

    accept: per query (L, N) 0/1 acceptance (gamma at T = 0), or (L, K, N)
    by drafting depth (EAGLE-3 counterfactuals), in serving order; domains:
    per query. With 0/1 acceptance every fixed drafter's rounds follow
    (`fixed_rounds`), exactly where the trace's counterfactual is exact, so a
    block's reference is what `fixed:NAME` of its best drafter would have
    played on that block.
    """
    if len(accept) != len(domains):
        raise ValueError(f"block_oracle: {len(accept)} queries but {len(domains)} domains")
    if not len(accept):
        return []
    per_query = []  # (Q, N) rounds of each fixed drafter on each query
    for g in accept:
        g = np.asarray(g, dtype=np.float64)
        if g.ndim not in (2, 3) or not is_binary(g):
            raise ValueError("block_oracle needs 0/1 acceptance, (L, N) or (L, K, N) per query (gamma at T = 0)")
        per_query.append(fixed_rounds(round_lengths(g, K)))
    table = np.array(per_query)
    out = []
    for block in domain_blocks(domains):
        total = table[block.start : block.stop].sum(axis=0)  # (N,)
        arm = int(np.argmin(total))
        out.append(OracleBlock(block, domains[block.start], arm, int(total[arm]),
                               int(table[block.start : block.stop].min(axis=1).sum())))
    return out


class _Hindsight:
    needs_full_feedback = False
    needs_block_reward = False

    def __init__(self, setup: SelectorSetup) -> None:
        self.name = setup.name
        self.n = setup.n_drafters
        self._table: np.ndarray | None = None  # (L, N) round lengths of this query

    def begin_query(self, ctx: QueryContext) -> None:
        check_context(self.name, ctx, self.n)
        if ctx.hindsight_gamma is None:
            raise ConfigError(
                f"{self.name} needs the query's gamma in hindsight: run it with `hedgespec replay` "
                "on a trace, not live"
            )
        g = np.asarray(ctx.hindsight_gamma, dtype=np.float64)
        if g.ndim not in (2, 3) or g.shape[-1] != self.n:
            raise ValueError(f"{self.name}: hindsight_gamma must be (L, {self.n}) or (L, K, {self.n}), got {g.shape}")
        self._exact = bool(np.isin(g, (0.0, 1.0)).all())
        # Round lengths: exact for 0/1 gamma, expected (A_s) for acceptance probabilities.
        self._table = round_lengths(g, ctx.K) if self._exact else expected_round_lengths(g, ctx.K)

    def update(self, feedback: Feedback) -> None:
        require_bandit(self.name, feedback, self.n)

    def end_query(self) -> None:
        self._table = None

    def wants_feedback(self, waiting: int) -> bool:
        return True  # takes no full feedback: the engine never asks


@register("oracle", kind="reference", summary="best fixed drafter per query in hindsight (needs a trace)",
          in_default_bench=True)
class Oracle(_Hindsight):
    def begin_query(self, ctx: QueryContext) -> None:
        super().begin_query(ctx)
        if self._exact:
            self.arm = int(np.argmin(fixed_rounds(self._table)))  # fewest rounds = highest MAT; ties: lowest index
        else:
            self.arm = int(np.argmax(self._table.mean(axis=0)))  # most expected tokens per round

    def choose(self, position: int) -> Decision:
        return Decision(self.arm, one_hot(self.arm, self.n))


@register("oracle-round", kind="reference", summary="longest accepted run each round in hindsight (needs a trace)")
class OracleRound(_Hindsight):
    def choose(self, position: int) -> Decision:
        if self._table is None:
            raise ValueError(f"{self.name}: choose before begin_query")
        arm = int(np.argmax(self._table[position]))  # ties: lowest index
        return Decision(arm, one_hot(arm, self.n))
