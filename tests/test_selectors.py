"""Selectors: one contract over every registered method, then exact seeded expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hedgespec_cli.errors import ConfigError, HedgespecError
from hedgespec_cli.selection import REGISTRY, Selector, SelectorSpec, make_selector
from hedgespec_cli.selection.base import FeedbackTypeError, NonFiniteError, sample_decision, split_methods
from hedgespec_cli.selection.estimators import acceptance_lengths, eal_loss, round_lengths, tap_loss
from hedgespec_cli.selection.feedback import BanditFeedback, FullFeedback, QueryContext
from hedgespec_cli.selection.learners import (
    LEARNERS,
    AdaNormalHedge,
    Hedge,
    NormalHedge,
    SleepingAdaNormalHedge,
    Tracking,
    normalhedge_scale,
    one_positive_scale,
)
from hedgespec_cli.selection.oracles import block_oracle, domain_blocks, fixed_rounds
from hedgespec_cli.selection.replay import replay_query
from hedgespec_cli.selection.trace import Trace, TraceQuery

NAMES = ("generic", "code", "math")
SELECTORS = sorted(n for n, r in REGISTRY.items() if r.selects)  # every method but plain decoding (`ar`)
DOMAINS = (None, "code", "math")
K = 3


def method_string(name: str) -> str:
    return "fixed:code" if name == "fixed" else name


def ctx(domain: str | None = "code", gamma: np.ndarray | None = None) -> QueryContext:
    return QueryContext(domain, NAMES, DOMAINS, K, gamma)


def random_trace(seed: int = 0, queries: int = 3, L: int = 30) -> Trace:
    rng = np.random.default_rng(seed)
    p = np.array([0.5, 0.8, 0.3])
    qs = [
        TraceQuery(f"q{i}", ("code", "math", None)[i % 3], (0,) * L, (rng.random((L, 3)) < p).astype(float))
        for i in range(queries)
    ]
    return Trace(K, 0.0, L, NAMES, DOMAINS, tuple(qs))


class Recorder:
    """Wraps a selector and keeps every decision it hands out."""

    def __init__(self, inner: Selector) -> None:
        self.inner, self.decisions = inner, []
        self.name, self.needs_full_feedback = inner.name, inner.needs_full_feedback
        self.needs_block_reward = inner.needs_block_reward
        self.reads_prompt = getattr(inner, "reads_prompt", False)
        self.carries_over = getattr(inner, "carries_over", False)
        self.wants_feedback = inner.wants_feedback

    def begin_query(self, c):
        self.inner.begin_query(c)

    def choose(self, position):
        d = self.inner.choose(position)
        self.decisions.append(d)
        return d

    def update(self, fb):
        self.inner.update(fb)

    def observe_prompt(self, gamma):
        self.inner.observe_prompt(gamma)

    def end_query(self):
        self.inner.end_query()


def run(method: str, seed: int = 0, trace: Trace | None = None) -> Recorder:
    trace = trace or random_trace()
    spec = SelectorSpec.parse(method, seed=seed)
    rec = Recorder(make_selector(spec, 3, NAMES))
    for q in trace.queries:
        if REGISTRY[spec.name].not_replayable:
            drive_with_block_reward(rec, q)
        else:
            replay_query(rec, trace, q, q.gamma, hindsight=REGISTRY[spec.name].kind == "reference")
    return rec


def drive_with_block_reward(sel, q: TraceQuery) -> None:
    """The engine's loop for a method replay refuses (metasd-ucb): a stand-in block reward,
    the mean gamma over the drafted positions, which is what the live engine hands it."""
    sel.begin_query(ctx(q.domain))
    s = 0
    while s < q.L:
        j = sel.choose(s).arm
        k = min(K, q.L - s - 1)
        row = q.gamma[s : s + k, j]
        a = int(np.argmin(row)) if k and row.min() < 0.5 else k
        n = min(a + 1, q.L - s)
        sel.update(BanditFeedback(j, n, k, K, float(row.mean()) if k else 0.0))
        s += n
    sel.end_query()


# -- contract over every registered method --------------------------------------------


@pytest.mark.parametrize("name", SELECTORS)
def test_contract_decisions_are_valid_distributions(name):
    rec = run(method_string(name))
    assert isinstance(rec.inner, Selector)
    assert rec.decisions
    for d in rec.decisions:
        assert d.probs.shape == (3,)
        assert np.all(d.probs >= 0) and d.probs.sum() == pytest.approx(1.0)
        assert 0 <= d.arm < 3 and d.probs[d.arm] > 0


@pytest.mark.parametrize("name", SELECTORS)
def test_contract_same_seed_same_decisions(name):
    a, b = run(method_string(name), seed=7), run(method_string(name), seed=7)
    assert [d.arm for d in a.decisions] == [d.arm for d in b.decisions]
    for x, y in zip(a.decisions, b.decisions):
        np.testing.assert_array_equal(x.probs, y.probs)


@pytest.mark.parametrize("reset", ["query", "never"])
@pytest.mark.parametrize("learner", list(LEARNERS))
def test_contract_hedgespec_with_every_learner(learner, reset):
    method = f"hedgespec:learner={learner},reset={reset}"
    a, b = run(method, seed=3), run(method, seed=3)
    assert [d.arm for d in a.decisions] == [d.arm for d in b.decisions]
    for d in a.decisions:
        assert np.all(d.probs >= 0) and d.probs.sum() == pytest.approx(1.0) and d.probs[d.arm] > 0
        assert d.weights.sum() == pytest.approx(1.0)


def test_random_depends_on_the_seed():
    arms = {tuple(d.arm for d in run("random", seed=s).decisions) for s in range(3)}
    assert len(arms) == 3


@pytest.mark.parametrize("name", SELECTORS)
def test_contract_feedback_types_are_enforced(name):
    sel = make_selector(method_string(name), 3, NAMES)
    gamma = np.ones((10, 3))
    sel.begin_query(ctx(gamma=gamma))
    arm = sel.choose(0).arm
    full = FullFeedback(gamma[:2], arm, K)
    bandit = BanditFeedback(arm, 2, K, K, 0.5)
    if sel.needs_full_feedback:
        with pytest.raises(TypeError):
            sel.update(bandit)
        sel.update(full)
    else:
        with pytest.raises(FeedbackTypeError):  # a bandit can never see other drafters' gamma
            sel.update(full)
        sel.update(bandit)


@pytest.mark.parametrize("name", sorted(n for n, r in REGISTRY.items() if "reset" in r.params))
def test_contract_reset_per_query_restarts_the_learner(name):
    gamma = np.zeros((30, 3))
    gamma[:, 2] = 1.0  # drafter 2 accepts everything
    sel = make_selector(name, 3, NAMES)
    fresh = make_selector(name, 3, NAMES)
    fresh.begin_query(ctx())
    start = fresh.choose(0).probs
    trace = Trace(K, 0.0, 30, NAMES, DOMAINS, (TraceQuery("a", "code", (0,) * 30, gamma),))
    if REGISTRY[name].not_replayable:
        drive_with_block_reward(sel, trace.queries[0])
    else:
        replay_query(sel, trace, trace.queries[0], gamma, hindsight=False)
    sel.begin_query(ctx())
    np.testing.assert_allclose(sel.choose(0).probs, start)


def test_reset_never_carries_the_learner_across_queries():
    gamma = np.zeros((30, 3))
    gamma[:, 2] = 1.0
    sel = make_selector("hedgespec:reset=never", 3, NAMES)
    trace = Trace(K, 0.0, 30, NAMES, DOMAINS, (TraceQuery("a", "code", (0,) * 30, gamma),))
    replay_query(sel, trace, trace.queries[0], gamma, hindsight=False)
    sel.begin_query(ctx())
    d = sel.choose(0)
    assert d.arm == 2 and d.probs[2] == 1.0


# -- specs and the registry -----------------------------------------------------------------


def test_spec_parsing_and_labels():
    spec = SelectorSpec.parse("hedgespec:learner=hedge,loss=tap")
    assert spec.params == {"loss": "tap", "learner": "hedge", "reset": "query", "every": 8, "confident": 0.99,
                           "prompt": "preview", "play": "sample"}
    assert spec.label == "hedgespec:loss=tap,learner=hedge"
    assert SelectorSpec.parse("ucbspec:delta=0.1").params["delta"] == 0.1
    assert SelectorSpec.parse("fixed:generic").label == "fixed:generic"
    assert SelectorSpec.parse("fixed:drafter=generic") == SelectorSpec.parse("fixed:generic")
    assert make_selector("fixed:math", 3, NAMES).choose(0).arm == 2
    assert split_methods("hedgespec:learner=hedge,loss=tap,ucbspec,fixed:code") == [
        "hedgespec:learner=hedge,loss=tap", "ucbspec", "fixed:code"
    ]
    with pytest.raises(ConfigError, match="no method in ', '"):
        split_methods(", ")  # an empty list is a mistake, not "every method"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nope", "valid methods: ar, exp3spec, fixed:NAME, hedgespec"),
        ("hedgespec:eta=1", "valid parameters: loss, learner, reset, every, confident, prompt, play"),
        ("hedgespec:learner=sgd", "choose one of normalhedge, hedge, adanormalhedge, adanormalhedge-sleeping, tracking"),
        ("ucbspec:delta=2", "in (0, 1)"),
        ("ucbspec:delta=abc", "not a valid float"),
        ("fixed", "fixed:VALUE"),
        ("random:x", "not key=value"),
    ],
)
def test_bad_specs_say_how_to_fix(text, needle):
    with pytest.raises(ConfigError, match=None) as err:
        SelectorSpec.parse(text)
    assert needle in str(err.value)


def test_unknown_fixed_drafter_lists_the_pool():
    with pytest.raises(ConfigError, match="drafters: generic, code, math"):
        make_selector("fixed:bio", 3, NAMES)


def test_spec_is_frozen_and_hashable():
    spec = SelectorSpec.parse("hedgespec", seed=3)
    with pytest.raises(AttributeError):
        spec.seed = 4
    assert hash(spec) == hash(SelectorSpec("hedgespec", {}, 3))
    with pytest.raises(TypeError):
        spec.params["loss"] = "tap"


# -- estimators ---------------------------------------------------------------------------


def test_acceptance_lengths_by_hand():
    g = np.array([[1, 1, 0, 1, 1]], dtype=float).T  # (5, 1)
    np.testing.assert_array_equal(acceptance_lengths(g, 3)[:, 0], [3, 2, 1])
    np.testing.assert_array_equal(acceptance_lengths(g, 3, close=True)[:, 0], [3, 2, 1, 3, 2])
    half = np.full((3, 1), 0.5)
    assert acceptance_lengths(half, 2)[:, 0].tolist() == [1.75, 1.75]  # 1 + .5 + .25
    np.testing.assert_array_equal(round_lengths(g, 3)[:, 0], [3, 2, 1, 2, 1])  # end of text caps n
    assert eal_loss(np.array([1.0, 4.0]), 3).tolist() == [0.75, 0.0]
    assert tap_loss(np.array([0.25])).tolist() == [0.75]
    with pytest.raises(NonFiniteError):
        acceptance_lengths(np.array([[np.nan]]), 2)


# -- learners, by hand ----------------------------------------------------------------------


def test_normalhedge_scale_solves_its_equation():
    for R in ([1.0, 2.0, 0.0], [0.3], [5.0, 4.9, 0.1, 0.0, 2.0], [1e-3, 2e-3]):
        R = np.array(R)
        c = normalhedge_scale(R)
        assert abs(np.mean(np.exp(R**2 / (2 * c))) - math.e) <= 1e-6


def _solve_c_by_newton(R_plus):
    """An independent solve of mean exp(R^2 / (2c)) = e (Newton on log c)."""
    x = math.log(max(R_plus) ** 2 / 2)
    for _ in range(100):
        c = math.exp(x)
        terms = np.exp(R_plus**2 / (2 * c))
        f = terms.mean() - math.e
        df = np.mean(terms * -(R_plus**2) / (2 * c))  # d/dlog c
        x -= f / df
    return math.exp(x)


def test_normalhedge_weights_by_hand():
    nh = NormalHedge(3)
    nh.update(np.array([0.0, 1.0, 1.0]))  # <p,l> = 2/3 -> R = [2/3, -1/3, -1/3]
    np.testing.assert_allclose(nh.R, [2 / 3, -1 / 3, -1 / 3])
    np.testing.assert_allclose(nh.probs(), [1, 0, 0])  # one positive regret holds all the weight
    nh.update(np.array([0.5, 0.0, 1.0]))  # <p,l> = 0.5 -> R = [2/3, 1/6, -5/6]
    np.testing.assert_allclose(nh.R, [2 / 3, 1 / 6, -5 / 6])
    R_plus = np.array([2 / 3, 1 / 6, 0.0])
    c = _solve_c_by_newton(R_plus)
    assert nh.c == pytest.approx(c, rel=1e-6)
    w = np.array([r / c * math.exp(r * r / (2 * c)) for r in R_plus])
    np.testing.assert_allclose(nh.probs(), w / w.sum(), rtol=1e-6)


def test_normalhedge_is_uniform_without_positive_regret():
    nh = NormalHedge(4)
    nh.update(np.full(4, 0.3))
    np.testing.assert_array_equal(nh.probs(), np.full(4, 0.25))
    assert nh.c is None


def test_hedge_weights_by_hand():
    h = Hedge(2)
    for loss in ([0.0, 1.0], [1.0, 0.0], [0.0, 1.0]):
        h.update(np.array(loss))
    eta = math.sqrt(math.log(2) / 3)
    w = np.exp(-eta * np.array([1.0, 2.0]))
    np.testing.assert_allclose(h.probs(), w / w.sum(), rtol=1e-12)


def test_normalhedge_with_one_positive_regret_takes_c_in_closed_form():
    for R, n in ((0.7, 3), (12.0, 8), (0.05, 16)):
        R_plus = np.zeros(n)
        R_plus[1] = R
        c = one_positive_scale(R, n)
        assert np.mean(np.exp(R_plus**2 / (2 * c))) == pytest.approx(math.e, rel=1e-12)  # Figure 1's equation
        assert c == pytest.approx(normalhedge_scale(R_plus), rel=1e-6)
    nh = NormalHedge(3)
    nh.update(np.array([0.0, 1.0, 1.0]))  # one positive regret
    assert nh.c == pytest.approx(_solve_c_by_newton(np.array([2 / 3, 0.0, 0.0])), rel=1e-9)


def test_normalhedge_skips_a_loss_equal_for_every_expert():
    """r_t = <p, l> - l_i = 0 for every i when l is constant: R, c and p stay as they were."""
    nh = NormalHedge(3)
    for loss in ([0.0, 1.0, 0.5], [0.5, 0.0, 1.0]):
        nh.update(np.array(loss))
    R, c, p = nh.R.copy(), nh.c, nh.probs()
    nh.update(np.full(3, 0.4))
    np.testing.assert_array_equal(nh.R, R)
    assert nh.c == c
    np.testing.assert_array_equal(nh.probs(), p)
    nh.update(np.array([0.4, 0.4, 0.41]))  # not equal: a step
    np.testing.assert_allclose(nh.R, R + p @ [0.4, 0.4, 0.41] - np.array([0.4, 0.4, 0.41]))


def test_sample_decision_draws_what_generator_choice_draws():
    """The inverse-CDF draw makes the same choices as numpy's Generator.choice(n, p=...), so runs
    recorded with the latter replay alike."""
    weights = np.random.default_rng(7).dirichlet(np.full(8, 0.3), size=50)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for p in weights:
        assert sample_decision(p, a).arm == int(b.choice(8, p=p / p.sum()))


def test_adanormalhedge_weights_by_hand():
    a = AdaNormalHedge(2)
    np.testing.assert_allclose(a.probs(), [0.5, 0.5])
    a.update(np.array([0.0, 1.0]))  # r = [.5, -.5], R = r, C = [.5, .5]
    w0 = (math.exp(1.5**2 / 4.5) - 1) / 2
    w1 = (math.exp(0.5**2 / 4.5) - 1) / 2
    np.testing.assert_allclose(a.probs(), [w0 / (w0 + w1), w1 / (w0 + w1)], rtol=1e-12)


@pytest.mark.parametrize("cls", LEARNERS.values())
def test_learners_reject_non_finite_losses(cls):
    with pytest.raises(HedgespecError, match="non-finite"):
        cls(2).update(np.array([np.inf, 0.0]))


@pytest.mark.parametrize("cls", LEARNERS.values())
def test_update_many_equals_one_update_per_row(cls):
    losses = np.random.default_rng(3).random((40, 5))
    one, block = cls(5), cls(5)
    for i, loss in enumerate(losses):
        one.update(loss)
        if i == 24:
            one.begin_segment()
    block.update_many(losses[:17])
    block.update_many(losses[17:25])
    block.begin_segment()
    block.update_many(losses[25:])
    np.testing.assert_allclose(block.probs(), one.probs(), rtol=1e-12, atol=1e-15)
    with pytest.raises(HedgespecError, match="non-finite"):
        block.update_many(np.array([[0.0] * 5, [np.nan] + [0.0] * 4]))
    with pytest.raises(ValueError, match="shape"):
        block.update_many(np.zeros((2, 4)))


@pytest.mark.parametrize("cls", LEARNERS.values())
def test_learner_contract_distributions_reset_and_segments(cls):
    rng = np.random.default_rng(5)
    learner = cls(4)
    np.testing.assert_allclose(learner.probs(), np.full(4, 0.25))
    learner.begin_segment()  # a boundary before any loss changes nothing
    np.testing.assert_allclose(learner.probs(), np.full(4, 0.25))
    for t in range(60):
        learner.update(rng.random(4))
        if t % 20 == 19:
            learner.begin_segment()
        p = learner.probs()
        assert p.shape == (4,) and np.all(p >= 0) and p.sum() == pytest.approx(1.0)
    learner.reset()
    np.testing.assert_allclose(learner.probs(), np.full(4, 0.25))


def _anh_w(R, C):
    """w(R, C) of AdaNormalHedge, straight from its definition (not in log space)."""
    phi = lambda r, c: math.exp(max(r, 0.0) ** 2 / (3 * c))
    return (phi(R + 1, C + 1) - phi(R - 1, C + 1)) / 2


def test_sleeping_adanormalhedge_weights_by_hand():
    a = SleepingAdaNormalHedge(2)
    a.update(np.array([0.0, 1.0]))  # segment 1: r = [.5, -.5]
    a.begin_segment()  # segment 2: fresh copies with prior 1/2^2
    w = [_anh_w(0.5, 0.5) + _anh_w(0.0, 0.0) / 4, _anh_w(-0.5, 0.5) + _anh_w(0.0, 0.0) / 4]
    np.testing.assert_allclose(a.probs(), np.array(w) / sum(w), rtol=1e-12)
    p = a.probs()
    a.update(np.array([1.0, 0.0]))  # r = <p, l> - l = [p0 - 1, p0]
    r = [p[0] - 1, p[0]]
    R1, C1 = [0.5 + r[0], -0.5 + r[1]], [0.5 + abs(r[0]), 0.5 + abs(r[1])]  # segment 1 copies
    w = [_anh_w(R1[i], C1[i]) + _anh_w(r[i], abs(r[i])) / 4 for i in range(2)]
    np.testing.assert_allclose(a.probs(), np.array(w) / sum(w), rtol=1e-12)
    assert a.segments == 2
    a.begin_segment()
    a.begin_segment()  # nothing seen since the last start: no third copy set yet
    assert a.segments == 3


def test_tracking_plays_the_referees_mixture_of_its_two_learners():
    t = Tracking(3)
    for _ in range(30):
        t.update(np.array([0.0, 0.8, 0.8]))
    np.testing.assert_allclose(t.opening.R, [0.0, 0.0])  # first step: both uniform, same loss
    t.begin_segment()
    # The referee restarts without evidence: the opening's lead (a tie: kept) is played alone,
    # so the carried expert leads from the segment's first round.
    assert t.referee.c is None and t.lead == 1
    np.testing.assert_allclose(t.probs(), t.kept.probs())
    assert int(np.argmax(t.probs())) == 0
    p_fresh, p_kept = t.fresh.probs(), t.kept.probs()
    loss = np.array([0.9, 0.0, 0.9])
    t.update(loss)
    pair = np.array([p_fresh @ loss, p_kept @ loss])  # each learner's mixture loss before it learned
    ref = NormalHedge(2)
    ref.update(pair)
    np.testing.assert_allclose(t.referee.probs(), ref.probs())
    np.testing.assert_allclose(t.opening.R, ref.R)  # the segment's first step also went to the opening
    q = t.referee.probs()
    np.testing.assert_allclose(t.probs(), q[0] * t.fresh.probs() + q[1] * t.kept.probs())
    t.update(loss)
    np.testing.assert_allclose(t.opening.R, ref.R)  # one step per segment


@pytest.mark.parametrize(("blocks", "lead"), [(True, 1), (False, 0)])
def test_tracking_learns_whether_carrying_opens_segments_well(blocks, lead):
    # 3 experts, segments of 40 steps; the best expert changes every 10 segments (blocks)
    # or at every segment (a stream without blocks: carrying opens every segment on a bad expert).
    order = np.repeat([0, 1, 2], 10) if blocks else np.arange(30) % 3
    t = Tracking(3)
    for best in order:
        t.begin_segment()
        for _ in range(40):
            loss = np.full(3, 0.8)
            loss[best] = 0.1
            t.update(loss)
    assert t.lead == lead


def test_tracking_previewed_prompt_switches_before_the_first_round_of_a_shift():
    # A block where expert 0 is best, then a new segment whose preview (its prompt's losses)
    # favours expert 1: the first round already plays expert 1. Without the preview the
    # opening's lead carries expert 0 into the segment (K positions before any loss arrives).
    for preview in (True, False):
        t = Tracking(3)
        for _ in range(8):
            t.begin_segment()
            t.update_many(np.tile([0.1, 0.7, 0.7], (40, 1)))
        t.begin_segment()
        if preview:
            t.update_many(np.tile([0.7, 0.1, 0.7], (20, 1)))  # the preview: the segment's first steps
            assert t.referee.probs()[0] > 0.99  # fresh, concentrated on the prompt's best, leads
        assert int(np.argmax(t.probs())) == (1 if preview else 0)
    # Inside a block the preview agrees with what was carried: kept keeps the lead.
    t = Tracking(3)
    for _ in range(8):
        t.begin_segment()
        t.update_many(np.tile([0.1, 0.7, 0.7], (40, 1)))
    t.begin_segment()
    t.update_many(np.tile([0.1, 0.7, 0.7], (20, 1)))
    assert t.referee.probs()[1] > 0.99 and t.probs()[0] > 0.99


def _prompt_run(method: str, prompts: list[np.ndarray]) -> list[int]:
    """First arm chosen on each query (gamma favours drafter 0 on every query), after its prompt."""
    sel = make_selector(method, 3, NAMES, seed=0)
    firsts = []
    for prompt in prompts:
        sel.begin_query(ctx())
        sel.observe_prompt(prompt)
        firsts.append(sel.choose(0).arm)
        for s in range(0, 30, 3):
            if s:
                sel.choose(s)
            sel.update(FullFeedback(np.tile([1.0, 0.0, 0.0], (3, 1)), 0, K))
        sel.end_query()
    return firsts


def test_hedgespec_hands_the_prompt_to_the_learner_where_it_is_asked_to():
    towards_2 = np.tile([0.0, 0.0, 1.0], (12, 1))  # the prompt: only drafter 2 agrees with the target
    prompts = [np.tile([1.0, 0.0, 0.0], (12, 1))] * 3 + [towards_2]
    # Kept across queries, tracking: the 4th query's prompt moves it to drafter 2 before its first round.
    assert _prompt_run("hedgespec:reset=never,learner=tracking,play=argmax", prompts)[1:] == [0, 0, 2]
    assert _prompt_run("hedgespec:reset=never,learner=tracking,play=argmax,prompt=ignore", prompts)[1:] == [0, 0, 0]
    # NormalHedge does not act at boundaries; per query there is no boundary: the preview changes nothing.
    for method in ("hedgespec:reset=never,play=argmax", "hedgespec:play=argmax"):
        assert _prompt_run(method, prompts) == _prompt_run(method + ",prompt=ignore", prompts)
    # prompt=learn: any learner takes the prompt as its first steps, per query too.
    assert _prompt_run("hedgespec:play=argmax,prompt=learn", prompts) == [0, 0, 0, 2]
    # reads_prompt (the engine scores the prompt off the clock where it is False) is True exactly where
    # the prompt changed a play above.
    reads = {m: make_selector(m, 3, NAMES).reads_prompt for m in (
        "hedgespec:reset=never,learner=tracking", "hedgespec:prompt=learn", "hedgespec:reset=never",
        "hedgespec", "hedgespec:reset=never,learner=tracking,prompt=ignore")}
    assert list(reads.values()) == [True, True, False, False, False]
    # carries_over (the evaluation after a query's last round is off the clock where it is False): kept learners only
    assert [make_selector(m, 3, NAMES).carries_over for m in reads] == [True, False, True, False, True]
    sel = make_selector("hedgespec", 3, NAMES)
    with pytest.raises(ValueError, match="before begin_query"):
        sel.observe_prompt(towards_2)
    sel = make_selector("hedgespec:reset=never,learner=tracking", 3, NAMES)
    sel.begin_query(ctx())
    with pytest.raises(ValueError, match="prompt gamma"):
        sel.observe_prompt(np.zeros((12, 2)))


def _steps_to_switch(learner, *, block=10, length=50, horizon=400) -> int | None:
    """A block of `block` segments where expert 0 is best, then a shift to expert 1.

    Returns the steps after the shift until the learner's top weight is expert 1 and stays
    there to the horizon (None: not within it). Losses are loss vectors in [0, 1]^3.
    """
    for _ in range(block):
        learner.begin_segment()
        for _ in range(length):
            learner.update(np.array([0.1, 0.7, 0.7]))
    learner.begin_segment()
    tops = []
    for _ in range(horizon):
        learner.update(np.array([0.7, 0.1, 0.7]))
        tops.append(int(np.argmax(learner.probs())))
    wrong = [i for i, top in enumerate(tops) if top != 1]
    if len(wrong) == horizon:
        return None
    return wrong[-1] + 1 if wrong else 0


def test_tracking_switches_within_a_few_steps_of_a_shift_where_normalhedge_does_not():
    # NormalHedge kept across the stream: expert 1's regret is -300 after the first block
    # (0.6 per step for 500 steps) and climbs back at 0.6 per step: about 500 steps.
    assert _steps_to_switch(NormalHedge(3)) is None
    # The fresh NormalHedge inside `tracking` puts all weight on expert 1 after one step
    # (the only positive regret), and the referee follows it the same step.
    assert _steps_to_switch(Tracking(3)) <= 1
    # The sleeping copies alone switch too, slower: the new copy's prior 1/11^2 and
    # AdaNormalHedge's exp(R^2 / 3C) must first outweigh the old block's copies.
    assert _steps_to_switch(SleepingAdaNormalHedge(3)) <= 40


# -- bandits, by hand ------------------------------------------------------------------------

TWO = ("a", "b")


def bandit_run(method, outcomes, seed=0):
    """outcomes: per round (n, block_reward); K = 4, N = 2. Returns the decisions."""
    sel = make_selector(method, 2, TWO, seed=seed)
    sel.begin_query(QueryContext(None, TWO, (None, None), 4))
    decisions = []
    for n, reward in outcomes:
        d = sel.choose(0)
        decisions.append(d)
        sel.update(BanditFeedback(d.arm, n, 4, 4, reward))
    return decisions, sel


def test_ucbspec_choices_by_hand():
    # BanditSpec eq. 6 with L = K = 4 (radius in tokens), N = 2 arms, t = rounds played so far.
    decisions, sel = bandit_run("ucbspec:delta=0.1", [(1, 0), (5, 0), (5, 0), (1, 0)])
    cr = lambda n, t: 2.0 * math.sqrt((1 + n) / n**2 * (1 + 2 * math.log(2 * t * t * math.sqrt(1 + n) / 0.1)))
    # round robin: a (n = 1), b (n = 5); t = 2: equal radii -> b (mean 5), b gets 5 again;
    # t = 3: a: 1 + cr(1, 3) = 10.830 < b: 5 + cr(2, 3) = 11.120 -> b. The former radius (reward
    # n/(K+1), radius 1/2 sqrt(...) at t + 1) went back to a here: 0.2 + 2.572 = 2.772 > 1 + 1.599.
    assert 1 + cr(1, 3) == pytest.approx(10.830, abs=1e-3)
    assert 5 + cr(2, 3) == pytest.approx(11.120, abs=1e-3)
    assert [d.arm for d in decisions] == [0, 1, 1, 1]
    np.testing.assert_allclose(sel.radius(), [cr(1, 4), cr(3, 4)])


def test_exp3spec_probabilities_by_hand():
    decisions, _ = bandit_run("exp3spec", [(1, 0), (5, 0)], seed=0)
    first = decisions[0]
    np.testing.assert_allclose(first.probs, [0.5, 0.5])
    assert first.arm == int(np.random.default_rng(0).choice(2, p=[0.5, 0.5]))
    Z = np.zeros(2)
    Z[first.arm] = (4 + 1 - 1) / (4 * 0.5)  # Z_i = (K + 1 - n) / (K p_i) = 2
    eta = math.sqrt(math.log(2) / (2 * 2))
    w = np.exp(-eta * Z)
    np.testing.assert_allclose(decisions[1].probs, w / w.sum())


def test_metasd_choices_by_hand():
    decisions, _ = bandit_run("metasd-ucb:beta=1", [(3, 0.9), (3, 0.5), (3, 0.1), (3, 0.0)])
    # try each: a (.9), b (.5); t = 2: equal bonus -> a, reward .1 -> mean .5;
    # t = 3: a .5 + sqrt(2 ln 3 / 2) = 1.548 < b .5 + sqrt(2 ln 3) = 1.982 -> b
    assert [d.arm for d in decisions] == [0, 1, 0, 1]


def test_bandits_skip_rounds_without_drafting():
    sel = make_selector("ucbspec", 2, TWO)
    sel.begin_query(QueryContext(None, TWO, (None, None), 4))
    sel.choose(0)
    sel.update(BanditFeedback(0, 1, 0, 4, 0.0))  # k = 0: plain target step
    assert sel.pulls.tolist() == [0, 0] and sel.choose(1).arm == 0


def test_bandit_feedback_must_match_the_choice():
    sel = make_selector("ucbspec", 2, TWO)
    sel.begin_query(QueryContext(None, TWO, (None, None), 4))
    sel.choose(0)
    with pytest.raises(ValueError, match="last choice was 0"):
        sel.update(BanditFeedback(1, 2, 4, 4, 0.5))


# -- the delayed full-information learner ----------------------------------------------------


class SpyLearner:
    def __init__(self, n):
        self.n, self.losses = n, []

    def probs(self):
        return np.full(self.n, 1.0 / self.n)

    def update(self, loss):
        self.losses.append(np.asarray(loss).copy())

    def update_many(self, losses):
        for loss in losses:
            self.update(loss)

    def reset(self):
        self.losses = []


def test_hedgespec_releases_a_position_only_when_its_window_is_complete():
    sel = make_selector("hedgespec", 2, TWO)  # EAL, K = 3
    spy = sel.learner = SpyLearner(2)
    sel.begin_query(QueryContext(None, TWO, (None, None), 3))
    col = [1, 1, 0, 1, 1]  # drafter a; drafter b accepts nothing
    g = np.array([[v, 0.0] for v in col])
    sel.update(FullFeedback(g[:2], 0, 3))
    assert sel.released == 0 and spy.losses == []  # window of position 0 needs rows 0..2
    sel.update(FullFeedback(g[2:3], 0, 3))
    assert sel.released == 1
    sel.update(FullFeedback(g[3:5], 0, 3))
    assert sel.released == 3  # positions 0, 1, 2 complete; 3, 4 still open
    sel.end_query()
    assert sel.released == 5  # closed at the end of the text
    A_a = [3, 2, 1, 3, 2]  # acceptance_lengths by hand, windows closed at the end
    expected = [[1 - a / 4, 1 - 1 / 4] for a in A_a]
    np.testing.assert_allclose(np.array(spy.losses), expected)


def test_hedgespec_tap_needs_no_delay_and_checks_positions():
    sel = make_selector("hedgespec:loss=tap", 2, TWO)
    spy = sel.learner = SpyLearner(2)
    sel.begin_query(QueryContext(None, TWO, (None, None), 3))
    sel.update(FullFeedback(np.array([[1.0, 0.25]]), 0, 3))
    assert sel.released == 1
    np.testing.assert_allclose(spy.losses[0], [0.0, 0.75])
    with pytest.raises(ValueError, match="1 positions were verified"):
        sel.choose(0)


def test_hedgespec_finds_the_good_drafter():
    rec = run("hedgespec", trace=random_trace(seed=1, queries=1, L=120))
    assert [d.arm for d in rec.decisions][-10:] == [1] * 10  # drafter "code" accepts 80%


def test_hedgespec_rejects_non_finite_gamma():
    sel = make_selector("hedgespec", 2, TWO)
    sel.begin_query(QueryContext(None, TWO, (None, None), 3))
    with pytest.raises(NonFiniteError):
        sel.update(FullFeedback(np.array([[np.nan, 1.0]]), 0, 3))


# -- static rules and oracles ---------------------------------------------------------------


def test_router_label_matches_the_true_domain_and_falls_back_to_generic():
    sel = make_selector("router-label", 3, NAMES)
    for domain, arm in (("math", 2), ("code", 1), ("law", 0), (None, 0)):
        sel.begin_query(ctx(domain))
        assert sel.choose(0).arm == arm
    unlabelled = make_selector("router-label", 2, ("x", "y"))
    unlabelled.begin_query(QueryContext("code", ("x", "y"), ("math", "bio"), K))
    assert unlabelled.choose(0).arm == 0  # nothing generic either: the first drafter


def test_router_follows_the_classifier_not_the_label():
    sel = make_selector("router", 3, NAMES)
    for true, routed, arm in (("code", "math", 2), ("math", "code", 1), ("code", None, 0), ("math", "law", 0)):
        sel.begin_query(QueryContext(true, NAMES, DOMAINS, K, None, routed))
        assert sel.choose(0).arm == arm
    assert REGISTRY["router"].needs_prompt_classifier and not REGISTRY["router-label"].needs_prompt_classifier


def test_oracles_by_hand():
    # K = 3; drafter 0 accepts the first 4 positions, drafter 1 the last 4
    g = np.array([[1, 0], [1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 1], [0, 1]], dtype=float)
    oracle = make_selector("oracle", 2, TWO)
    oracle.begin_query(QueryContext(None, TWO, (None, None), 3, g))
    # fixed 0: s=0 n=4, s=4 n=1 x4 -> 5 rounds; fixed 1: n=1 x3, s=3 n=4, s=7 n=1 -> 5 rounds: tie -> 0
    assert oracle.choose(0).arm == 0
    rnd = make_selector("oracle-round", 2, TWO)
    rnd.begin_query(QueryContext(None, TWO, (None, None), 3, g))
    assert rnd.choose(0).arm == 0 and rnd.choose(4).arm == 1
    with pytest.raises(ConfigError, match="hedgespec replay"):
        oracle.begin_query(QueryContext(None, TWO, (None, None), 3))


def test_domain_blocks_are_maximal_runs_of_one_label():
    assert domain_blocks(["a", "a", "b", "a", None, None]) == [range(0, 2), range(2, 3), range(3, 4), range(4, 6)]
    assert domain_blocks([]) == []


def test_block_oracle_by_hand():
    # K = 3. Block a = queries 0, 1; block b = query 2.
    ones, zeros = np.ones(8), np.zeros(8)
    q0 = np.c_[ones, [1, 1, 0, 1, 1, 1, 1, 1]]  # d0: 4+4 -> 2 rounds; d1: 3, 4, then 1 (end of text) -> 3
    q1 = np.c_[zeros, ones]  # d0: 8 rounds of 1; d1: 2 rounds
    q2 = np.c_[np.ones(4), np.zeros(4)]  # d0: 1 round of 4; d1: 4 rounds
    assert fixed_rounds(round_lengths(q0, 3)).tolist() == [2, 3]
    blocks = block_oracle([q0, q1, q2], ["a", "a", "b"], 3)
    # Block a: d0 2 + 8 = 10 rounds, d1 3 + 2 = 5 -> d1, although d0 is best on query 0
    # (the per-query oracle needs 2 + 2 = 4).
    assert [(b.queries, b.domain, b.arm, b.rounds, b.rounds_per_query) for b in blocks] == [
        (range(0, 2), "a", 1, 5, 4), (range(2, 3), "b", 0, 1, 1)
    ]
    assert block_oracle([], [], 3) == []
    with pytest.raises(ValueError, match="0/1 acceptance"):
        block_oracle([np.full((4, 2), 0.5)], ["a"], 3)


def test_oracle_ranks_acceptance_probabilities_by_expected_round_length():
    # A live bench at T > 0 passes gamma = sum min(p, q). Read as ">= 0.5" both
    # drafters would accept everything and tie; in expectation drafter 1
    # appends 1 + .95 + .95^2 + .95^3 = 3.71 tokens a round, drafter 0 1.71.
    g = np.tile([0.55, 0.95], (12, 1))
    oracle = make_selector("oracle", 2, TWO)
    oracle.begin_query(QueryContext(None, TWO, (None, None), 3, g))
    assert oracle.choose(0).arm == 1
    rnd = make_selector("oracle-round", 2, TWO)
    rnd.begin_query(QueryContext(None, TWO, (None, None), 3, g))
    assert rnd.choose(0).arm == 1


# -- HedgeSpec's play rule --------------------------------------------------------------------


@pytest.mark.parametrize("learner", ["normalhedge", "hedge"])
def test_argmax_of_normalhedge_and_hedge_is_follow_the_leader(learner):
    # The legend's claim for play=argmax: the top weight is the least cumulative loss.
    from hedgespec_cli.selection.learners import LEARNERS

    rng = np.random.default_rng(3)
    model, total, mismatches = LEARNERS[learner](5), np.zeros(5), 0
    for step in range(3000):
        loss = np.clip(rng.normal([0.5, 0.45, 0.55, 0.5, 0.48], 0.3), 0, 1)
        model.update(loss)
        total += loss
        w = model.probs()
        mismatches += int(np.argmax(w) != np.argmin(total))
    assert mismatches == 0


def test_hedgespec_samples_from_its_weights_by_default_and_argmax_is_an_option():
    gamma = np.tile([[1.0, 0.0, 1.0]], (40, 1))  # drafters 0 and 2 tie: weights split between them
    gamma[::7, 2] = 0.0  # drafter 2 a little worse: 0 leads, 2 keeps some of Hedge's weight
    arms = {}
    for play in ("sample", "argmax"):
        picks = []
        for seed in range(40):
            sel = make_selector(f"hedgespec:play={play},loss=tap,learner=hedge", 3, NAMES, seed=seed)
            sel.begin_query(ctx())
            sel.update(FullFeedback(gamma, 0, K))
            d = sel.choose(40)
            assert d.probs[2] > 0.05 or play == "argmax"
            picks.append(d.arm)
        arms[play] = picks
    assert set(arms["argmax"]) == {0}
    assert set(arms["sample"]) == {0, 2}  # drawn from the weights, not their argmax
    assert SelectorSpec.parse("hedgespec").params["play"] == "sample"


def test_hedgespec_legend_names_what_runs():
    assert "drawn from its weights" in SelectorSpec.parse("hedgespec").description
    ftl = SelectorSpec.parse("hedgespec:play=argmax").description
    assert "follow-the-leader" in ftl and "normalhedge never changes a decision" in ftl
    assert "follow-the-leader" not in SelectorSpec.parse("hedgespec:play=argmax,learner=adanormalhedge").description
    assert "lazy evaluation: up to 8 rounds" in SelectorSpec.parse("hedgespec").description
    assert "evaluated after every round" in SelectorSpec.parse("hedgespec:every=1").description


# -- the registry describes every method; method lists are queries over it ------------


def test_ar_is_registered_and_builds_no_selector():
    reg = REGISTRY["ar"]
    assert reg.kind == "plain" and not reg.selects and reg.in_default_bench and reg.not_replayable
    assert SelectorSpec.parse("ar").label == "ar"
    with pytest.raises(ConfigError, match="chooses no drafter"):
        make_selector("ar", 3, NAMES)


def test_feedback_traits_are_read_from_the_class_that_declares_them():
    for name in SELECTORS:
        reg = REGISTRY[name]
        sel = make_selector(method_string(name), 3, NAMES)
        assert (reg.needs_full_feedback, reg.needs_block_reward) == (sel.needs_full_feedback, sel.needs_block_reward)
    assert [n for n in SELECTORS if REGISTRY[n].needs_block_reward] == ["metasd-ucb"]
    assert [n for n in SELECTORS if REGISTRY[n].needs_full_feedback] == ["hedgespec"]


def test_the_default_method_lists_are_the_ones_the_toolkit_always_ran():
    from hedgespec_cli.selection.base import adaptive_methods, default_bench
    from hedgespec_cli.selection.replay import REFERENCES, default_methods
    from hedgespec_cli.selection.simulate import default_methods as simulate_methods

    assert default_bench("g") == ("ar", "fixed:g", "ucbspec", "exp3spec", "metasd-ucb", "random", "router",
                                  "router-label", "hedgespec", "oracle")
    assert adaptive_methods() == ("hedgespec", "ucbspec", "exp3spec", "metasd-ucb")
    assert default_methods(["g"]) == ["hedgespec", "ucbspec", "exp3spec", "random", "router-label",
                                      "oracle", "oracle-round", "fixed:g"]
    assert REFERENCES == ("oracle", "oracle-round")
    assert simulate_methods() == ["hedgespec", "ucbspec", "exp3spec", "random", "oracle"]


def test_a_new_selector_is_one_registration_away_from_every_method_list():
    from hedgespec_cli.selection.base import adaptive_methods, default_bench, register
    from hedgespec_cli.selection.replay import default_methods
    from hedgespec_cli.selection.simulate import default_methods as simulate_methods

    @register("newcomer", kind="online", summary="a test selector", adaptive=True, in_default_bench=True)
    class Newcomer:
        needs_full_feedback = False
        needs_block_reward = False

        def __init__(self, setup, **params) -> None:
            self.name = setup.name

    try:
        assert default_bench("g")[-4:] == ("router-label", "newcomer", "hedgespec", "oracle")  # bandits, then full info
        assert adaptive_methods()[-1] == "newcomer"
        assert "newcomer" in default_methods(["g"]) and "newcomer" in simulate_methods()
        assert isinstance(make_selector("newcomer", 3, NAMES), Newcomer)
    finally:
        del REGISTRY["newcomer"]


def test_lazy_hedgespec_waits_only_while_confident_and_at_most_every_rounds():
    sel = make_selector("hedgespec:every=4,confident=0.9", 2, TWO)
    sel.begin_query(QueryContext(None, TWO, (None, None), 3))
    assert all(sel.wants_feedback(w) for w in (1, 2, 3))  # uniform weights: not confident, no waiting
    sel.update(FullFeedback(np.array([[1.0, 0.0]] * 30), 0, 3))  # drafter a accepts everything, b nothing
    assert sel.weights.max() >= 0.9
    assert [sel.wants_feedback(w) for w in (1, 2, 3, 4, 5)] == [False, False, False, True, True]
    sel.choose(40)  # rounds that wait move the position on before the feedback arrives
    with pytest.raises(ValueError, match="choose"):
        sel.choose(10)  # ... but never back before what was verified
    eager = make_selector("hedgespec:every=1", 2, TWO)  # the paper's schedule: after every round
    eager.begin_query(QueryContext(None, TWO, (None, None), 3))
    eager.update(FullFeedback(np.array([[1.0, 0.0]] * 30), 0, 3))
    assert eager.wants_feedback(1)
    with pytest.raises(ValueError, match="choose"):
        eager.choose(40)
    unsure = make_selector("hedgespec:every=4,confident=0.9", 2, TWO)  # lazy, but not yet confident:
    unsure.begin_query(QueryContext(None, TWO, (None, None), 3))  # every round must be fed back
    unsure.choose(0)
    with pytest.raises(ValueError, match="choose"):
        unsure.choose(4)


def test_hedgespec_decisions_hold_read_only_weights():
    """Rounds between two updates share one weight vector (read once per update): nobody may write it."""
    sel = make_selector("hedgespec:every=4", 2, TWO)
    sel.begin_query(QueryContext(None, TWO, (None, None), 3))
    a, b = sel.choose(0), sel.choose(0)
    assert a.weights is b.weights and a.probs is b.probs
    with pytest.raises(ValueError, match="read-only"):
        a.weights[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        a.probs[0] = 1.0


def test_hedgespec_draws_from_its_cached_law_what_a_fresh_draw_gives():
    """HedgeSpec builds its sampling law once per update: the arms and probs it plays equal
    `sample_decision` on its weights with the same generator, round after round."""
    rng = np.random.default_rng(5)
    sel = make_selector("hedgespec:every=1", 4, NAMES + ("d",), seed=11)
    twin = np.random.default_rng(11)
    sel.begin_query(QueryContext(None, NAMES + ("d",), (None,) * 4, 3))
    for s in range(40):
        d, want = sel.choose(s), sample_decision(sel.weights, twin)
        assert d.arm == want.arm
        np.testing.assert_array_equal(d.probs, want.probs)
        sel.update(FullFeedback(rng.random((1, 4)), d.arm, 3))
