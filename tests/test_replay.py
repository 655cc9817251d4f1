"""Trace files and replay: hand-computed MAT, engine-equivalent rounds, the command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hedgespec_cli.errors import ConfigError, HedgespecError
from hedgespec_cli.selection import make_selector
from hedgespec_cli.selection.replay import default_methods, replay, replay_payload, replay_query
from hedgespec_cli.selection.trace import SCHEMA, Trace, TraceError, TraceQuery, read_trace, write_trace

NAMES = ("A", "B")


def hand_trace(temperature: float = 0.0) -> Trace:
    """K = 2, max_new_tokens = 6.

    q1 (6 tokens): A accepts everything; B = 1 0 1 1 0 1.
      fixed:A: s=0 k=2 a=2 n=3; s=3 k=2 a=2 n=3                 -> 2 rounds, MAT 3
      fixed:B: s=0 k=2 a=1 n=2; s=2 k=2 a=2 n=3; s=5 k=0 n=1   -> 3 rounds, MAT 2
    q2 (3 tokens, stopped by EOS): A = 0 0 0, B = 1 1 1.
      fixed:A: n=1 three times                                  -> 3 rounds
      fixed:B: s=0 k=2 a=2 n=3                                  -> 1 round
    """
    q1 = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [1, 1]], dtype=float)
    q2 = np.array([[0, 1], [0, 1], [0, 1]], dtype=float)
    return Trace(2, temperature, 6, NAMES, (None, "math"), (
        TraceQuery("q1", "code", (5, 6, 7, 8, 9, 10), q1, 0),
        TraceQuery("q2", "math", (11, 12, 2), q2, 1),
    ), seed=0, counterfactual=("positional", "positional"))  # as a bench writes it: run seed, query order


def test_fixed_mat_by_hand():
    result = replay(hand_trace(), ["fixed:A", "fixed:B"])
    a, b = result.runs["fixed:A"], result.runs["fixed:B"]
    assert [q.n.tolist() for q in a.queries] == [[3, 3], [1, 1, 1]]
    assert [q.n.tolist() for q in b.queries] == [[2, 3, 1], [3]]
    assert [q.drafted.tolist() for q in b.queries] == [[2, 2, 0], [2]]
    assert [q.accepted.tolist() for q in b.queries] == [[1, 2, 0], [2]]
    payload = replay_payload(result)["methods"]
    assert payload["fixed:A"]["mat"] == pytest.approx(9 / 5)
    assert payload["fixed:B"]["mat"] == pytest.approx(9 / 4)
    # oracle per query: A on q1 (2 rounds), B on q2 (1 round) -> 3 rounds
    assert payload["fixed:A"]["vs_oracle"]["extra_rounds"] == 2
    assert payload["fixed:B"]["vs_oracle"]["mat_gap"] == pytest.approx(9 / 3 - 9 / 4)
    assert payload["fixed:A"]["acceptance_rate"] == pytest.approx(4 / 10)
    assert payload["fixed:B"]["selection_freq"] == {"code": {"A": 0.0, "B": 1.0}, "math": {"A": 0.0, "B": 1.0}}


def test_regret_per_round_by_hand():
    result = replay(hand_trace(), ["fixed:B"])
    q1 = result.runs["fixed:B"].queries[0]
    # rounds start at 0, 2, 5; A would append 3, 3, 1 there (B: 2, 3, 1) -> best fixed A, regret 1
    assert q1.n_all.tolist() == [[3, 2], [3, 3], [1, 1]]
    assert q1.regret().tolist() == [1, 0, 0]


def test_bandit_feedback_in_replay():
    trace = hand_trace()
    seen = []
    sel = make_selector("fixed:B", 2, NAMES)
    original = sel.update
    sel.update = lambda fb: (seen.append(fb), original(fb))
    replay_query(sel, trace, trace.queries[0], trace.queries[0].gamma, hindsight=False)
    # no block reward: replay has no proxy for MetaSD's reward (metasd-ucb is refused instead)
    assert [(f.n, f.drafted, f.block_reward) for f in seen] == [(2, 2, None), (3, 2, None), (1, 0, None)]


def test_metasd_is_refused_by_replay_not_run_on_a_proxy():
    with pytest.raises(ConfigError, match="metasd-ucb cannot be replayed on a trace: its reward, 1 - TV"):
        replay(hand_trace(), ["hedgespec", "metasd-ucb:beta=2"])
    assert "metasd-ucb" not in default_methods(NAMES)


def test_full_feedback_rows_are_the_verified_positions():
    trace = hand_trace()
    seen = []
    sel = make_selector("hedgespec", 2, NAMES)
    original = sel.update
    sel.update = lambda fb: (seen.append(fb), original(fb))
    replay_query(sel, trace, trace.queries[0], trace.queries[0].gamma, hindsight=False)
    np.testing.assert_array_equal(np.concatenate([f.gamma for f in seen]), trace.queries[0].gamma)
    assert sel.released == 6  # end_query flushed every position


@pytest.mark.parametrize("seed", range(4))
def test_round_lengths_match_the_played_rounds(seed):
    rng = np.random.default_rng(seed)
    L, N = 50, 3
    g = (rng.random((L, N)) < [0.3, 0.6, 0.9]).astype(float)
    trace = Trace(4, 0.0, 64, ("x", "y", "z"), (None,) * 3, (TraceQuery("q", None, (0,) * L, g),))
    for run in replay(trace, ["random", "hedgespec", "ucbspec"], seed=seed).runs.values():
        q = run.queries[0]
        assert q.n.sum() == L
        np.testing.assert_array_equal(q.n, q.n_all[np.arange(q.rounds), q.arms])


def test_oracle_is_the_best_fixed_drafter_per_query():
    rng = np.random.default_rng(3)
    qs = tuple(
        TraceQuery(f"q{i}", None, (0,) * 40, (rng.random((40, 3)) < rng.random(3)).astype(float))
        for i in range(5)
    )
    trace = Trace(3, 0.0, 40, ("x", "y", "z"), (None,) * 3, qs)
    result = replay(trace, ["fixed:x", "fixed:y", "fixed:z"])
    for i in range(5):
        best = min(result.runs[f"fixed:{d}"].queries[i].rounds for d in "xyz")
        assert result.runs["oracle"].queries[i].rounds == best


def test_temperature_above_zero_is_a_seeded_approximation():
    q = np.full((6, 2), 0.5)
    trace = Trace(2, 0.7, 6, NAMES, (None, None), (TraceQuery("q", None, (0,) * 6, q),))
    a = replay_payload(replay(trace, ["hedgespec", "random"], seed=1))
    b = replay_payload(replay(trace, ["hedgespec", "random"], seed=1))
    assert a == b and not a["exact"]
    assert "APPROXIMATION" in a["notes"][0]


def test_tree_traces_round_trip_and_replay_as_an_upper_bound(tmp_path):
    from dataclasses import replace

    trace = replace(hand_trace(), tree={"top_k": 4, "total_tokens": 24})
    back = read_trace(write_trace(tmp_path / "t.jsonl", trace))
    assert back.tree == {"top_k": 4, "total_tokens": 24}
    payload = replay_payload(replay(back, ["hedgespec"]))
    assert not payload["exact"] and "UPPER BOUND" in payload["notes"][0]
    assert payload["trace"]["tree"] == {"top_k": 4, "total_tokens": 24}
    with pytest.raises(TraceError, match="trace tree must be"):
        replace(hand_trace(), tree={"top_k": 0, "total_tokens": 24})


def test_temperature_zero_needs_binary_gamma():
    q = np.full((6, 2), 0.5)
    trace = Trace(2, 0.0, 6, NAMES, (None, None), (TraceQuery("q", None, (0,) * 6, q),))
    with pytest.raises(TraceError, match="0/1 gamma"):
        replay(trace, ["random"])


def test_duplicate_methods_are_refused():
    with pytest.raises(ConfigError, match="listed twice"):
        replay(hand_trace(), ["hedgespec", "hedgespec:loss=eal"])


def test_default_methods():
    methods = default_methods(NAMES)
    assert methods[0] == "hedgespec" and "oracle-round" in methods and methods[-2:] == ["fixed:A", "fixed:B"]


# -- trace files -----------------------------------------------------------------------


def test_trace_roundtrip(tmp_path):
    path = write_trace(tmp_path / "sub" / "t.jsonl", hand_trace())
    assert [p.name for p in path.parent.iterdir()] == ["t.jsonl"]  # no temp file left behind
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {
        "schema": SCHEMA, "K": 2, "temperature": 0.0, "max_new_tokens": 6,
        "drafters": ["A", "B"], "drafter_domains": [None, "math"],
        "counterfactual": ["positional", "positional"], "seed": 0,
    }
    back = read_trace(path)
    assert back.header() == hand_trace().header()
    for x, y in zip(back.queries, hand_trace().queries):
        assert (x.id, x.domain, x.tokens, x.index) == (y.id, y.domain, y.tokens, y.index)
        np.testing.assert_array_equal(x.gamma, y.gamma)


def test_prompt_gamma_round_trips_and_replay_hands_it_to_full_information_selectors(tmp_path):
    base = hand_trace()

    def with_prompt(towards: int) -> Trace:  # the prompt: only drafter `towards` agrees with the target
        prompt = np.eye(2)[[towards] * 4]
        return replace(base, queries=tuple(replace(q, prompt_gamma=prompt) for q in base.queries))

    def first_arm(trace, method):
        result = replay(trace, [method])
        return int(result.runs[result.requested[0]].queries[0].arms[0])

    back = read_trace(write_trace(tmp_path / "p.jsonl", with_prompt(1)))
    for q in back.queries:
        np.testing.assert_array_equal(q.prompt_gamma, np.eye(2)[[1] * 4])
    assert read_trace(write_trace(tmp_path / "none.jsonl", base)).queries[0].prompt_gamma is None
    # learn: the prompt's losses are the learner's first steps, so its first round plays the prompt's
    # drafter (either way, not a tie-break); ignore: as on a trace without prompt gamma.
    assert [first_arm(t, "hedgespec:play=argmax,prompt=learn") for t in (with_prompt(0), back)] == [0, 1]
    assert first_arm(back, "hedgespec:play=argmax,prompt=ignore") == first_arm(base, "hedgespec:play=argmax")
    with pytest.raises(TraceError, match="prompt_gamma"):
        replace(base.queries[0], prompt_gamma=np.ones((3, 5)))


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([], "is empty"),
        (["{not json"], "not valid JSON"),
        (['{"schema": "other"}'], "not a hedgespec trace"),
        ([f'{{"schema": "{SCHEMA}", "K": 2}}'], "missing field 'temperature'"),
        (
            [f'{{"schema": "{SCHEMA}", "K": 2, "temperature": 0, "max_new_tokens": 4, "drafters": ["A"]}}',
             '{"id": "q", "domain": null, "tokens": [1, 2], "gamma": [[1.0]]}'],
            ":2: query 'q': gamma must have one row per generated token",
        ),
        (
            [f'{{"schema": "{SCHEMA}", "K": 2, "temperature": 0, "max_new_tokens": 4, "drafters": ["A"]}}',
             '{"id": "q", "domain": null, "tokens": [1], "gamma": [[1.5]]}'],
            "in [0, 1]",
        ),
    ],
)
def test_malformed_traces_raise_a_clear_error(tmp_path, lines, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert needle in str(err.value) and isinstance(err.value, HedgespecError)


def test_missing_trace(tmp_path):
    with pytest.raises(TraceError, match="not found"):
        read_trace(tmp_path / "nope.jsonl")


# -- the command -------------------------------------------------------------------------


@pytest.fixture()
def cli():
    from hedgespec_cli.cli.replay import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep `replay` a named subcommand
    return app


def test_replay_command_json(cli, tmp_path):
    path = write_trace(tmp_path / "t.jsonl", hand_trace())
    result = CliRunner().invoke(cli, ["replay", str(path), "--json", "-m", "fixed:A,hedgespec:loss=tap"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert list(payload["methods"]) == ["fixed:A", "hedgespec:loss=tap"]
    assert payload["methods"]["fixed:A"]["mat"] == pytest.approx(9 / 5)
    assert payload["exact"] is True


def test_replay_command_tables(cli, tmp_path):
    path = write_trace(tmp_path / "t.jsonl", hand_trace())
    result = CliRunner().invoke(cli, ["replay", str(path)])
    assert result.exit_code == 0, result.output
    for text in ("hedgespec", "ucbspec", "oracle-round", "fixed:B", "selection frequency"):
        assert text in result.output


def test_replay_command_errors_are_hedgespec_errors(cli, tmp_path):
    result = CliRunner().invoke(cli, ["replay", str(tmp_path / "missing.jsonl")])
    assert result.exit_code != 0 and isinstance(result.exception, TraceError)
    path = write_trace(tmp_path / "t.jsonl", hand_trace())
    result = CliRunner().invoke(cli, ["replay", str(path), "-m", "bogus"])
    assert isinstance(result.exception, ConfigError)


@pytest.mark.parametrize(
    ("modes", "temperature", "tree", "expect"),
    [
        (("positional", "positional"), 0.0, None,
         {"fixed:A": "exact", "fixed:B": "exact", "hedgespec": "exact", "exp3spec": "exact"}),
        (("positional", "aligned"), 0.0, None,  # fixed:A never reads B's approximate gamma
         {"fixed:A": "exact", "fixed:B": "approximate", "hedgespec": "approximate", "oracle": "approximate"}),
        (("depth1", "depth1"), 0.0, None, {"fixed:A": "approximate", "ucbspec": "approximate"}),
        (None, 0.0, None, {"fixed:A": "approximate", "hedgespec": "approximate"}),  # records nothing: claims nothing
        (("positional", "positional"), 0.7, None, {"fixed:A": "approximate", "hedgespec": "approximate"}),
        (("positional", "positional"), 0.0, {"top_k": 2, "total_tokens": 4}, {"fixed:A": "upper bound"}),
    ],
)
def test_fidelity_labels_follow_the_trace_and_the_method(modes, temperature, tree, expect):
    q1 = np.array([[1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [1, 1]], dtype=float)
    if temperature:
        q1 = q1 * 0.9
    trace = Trace(2, temperature, 6, NAMES, (None, "math"), (TraceQuery("q1", "code", (5, 6, 7, 8, 9, 10), q1, 0),),
                  tree, seed=0, counterfactual=modes)
    result = replay(trace, list(expect))
    assert {m: result.runs[m].fidelity.label for m in expect} == expect
    assert result.exact == all(v == "exact" for v in expect.values())
    payload = replay_payload(result)
    assert {m: payload["methods"][m]["fidelity"] for m in expect} == expect


def test_a_randomized_method_is_exact_only_with_the_live_seed():
    """hedgespec samples its drafter: replayed with another seed than the run's, it claims nothing."""
    trace = hand_trace()
    assert replay(trace, ["hedgespec", "fixed:A"]).runs["hedgespec"].fidelity.label == "exact"
    other = replay(trace, ["hedgespec", "fixed:A"], seed=1).runs
    assert other["hedgespec"].fidelity.label == "approximate" and "seed 1" in other["hedgespec"].fidelity.reason
    assert other["fixed:A"].fidelity.label == "exact"  # no random choice to make
    unseeded = Trace(trace.K, 0.0, trace.max_new_tokens, trace.drafters, trace.drafter_domains,
                     tuple(TraceQuery(q.id, q.domain, q.tokens, q.gamma) for q in trace.queries),
                     counterfactual=trace.counterfactual)  # a generate trace: no run seed, no query order
    assert replay(unseeded, ["hedgespec"]).runs["hedgespec"].fidelity.label == "approximate"
