"""Replaying a live T = 0 bench run reproduces it exactly wherever replay says "exact" (issue #14).

One small bench per pool (the tiny LM zoo and the tiny EAGLE-3 zoo) runs every
registered method, then `replay` of the run directory is compared with the
live run: per method, its fidelity label, and where that label is "exact" the
drafter of every round and the MAT of every query.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hedgespec_cli.bench.run import run_bench
from hedgespec_cli.rundir import read_jsonl
from hedgespec_cli.bench.settings import resolve_settings
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection import REGISTRY, SelectorSpec
from hedgespec_cli.selection.audit import audit, live_arms
from hedgespec_cli.selection.learners import LEARNERS
from hedgespec_cli.selection.replay import replay
from hedgespec_cli.selection.trace import read_trace

PROMPTS, MAX_NEW = 3, 20


def every_method(drafters: list[str]) -> list[str]:
    """Each registered method with its defaults (fixed:NAME for every drafter), each HedgeSpec
    learner and play rule, and a method that learns across queries."""
    out = ["ar"]
    for name, reg in REGISTRY.items():
        if reg.positional and reg.params[reg.positional].required:
            out += [f"{name}:{d}" for d in drafters]
        else:
            out.append(name)
    out += [f"hedgespec:learner={x}" for x in LEARNERS if x != REGISTRY["hedgespec"].params["learner"].default]
    out += ["hedgespec:play=argmax", "hedgespec:loss=tap", "hedgespec:reset=never", "exp3spec:reset=never",
            "hedgespec:reset=never,learner=tracking", "hedgespec:prompt=learn"]  # they read the prompt's gamma
    return list(dict.fromkeys(out))


def live_run(profile: str, out: Path, **extra) -> Path:
    from hedgespec_cli.config import load_profile

    names = [d.name for d in load_profile(profile).drafters]
    flags = {"profile": profile, "methods": ",".join(every_method(names)), "prompts": PROMPTS,
             "max_new_tokens": MAX_NEW, "warmup": 0, "out": str(out), "min_tokens": 1, "seed": 3, **extra}
    return Path(run_bench(resolve_settings(flags, None))["run_dir"])


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    return live_run("tiny", tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def eagle_run(tmp_path_factory) -> Path:
    return live_run("tiny-eagle3", tmp_path_factory.mktemp("eagle"), counterfactual="exact")


def check_replay(run: Path, expect_exact) -> dict:
    """Replay every live method; exact ones must reproduce every round; returns the fidelity labels."""
    trace = read_trace(run)
    assert trace.seed == 3 and [q.index for q in trace.queries] == list(range(PROMPTS))
    queries = {(q["method"], q["query_id"]): q for q in read_jsonl(run / "queries.jsonl")}
    ran = [m for m in json.loads((run / "results.json").read_text())["config"]["methods"] if m != "ar"]
    refused = [m for m in ran if REGISTRY[SelectorSpec.parse(m).name].not_replayable]
    assert sorted(SelectorSpec.parse(m).name for m in refused) == ["metasd-ucb", "router"]
    for m in refused:  # their feedback (block divergence, the prompt) is not in a trace: refused, not faked
        with pytest.raises(ConfigError, match="cannot be replayed"):
            replay(trace, [m])
    methods = [m for m in ran if m not in refused]
    result = replay(trace, methods)  # seeded from the trace's run seed, as the live bench was
    arms = live_arms(read_jsonl(run / "rounds.jsonl"))
    labels = {}
    for method in methods:
        label = SelectorSpec.parse(method).label
        got = result.runs[label]
        labels[method] = got.fidelity.label
        assert got.fidelity.exact == expect_exact(method), (method, got.fidelity)
        if not got.fidelity.exact:
            continue
        for q in got.queries:
            live = queries[(method, q.query_id)]
            assert arms[(label, q.query_id)] == q.arms.tolist(), (method, q.query_id)  # every decision
            assert live["rounds"] == q.rounds and live["new_tokens"] == q.L, (method, q.query_id)
            assert live["mat"] == q.L / q.rounds
    return labels


def test_lm_pool_replays_every_replayable_method_exactly(lm_run):
    labels = check_replay(lm_run, lambda m: True)
    assert set(labels.values()) == {"exact"}
    results = json.loads((lm_run / "results.json").read_text())
    assert results["validity"]["constraints"]["replay_exact"] is True
    audited = results["replay_audit"]["methods"]
    assert audited["fixed:generic"]["fidelity"] == "exact" and audited["fixed:generic"]["mat_error"] == 0.0
    assert "metasd-ucb" not in audited and "router" not in audited  # refused by replay: not audited


def test_eagle3_pool_in_the_exact_mode_replays_every_replayable_method_exactly(eagle_run):
    trace = read_trace(eagle_run)
    exact = trace.exact_counterfactual()
    assert exact and trace.counterfactual == ("exact",) * 8
    labels = check_replay(eagle_run, lambda m: exact)
    if not exact:  # aligned/depth1 scoring: nothing may claim exactness, and the error is measured
        assert set(labels.values()) == {"approximate"}
        results = json.loads((eagle_run / "results.json").read_text())
        assert results["validity"]["constraints"]["replay_exact"] is None
        fixed = results["replay_audit"]["methods"]["fixed:generic"]
        assert fixed["mat_error"] == pytest.approx(fixed["replay_mat"] - fixed["live_mat"])


def test_a_broken_exactness_claim_fails_the_audit(lm_run):
    """The audit can fail: a live run whose rounds differ from the replay breaks the claim."""
    trace = read_trace(lm_run)
    lines = read_jsonl(lm_run / "queries.jsonl")
    doctored = [dict(q, rounds=q["rounds"] + 1) if q["method"] == "fixed:code" else q for q in lines]
    result = audit(trace, doctored)
    assert result["exact_claims_hold"] is False
    assert result["methods"]["fixed:code"]["queries_differing"]
    assert result["methods"]["fixed:generic"]["queries_differing"] == []


@pytest.mark.parametrize("mode", ["exact", "depth1"])
def test_the_per_block_oracle_reads_gamma_by_depth_and_says_when_it_is_approximate(tmp_path, mode):
    """On EAGLE-3 heads the per-block oracle uses the same gamma by depth as the per-query oracle."""
    flags = {"profile": "tiny-eagle3", "workload": "domain-shift", "methods": "fixed:generic,oracle",
             "prompts": 3, "max_new_tokens": 24, "warmup": 0, "out": str(tmp_path), "min_tokens": 1,
             "counterfactual": mode}
    results = run_bench(resolve_settings(flags, None))
    ob = results["oracle_block"]
    assert ob["exact"] is (mode == "exact")
    if mode == "exact":  # its per-query figure is then what the live per-query oracle played
        assert ob["mat_per_query_oracle"] == pytest.approx(results["methods"]["oracle"]["mat"])
    assert ob["mat"] <= ob["mat_per_query_oracle"] + 1e-12  # a block's one drafter never beats each query's best
