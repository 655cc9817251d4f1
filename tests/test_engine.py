"""The engine on tiny random checkpoints: lossless, full-information gamma, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from conftest import make_llama, make_tokenizer

from hedgespec_cli.decoding.drafters import StackedGroup
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.errors import (
    CheckpointError,
    ConfigError,
    VocabMismatchError,
    WorkloadError,
)
from hedgespec_cli.models import ModelSpec, load_pool
from hedgespec_cli.selection.feedback import BanditFeedback, Decision, FullFeedback

PROMPTS = ["the cat sat on", "a, b. c", "zzz", "hello world and more words here"]


class Fixed:
    """A chooser that always plays one drafter and records what it was told."""

    def __init__(self, arm: int, n: int, full: bool = True, reads_prompt: bool = True, carries_over: bool = True) -> None:
        self.arm, self.n, self.needs_full_feedback = arm, n, full
        self.needs_block_reward = False
        self.reads_prompt, self.carries_over = reads_prompt, carries_over
        self.seen: list = []
        self.prompt_gamma: np.ndarray | None = None

    def choose(self, position: int) -> Decision:
        return Decision(self.arm, np.eye(self.n)[self.arm])

    def observe_prompt(self, gamma: np.ndarray) -> None:
        self.prompt_gamma = gamma

    def update(self, feedback) -> None:
        self.seen.append(feedback)

    def wants_feedback(self, waiting: int) -> bool:
        return True


class Cycle(Fixed):
    """Switches drafter every round, to exercise caches that fall behind."""

    def choose(self, position: int) -> Decision:
        self.arm = (self.arm + 1) % self.n
        return super().choose(position)


class Lazy(Cycle):
    """Switches drafter every round and lets `every` rounds wait for each evaluation."""

    def __init__(self, arm: int, n: int, every: int) -> None:
        super().__init__(arm, n)
        self.every = every

    def wants_feedback(self, waiting: int) -> bool:
        return waiting >= self.every


def assert_lazy_matches_eager(engine, pool, every: int, steps: int = 30, min_prompt: int = 1) -> None:
    """Rounds that wait for a later evaluation call are scored as an evaluation after every round
    scores them (same gamma, by depth too), the output is the target's greedy output, and the
    feedback arrives in blocks of `every` rounds that cover every position once."""
    for prompt in PROMPTS:
        ids = pool.tokenizer(prompt)["input_ids"]
        if len(ids) < min_prompt:
            continue
        eager = engine.decode(ids, Cycle(0, engine.n_drafters))
        chooser = Lazy(0, engine.n_drafters, every)
        lazy = engine.decode(ids, chooser)
        assert lazy.output_ids == eager.output_ids == reference_greedy(pool.target.model, ids, steps, None)
        assert [r.drafter for r in lazy.rounds] == [r.drafter for r in eager.rounds]
        np.testing.assert_array_equal(lazy.gamma, eager.gamma)
        if eager.gamma_depth is not None:
            np.testing.assert_array_equal(lazy.gamma_depth, eager.gamma_depth)
        assert len(chooser.seen) == -(-len(lazy.rounds) // every), prompt
        assert sum(fb.gamma.shape[0] for fb in chooser.seen) == len(lazy.output_ids)


def reference_greedy(model, prompt_ids: list[int], steps: int, eos: int | None) -> list[int]:
    """Target-only greedy decoding without any cache: the ground truth."""
    ids = list(prompt_ids)
    with torch.inference_mode():
        for _ in range(steps):
            nxt = int(model(torch.tensor([ids], device=model.device)).logits[0, -1].argmax())
            ids.append(nxt)
            if nxt == eos:
                break
    return ids[len(prompt_ids) :]


def assert_every_arm_lossless(engine, pool, steps: int = 24, min_prompt: int = 1) -> None:
    """Every drafter, chosen every round (with and without full-information evaluation), gives
    exactly the target's own greedy output on every prompt of at least `min_prompt` tokens."""
    n = engine.n_drafters
    for prompt in PROMPTS:
        ids = pool.tokenizer(prompt)["input_ids"]
        if len(ids) < min_prompt:
            continue
        want = reference_greedy(pool.target.model, ids, steps, None)
        for arm in range(n):
            for full in (True, False):
                assert engine.decode(ids, Fixed(arm, n, full)).output_ids == want, (prompt, arm, full)


@pytest.mark.parametrize("K", [1, 3, 6])
def test_greedy_output_equals_target_greedy(tiny_pool, K):
    # The random target often says EOS early; decode through it to test long outputs.
    engine = Engine(tiny_pool, DecodeSettings(K=K, max_new_tokens=30, stop_at_eos=False))
    tok, N = tiny_pool.tokenizer, engine.n_drafters
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        want = reference_greedy(tiny_pool.target.model, ids, 30, None)
        assert engine.decode(ids).output_ids == want
        for arm in range(N):  # exact copy, near copy, far copy, random weights
            for full in (True, False):
                assert engine.decode(ids, Fixed(arm, N, full)).output_ids == want, (prompt, arm)
        assert engine.decode(ids, Cycle(0, N, full=False)).output_ids == want


def test_eos_stops_decoding_like_the_target(tiny_pool):
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=30))
    eos = tiny_pool.tokenizer.eos_token_id
    ids = tiny_pool.tokenizer("the cat")["input_ids"]  # the random target answers EOS here
    want = reference_greedy(tiny_pool.target.model, ids, 30, eos)
    rec = engine.decode(ids, Fixed(0, 4))
    assert rec.output_ids == want and want[-1] == eos and rec.stop == "eos"


def test_drafts_after_an_eos_are_not_counted_as_accepted(tiny_pool):
    # The exact copy drafts past an EOS that the target accepts mid-block; the
    # tokens after it are cut, and so is their count.
    engine = Engine(tiny_pool, DecodeSettings(K=5, max_new_tokens=30, stop_at_eos=False))
    ids = tiny_pool.tokenizer("the cat sat")["input_ids"]
    free = engine.decode(ids, Fixed(0, 4)).output_ids
    engine.eos = free[7]  # a token the target emits inside a round of accepted drafts
    rec = engine.decode(ids, Fixed(0, 4))
    assert rec.output_ids == free[: free.index(free[7]) + 1] and rec.stop == "eos"
    last = rec.rounds[-1]
    assert last.accepted == last.n <= last.drafted == 5
    assert all(r.accepted <= r.n for r in rec.rounds)
    assert sum(r.n for r in rec.rounds) == len(rec.output_ids)


def test_exact_copy_accepts_everything(tiny_pool):
    engine = Engine(tiny_pool, DecodeSettings(K=4, max_new_tokens=20, stop_at_eos=False))
    rec = engine.decode(tiny_pool.tokenizer("the cat")["input_ids"], Fixed(0, 4))
    assert rec.mat == pytest.approx(5.0)  # 20 tokens in 4 rounds of K + 1
    assert rec.gamma[:, 0].tolist() == [1.0] * 20


def replay_n(gamma_col: np.ndarray, s: int, K: int, max_new: int) -> int:
    """Tokens a chain drafter gets in a round starting at s, predicted from its gamma (T = 0)."""
    k = min(K, max_new - s - 1)
    a = 0
    while a < k and s + a < len(gamma_col) and gamma_col[s + a] == 1.0:
        a += 1
    return min(a + 1, len(gamma_col) - s)


def test_full_information_gamma_predicts_other_drafters_exactly(tiny_pool):
    """Gamma recorded while drafter A drafts predicts B's real acceptance, round by round."""
    K, max_new = 3, 40
    engine = Engine(tiny_pool, DecodeSettings(K=K, max_new_tokens=max_new, stop_at_eos=False))
    for prompt in PROMPTS:
        ids = tiny_pool.tokenizer(prompt)["input_ids"]
        trace = engine.decode(ids, Fixed(3, 4))  # the random drafter chooses; all are scored
        for arm in (0, 1, 2):
            live = engine.decode(ids, Fixed(arm, 4, full=False))
            s = 0
            for r in live.rounds:
                assert r.n == replay_n(trace.gamma[:, arm], s, K, max_new), (prompt, arm, s)
                s += r.n


@pytest.mark.parametrize("stack", [False, True])
def test_evaluation_call_also_gives_the_next_first_draft_row(tiny_pool, stack, monkeypatch):
    """Full information costs each drafter group one call per round, and that call leaves every
    drafter's q at the next position: the chosen drafter then drafts K tokens in K - 1 calls."""
    K = 4
    engine = Engine(tiny_pool, DecodeSettings(K=K, max_new_tokens=30, stop_at_eos=False), stack_drafters=stack)
    calls: dict[int, int] = {}
    for gi, group in enumerate(engine.groups):
        model = group.stack if hasattr(group, "stack") else group.lm
        call = "hidden" if hasattr(group, "stack") else "forward"  # a stack's forward is hidden + project
        original = getattr(model, call)

        def counted(*args, _gi=gi, _original=original, **kwargs):
            calls[_gi] = calls.get(_gi, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, call, counted)
    for chooser in (Fixed(1, 4), Cycle(0, 4)):
        calls.clear()
        rec = engine.decode(tiny_pool.tokenizer(PROMPTS[3])["input_ids"], chooser)
        drafting = sum(r.drafted - 1 for r in rec.rounds if r.drafted)  # chain steps after the first
        rounds = len(rec.rounds)
        first = 1  # only round 1's first row needs a catch-up call (no evaluation has run yet)
        assert sum(calls.values()) == len(engine.groups) * (1 + rounds) + drafting + first, chooser


@pytest.mark.parametrize("stack", [False, True])
@pytest.mark.parametrize("every", [2, 5])
def test_lazy_evaluation_scores_every_position_as_evaluating_every_round_does(tiny_pool, stack, every):
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=30, stop_at_eos=False), stack_drafters=stack)
    assert_lazy_matches_eager(engine, tiny_pool, every)


def test_feedback_types_follow_the_chooser(tiny_pool):
    engine = Engine(tiny_pool, DecodeSettings(K=2, max_new_tokens=10))
    ids = tiny_pool.tokenizer("abc")["input_ids"]
    full, bandit, plain = Fixed(1, 4, full=True), Fixed(1, 4, full=False), Fixed(1, 4, full=False)
    bandit.needs_block_reward = True  # MetaSD's reward is computed only on request
    engine.decode(ids, full)
    engine.decode(ids, plain)
    assert all(f.block_reward is None for f in plain.seen)
    rec = engine.decode(ids, bandit)
    assert all(isinstance(f, FullFeedback) and f.gamma.shape[1] == 4 for f in full.seen)
    assert all(isinstance(f, BanditFeedback) for f in bandit.seen)
    assert [f.n for f in bandit.seen] == [r.n for r in rec.rounds]
    assert all(0.0 <= f.block_reward <= 1.0 for f in bandit.seen)
    assert rec.gamma is None


def test_records_account_for_time_and_tokens(tiny_pool):
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=17, stop_at_eos=False))
    rec = engine.decode(tiny_pool.tokenizer("abc")["input_ids"], Fixed(1, 4))
    assert rec.new_tokens == len(rec.output_ids) == 17
    assert sum(rec.phase_ns.values()) == rec.wall_ns
    assert all(1 <= r.n <= r.drafted + 1 for r in rec.rounds)
    assert rec.rounds[-1].drafted <= 3 and rec.tokens_per_s > 0


def small_vocab_pool(tiny_models, folder: str):
    """A 5-character target and a poor drafter: small enough to tabulate the law of two tokens."""
    tok = make_tokenizer("abcde")
    root = tiny_models["target"].parent / folder
    target = make_llama(root / "t", tok, hidden=32, layers=1, seed=5, sharpen=6.0)
    drafter = make_llama(root / "d", tok, hidden=16, layers=1, seed=6, sharpen=6.0)
    return load_pool(ModelSpec("t", target), [ModelSpec("d", drafter)])


def two_token_law(pool, prompt: list[int]) -> torch.Tensor:
    """(V * V,) the target's exact joint law of the first two sampled tokens at T = 1."""
    model, V = pool.target.model, pool.target.vocab_size
    with torch.inference_mode():
        p1 = torch.softmax(model(torch.tensor([prompt])).logits[0, -1], -1)
        return torch.stack(
            [p1[t] * torch.softmax(model(torch.tensor([prompt + [t]])).logits[0, -1], -1) for t in range(V)]
        ).flatten()


def assert_fits(counts: torch.Tensor, law: torch.Tensor) -> None:
    """Chi-square goodness of fit at the 99.9th percentile; cells expecting < 5 draws are pooled."""
    expected = law * counts.sum()
    keep = expected >= 5
    chi2 = (((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum()
    rest_o, rest_e = counts[~keep].sum(), expected[~keep].sum()
    if rest_e > 0:
        chi2 += (rest_o - rest_e) ** 2 / rest_e
    dof = int(keep.sum()) + int(rest_e > 0) - 1
    # 99.9th percentile of chi-square(dof) via the Wilson-Hilferty approximation.
    crit = dof * (1 - 2 / (9 * dof) + 3.09 * (2 / (9 * dof)) ** 0.5) ** 3
    assert chi2 < crit, (float(chi2), crit, dof)


def sample_two_tokens(engine: Engine, prompt: list[int], draws: int = 3000) -> torch.Tensor:
    V = engine.pool.target.vocab_size
    counts = torch.zeros(V * V)
    for _ in range(draws):
        a, b = engine.decode(prompt, Fixed(0, 1)).output_ids
        counts[a * V + b] += 1
    return counts


def test_sampling_matches_target_distribution(tiny_models):
    """First two tokens at T = 1: SD with a poor drafter vs the exact target law (chi-square)."""
    pool = small_vocab_pool(tiny_models, "small_vocab")
    engine = Engine(pool, DecodeSettings(K=2, temperature=1.0, max_new_tokens=2, stop_at_eos=False), seed=0)
    prompt = pool.tokenizer("ab")["input_ids"]
    assert_fits(sample_two_tokens(engine, prompt), two_token_law(pool, prompt))


def test_missing_checkpoint_is_a_clear_error(tiny_models, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec("gone", tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec("empty", tmp_path / "empty")])
    with pytest.raises(CheckpointError, match="'tokenizer': checkpoint directory .*nope does not exist"):
        load_pool(ModelSpec("target", tiny_models["target"]), [], tokenizer_path=tmp_path / "nope")
    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "config.json").write_text('{"architectures": ["LlamaForCausalLMEagle3"]}')
    # Recognised as an EAGLE-3 head without `kind: eagle3`: the error is the head loader's own.
    with pytest.raises(CheckpointError, match="head/config.json: key 'hidden_size' is missing"):
        load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec("head", tmp_path / "head")])


def test_tokenizer_mismatch_names_the_drafter(tiny_models, tmp_path):
    other = make_tokenizer("zyxwvutsrqponmlkjihgfedcba .,")  # same size, ids permuted
    make_llama(tmp_path / "odd", other, hidden=16, layers=1, seed=0)
    with pytest.raises(VocabMismatchError, match=r"drafter 'odd' tokenizer differs.*ids mapped differently: 3:'a'"):
        load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec("odd", tmp_path / "odd")])
    small = make_tokenizer("abc")
    make_llama(tmp_path / "small", small, hidden=16, layers=1, seed=0)
    with pytest.raises(VocabMismatchError, match="drafter 'small' has vocab size 6, the target 32"):
        load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec("small", tmp_path / "small")])


def test_bad_settings_and_prompts(tiny_pool):
    with pytest.raises(ConfigError, match="K must be at least 1"):
        DecodeSettings(K=0)
    with pytest.raises(ConfigError, match="temperature must be a finite number >= 0"):
        DecodeSettings(temperature=-0.5)
    engine = Engine(tiny_pool, DecodeSettings(max_new_tokens=200))
    with pytest.raises(WorkloadError, match="empty prompt"):
        engine.decode([])
    with pytest.raises(WorkloadError, match="exceeds the models' context of 256"):
        engine.decode([5] * 100)


def test_bfloat16_drafters_stay_lossless(tiny_models):
    """--drafter-dtype changes the drafters' numerics only: the target still decides every token."""
    names = ["near", "far", "random"]
    pool = load_pool(ModelSpec("target", tiny_models["target"]), [ModelSpec(n, tiny_models[n]) for n in names],
                     drafter_dtype="bfloat16")
    assert next(pool.target.model.parameters()).dtype == torch.float32
    assert all(next(d.model.parameters()).dtype == torch.bfloat16 for d in pool.drafters)
    engine = Engine(pool, DecodeSettings(K=3, max_new_tokens=20, stop_at_eos=False))
    for prompt in PROMPTS[:2]:
        ids = pool.tokenizer(prompt)["input_ids"]
        want = reference_greedy(pool.target.model, ids, 20, None)
        for arm in range(3):
            assert engine.decode(ids, Fixed(arm, 3)).output_ids == want


@pytest.mark.parametrize("stack", [False, True])
def test_prompt_gamma_is_each_drafters_agreement_with_the_target_on_the_prompt(tiny_pool, stack):
    """Full information also scores the prompt (issue 19): gamma[t, j] = 1[argmax q_j = argmax p]
    at prompt positions 1..P-1, from the prefill's own logits; handed to a full-information chooser
    before its first round, recorded in the QueryRecord, never given to a bandit."""
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=8), stack_drafters=stack)
    ids = tiny_pool.tokenizer(PROMPTS[3])["input_ids"]
    x = torch.tensor(ids[:-1])
    with torch.inference_mode():
        p = tiny_pool.target.forward(x, tiny_pool.target.new_cache()).logits.argmax(-1)
        want = np.stack([(d.forward(x, d.new_cache()).logits.argmax(-1) == p).numpy() for d in tiny_pool.drafters],
                        axis=1).astype(np.float64)
    assert want.shape == (len(ids) - 1, 4) and 0 < want.sum() < want.size  # some agree, some do not
    full, bandit = Fixed(1, 4), Fixed(1, 4, full=False)
    rec = engine.decode(ids, full)
    np.testing.assert_array_equal(full.prompt_gamma, want)
    np.testing.assert_array_equal(rec.prompt_gamma, want)
    rec = engine.decode(ids, bandit, record_gamma=True)  # a trace of a bandit run records it ...
    np.testing.assert_array_equal(rec.prompt_gamma, want)
    assert bandit.prompt_gamma is None  # ... but the bandit never sees it
    one = engine.decode(tiny_pool.tokenizer("a")["input_ids"][:1], Fixed(1, 4))
    assert one.prompt_gamma is None  # a one-token prompt has no position to score


def test_the_last_evaluation_of_a_chooser_that_does_not_carry_over_is_off_the_clock(tiny_pool, monkeypatch):
    """A chooser whose learning ends with the query (`carries_over` False: per-query HedgeSpec) still gets
    the evaluation after the last round (the trace's gamma is whole), but its time is in no phase and
    not in the wall time; a chooser kept across queries pays for it."""
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=12, stop_at_eos=False))
    ids = tiny_pool.tokenizer(PROMPTS[0])["input_ids"]
    want = engine.decode(ids, Fixed(1, 4))
    evaluate = engine._evaluate

    def slow(pending, *args):
        if pending[-1].L - len(ids) >= 12:  # the evaluation after the last round
            time.sleep(0.3)
        return evaluate(pending, *args)

    monkeypatch.setattr(engine, "_evaluate", slow)
    ends, kept = Fixed(1, 4, carries_over=False), Fixed(1, 4)
    off, on = engine.decode(ids, ends), engine.decode(ids, kept)
    for rec in (off, on):
        np.testing.assert_array_equal(rec.gamma, want.gamma)
        assert rec.output_ids == want.output_ids
    assert len(ends.seen) == len(kept.seen) == len(want.rounds)  # fed back after every round, the last too
    assert off.rounds[-1].evaluate_ns == off.rounds[-1].learn_ns == 0 and off.wall_ns < 0.25e9
    assert on.rounds[-1].evaluate_ns >= 0.3e9 and on.wall_ns >= 0.3e9


def test_a_prompt_the_chooser_does_not_read_is_scored_off_the_clock(tiny_pool, monkeypatch):
    """A full-information chooser that does not learn from the prompt (`reads_prompt` False: per-query
    HedgeSpec) is not handed it, the record still carries it (for replay), and its scoring is not
    in the prefill phase or the wall time; a chooser that reads it pays for it."""
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=8))
    ids = tiny_pool.tokenizer(PROMPTS[3])["input_ids"]
    want = engine.decode(ids, Fixed(1, 4)).prompt_gamma
    score = engine._prompt_gamma

    def slow(*args):
        time.sleep(0.3)
        return score(*args)

    monkeypatch.setattr(engine, "_prompt_gamma", slow)
    blind, reader = Fixed(1, 4, reads_prompt=False), Fixed(1, 4)
    off, on = engine.decode(ids, blind), engine.decode(ids, reader)
    np.testing.assert_array_equal(off.prompt_gamma, want)
    assert blind.prompt_gamma is None
    np.testing.assert_array_equal(reader.prompt_gamma, want)
    assert off.phase_ns["prefill"] < 0.2e9 and off.wall_ns < 0.25e9
    assert on.phase_ns["prefill"] >= 0.3e9
    # ... while the drafters' own prefill (they need the prompt in their caches) stays on the clock
    group = engine.groups[0]
    prefill = group.prefill

    def slow_prefill(*args, **kwargs):
        time.sleep(0.3)
        return prefill(*args, **kwargs)

    monkeypatch.setattr(group, "prefill", slow_prefill)
    assert engine.decode(ids, Fixed(1, 4, reads_prompt=False)).phase_ns["prefill"] >= 0.3e9


@pytest.mark.parametrize("stack", [False, True])
def test_the_prefill_projects_the_prompt_only_for_a_chooser_that_reads_it(tiny_pool, stack, monkeypatch):
    """On the clock a drafter's prefill computes prompt rows only where they are read: an unstacked
    drafter is asked for them by a reader alone, and for a trace-only prompt gamma it is asked again,
    on a fresh cache, off the clock; a stack's rows (hidden states) come with the call, unasked."""
    engine = Engine(tiny_pool, DecodeSettings(K=3, max_new_tokens=8), stack_drafters=stack)
    ids = tiny_pool.tokenizer(PROMPTS[3])["input_ids"]
    asked: dict[int, list[bool]] = {}
    for gi, g in enumerate(engine.groups):
        def spy(state, ctx, L, *, rows=False, gi=gi, prefill=g.prefill):
            asked.setdefault(gi, []).append(rows)
            return prefill(state, ctx, L, rows=rows)

        monkeypatch.setattr(g, "prefill", spy)
    want = engine.decode(ids, Fixed(1, 4)).prompt_gamma
    assert all(calls == [True] for calls in asked.values())
    asked.clear()
    blind = engine.decode(ids, Fixed(1, 4, reads_prompt=False))
    np.testing.assert_array_equal(blind.prompt_gamma, want)
    stacked = [isinstance(g, StackedGroup) for g in engine.groups]
    assert [asked[gi] for gi in range(len(engine.groups))] == [[False] if s else [False, True] for s in stacked]


@pytest.mark.parametrize("stack", [False, True])
def test_a_bandit_runs_trace_is_the_gamma_full_information_records(tiny_pool, stack, monkeypatch):
    """record_gamma on a bandit run scores every drafter in calls of RECORD_EVERY rounds (not one
    call per query: its logits would all be held at once) and gets the gamma of evaluating every round."""
    from hedgespec_cli.decoding.engine import RECORD_EVERY

    engine = Engine(tiny_pool, DecodeSettings(K=1, max_new_tokens=60, stop_at_eos=False), stack_drafters=stack)
    ids = tiny_pool.tokenizer(PROMPTS[3])["input_ids"]
    eager = engine.decode(ids, Fixed(2, 4))
    calls = []
    evaluate = engine._evaluate
    monkeypatch.setattr(engine, "_evaluate", lambda pending, *a: calls.append(len(pending)) or evaluate(pending, *a))
    traced = engine.decode(ids, Fixed(2, 4, full=False), record_gamma=True)
    assert len(traced.rounds) > 2 * RECORD_EVERY and traced.output_ids == eager.output_ids
    np.testing.assert_array_equal(traced.gamma, eager.gamma)
    assert set(calls[:-1]) == {RECORD_EVERY} and 0 < calls[-1] <= RECORD_EVERY and sum(calls) == len(traced.rounds)
