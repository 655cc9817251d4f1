"""Full-information experts learners: NormalHedge, Hedge, AdaNormalHedge and its tracking form.

Each learner keeps a distribution over N experts (drafters), takes one loss
vector in [0, 1]^N per step and never sees anything else but the boundaries
between segments (queries), where the best expert may change. Weights are kept in
log space and normalised with logsumexp; non-finite losses raise
NonFiniteError. Regret notation: r_t,i = <p_t, l_t> - l_t,i, R_t,i = sum r.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from hedgespec_cli.selection.base import check_finite


class Learner(Protocol):
    """An experts algorithm over N experts.

    acts_at_boundaries: True when `begin_segment` changes what it plays (a tracking
    learner), so losses seen at a boundary (HedgeSpec's `prompt=preview`: the query's prompt)
    are worth its steps; False for a learner with one comparator for the whole stream.
    """

    acts_at_boundaries: bool

    def probs(self) -> np.ndarray:
        """Current distribution p_t, (N,) float64 summing to 1."""
        ...

    def update(self, loss: np.ndarray) -> None:
        """Observe the loss vector l_t, (N,)."""
        ...

    def update_many(self, losses: np.ndarray) -> None:
        """Observe l_t, l_t+1, ... in order, (m, N): the same as m `update` calls, checked once."""
        ...

    def reset(self) -> None:
        """Forget everything (back to uniform)."""
        ...

    def begin_segment(self) -> None:
        """A boundary where the best expert may change (a new query, when state is kept across
        queries). Only a tracking learner acts on it; the others keep learning as before."""
        ...


def _normalise(log_w: np.ndarray) -> np.ndarray:
    """exp(log_w) / sum, stable; all -inf -> uniform."""
    top = log_w.max()
    if not np.isfinite(top):
        return np.full(log_w.shape, 1.0 / log_w.size)
    w = np.exp(log_w - top)
    return w / w.sum()


def _logmeanexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + math.log(np.exp(x - top).mean()))


def _one_row(loss: np.ndarray, n: int, who: str) -> np.ndarray:
    """One loss vector (N,) as a block (1, N) for `update_many`, which checks the values."""
    loss = np.asarray(loss, dtype=np.float64)
    if loss.shape != (n,):
        raise ValueError(f"{who}: loss vector must have shape ({n},), got {loss.shape}")
    return loss[None]


def _check_losses(losses: np.ndarray, n: int, who: str) -> np.ndarray:
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 2 or losses.shape[1] != n:
        raise ValueError(f"{who}: losses must have shape (m, {n}), got {losses.shape}")
    check_finite(losses, f"loss in {who}")
    return losses


def normalhedge_scale(R_plus: np.ndarray, tol: float = 1e-7, guess: float | None = None) -> float:
    """NormalHedge's scale c > 0 solving mean_i exp([R_i]_+^2 / (2c)) = e.

    Chaudhuri, Freund & Hsu (2009), "A Parameter-free Hedging Algorithm",
    Figure 1. Needs max [R]_+ > 0. In u = log c the gap
        g(u) = log mean_i exp(a_i),  a_i = [R_i]_+^2 / (2 e^u),  minus 1
    falls and is convex, and the root lies in the bracket
        c = max R+^2 / 2           makes every term <= e       -> g <= 0
        c = max R+^2 / (2(1+ln N)) makes the largest term N e  -> g >= 0.
    Newton steps (g'(u) = -softmax(a) . a) from `guess` (the previous step's
    c: regrets move little per token, so 2-4 steps suffice) fall back to
    bisection whenever they leave the bracket. It stops when |g| <= tol,
    i.e. |mean exp(...) - e| <= e * tol.
    """
    sq = np.asarray(R_plus, dtype=np.float64) ** 2
    top = sq.max()
    if not top > 0:
        raise ValueError("normalhedge_scale needs at least one positive regret")
    lo = math.log(top / (2.0 * (1.0 + math.log(sq.size))))
    hi = math.log(top / 2.0)
    u = min(max(math.log(guess), lo), hi) if guess else hi
    half = 0.5 * sq
    for _ in range(200):
        a = half * math.exp(-u)
        m = a.max()
        e = np.exp(a - m)
        total = e.sum()
        gap = m + math.log(total / sq.size) - 1.0
        if abs(gap) <= tol:
            break
        if gap > 0:  # mean too large -> c too small
            lo = u
        else:
            hi = u
        slope = -float(e @ a) / total
        step = u - gap / slope if slope < 0 else lo - 1.0
        u = step if lo < step < hi else 0.5 * (lo + hi)
    return math.exp(u)


def one_positive_scale(R: float, n: int) -> float:
    """`normalhedge_scale` when one of the n regrets, R > 0, is positive: the others' terms are
    exp(0) = 1, so ((n - 1) + exp(R^2 / 2c)) / n = e gives c = R^2 / (2 ln(n (e - 1) + 1))."""
    return R * R / (2.0 * math.log(n * (math.e - 1.0) + 1.0))


class NormalHedge:
    """NormalHedge (Chaudhuri, Freund & Hsu 2009), parameter-free."""

    acts_at_boundaries = False  # begin_segment is a no-op

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.R = np.zeros(self.n)  # cumulative regret R_i
        self.c: float | None = None
        self._p = np.full(self.n, 1.0 / self.n)

    def begin_segment(self) -> None:
        pass  # one comparator for the whole stream: a boundary changes nothing

    def probs(self) -> np.ndarray:
        return self._p.copy()

    def update(self, loss: np.ndarray) -> None:
        self.update_many(_one_row(loss, self.n, "NormalHedge"))

    def update_many(self, losses: np.ndarray) -> None:
        for loss in _check_losses(losses, self.n, "NormalHedge"):  # sequential: p_t+1 depends on p_t
            self._step(loss)

    def _step(self, loss: np.ndarray) -> None:
        # R_t,i = R_t-1,i + <p_t, l_t> - l_t,i. A loss equal for every expert (every drafter
        # accepts the same run) gives r_t = 0: neither R nor p moves, and the step is skipped.
        if loss.max() == loss.min():
            return
        self.R += self._p @ loss - loss
        positive = self.R > 0
        k = np.count_nonzero(positive)
        if k == 0:  # all [R]_+ = 0: uniform (Figure 1)
            self.c, self._p = None, np.full(self.n, 1.0 / self.n)
            return
        if k == 1:  # the usual case once a drafter leads: it holds all the weight, c in closed form
            i = int(positive.argmax())
            self.c = one_positive_scale(float(self.R[i]), self.n)
            self._p = np.zeros(self.n)
            self._p[i] = 1.0
            return
        # Figure 1: p_i ∝ ([R_i]_+ / c) exp([R_i]_+^2 / (2c)), c from normalhedge_scale.
        # Finite by construction: c makes mean exp([R]_+^2 / 2c) = e, so every exponent is
        # at most 1 + ln N, and finite losses keep R finite.
        R_plus = np.maximum(self.R, 0.0)
        self.c = normalhedge_scale(R_plus, guess=self.c)
        log_w = np.full(self.n, -np.inf)
        log_w[positive] = np.log(R_plus[positive] / self.c) + R_plus[positive] ** 2 / (2 * self.c)
        self._p = _normalise(log_w)


class Hedge:
    """Hedge / exponential weights (Freund & Schapire 1997) with an anytime step size."""

    acts_at_boundaries = False  # begin_segment is a no-op

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.L = np.zeros(self.n)  # cumulative loss L_t,i
        self.t = 0

    def begin_segment(self) -> None:
        pass  # one comparator for the whole stream: a boundary changes nothing

    @property
    def eta(self) -> float:
        """eta_t = sqrt(ln N / t) after t updates (0 before any: p is uniform then anyway)."""
        return math.sqrt(math.log(self.n) / self.t) if self.t else 0.0

    def probs(self) -> np.ndarray:
        # p_t+1,i ∝ exp(-eta_t L_t,i)
        return _normalise(-self.eta * self.L)

    def update(self, loss: np.ndarray) -> None:
        self.update_many(_one_row(loss, self.n, "Hedge"))

    def update_many(self, losses: np.ndarray) -> None:
        # p depends only on the cumulative loss and t: a block is exact in one step.
        losses = _check_losses(losses, self.n, "Hedge")
        self.L += losses.sum(axis=0)
        self.t += losses.shape[0]


def adanormalhedge_log_weights(R: np.ndarray, C: np.ndarray) -> np.ndarray:
    """log w(R, C) of AdaNormalHedge, elementwise (any shape); -inf where R <= -1.

    Luo & Schapire (2015), "Achieving All with No Parameters", Algorithm 1 / eq. (2):
        Phi(R, C) = exp([R]_+^2 / (3C)),  w(R, C) = (Phi(R+1, C+1) - Phi(R-1, C+1)) / 2.
    In log space: log w = a + log(1 - exp(b - a)) - log 2, a > b whenever R > -1.
    """
    a = np.maximum(R + 1.0, 0.0) ** 2 / (3.0 * (C + 1.0))
    b = np.maximum(R - 1.0, 0.0) ** 2 / (3.0 * (C + 1.0))
    log_w = np.full(np.shape(R), -np.inf)
    alive = R > -1.0
    log_w[alive] = a[alive] + np.log(-np.expm1(b[alive] - a[alive])) - math.log(2.0)
    check_finite(log_w[alive], "AdaNormalHedge log-weights")
    return log_w


class AdaNormalHedge:
    """AdaNormalHedge (Luo & Schapire 2015), uniform prior, parameter-free."""

    acts_at_boundaries = False  # begin_segment is a no-op

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.R = np.zeros(self.n)  # R_t,i = sum r_t,i
        self.C = np.zeros(self.n)  # C_t,i = sum |r_t,i|
        self._p = self._weights()

    def begin_segment(self) -> None:
        pass  # one comparator for the whole stream: a boundary changes nothing

    def probs(self) -> np.ndarray:
        return self._p.copy()

    def update(self, loss: np.ndarray) -> None:
        self.update_many(_one_row(loss, self.n, "AdaNormalHedge"))

    def update_many(self, losses: np.ndarray) -> None:
        for loss in _check_losses(losses, self.n, "AdaNormalHedge"):
            self._step(loss)

    def _step(self, loss: np.ndarray) -> None:
        r = self._p @ loss - loss
        self.R += r
        self.C += np.abs(r)
        self._p = self._weights()

    def _weights(self) -> np.ndarray:
        # p_t,i ∝ prior_i * w(R_t-1,i, C_t-1,i), uniform prior; uniform when every w is 0.
        return _normalise(adanormalhedge_log_weights(self.R, self.C))


class SleepingAdaNormalHedge:
    """AdaNormalHedge on sleeping copies of every expert, one set per segment: adaptive regret.

    Luo & Schapire (2015), "Achieving All with No Parameters: AdaNormalHedge",
    Section 5 (time-varying competitors / adaptive regret via sleeping experts):
    for every start time s and expert i a copy (s, i) sleeps before s and
    then predicts as expert i; AdaNormalHedge runs over all copies with a
    prior decaying in s. The copies of expert i all predict i, so the learner
    plays p_t,i ∝ sum_s pi_s w(R_t,(s,i), C_t,(s,i)), where R and C sum
    r = <p_t, l_t> - l_t,i and |r| since s only. A copy started at s knows
    nothing of the time before s: its regret on [s, t] is bounded by
    O(sqrt(C log(N / pi_s))) (their bound for sleeping experts), on every
    interval at once, which a learner that remembers everything (NormalHedge:
    an expert bad in the last block keeps a large negative R) cannot do.

    Parameters, none tuned on a workload:
    - start times: segment boundaries (`begin_segment`, called by HedgeSpec at
      each new query), not every token. A query has one domain, so the best
      drafter of a shifting stream changes at query boundaries; starting
      copies only there keeps the state at S x N (S = segments so far) and
      the prior of the newest copy at 1/S^2 instead of 1/t^2 over tokens
      (its handicap, log(S^2), is what a switch must first earn back).
    - prior pi_s ∝ 1 / s^2 over segments s = 1, 2, ... (uniform over the N
      experts of a segment): the paper's choice; sum_s 1/s^2 < 2, so every
      start keeps a positive share however long the stream runs.
    Cost per step O(S N); the state grows by one (N,) row per segment.

    A preview (HedgeSpec's `prompt=preview`: every drafter's losses on the
    query's prompt, right after `begin_segment`) is simply the segment's first
    `update_many` steps: the copies started at the boundary
    learn from them before the first round. The bound above holds for any
    loss sequence in [0, 1]^N, so it holds on the segment with its preview
    prepended (the comparator is then scored on the preview too).
    """

    acts_at_boundaries = True  # begin_segment changes what it plays

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.R = np.zeros((1, self.n))  # (S, N): R_t,(s,i) since segment s began
        self.C = np.zeros((1, self.n))  # (S, N): C_t,(s,i) = sum |r| since s
        self.log_prior = np.zeros(1)  # (S,): log pi_s = -2 log s, segment 1 first
        self._steps = 0  # steps since the newest segment began
        self._p = self._weights()

    @property
    def segments(self) -> int:
        return self.R.shape[0]

    def begin_segment(self) -> None:
        if self._steps == 0:  # nothing seen since the last start: its copies start here too
            return
        self._steps = 0
        s = self.segments + 1
        self.R = np.vstack([self.R, np.zeros(self.n)])
        self.C = np.vstack([self.C, np.zeros(self.n)])
        self.log_prior = np.append(self.log_prior, -2.0 * math.log(s))
        self._p = self._weights()

    def probs(self) -> np.ndarray:
        return self._p.copy()

    def update(self, loss: np.ndarray) -> None:
        self.update_many(_one_row(loss, self.n, "SleepingAdaNormalHedge"))

    def update_many(self, losses: np.ndarray) -> None:
        for loss in _check_losses(losses, self.n, "SleepingAdaNormalHedge"):
            self._step(loss)

    def _step(self, loss: np.ndarray) -> None:
        r = self._p @ loss - loss  # (N,): every copy started so far is awake
        self.R += r
        self.C += np.abs(r)
        self._steps += 1
        self._p = self._weights()

    def _weights(self) -> np.ndarray:
        log_w = adanormalhedge_log_weights(self.R, self.C) + self.log_prior[:, None]  # (S, N)
        top = log_w.max(axis=0)  # log sum_s per expert, -inf where no copy of i is alive
        live = np.isfinite(top)
        log_total = np.full(self.n, -np.inf)
        log_total[live] = top[live] + np.log(np.exp(log_w[:, live] - top[live]).sum(axis=0))
        return _normalise(log_total)


class Tracking:
    """A per-segment referee between a learner restarted at each segment and a persistent one.

    The persistent setting asks two things that pull apart: keep what the
    stream taught (the next query of a block has the same best drafter) and
    forget it at once when it stops holding (a shift). Following the restart
    scheme of Hazan & Seshadhri (2009), "Efficient learning algorithms for
    changing environments" (black-box learners started at different times,
    combined by a meta learner), with two starts:

    - `fresh`: NormalHedge restarted at every segment (per-query HedgeSpec's
      own learner): regret O(sqrt(T ln N) + ln^2 N) to every expert over the
      T steps of the segment (Chaudhuri, Freund & Hsu 2009).
    - `kept`: SleepingAdaNormalHedge over all segments: regret
      O(sqrt(C ln(N s^2))) on every interval that starts at a segment
      boundary s, so on a block of one domain it pays its warm-up once.
    - `referee`: NormalHedge over the two, restarted at every segment, fed
      each one's mixture loss <p_k, l_t> before it learns; the learner plays
      p_t = q_fresh p_fresh + q_kept p_kept. By NormalHedge's bound with N = 2,
      over a segment of T steps its loss is within O(sqrt(T)) of the better one.
    - `opening`: which of the two leads while the referee has no evidence (no
      positive regret: a segment's start; NormalHedge then has no preference,
      Figure 1 plays uniform). HedgeSpec's EAL losses arrive K positions
      late, so this lead picks the drafter of a query's first rounds:
      carrying the last drafter wins within a block of one domain and loses
      when the domain changes at almost every query (an expert off its
      domain accepts almost nothing, for K rounds). Which
      holds is learnt across segments: NormalHedge over (fresh, kept) with one
      step per segment, the two learners' mixture losses on its first step
      (when neither has seen the segment). Ties: kept.

    After a shift `fresh` finds the new drafter as fast as a per-query learner
    and the referee follows as soon as fresh's cumulative mixture loss is lower
    (NormalHedge gives no weight to a learner with non-positive regret), while
    `kept`'s own, slower switch (AdaNormalHedge's potential and the new copy's
    prior 1/s^2 must be earned back) is ready for the block's next queries.
    No numeric parameter: every part is parameter-free.

    A preview: loss vectors of the new segment known before its play begins
    (HedgeSpec's `prompt=preview`: every drafter's EAL losses on the query's
    prompt, scored teacher-forced from the prefill), given right after
    `begin_segment` as the segment's first steps, by all four parts. So the referee weighs fresh against kept on
    the prompt before the first round (a shift: kept's old expert does badly
    on the new prompt and fresh, already concentrated on the prompt's best
    expert, leads; inside a block kept leads), the opening rarely decides, and
    the first round no longer pays the K-position delay of the EAL losses.
    Every guarantee above is for arbitrary loss sequences, so it holds on the
    segment with the preview prepended; whether the prompt's best expert is
    the generation's is an empirical matter (README, *Learning across queries*).
    This reads the query's own tokens, never its domain label.
    """

    acts_at_boundaries = True  # begin_segment changes what it plays

    def __init__(self, n: int) -> None:
        self.n = n
        self.fresh = NormalHedge(n)
        self.kept = SleepingAdaNormalHedge(n)
        self.referee = NormalHedge(2)  # over (fresh, kept), restarted every segment
        self.opening = NormalHedge(2)  # over (fresh, kept), one step per segment, never restarted
        self._opened = False  # has this segment's first loss vector arrived

    def reset(self) -> None:
        for learner in (self.fresh, self.kept, self.referee, self.opening):
            learner.reset()
        self._opened = False

    def begin_segment(self) -> None:
        self._opened = False
        self.fresh.reset()
        self.referee.reset()
        self.kept.begin_segment()

    @property
    def lead(self) -> int:
        """0 (fresh) or 1 (kept): the learner whose mixture did better on the first step of past
        segments, by the opening's NormalHedge weights (ties, the first segment included: kept)."""
        o = self.opening.probs()
        return 1 if o[1] >= o[0] else 0

    def probs(self) -> np.ndarray:
        # No positive regret in the referee (a segment's start, or both learners alike so far):
        # NormalHedge has no preference (Figure 1 plays uniform); the opening's lead decides.
        q = self.referee.probs() if self.referee.c is not None else np.eye(2)[self.lead]
        return q[0] * self.fresh.probs() + q[1] * self.kept.probs()

    def update(self, loss: np.ndarray) -> None:
        self.update_many(_one_row(loss, self.n, "Tracking"))

    def update_many(self, losses: np.ndarray) -> None:
        for loss in _check_losses(losses, self.n, "Tracking"):
            # The referee's loss vector: each learner's mixture loss <p_k, l_t> before it learns
            # (their `_p` is what their `probs` returns; same module, no copy per step).
            pair = np.array([self.fresh._p @ loss, self.kept._p @ loss])
            if not self._opened:  # the segment's first step: both learners still without its evidence
                self.opening._step(pair)
                self._opened = True
            self.referee._step(pair)
            self.fresh._step(loss)
            self.kept._step(loss)


Learner_ = (
    type[NormalHedge] | type[Hedge] | type[AdaNormalHedge] | type[SleepingAdaNormalHedge] | type[Tracking]
)
LEARNERS: dict[str, Learner_] = {
    "normalhedge": NormalHedge,
    "hedge": Hedge,
    "adanormalhedge": AdaNormalHedge,
    "adanormalhedge-sleeping": SleepingAdaNormalHedge,
    "tracking": Tracking,
}
