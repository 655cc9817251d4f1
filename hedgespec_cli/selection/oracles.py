"""Hindsight references: they read the whole query's gamma, so only replay can run them.

Both take `QueryContext.hindsight_gamma` as 0/1 acceptance indicators (L, N)
(gamma at T = 0; replay passes its Bernoulli draws at T > 0; values are
read as `>= 0.5`) and learn nothing from feedback.

- `oracle`: the best fixed drafter for this query in hindsight (most tokens
  per round when replayed alone), then played fixed. Regret against it is the
  paper's regret against the best fixed drafter per query.
- `oracle-round`: every round, the drafter with the longest accepted run from
  the current position. No selector appends more tokens in a round starting
  at the same position; over a whole query it is a greedy reference, which a
  different sequence of round starts can in rare cases beat.
"""

from __future__ import annotations

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.base import (
    SelectorSetup,
    check_context,
    one_hot,
    register,
    require_bandit,
)
from hedgespec_cli.selection.estimators import round_lengths
from hedgespec_cli.selection.feedback import Decision, Feedback, QueryContext


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


class _Hindsight:
    needs_full_feedback = False

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
        if g.ndim != 2 or g.shape[1] != self.n:
            raise ValueError(f"{self.name}: hindsight_gamma must be (L, {self.n}), got {g.shape}")
        self._table = round_lengths((g >= 0.5).astype(np.float64), ctx.K)

    def update(self, feedback: Feedback) -> None:
        require_bandit(self.name, feedback, self.n)

    def end_query(self) -> None:
        self._table = None


@register("oracle", kind="reference", summary="best fixed drafter per query in hindsight (needs a trace)")
class Oracle(_Hindsight):
    def begin_query(self, ctx: QueryContext) -> None:
        super().begin_query(ctx)
        self.arm = int(np.argmin(fixed_rounds(self._table)))  # fewest rounds = highest MAT; ties: lowest index

    def choose(self, position: int) -> Decision:
        return Decision(self.arm, one_hot(self.arm, self.n))


@register("oracle-round", kind="reference", summary="longest accepted run each round in hindsight (needs a trace)")
class OracleRound(_Hindsight):
    def choose(self, position: int) -> Decision:
        if self._table is None:
            raise ValueError(f"{self.name}: choose before begin_query")
        arm = int(np.argmax(self._table[position]))  # ties: lowest index
        return Decision(arm, one_hot(arm, self.n))
