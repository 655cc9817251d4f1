"""Baselines: bandit selectors (UCBSpec, EXP3Spec, MetaSD-UCB) and static rules.

Every selector here has `needs_full_feedback = False`: it receives
`BanditFeedback` (the chosen drafter's round outcome only) and raises
`FeedbackTypeError` if handed `FullFeedback`. Bandits skip rounds with no
drafting (k = 0, the plain target step at the length cap): the choice did
not matter there, and `n = 1` would read as a failure of the arm.
"""

from __future__ import annotations

import math

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.base import (
    RESET,
    Param,
    SelectorSetup,
    argmax_decision,
    check_context,
    check_finite,
    one_hot,
    register,
    require_bandit,
    sample_decision,
)
from hedgespec_cli.selection.feedback import BanditFeedback, Decision, Feedback, QueryContext


class _Bandit:
    """Shared state: per-arm pulls and reward sums, the last decision, reset per query."""

    needs_full_feedback = False
    needs_block_reward = False

    def __init__(self, setup: SelectorSetup, *, reset: str = "query") -> None:
        self.name = setup.name
        self.n = setup.n_drafters
        self.rng = setup.rng
        self.reset = reset
        self._last: Decision | None = None
        self._clear()

    def _clear(self) -> None:
        self.pulls = np.zeros(self.n, dtype=np.int64)  # n_i
        self.reward_sum = np.zeros(self.n)
        self.t = 0  # rounds learned from

    def begin_query(self, ctx: QueryContext) -> None:
        check_context(self.name, ctx, self.n)
        if self.reset == "query":
            self._clear()
        self._last = None

    def end_query(self) -> None:
        self._last = None

    def wants_feedback(self, waiting: int) -> bool:
        return True  # takes no full feedback: the engine never asks

    def choose(self, position: int) -> Decision:
        self._last = self._decide()
        return self._last

    def update(self, feedback: Feedback) -> None:
        require_bandit(self.name, feedback, self.n)
        if self._last is None or feedback.arm != self._last.arm:
            chose = None if self._last is None else self._last.arm
            raise ValueError(f"{self.name}: feedback for arm {feedback.arm} but the last choice was {chose}")
        if feedback.drafted > 0:
            self._learn(feedback, self._last)

    def _decide(self) -> Decision:
        raise NotImplementedError

    def _learn(self, feedback: BanditFeedback, decision: Decision) -> None:
        raise NotImplementedError

    def _untried(self) -> Decision | None:
        """Round-robin start: the lowest-index arm not yet pulled, if any."""
        fresh = np.flatnonzero(self.pulls == 0)
        return Decision(int(fresh[0]), one_hot(int(fresh[0]), self.n)) if fresh.size else None


@register(
    "ucbspec",
    kind="online",
    adaptive=True,
    in_default_bench=True,
    summary="UCBSpec (BanditSpec Alg. 4): UCB on accepted tokens n, radius eq. 6",
    params={
        "delta": Param(
            float, 0.1, check=lambda d: 0 < d < 1, rule="in (0, 1)",
            help="confidence parameter (the paper leaves its value open; 0.1 is this toolkit's)",
        ),
        "reset": RESET,
    },
)
class UCBSpec(_Bandit):
    """UCBSpec, BanditSpec (arXiv 2505.15141) Algorithm 4, eqs. 5-7 (Algorithm 8 in full).

    The paper's symbols against ours: its K arms are our N drafters, its
    maximum speculation length L is our K, its reward Y_{i,s} = len(X_{i,s}) is
    our n (accepted drafts plus the bonus, in [1, K+1]), and its t counts the
    rounds already played, whose statistics pick round t+1.
    """

    def __init__(self, setup: SelectorSetup, *, delta: float, reset: str) -> None:
        super().__init__(setup, reset=reset)
        self.delta = delta
        self.K = 1

    def begin_query(self, ctx: QueryContext) -> None:
        super().begin_query(ctx)
        self.K = ctx.K  # L in the paper: the radius scales with the reward's range

    def radius(self) -> np.ndarray:
        """cr_{i,t}, BanditSpec eq. 6, in tokens (the units of the reward n), (N,).

        cr_{i,t} = (L/2) sqrt((1 + n_{i,t}) / n_{i,t}^2 * (1 + 2 log(K t^2 (1 + n_{i,t})^(1/2) / delta)))
        with L = our K, K = our N, t = rounds learned from so far. L/2: n lies in
        [1, K+1], a range of width K, so it is (K/2)-sub-Gaussian (the paper's
        proof of Thm 4.3, step 2).
        """
        n_i, t = self.pulls.astype(np.float64), self.t
        log_term = np.log(self.n * t**2 * np.sqrt(1 + n_i) / self.delta)
        return (self.K / 2) * np.sqrt((1 + n_i) / n_i**2 * (1 + 2 * log_term))

    def _decide(self) -> Decision:
        first = self._untried()  # Alg. 4 line 1: round robin over the first N rounds
        if first is not None:
            return first
        mu = self.reward_sum / self.pulls  # eq. 5: mean accepted tokens
        return argmax_decision(mu + self.radius(), self.rng)  # eq. 7, Alg. 4 line 4

    def _learn(self, feedback: BanditFeedback, decision: Decision) -> None:
        self.pulls[feedback.arm] += 1
        self.reward_sum[feedback.arm] += feedback.n  # Y = len(X): tokens appended, bonus included
        self.t += 1


@register(
    "exp3spec",
    kind="online",
    adaptive=True,
    in_default_bench=True,
    summary="EXP3Spec (BanditSpec): exponential weights on importance-weighted losses",
    params={"reset": RESET},
)
class EXP3Spec(_Bandit):
    """EXP3Spec, BanditSpec (arXiv 2505.15141), as given in DESIGN.md section 6."""

    def __init__(self, setup: SelectorSetup, *, reset: str) -> None:
        super().__init__(setup, reset=reset)

    def _clear(self) -> None:
        super()._clear()
        self.Z = np.zeros(self.n)  # sum of importance-weighted losses Z_i

    def probs(self) -> np.ndarray:
        # eta_t = sqrt(log N / (t N)), p_i ∝ exp(-eta_t * sum Z_i), t = the round being decided
        eta = math.sqrt(math.log(self.n) / ((self.t + 1) * self.n))
        log_w = -eta * self.Z
        w = np.exp(log_w - log_w.max())
        return w / w.sum()

    def _decide(self) -> Decision:
        return sample_decision(self.probs(), self.rng)

    def _learn(self, feedback: BanditFeedback, decision: Decision) -> None:
        # Z_i = 1[i chosen] (K + 1 - n) / (K p_i)
        K = feedback.K
        self.Z[feedback.arm] += (K + 1 - feedback.n) / (K * decision.probs[feedback.arm])
        check_finite(self.Z, "EXP3Spec cumulative losses")
        self.pulls[feedback.arm] += 1
        self.t += 1


@register(
    "metasd-ucb",
    kind="online",
    adaptive=True,
    in_default_bench=True,
    summary="MetaSD-UCB: UCB1 on the block-divergence reward",
    not_replayable=(
        "its reward, 1 - TV(p, q) averaged over the positions the drafter drafts, needs the "
        "distributions along drafts a trace does not hold (a counterfactual drafter's draft leaves "
        "the verified text at its first rejection); run it live with `hedgespec bench`"
    ),
    params={
        "beta": Param(float, 1.0, check=lambda b: b >= 0, rule=">= 0", help="exploration weight"),
        "reset": RESET,
    },
)
class MetaSDUCB(_Bandit):
    """MetaSD-UCB (arXiv 2604.05417), DESIGN.md section 6: UCB1 with weight beta.

    Reward: the block divergence (1/k) sum_k (1 - TV(p_k, q_i,k)) of the chosen
    drafter over its drafted positions, carried by BanditFeedback.block_reward.
    """

    needs_block_reward = True

    def __init__(self, setup: SelectorSetup, *, beta: float, reset: str) -> None:
        super().__init__(setup, reset=reset)
        self.beta = beta

    def _decide(self) -> Decision:
        first = self._untried()
        if first is not None:
            return first
        n_i = self.pulls.astype(np.float64)
        # argmax mu_i + beta sqrt(2 ln t / n_i), t = rounds learned from so far (UCB1)
        return argmax_decision(self.reward_sum / n_i + self.beta * np.sqrt(2 * math.log(self.t) / n_i), self.rng)

    def _learn(self, feedback: BanditFeedback, decision: Decision) -> None:
        reward = feedback.block_reward
        if reward is None:
            raise ValueError(f"{self.name}: feedback without block_reward (the live engine computes it)")
        if not math.isfinite(reward) or not -1e-9 <= reward <= 1 + 1e-9:
            check_finite(np.array([reward]), "MetaSD block reward")
            raise ValueError(f"{self.name}: block_reward {reward} outside [0, 1]")
        self.pulls[feedback.arm] += 1
        self.reward_sum[feedback.arm] += reward
        self.t += 1


# -- static rules -----------------------------------------------------------------


class _Static:
    """A rule that learns nothing; it still refuses full-information feedback."""

    needs_full_feedback = False
    needs_block_reward = False

    def __init__(self, setup: SelectorSetup) -> None:
        self.name = setup.name
        self.n = setup.n_drafters
        self.rng = setup.rng

    def begin_query(self, ctx: QueryContext) -> None:
        check_context(self.name, ctx, self.n)

    def update(self, feedback: Feedback) -> None:
        require_bandit(self.name, feedback, self.n)

    def end_query(self) -> None:
        pass

    def wants_feedback(self, waiting: int) -> bool:
        return True  # takes no full feedback: the engine never asks


def resolve_drafter(value: str, names: tuple[str, ...], who: str) -> int:
    """A drafter given by name (or by index when no drafter has that name) -> index."""
    if value in names:
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    raise ConfigError(f"{who}: no drafter named {value!r}; drafters: {', '.join(names)}")


@register(
    "fixed",
    kind="fixed",
    in_default_bench=True,
    summary="always the same drafter (fixed:NAME; fixed:generic is the EAGLE-3 baseline)",
    params={"drafter": Param(str, help="the drafter's name")},
    positional="drafter",
)
class Fixed(_Static):
    def __init__(self, setup: SelectorSetup, *, drafter: str) -> None:
        super().__init__(setup)
        self.arm = resolve_drafter(drafter, setup.drafter_names, setup.name)

    def choose(self, position: int) -> Decision:
        return Decision(self.arm, one_hot(self.arm, self.n))


@register("random", kind="online", summary="a uniformly random drafter each round", in_default_bench=True)
class Random(_Static):
    def choose(self, position: int) -> Decision:
        return sample_decision(np.full(self.n, 1.0 / self.n), self.rng)


class _Route(_Static):
    """Picks the first drafter whose domain label equals a domain read from the context.

    Fallback when none matches (or there is no domain): the first drafter
    named "generic" or labelled "generic" or unlabelled, else drafter 0.
    """

    def __init__(self, setup: SelectorSetup) -> None:
        super().__init__(setup)
        self.arm = 0

    def _domain(self, ctx: QueryContext) -> str | None:
        raise NotImplementedError

    def begin_query(self, ctx: QueryContext) -> None:
        super().begin_query(ctx)
        domain, labels, names = self._domain(ctx), ctx.drafter_domains, ctx.drafter_names
        matches = [j for j, d in enumerate(labels) if domain is not None and d == domain]
        generic = [j for j, (d, nm) in enumerate(zip(labels, names)) if nm == "generic" or d in (None, "generic")]
        self.arm = (matches or generic or [0])[0]

    def choose(self, position: int) -> Decision:
        return Decision(self.arm, one_hot(self.arm, self.n))


@register(
    "router",
    kind="online",
    in_default_bench=True,
    summary="offline router: the drafter of the domain a prompt classifier predicts (naive Bayes on "
    "token counts, trained on the zoo's training split)",
    needs_prompt_classifier=True,
    not_replayable="its classifier reads the prompt, which a trace does not hold; run it live with "
    "`hedgespec bench`, or replay router-label",
)
class Router(_Route):
    """HedgeSpec's (arXiv 2510.20064) offline-router baseline: classify the prompt, route once.

    The classifier (selection/classifier.py) is the profile's; the engine puts
    its guess in `QueryContext.routed_domain`. It misroutes when a prompt does
    not look like the training text, which `router-label` never does.
    """

    def _domain(self, ctx: QueryContext) -> str | None:
        return ctx.routed_domain


@register(
    "router-label",
    kind="online",
    in_default_bench=True,
    reads_true_domain=True,
    summary="the drafter labelled with the prompt's true domain (a closed-world upper bound on router)",
)
class RouterLabel(_Route):
    def _domain(self, ctx: QueryContext) -> str | None:
        return ctx.domain
