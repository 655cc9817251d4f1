"""`hedgespec compare` on synthetic run directories (results.json + queries.jsonl)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hedgespec_cli.rundir import SCHEMA
from hedgespec_cli.errors import ConfigError, HedgespecError
from hedgespec_cli.report.compare import (
    FailRule,
    compare_runs,
    find_failures,
    parse_fail_on,
    to_github_benchmark,
)

ENV = {"python": "3.11.9", "torch": "2.13.0+cpu", "transformers": "5.23.0", "device_names": ["cpu: test"]}
METHODS = {"hedgespec": 3.2, "ar": 1.0}  # method -> MAT
N_QUERIES, REPEATS = 20, 2


def _line(method: str, q: int, r: int, tps: float, mat: float, drafts: bool) -> dict:
    """One queries.jsonl line as bench writes it (128 new tokens)."""
    wall_s = 128 / tps
    return {
        "method": method, "query_id": f"code-{q:04d}", "repeat": r, "domain": "code", "warmup": False,
        "new_tokens": 128, "rounds": 40, "mat": mat, "wall_s": wall_s, "tokens_per_s": tps,
        "drafted": 200 if drafts else 0, "accepted": 88 if drafts else 0,
        "phase_ms": {"evaluate": 30 * wall_s * drafts, "learn": 10 * wall_s * drafts},  # 4% overhead
    }


def make_run(
    path: Path, *, scale: float = 1.0, noise: float = 0.0, seed: int = 0, profile: str = "tiny",
    temperature: float = 0.0, mat_shift: float = 0.0, queries: bool = True, slower: dict | None = None,
    eval_scale: float = 1.0,
) -> Path:
    """A run whose per-query tokens/s is (100 + 10 q) * speed * scale * slower[method] * lognormal(0, noise).

    scale moves every method alike (a machine drift or an engine change);
    slower moves one method's tokens/s; eval_scale its evaluation time.
    """
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    lines, methods = [], {}
    for method, mat in METHODS.items():
        speed = (2.0 if method == "hedgespec" else 1.0) * (slower or {}).get(method, 1.0)
        mine = [
            _line(method, q, r, (100 + 10 * q) * speed * scale * float(np.exp(noise * rng.normal())),
                  mat + mat_shift, drafts=method != "ar")
            for q in range(N_QUERIES)
            for r in range(REPEATS)
        ]
        for x in mine:
            x["phase_ms"]["evaluate"] *= eval_scale
        # A warm-up line that statistics must ignore: absurdly slow.
        lines += mine + [{"method": method, "query_id": "code-0000", "repeat": 0, "tokens_per_s": 0.001,
                          "warmup": True}]
        methods[method] = {
            "mat": mat + mat_shift, "acceptance_rate": (mat + mat_shift - 1) / 5,
            "tokens_per_s": sum(x["new_tokens"] for x in mine) / sum(x["wall_s"] for x in mine),
            "speedup_vs_ar": {"geomean": speed, "ci95": [speed * 0.95, speed * 1.05]},
            "eval_overhead_frac": (30 * eval_scale + 10) / 1000 if method != "ar" else 0.0,
            "regret_vs_oracle": 0.1,
            "by_domain": {}, "selection_freq": {},
        }
    results = {
        "schema": SCHEMA, "run_id": path.name, "created_utc": "2026-01-02T03:04:05Z", "complete": True,
        "config": {"profile": {"name": profile}, "workload": {"name": "mixed"}, "temperature": temperature,
                   "K": 5},
        "env": dict(ENV), "validity": {"valid": True, "constraints": {"lossless": True}},
        "methods": methods, "acceptance_matrix": {}, "telemetry": {}, "artifacts": {"queries": "queries.jsonl"},
    }
    (path / "results.json").write_text(json.dumps(results))
    if queries:
        (path / "queries.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `hedgespec ARGS` through the real entry point -> (exit code, stdout, stderr)."""
    from hedgespec_cli.cli.app import main

    def run(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["hedgespec", *args])
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _tps(payload: dict, method: str = "hedgespec") -> dict:
    (entry,) = payload["comparisons"]
    return next(m for m in entry["metrics"] if m["method"] == method and m["metric"] == "tokens_per_s")


def test_identical_runs_pass(tmp_path, run_cli):
    base, cand = make_run(tmp_path / "a", noise=0.05), make_run(tmp_path / "b", noise=0.05)
    code, out, err = run_cli(["compare", str(base), str(cand), "--fail-on", "tokens_per_s:-5%",
                              "--format", "json"])
    assert code == 0, err
    payload = json.loads(out)
    assert payload["failed"] is False
    for m in payload["comparisons"][0]["metrics"]:
        assert m["change"] == pytest.approx(0.0, abs=1e-12) and m["significant"] is not True
    t = _tps(payload)
    assert t["test"].startswith("paired-bootstrap") and t["n"] == N_QUERIES
    assert t["ci95"] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_uniformly_slower_candidate_fails(tmp_path, run_cli):
    base = make_run(tmp_path / "a", noise=0.05, seed=0)
    cand = make_run(tmp_path / "b", noise=0.05, seed=1, scale=0.8)
    code, out, err = run_cli(["compare", str(base), str(cand), "--fail-on", "tokens_per_s:-5%"])
    assert code == 1
    assert "tokens/s" in out and "FAIL" in out  # the table, on stdout
    lines = [x for x in err.strip().splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: 2 regression(s) beyond --fail-on")
    assert "--fail-on tokens_per_s:-5% is within the 15% drift band" in err  # the gate is stricter than written
    assert "hedgespec tokens_per_s -19.6% beyond -5.0% (significant" in lines[0] and "Traceback" not in err


def test_slower_candidate_payload(tmp_path):
    base = make_run(tmp_path / "a", noise=0.05, seed=0)
    cand = make_run(tmp_path / "b", noise=0.05, seed=1, scale=0.8)
    c = compare_runs(base, cand)
    t = next(d for d in c.deltas if d.method == "hedgespec" and d.metric == "tokens_per_s")
    assert t.significant and t.change == pytest.approx(-0.2, abs=0.03)
    assert t.ci95[0] < -0.15 and t.ci95[1] < -0.15
    assert find_failures(c, [FailRule("tokens_per_s", -0.25)]) == []  # within a looser threshold
    assert len(find_failures(c, [FailRule("tokens_per_s", -0.05)])) == 2


def test_noisy_unchanged_candidate_is_not_significant(tmp_path, run_cli):
    base = make_run(tmp_path / "a", noise=0.15, seed=0)
    cand = make_run(tmp_path / "b", noise=0.15, seed=7)
    code, out, err = run_cli(["compare", str(base), str(cand), "--fail-on", "tokens_per_s:-1%",
                              "--format", "json"])
    assert code == 0, err
    t = _tps(json.loads(out))
    assert t["significant"] is False and t["ci95"][0] < 0 < t["ci95"][1]


def test_mat_change_at_greedy_is_significant(tmp_path):
    base, cand = make_run(tmp_path / "a"), make_run(tmp_path / "b", mat_shift=-0.1)
    mat = {d.method: d for d in compare_runs(base, cand).deltas if d.metric == "mat"}
    assert mat["hedgespec"].significant and mat["hedgespec"].test == "deterministic (T=0)"
    # At T > 0 the same change is judged by the paired bootstrap over prompts.
    base, cand = make_run(tmp_path / "c", temperature=1.0), make_run(tmp_path / "d", temperature=1.0, mat_shift=-0.1)
    mat = {d.method: d for d in compare_runs(base, cand).deltas if d.metric == "mat"}
    assert mat["hedgespec"].test == "paired-bootstrap" and mat["hedgespec"].significant


def test_eval_overhead_is_paired_per_query(tmp_path):
    base, cand = make_run(tmp_path / "a", noise=0.05), make_run(tmp_path / "b", noise=0.05, seed=3)
    lines = [json.loads(x) for x in (cand / "queries.jsonl").read_text().splitlines()]
    for x in lines:  # evaluation now costs 50% more time per query
        if "phase_ms" in x:
            x["phase_ms"]["evaluate"] *= 1.5
    (cand / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    d = {(d.method, d.metric): d for d in compare_runs(base, cand).deltas}
    e = d[("hedgespec", "eval_overhead_frac")]
    assert e.test.startswith("paired-bootstrap") and e.significant and 0.3 < e.ci95[0] < e.ci95[1] < 0.7
    assert d[("ar", "eval_overhead_frac")].test == "none"  # ar evaluates nothing


def test_without_queries_falls_back(tmp_path):
    base = make_run(tmp_path / "a", queries=False)
    cand = make_run(tmp_path / "b", queries=False, scale=0.8)
    c = compare_runs(base, cand)
    t = next(d for d in c.deltas if d.method == "hedgespec" and d.metric == "tokens_per_s")
    assert t.test == "none" and t.significant is None
    assert any("no queries.jsonl" in w for w in c.warnings)
    # Untestable changes fail on the threshold alone: a gate never passes for lack of data.
    assert find_failures(c, [FailRule("tokens_per_s", -0.05)])


def test_unpaired_prompts_use_mann_whitney(tmp_path):
    base, cand = make_run(tmp_path / "a", noise=0.05), make_run(tmp_path / "b", noise=0.05, seed=1, scale=0.5)
    lines = (cand / "queries.jsonl").read_text().replace('"code-', '"other-')
    (cand / "queries.jsonl").write_text(lines)
    t = next(d for d in compare_runs(base, cand).deltas if d.method == "ar" and d.metric == "tokens_per_s")
    assert t.test.startswith("mann-whitney") and t.p_value is not None and t.significant


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda p: (p / "results.json").unlink(), "no results.json in"),
        (lambda p: (p / "results.json").write_text((p / "results.json").read_text()[:100]), "not valid JSON"),
        (lambda p: (p / "results.json").write_text(
            (p / "results.json").read_text().replace(SCHEMA, "hedgespec.run/0")), "schema 'hedgespec.run/0'"),
    ],
    ids=["missing", "truncated", "wrong-schema"],
)
def test_unusable_input_exits_2_with_one_line(tmp_path, run_cli, spoil, message):
    base, cand = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    spoil(cand)
    code, out, err = run_cli(["compare", str(base), str(cand)])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_different_profile_refused_unless_forced(tmp_path, run_cli):
    base, cand = make_run(tmp_path / "a"), make_run(tmp_path / "b", profile="llama8b")
    code, out, err = run_cli(["compare", str(base), str(cand)])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "profile 'tiny' vs 'llama8b'" in err and "--force" in err
    code, out, err = run_cli(["compare", str(base), str(cand), "--force", "--format", "json"])
    assert code == 0 and "warning: forced: runs differ in profile" in err
    assert json.loads(out)["comparisons"][0]["forced"] is True


def test_env_difference_refused(tmp_path):
    base, cand = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    results = json.loads((cand / "results.json").read_text())
    results["env"]["device_names"] = ["NVIDIA H100 80GB HBM3"]
    (cand / "results.json").write_text(json.dumps(results))
    with pytest.raises(HedgespecError, match=r"env.device_names .*'cpu: test'.* vs .*H100"):
        compare_runs(base, cand)


def test_runs_of_different_prompt_sets_or_lengths_are_refused(tmp_path):
    base = make_run(tmp_path / "a")
    for key, path, value in (("max_new_tokens", ("max_new_tokens",), 64), ("prompts", ("bench", "prompts"), 2)):
        cand = make_run(tmp_path / key)
        results = json.loads((cand / "results.json").read_text())
        block = results["config"]
        for k in path[:-1]:
            block = block.setdefault(k, {})
        block[path[-1]] = value
        (cand / "results.json").write_text(json.dumps(results))
        with pytest.raises(HedgespecError, match=f"{key} .* vs {value}"):
            compare_runs(base, cand)


def test_github_format_and_output_file(tmp_path, run_cli):
    base, cand = make_run(tmp_path / "a"), make_run(tmp_path / "b", scale=1.1)
    code, out, _ = run_cli(["compare", str(base), str(cand), "--format", "github"])
    entries = json.loads(out)
    assert code == 0 and entries
    assert all(set(e) >= {"name", "unit", "value"} and isinstance(e["value"], float) for e in entries)
    names = {e["name"] for e in entries}
    assert {"hedgespec tokens_per_s", "hedgespec mat", "ar speedup_vs_ar"} <= names
    assert "hedgespec eval_overhead_frac" not in names  # smaller-is-better goes in its own file
    out_file = tmp_path / "bench.json"
    code, out, err = run_cli(["compare", str(base), str(cand), "--format", "github", "-o", str(out_file)])
    assert code == 0 and json.loads(out_file.read_text()) == entries and "tokens/s" in out
    smaller = to_github_benchmark(json.loads((cand / "results.json").read_text()), bigger_is_better=False)
    assert [e["name"] for e in smaller] == ["hedgespec eval_overhead_frac", "ar eval_overhead_frac"]


def test_several_candidates(tmp_path, run_cli):
    base = make_run(tmp_path / "a")
    c1, c2 = make_run(tmp_path / "b"), make_run(tmp_path / "c", scale=0.7)
    code, out, err = run_cli(["compare", str(base), str(c1), str(c2), "--fail-on", "tps:-10%"])
    assert code == 1 and out.count("vs  base a") == 2
    assert "regression" in err and err.count("\nerror:") + err.startswith("error:") == 1


@pytest.mark.parametrize(
    "spec, expected",
    [("tokens_per_s:-5%", ("tokens_per_s", -0.05)), ("mat:-2%", ("mat", -0.02)),
     ("eval_overhead_frac:+10%", ("eval_overhead_frac", 0.10)), ("speedup:-3.5%", ("speedup_vs_ar", -0.035))],
)
def test_parse_fail_on(spec, expected):
    assert parse_fail_on(spec) == pytest.approx(expected)


@pytest.mark.parametrize(
    "spec, message",
    [("tokens_per_s", "METRIC:THRESHOLD"), ("latency:-5%", "unknown metric"),
     ("tokens_per_s:+5%", "must be -X%"), ("eval_overhead_frac:-5%", "must be \\+X%"),
     ("mat:-2", "in percent, e.g. mat:-2%"), ("mat:-200%", "would never trip")],
)
def test_parse_fail_on_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_fail_on(spec)


def test_bad_fail_on_exits_2(tmp_path, run_cli):
    base = make_run(tmp_path / "a")
    code, _, err = run_cli(["compare", str(base), str(base), "--fail-on", "tokens_per_s:5%"])
    assert code == 2 and "tokens_per_s:-5%" in err
    code, _, err = run_cli(["compare", str(base), str(base), "--fail-on", "mat:-2"])
    assert code == 2 and "in percent, e.g. mat:-2%" in err


# -- a gate for CI on a shared machine ------------------------------------------------


def test_machine_drift_within_the_band_is_not_a_regression(tmp_path, run_cli):
    """Identical code, the whole machine 10% slower in the candidate run: no gate trips."""
    base = make_run(tmp_path / "a", noise=0.05, seed=0)
    cand = make_run(tmp_path / "b", noise=0.05, seed=1, scale=0.9)
    code, out, err = run_cli(["compare", str(base), str(cand), "--fail-on", "tokens_per_s:-5%",
                              "--fail-on", "speedup_vs_ar:-5%", "--format", "json"])
    assert code == 0, err
    (entry,) = json.loads(out)["comparisons"]
    t = _tps(json.loads(out))
    assert t["ci95"][1] < -0.05 and t["significant"] is False  # beyond the CI, within the drift band
    assert "+-15.0% drift" in t["test"] and "not calibrated" in entry["noise"]
    s = next(m for m in entry["metrics"] if m["method"] == "hedgespec" and m["metric"] == "speedup_vs_ar")
    assert abs(s["change"]) < 0.01 and s["significant"] is False  # the drift cancels within a run


def test_a_slower_method_fails_its_speedup_gate_whatever_the_drift(tmp_path, run_cli):
    """hedgespec 20% slower, the machine 10% faster: tokens/s cannot tell, speedup vs ar can."""
    base = make_run(tmp_path / "a", noise=0.05, seed=0)
    cand = make_run(tmp_path / "b", noise=0.05, seed=1, scale=1.1, slower={"hedgespec": 0.8})
    code, out, err = run_cli(["compare", str(base), str(cand), "--fail-on", "speedup_vs_ar:-5%"])
    assert code == 1 and "FAIL" in out
    assert "hedgespec speedup_vs_ar" in err and "ar speedup_vs_ar" not in err.replace("hedgespec speedup", "")
    s = next(d for d in compare_runs(base, cand).deltas
             if d.method == "hedgespec" and d.metric == "speedup_vs_ar")
    assert s.significant and -0.25 < s.ci95[0] < s.ci95[1] < -0.15 and "+-10.0% drift" in s.test


def test_a_calibrated_band_is_used_and_recorded(tmp_path, run_cli):
    scales = (1.0, 0.99, 1.01, 1.0, 0.995, 1.005)  # six identical runs, the machine drifting by up to 2%
    runs = [make_run(tmp_path / f"r{i}", noise=0.05, seed=i, scale=s) for i, s in enumerate(scales)]
    noise = tmp_path / "noise.json"
    code, out, err = run_cli(["calibrate", *map(str, runs), "-o", str(noise)])
    assert code == 0, err
    assert "drift of identical code over 6 runs" in " ".join(out.split())
    payload = json.loads(noise.read_text())
    assert payload["t_quantile"] == 2.571  # t(0.975, 5 degrees of freedom)
    assert set(payload["band"]) == {"tokens_per_s", "speedup_vs_ar", "eval_overhead_frac"}
    assert set(payload["band"]["tokens_per_s"]) == {"hedgespec", "ar"}
    assert set(payload["band"]["speedup_vs_ar"]) == {"hedgespec"}  # ar over ar is 1 by definition
    # The 95% prediction bound of two runs' difference: wider than the largest change seen, and small.
    tps = payload["band"]["tokens_per_s"]["ar"]
    assert payload["largest_change"]["tokens_per_s"]["ar"] < tps < 0.06
    # The drift moved every method alike: the within-run speedup moved less.
    assert payload["band"]["speedup_vs_ar"]["hedgespec"] < tps
    # 12% slower: within the default band, beyond the calibrated one.
    cand = make_run(tmp_path / "slow", noise=0.05, seed=9, scale=0.88)
    code, out, err = run_cli(["compare", str(runs[0]), str(cand), "--noise", str(noise),
                              "--fail-on", "tokens_per_s:-5%", "--format", "json"])
    assert code == 1 and "regression" in err
    entry = json.loads(out)["comparisons"][0]
    assert "calibrated from 6 identical runs" in entry["noise"]
    code, *_ = run_cli(["compare", str(runs[0]), str(cand), "--fail-on", "tokens_per_s:-5%"])
    assert code == 0  # without the calibration: within the default band


def test_few_calibration_runs_give_a_wide_band(tmp_path):
    """Student's t pays for a spread estimated from few runs: the same spread, three runs, a wider band."""
    from hedgespec_cli.report.compare import calibrate_noise

    scales = (1.0, 0.98, 1.02)
    three = [make_run(tmp_path / f"a{i}", scale=s) for i, s in enumerate(scales)]
    six = [make_run(tmp_path / f"b{i}", scale=s) for i, s in enumerate(scales * 2)]
    b3 = calibrate_noise(three)["band"]["tokens_per_s"]["ar"]
    b6 = calibrate_noise(six)["band"]["tokens_per_s"]["ar"]
    # Same sample sd up to the (k - 1) normaliser: the bands' log ratio is that of t(0.975, k - 1).
    s3, s6 = np.std(np.log(scales), ddof=1), np.std(np.log(scales * 2), ddof=1)
    assert np.log1p(b3) / np.log1p(b6) == pytest.approx((4.303 * s3) / (2.571 * s6), rel=1e-6)
    assert b3 > b6


@pytest.mark.parametrize(
    "args, message",
    [(["calibrate", "A", "B"], "at least three runs"),
     (["calibrate", "A", "B", "A"], "the same run"),
     (["compare", "A", "B", "--noise", "missing.json"], "no such file"),
     (["compare", "A", "B", "--noise", "bad.json"], "hedgespec.noise/2")],
)
def test_calibration_errors_exit_2(tmp_path, run_cli, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "A"), make_run(tmp_path / "B")
    (tmp_path / "bad.json").write_text('{"schema": "hedgespec.noise/2", "band": {"tokens_per_s": {"ar": -1}}}')
    code, out, err = run_cli(args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_run_compared_with_itself_exits_2(tmp_path, run_cli):
    """A CI job that compares a run with itself always passes: that is a bug in the job."""
    base = make_run(tmp_path / "a")
    code, out, err = run_cli(["compare", str(base), str(base), "--fail-on", "tokens_per_s:-5%"])
    assert code == 2 and out == "" and "are the same run" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["compare", str(base / "results.json"), str(base)])
    assert code == 2 and "are the same run" in err
    import shutil

    shutil.copytree(base, tmp_path / "copy")  # a copy of the same run under another name
    code, _, err = run_cli(["compare", str(base), str(tmp_path / "copy")])
    assert code == 2 and "are the same run" in err


@pytest.mark.parametrize("eval_scale, code", [(1.5, 1), (0.5, 0)], ids=["costlier", "cheaper"])
def test_smaller_is_better_gate_end_to_end(tmp_path, run_cli, eval_scale, code):
    """eval_overhead_frac: more evaluation time is the regression, less is an improvement."""
    base = make_run(tmp_path / "a", noise=0.05)
    cand = make_run(tmp_path / "b", noise=0.05, seed=3, eval_scale=eval_scale)
    got, out, err = run_cli(["compare", str(base), str(cand), "--fail-on", "eval_overhead_frac:+10%"])
    assert got == code, err
    if code:
        assert "hedgespec eval_overhead_frac +" in err and "FAIL" in out
    else:
        assert "error:" not in err and "FAIL" not in out


def test_a_different_counterfactual_mode_or_thread_count_is_named(tmp_path):
    base, cand = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    results = json.loads((cand / "results.json").read_text())
    results["config"].update(counterfactual="exact", bench={"threads": 1})
    (cand / "results.json").write_text(json.dumps(results))
    warnings = compare_runs(base, cand).warnings
    assert "config.counterfactual differs: None vs 'exact'" in warnings
    assert "config.bench.threads differs: None vs 1" in warnings


def test_a_change_just_past_the_band_trips_the_gate(tmp_path, run_cli):
    """hedgespec 14% slower, speedup band 10%: its CI reaches inside the band, the change itself passes it."""
    base = make_run(tmp_path / "a", noise=0.05, seed=0)
    cand = make_run(tmp_path / "b", noise=0.05, seed=1, slower={"hedgespec": 0.86})
    s = next(d for d in compare_runs(base, cand).deltas if d.method == "hedgespec" and d.metric == "speedup_vs_ar")
    assert s.ci95[1] > -0.10 > s.ci95[0] and s.significant  # not the whole CI: the change passes the band
    code, _, err = run_cli(["compare", str(base), str(cand), "--fail-on", "speedup_vs_ar:-5%"])
    assert code == 1 and "hedgespec speedup_vs_ar -1" in err
