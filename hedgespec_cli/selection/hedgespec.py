"""HedgeSpec: full-information drafter selection with delayed token-level losses.

HedgeSpec (arXiv 2510.20064, "Not-a-Bandit"), DESIGN.md section 5. Because SD
is lossless, every verified position gives every drafter's gamma. Each verified
position s becomes one loss vector (TAP or EAL) for an experts learner; the
learner picks the drafter for the next round.

Censoring as delay: the EAL loss of position s needs gamma[s : s+K], which
only exists once later rounds have verified K-1 more tokens. A position's
loss is therefore released to the learner only once its window is complete
(TAP needs just gamma_s: window 1). `end_query` closes the windows still
open at the end of the text (gamma beyond the text counts as 0) and releases
them, so every verified position enters the learner exactly once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hedgespec_cli.selection.base import (
    RESET,
    FeedbackTypeError,
    Law,
    Param,
    SelectorSetup,
    argmax_decision,
    check_context,
    check_finite,
    register,
)
from hedgespec_cli.selection.estimators import acceptance_lengths, eal_loss, tap_loss
from hedgespec_cli.selection.feedback import Decision, Feedback, FullFeedback, QueryContext
from hedgespec_cli.selection.learners import LEARNERS


def _describe(params) -> str:
    """The legend line: with argmax play, NormalHedge and Hedge reduce to follow-the-leader; the
    prompt's losses are named where the learner reads them."""
    learner, loss = params["learner"], params["loss"].upper()
    prompt = ""
    if params["prompt"] == "learn":
        prompt = ", the prompt's losses as its first steps"
    elif reads_prompt(params["prompt"], params["reset"], LEARNERS[learner].acts_at_boundaries):
        prompt = ", the prompt's losses previewed at each query"
    if params["every"] == 1:
        schedule = "every drafter evaluated after every round"
    else:
        schedule = (f"lazy evaluation: up to {params['every']} rounds share one evaluation while "
                    f"the top weight is >= {params['confident']:g}")
    if params["play"] == "sample":
        return f"HedgeSpec: {learner} on delayed {loss} losses{prompt}, drafter drawn from its weights; {schedule}"
    if learner in FTL_UNDER_ARGMAX:
        return (f"HedgeSpec with argmax play = follow-the-leader on delayed {loss} losses{prompt} "
                f"(the top {learner} weight is the least cumulative loss, so {learner} never changes a "
                f"decision); {schedule}")
    return f"HedgeSpec: {learner} on delayed {loss} losses{prompt}, top weight played; {schedule}"


def reads_prompt(prompt: str, reset: str, acts_at_boundaries: bool) -> bool:
    """Whether the prompt's losses can change the play (the `prompt` parameter): `learn`, or `preview`
    with a learner kept across queries that acts at boundaries."""
    return prompt == "learn" or (prompt == "preview" and reset == "never" and acts_at_boundaries)


EVERY = 8  # lazy evaluation's longest wait, in rounds (`wants_feedback`)
CONFIDENT = 0.99  # ... while the learner's top weight is at least this

# NormalHedge's weight ([R]_+ / c) exp([R]_+^2 / 2c) and Hedge's exp(-eta L) are increasing in
# R_i = sum <w, l> - L_i, i.e. decreasing in the cumulative loss L_i: their argmax is the
# drafter with the least cumulative loss (ties aside). AdaNormalHedge's also depends on C_i.
FTL_UNDER_ARGMAX = ("normalhedge", "hedge")


@register(
    "hedgespec",
    kind="online",
    adaptive=True,
    in_default_bench=True,
    summary="HedgeSpec: full-information experts learner on delayed TAP/EAL losses",
    describe=_describe,
    params={
        "loss": Param(str, "eal", ("eal", "tap"), help="token loss: expected acceptance length or TAP"),
        "learner": Param(str, "normalhedge", tuple(LEARNERS), help="experts algorithm"),
        "reset": RESET,
        "every": Param(
            int, EVERY, check=lambda m: m >= 1, rule="an integer >= 1",
            help="lazy evaluation: while the learner is confident, evaluate every drafter only after "
            "every m-th round (and at the query's end), in one call over the rounds since; 1: after "
            "every round, as the paper does",
        ),
        "confident": Param(
            float, CONFIDENT, check=lambda c: 0.0 < c <= 1.0, rule="in (0, 1]",
            help="the learner is confident while its top weight is at least this; below it, every "
            "round is evaluated",
        ),
        "prompt": Param(
            str, "preview", ("preview", "learn", "ignore"),
            help="every drafter's losses on the prompt (teacher-forced gamma from the prefill): preview = "
            "hand them to the learner at a query boundary (only a learner kept across queries that acts "
            "at boundaries reads them: tracking, adanormalhedge-sleeping); learn = the learner takes them "
            "as its first steps, per query too; ignore = not used",
        ),
        "play": Param(
            str, "sample", ("sample", "argmax"),
            help="draw the drafter from the weights (the learner's regret guarantee) or play the top "
            "weight (= follow-the-leader for normalhedge and hedge)",
        ),
    },
)
class HedgeSpec:
    """The delayed full-information learner. Decisions per round, learning per token."""

    needs_full_feedback = True
    needs_block_reward = False

    def __init__(
        self, setup: SelectorSetup, *, loss: str, learner: str, reset: str, every: int, confident: float,
        play: str, prompt: str,
    ) -> None:
        self.name = setup.name
        self.n = setup.n_drafters
        self.rng = setup.rng
        self.loss, self.reset, self.play, self.prompt = loss, reset, play, prompt
        self.every, self.confident = every, confident
        self.learner = LEARNERS[learner](self.n)
        self.K: int | None = None
        self._gamma = np.zeros((0, self.n))  # (verified, N) this query's gamma rows
        self._verified = 0
        self._released = 0  # positions whose loss the learner has seen
        self._refresh()

    @property
    def weights(self) -> np.ndarray:
        """The learner's current distribution over drafters, (N,)."""
        return self.learner.probs()

    @property
    def released(self) -> int:
        """Positions of the current query already given to the learner."""
        return self._released

    @property
    def window(self) -> int:
        """Rows a position's loss needs: K for EAL, 1 for TAP."""
        return self.K if self.loss == "eal" else 1

    @property
    def reads_prompt(self) -> bool:
        """Whether `observe_prompt` can change the play (module `reads_prompt`). Else the engine scores
        the prompt for the trace alone, off the clock: a per-query HedgeSpec does not pay for losses it
        never reads."""
        return reads_prompt(self.prompt, self.reset, self.learner.acts_at_boundaries)

    @property
    def carries_over(self) -> bool:
        """Whether what it learns after a query's last round can change a later decision: only with a
        learner kept across queries (`reset=never`). Else the engine evaluates that round for the trace
        alone, off the clock."""
        return self.reset == "never"

    def begin_query(self, ctx: QueryContext) -> None:
        check_context(self.name, ctx, self.n)
        if self.reset == "query":
            self.learner.reset()
        else:  # the best drafter may change here; only a tracking learner acts on it
            self.learner.begin_segment()
        self.K = ctx.K
        self._gamma = np.zeros((64, self.n))
        self._depth: np.ndarray | None = None  # (capacity, K, N) when the feedback carries gamma by depth
        self._verified = self._released = 0
        self._refresh()

    def observe_prompt(self, gamma: np.ndarray) -> None:
        """Every drafter's gamma on the prompt, (P-1, N), before the first round (the engine scores it,
        teacher-forced, from its prefill). Its complete-window losses are evidence about the query's
        best drafter before any of it is played: `prompt=preview` gives them, as the segment's
        first steps, to a learner kept across queries that acts at boundaries (tracking,
        adanormalhedge-sleeping; with reset=query there is no boundary, and a learner with one
        comparator ignores boundaries: per-query HedgeSpec is unchanged); `learn` gives them to any
        learner as its first steps; `ignore` drops them."""
        if self.K is None:
            raise ValueError(f"{self.name}: observe_prompt before begin_query")
        if not self.reads_prompt:
            return
        rows = np.clip(np.asarray(gamma, dtype=np.float64), 0.0, 1.0)
        if rows.ndim != 2 or rows.shape[1] != self.n:
            raise ValueError(f"{self.name}: prompt gamma must be (P-1, {self.n}), got {rows.shape}")
        check_finite(rows, "prompt gamma")
        losses = self._losses(rows, close=False)
        if not losses.shape[0]:  # complete windows only: the prompt's end is not the end of a text
            return
        self.learner.update_many(losses)
        self._refresh()

    def choose(self, position: int) -> Decision:
        if position < self._verified or (position != self._verified and self.wants_feedback(1)):
            raise ValueError(
                f"{self.name}: choose({position}) but {self._verified} positions were verified; "
                "call begin_query first, and update after every round the selector wants_feedback"
            )
        p = self._p
        # Sampling i_t ~ w_t is the play the experts' regret bounds are about (the expected loss
        # <w_t, l_t>); argmax is kept as an option, follow-the-leader in disguise (FTL_UNDER_ARGMAX).
        if self.play == "sample":
            return self._law.draw(self.rng, weights=p)
        return replace(argmax_decision(p, self.rng), weights=p)

    def update(self, feedback: Feedback) -> None:
        if self.K is None:
            raise ValueError(f"{self.name}: update before begin_query")
        if not isinstance(feedback, FullFeedback):
            raise FeedbackTypeError(
                f"{self.name} needs FullFeedback (every drafter's gamma), got {type(feedback).__name__}"
            )
        rows = np.asarray(feedback.gamma, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n or rows.shape[0] < 1:
            raise ValueError(f"{self.name}: gamma must be (n >= 1, {self.n}), got {rows.shape}")
        check_finite(rows, "gamma")
        depth = None
        if feedback.depth is not None:  # EAGLE-3 exact counterfactual: EAL reads gamma by depth
            depth = np.clip(np.asarray(feedback.depth, dtype=np.float64), 0.0, 1.0)
            if depth.shape[0] != rows.shape[0]:
                raise ValueError(f"{self.name}: gamma by depth has {depth.shape[0]} rows for {rows.shape[0]} positions")
        self._append(np.clip(rows, 0.0, 1.0), depth)  # sum min(p, q) may overshoot 1 by rounding
        if self._release(close=False):
            self._refresh()

    def wants_feedback(self, waiting: int) -> bool:
        """Lazy evaluation: full information costs one call over every drafter, so while the
        learner's top weight is at least `confident` rounds may wait, up to `every`, and share one
        call. A heuristic, not a guarantee that the play stays put: NormalHedge puts all its
        weight on a drafter as soon as it is the only one with positive regret, however small its
        lead, and the next losses may move it. (The exact rule, waiting only while no release in
        the wait could give another drafter positive regret, evaluates 0.89 times a round on the
        default bench's trace: no saving.) The delay is then at
        most every - 1 rounds: Joulani, Gyorgy & Szepesvari 2013 ("Online learning under
        delayed feedback") turn a max delay d into a regret factor of about sqrt(d + 1), and
        Quanrud & Khashabi 2015 ("Online learning with adversarial delays") show
        O(sqrt((T + D) ln N)) for Hedge run on delayed losses as they come, D <= (every - 1) T
        the total delay. No such bound is proven for NormalHedge; README "Lazy evaluation"
        gives the measured cost in MAT."""
        return waiting >= self.every or self._top < self.confident

    def end_query(self) -> None:
        self._release(close=True)  # the next begin_query reads the learner afresh

    def _refresh(self) -> None:
        """Read the learner's distribution once after it learns (choose and wants_feedback run every
        round); read-only, as every Decision of the rounds until the next refresh holds it."""
        self._p = self.learner.probs()
        self._p.setflags(write=False)
        self._top = float(self._p.max())
        self._law = Law.of(self._p)  # what `choose` draws from until the next refresh

    def _append(self, rows: np.ndarray, depth: np.ndarray | None) -> None:
        """Append a round's rows (and gamma by depth) to buffers that double when full: amortised O(1)."""
        need = self._verified + rows.shape[0]
        self._gamma = _grown(self._gamma, self._verified, need)
        self._gamma[self._verified : need] = rows
        if depth is not None:
            if self._depth is None:
                self._depth = np.zeros((self._gamma.shape[0], *depth.shape[1:]))
            self._depth = _grown(self._depth, self._verified, need)
            self._depth[self._verified : need] = depth
        self._verified = need

    def _losses(self, gamma: np.ndarray, *, close: bool) -> np.ndarray:
        """gamma rows (m, N), or by depth (m, K, N) -> the loss vectors of the positions whose window
        is complete (all m when `close`): TAP from depth 1, else EAL."""
        if self.loss == "tap":
            return tap_loss(gamma if gamma.ndim == 2 else gamma[:, 0])
        return eal_loss(acceptance_lengths(gamma, self.window, close=close), self.K)

    def _release(self, *, close: bool) -> int:
        """Feed the learner one loss vector per position whose window is complete (or closed)
        -> how many it took."""
        start, end = self._released, self._verified
        source = self._gamma[start:end] if self._depth is None else self._depth[start:end]  # (m, N[, K])
        losses = self._losses(source, close=close)
        if losses.shape[0]:  # learning is token-level: one step per position, in order
            self.learner.update_many(losses)
        self._released = start + losses.shape[0]
        return losses.shape[0]


def _grown(buf: np.ndarray, used: int, need: int) -> np.ndarray:
    """buf with room for `need` rows along axis 0 (doubling), its first `used` rows kept."""
    if need <= buf.shape[0]:
        return buf
    out = np.zeros((max(need, 2 * buf.shape[0]), *buf.shape[1:]))
    out[:used] = buf[:used]
    return out
