"""What a selector learns from, one type per information regime.

HedgeSpec (arXiv 2510.20064) rests on the difference between these two types:
full-information feedback carries every drafter's per-position acceptance
probability `gamma`, bandit feedback only the chosen drafter's round outcome.
A bandit selector is handed a `BanditFeedback` and so cannot see the drafters
it did not run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FullFeedback:
    """Full information for the `n` positions verified since the drafters were last
    evaluated: one round, or several when the selector let evaluation wait
    (`wants_feedback`, see selection/base.py `Selector`).

    gamma: (n, N) float64, `gamma[s, j]` = drafter j's acceptance probability
        at the s-th newly verified position (DESIGN.md section 5): the argmax
        indicator at T = 0, `sum min(p, q_j)` at T > 0.
    chosen: the drafter of the last round covered.
    K: the run's draft length.
    depth: (n, K, N) gamma by the depth a position is drafted at (EAGLE-3 heads
        in the `exact` counterfactual mode, estimators.py), None otherwise.
    """

    gamma: np.ndarray
    chosen: int
    K: int
    depth: np.ndarray | None = None


@dataclass(frozen=True)
class BanditFeedback:
    """The chosen drafter's round outcome and nothing else.

    n: tokens appended this round (accepted drafts + correction/bonus), 1..K+1.
    drafted: draft tokens proposed this round (K unless cut by the length cap).
    block_reward: MetaSD's block divergence reward of the chosen drafter,
        `(1/drafted) sum_k (1 - TV(p_k, q_k))` over its drafted positions;
        computed only for selectors with `needs_block_reward = True`
        (None otherwise: it costs a softmax over the vocabulary per round).
        `replay` can only pass a proxy (mean gamma over the accepted positions
        plus the first rejected one): traces do not store distributions.

    Bandit selectors skip rounds with drafted == 0 (the plain target step at
    the length cap), where the choice of drafter did not matter.
    """

    arm: int
    n: int
    drafted: int
    K: int
    block_reward: float | None


Feedback = FullFeedback | BanditFeedback


@dataclass(frozen=True)
class Decision:
    """A selector's choice for one round and the distribution it was drawn from.

    probs: (N,) float64, sums to 1; a deterministic rule puts mass 1 on `arm`.
    weights: (N,) the learner's weights behind the choice, where it keeps
        any (HedgeSpec: probs are its weights when it samples, the default,
        uniform over their argmax (one-hot unless tied) with `play=argmax`);
        None otherwise.
    """

    arm: int
    probs: np.ndarray
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class QueryContext:
    """What a selector may know about a query before decoding it.

    domain: the prompt's true domain label (only `router-label` uses it).
    drafter_names / drafter_domains: the pool, in index order.
    hindsight_gamma: (L, N) gamma of the whole query (or (L, K, N) by depth),
        for the hindsight references `oracle` and `oracle-round` only; None
        for online methods.
    routed_domain: the profile's prompt classifier's guess of the domain (only
        `router` uses it); None without a classifier.
    """

    domain: str | None
    drafter_names: tuple[str, ...]
    drafter_domains: tuple[str | None, ...]
    K: int
    hindsight_gamma: np.ndarray | None = None
    routed_domain: str | None = None
