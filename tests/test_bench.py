"""`hedgespec bench` / `report` on the tiny checkpoints: artefacts, validity, resume, bad input."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hedgespec_cli.bench.run import run_bench
from hedgespec_cli.rundir import load_results, read_jsonl
from hedgespec_cli.bench.settings import resolve_settings
from hedgespec_cli.cli.app import app, main
from hedgespec_cli.errors import BenchInterrupted

from conftest import make_llama, make_tokenizer

METHODS = "ar,fixed:near,ucbspec,hedgespec,router,router-label,oracle"


def settings(tiny_bench, tmp_path, **extra):
    flags = {"profile": tiny_bench["profile"], "workload": tiny_bench["workload"], "methods": METHODS,
             "out": str(tmp_path), "min_tokens": 10, **extra}
    return resolve_settings(flags, None)


def test_bench_writes_a_complete_valid_run(tiny_bench, tmp_path):
    payload = run_bench(settings(tiny_bench, tmp_path))
    run = Path(payload["run_dir"])
    for name in ("config.yaml", "env.json", "results.json", "rounds.jsonl", "queries.jsonl", "telemetry.jsonl", "trace.jsonl"):
        assert (run / name).is_file(), name
    results = load_results(run / "results.json")
    assert results["schema"] == "hedgespec.run/1" and results["complete"] is True
    assert results["validity"]["constraints"]["lossless"] is True
    methods = results["methods"]
    assert list(methods) == METHODS.split(",")
    assert methods["ar"]["mat"] == 1.0 and methods["ar"]["acceptance_rate"] is None
    assert methods["oracle"]["mat"] >= methods["fixed:near"]["mat"]  # best fixed drafter per query
    assert methods["oracle"]["regret_vs_oracle"] == 0.0
    assert set(results["acceptance_matrix"]) == {"alpha", "beta"}
    memory = results["memory"]
    assert memory["drafters"]["near"]["weights_mib"] > 0 and memory["peak_rss_mib"] > 0
    # untied heads: the stack holds the only copy of the weights; the T = 0 screen adds rows and a bf16 copy
    assert memory["stacked_extra_mib"] > 0
    assert results["config"]["profile"]["drafters"][0] == {
        "name": "near", "kind": "lm", "path": results["config"]["profile"]["drafters"][0]["path"],
        "domain": "alpha", "role": "generic",
    }
    queries = read_jsonl(run / "queries.jsonl")
    assert len(queries) == 7 * 6  # methods x prompts
    # Regret curve: cumulative extra rounds against the oracle, query by query.
    rounds = {(q["method"], q["query_id"]): q["rounds"] for q in queries}
    curve = methods["hedgespec"]["regret_curve_vs_oracle"]
    order = list(dict.fromkeys(q["query_id"] for q in queries))
    assert len(curve) == 6 and curve[-1] == sum(rounds["hedgespec", i] - rounds["oracle", i] for i in order)
    assert methods["oracle"]["regret_curve_vs_oracle"] is None and methods["ar"]["regret_curve_vs_oracle"] is None
    # router-label picks the drafter labelled with the prompt's domain; router, the drafter of the
    # domain its classifier predicts, which is right on these prompts.
    for m in ("router", "router-label"):
        assert methods[m]["selection_freq"]["alpha"]["near"] == 1.0
        assert methods[m]["selection_freq"]["beta"]["far"] == 1.0
    # Re-summarising the saved queries reproduces the saved numbers.
    from hedgespec_cli.report.summary import summarize_methods

    again = summarize_methods(queries, METHODS.split(","), ["near", "far", "rnd"])
    assert again["hedgespec"]["mat"] == methods["hedgespec"]["mat"]
    assert again["hedgespec"]["tokens_per_s"] == pytest.approx(methods["hedgespec"]["tokens_per_s"])


class StopAfter:
    """A progress sink that presses Ctrl-C (or raises `error`) after n finished queries."""

    def __init__(self, n: int, error: BaseException | None = None) -> None:
        self.n, self.error = n, error

    def start(self, methods, total) -> None:
        pass

    def advance(self, method, query) -> None:
        self.n -= 1
        if self.n == 0:
            raise self.error or KeyboardInterrupt()


def test_interrupted_run_is_saved_and_resumable(tiny_bench, tmp_path):
    with pytest.raises(BenchInterrupted, match="continue with: hedgespec bench --resume"):
        run_bench(settings(tiny_bench, tmp_path), progress=StopAfter(8))
    run = next(tmp_path.iterdir())
    partial = load_results(run / "results.json")
    assert partial["complete"] is False
    assert len(read_jsonl(run / "queries.jsonl")) == 8
    payload = run_bench(settings(tiny_bench, tmp_path), resume=run)
    assert payload["complete"] is True
    queries = read_jsonl(run / "queries.jsonl")
    assert len(queries) == 42  # 7 methods x 6 prompts
    assert len({(q["method"], q["query_id"], q["repeat"]) for q in queries}) == 42
    assert payload["validity"]["constraints"]["lossless"] is True


def test_the_estimator_predicts_the_rounds_played_exactly_at_t0_and_measures_its_bias_above(tiny_bench, tmp_path):
    greedy = run_bench(settings(tiny_bench, tmp_path / "t0", methods="ar,hedgespec,ucbspec"))
    e = greedy["methods"]["hedgespec"]["estimator"]
    assert e["rounds"] > 0 and e["bias_per_round"] == 0.0 and e["estimated_per_round"] == e["actual_per_round"]
    assert greedy["methods"]["ucbspec"]["estimator"] is None  # a bandit sees no gamma
    for line in read_jsonl(Path(greedy["run_dir"]) / "queries.jsonl"):
        if line["method"] == "hedgespec":  # per query: each of the 3 drafters' mean predicted round length
            assert len(line["estimator"]["estimated_A"]) == 3 and min(line["estimator"]["estimated_A"]) >= 1.0
        else:
            assert line["estimator"] is None
    hot = run_bench(settings(tiny_bench, tmp_path / "t1", methods="ar,hedgespec", temperature=1.0))
    e = hot["methods"]["hedgespec"]["estimator"]
    assert e["rounds"] > 0 and abs(e["bias_per_round"] - (e["estimated_per_round"] - e["actual_per_round"])) < 1e-12
    res = CliRunner().invoke(app, ["report", hot["run_dir"]], env={"COLUMNS": "120"})
    assert "one-step estimator vs the rounds played" in res.output and "hedgespec: predicted" in res.output


def test_a_resumed_run_decides_as_an_uninterrupted_one(tiny_bench, tmp_path):
    methods = "ar,random,ucbspec,hedgespec"
    whole = run_bench(settings(tiny_bench, tmp_path / "whole", methods=methods))
    with pytest.raises(BenchInterrupted):
        run_bench(settings(tiny_bench, tmp_path / "cut", methods=methods), progress=StopAfter(9))
    cut = next((tmp_path / "cut").iterdir())
    run_bench(settings(tiny_bench, tmp_path / "cut", methods=methods), resume=cut)

    def decisions(run):
        return {(q["method"], q["query_id"]): (q["output_ids"], q["selections"], q["rounds"])
                for q in read_jsonl(Path(run) / "queries.jsonl")}

    assert decisions(cut) == decisions(whole["run_dir"])


def test_resuming_a_learner_that_persists_across_queries_mid_pass_is_refused(tiny_bench, tmp_path):
    from hedgespec_cli.errors import ConfigError

    s = settings(tiny_bench, tmp_path, methods="ar,hedgespec:reset=never")
    with pytest.raises(BenchInterrupted):
        run_bench(s, progress=StopAfter(5))
    with pytest.raises(ConfigError, match="learns across queries \\(reset=never\\) and stopped after 2 of 6"):
        run_bench(s, resume=next(tmp_path.iterdir()))


def test_a_run_that_fails_midway_keeps_what_it_measured(tiny_bench, tmp_path):
    with pytest.raises(OSError, match="disk full"):
        run_bench(settings(tiny_bench, tmp_path), progress=StopAfter(8, OSError("disk full")))
    run = next(tmp_path.iterdir())
    partial = load_results(run / "results.json")
    assert partial["complete"] is False
    assert len(read_jsonl(run / "queries.jsonl")) == 8
    assert sum(m["queries"] for m in partial["methods"].values()) == 8


def test_oracle_decodes_with_the_same_random_numbers_as_fixed_runs(tiny_bench, tmp_path):
    # At T > 0 the oracle's hindsight probe draws from the sampling generator;
    # the oracle itself must still start from the prompt's seed, so its text is
    # the text of the fixed run of the drafter it picked.
    payload = run_bench(settings(tiny_bench, tmp_path, methods="oracle,fixed:near,fixed:far,fixed:rnd",
                                 temperature=0.8, prompts=3))
    queries = read_jsonl(Path(payload["run_dir"]) / "queries.jsonl")
    out = {(q["method"], q["query_id"]): q["output_ids"] for q in queries}
    names = ["near", "far", "rnd"]
    for q in queries:
        if q["method"] == "oracle":
            (chosen,) = q["selections"]  # one drafter for the whole query
            assert q["output_ids"] == out[(f"fixed:{names[int(chosen)]}", q["query_id"])]


def test_an_interrupted_sweep_keeps_the_finished_pool_sizes(tiny_bench, tmp_path):
    from hedgespec_cli.bench.sweep import run_sweep

    # Progress advances once per prompt: 2 for `ar`, 2 for N = 1, then Ctrl-C in N = 5.
    with pytest.raises(BenchInterrupted, match="after 1 of 2 pool sizes"):
        run_sweep(settings(tiny_bench, tmp_path, methods="ar,fixed:near,hedgespec", prompts=2), [1, 5],
                  progress=StopAfter(5))
    run = next(tmp_path.iterdir())
    saved = json.loads((run / "sweep.json").read_text())
    assert saved["complete"] is False and list(saved["by_n"]) == ["1"]
    queries = read_jsonl(run / "queries.jsonl")
    # `ar` on 2 prompts, 2 methods x 2 prompts at N = 1, the first prompt of N = 5
    assert [q["n_drafters"] for q in queries] == [None] * 2 + [1] * 4 + [5] * 2


def test_a_sweep_pool_size_is_a_bench_pass(tiny_bench, tmp_path):
    """The sweep decodes through bench's per-query step: at the full pool size (generic first, as the
    profile lists it) every query matches bench's token for token and decision for decision, at T > 0
    too (common random numbers around the oracle's hindsight probe) and with a learner kept across prompts."""
    from hedgespec_cli.bench.sweep import run_sweep

    s = settings(tiny_bench, tmp_path / "b", methods="ar,hedgespec,hedgespec:reset=never,oracle", temperature=0.8,
                 seed=3, prompts=3)
    bench = read_jsonl(Path(run_bench(s)["run_dir"]) / "queries.jsonl")
    sweep = read_jsonl(Path(run_sweep(replace(s, out=str(tmp_path / "s")), [3])["run_dir"]) / "queries.jsonl")

    def decoded(lines):
        return {(q["method"], q["query_id"]): (q["output_ids"], q["selections"], q["rounds"]) for q in lines}

    assert len(sweep) == len(bench) == 4 * 3 and decoded(sweep) == decoded(bench)


def test_a_sweep_warms_up_the_engine_of_every_pool_size(tiny_bench, tmp_path, monkeypatch):
    """Each pool size decodes on engines of its own (new groups, new stacks): each is warmed up before
    it is timed, not only the full pool's, which only `ar` runs on."""
    import hedgespec_cli.bench.sweep as sweep

    warmed = []
    real = sweep.warm_up
    monkeypatch.setattr(sweep, "warm_up", lambda step, methods, *a: (
        warmed.append((step.engine.n_drafters, list(methods))), real(step, methods, *a))[-1])
    sweep.run_sweep(settings(tiny_bench, tmp_path, methods="ar,hedgespec", prompts=2), [1, 2])
    assert warmed == [(3, ["ar"]), (1, ["hedgespec"]), (2, ["hedgespec"])]


def test_a_fixed_drafter_missing_from_the_pool_fails_before_the_run_dir(tiny_bench, tmp_path):
    from hedgespec_cli.bench.sweep import run_sweep
    from hedgespec_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="no drafter named 'nosuch'"):
        run_bench(settings(tiny_bench, tmp_path, methods="ar,fixed:nosuch"))
    with pytest.raises(ConfigError, match="in the pool of 1 drafters: fixed:far: no drafter named 'far'"):
        run_sweep(settings(tiny_bench, tmp_path, methods="ar,fixed:far"), [1, 2])
    assert not any(tmp_path.iterdir())


def test_config_file_precedence(tiny_bench, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"profile: {tiny_bench['profile']}\nK: 2\nrepeats: 2\n")
    s = resolve_settings({"K": 4}, cfg)
    assert (s.K, s.repeats, s.profile) == (4, 2, tiny_bench["profile"])
    (tmp_path / "bad.yaml").write_text("colour: red\n")
    from hedgespec_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'colour'"):
        resolve_settings({}, tmp_path / "bad.yaml")
    for body, message in (("K: three\n", "K must be an integer \\(got 'three'\\)"),
                          ("prompts: 1.5\n", "prompts must be an integer"),
                          ('temperature: "0.5x"\n', "temperature must be a number"),
                          ("methods: 5\n", "methods must be a list of strings")):
        (tmp_path / "typed.yaml").write_text(body)
        with pytest.raises(ConfigError, match=message):
            resolve_settings({}, tmp_path / "typed.yaml")


def test_report_rerenders_a_saved_run(tiny_bench, tmp_path):
    payload = run_bench(settings(tiny_bench, tmp_path, methods="ar,hedgespec:learner=adanormalhedge"))
    res = CliRunner().invoke(app, ["report", payload["run_dir"]], env={"COLUMNS": "80"})  # a CI log's width
    assert res.exit_code == 0, res.output
    assert "validity" in res.output and "GPU telemetry unavailable" in res.output
    assert any(line.split()[:1] == ["hedgespec:learner=adanormalhedge"] for line in res.output.splitlines())  # not "hedgesp…"
    assert "[bootstrap 95% CI]" in res.output  # not eaten as rich markup
    assert max(len(line) for line in res.output.splitlines()) <= 80
    run = Path(payload["run_dir"])
    again = CliRunner().invoke(app, ["report", str(run / "results.json"), "--json"])  # the file, not the folder
    assert again.exit_code == 0 and json.loads(again.output)["run_id"] == payload["run_id"]
    replayed = CliRunner().invoke(app, ["replay", str(run), "-m", "hedgespec", "--json"])  # the run's trace.jsonl
    assert replayed.exit_code == 0 and json.loads(replayed.output)["trace"]["path"] == str(run)


def test_a_shift_workload_reports_the_per_block_oracle_and_replays_the_tracking_learner(tiny_bench, tmp_path):
    root = Path(tiny_bench["root"])
    (tmp_path / "shift.yaml").write_text(
        "name: testshift\ndescription: blocks\nschedule: shift\nseed: 0\n"
        f"sources: [{{path: {root / 'alpha.jsonl'}}}, {{path: {root / 'beta.jsonl'}}}]\n"
    )
    tracking = "hedgespec:reset=never,learner=tracking"
    methods = f"fixed:near,fixed:far,fixed:rnd,{tracking},oracle"
    payload = run_bench(settings(tiny_bench, tmp_path, workload=str(tmp_path / "shift.yaml"), methods=methods))
    ob = payload["oracle_block"]
    assert [(b["domain"], b["queries"]) for b in ob["blocks"]] == [("alpha", 3), ("beta", 3)]
    # Each block's reference is the fixed drafter with the fewest rounds over the block, live.
    lines = read_jsonl(Path(payload["run_dir"]) / "queries.jsonl")
    for b in ob["blocks"]:
        rounds = {name: sum(q["rounds"] for q in lines if q["method"] == f"fixed:{name}" and q["domain"] == b["domain"])
                  for name in ("near", "far", "rnd")}
        assert b["rounds"] == min(rounds.values()) and rounds[b["drafter"]] == b["rounds"]
        oracle = sum(q["rounds"] for q in lines if q["method"] == "oracle" and q["domain"] == b["domain"])
        assert b["rounds_per_query_oracle"] == oracle <= b["rounds"]
    assert ob["mat_per_query_oracle"] == payload["methods"]["oracle"]["mat"] >= ob["mat"]
    res = CliRunner().invoke(app, ["report", payload["run_dir"]], env={"COLUMNS": "120"})
    assert "per-block oracle" in res.output and "MAT / MAT(per-block oracle)" in res.output
    # Replay on the run's trace reproduces the persistent learner exactly (T = 0, full information).
    replayed = CliRunner().invoke(app, ["replay", payload["run_dir"], "-m", tracking, "--json"])
    label = "hedgespec:learner=tracking,reset=never"
    assert json.loads(replayed.output)["methods"][label]["rounds"] == payload["methods"][tracking]["rounds"]
    mixed = run_bench(settings(tiny_bench, tmp_path / "mixed", methods="fixed:near,oracle"))
    assert mixed["oracle_block"] is None  # no blocks in a mixed schedule


def test_bad_input_is_one_line_without_traceback(tiny_bench, tmp_path, capsys, run_main):
    root = Path(tiny_bench["root"])
    (root / "malformed.yaml").write_text("name: [oops\n")
    (root / "unknown_key.yaml").write_text(Path(tiny_bench["profile"]).read_text() + "colour: red\n")
    (root / "missing_drafter.yaml").write_text(
        Path(tiny_bench["profile"]).read_text().replace("name: rnd, path: ", "name: rnd, path: /nonexistent")
    )
    (root / "empty.yaml").write_text("name: e\nsources: []\n")
    (root / "long.jsonl").write_text(json.dumps({"id": "l", "domain": "alpha", "prompt": "ab " * 200}) + "\n")
    (root / "long.yaml").write_text("name: long\nsources: [{path: long.jsonl}]\n")
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    make_llama(root / "odd_vocab", make_tokenizer("abc"), hidden=16, layers=1, seed=0)
    (root / "odd_vocab.yaml").write_text(
        Path(tiny_bench["profile"]).read_text().replace("decoding:", f"  - {{name: odd, path: {root / 'odd_vocab'}}}\ndecoding:")
    )
    (root / "blank.jsonl").write_text(json.dumps({"id": "blank", "domain": "alpha", "prompt": ""}) + "\n")
    (root / "blank.yaml").write_text("name: blank\nsources: [{path: blank.jsonl}]\n")
    (root / "no_router.yaml").write_text(Path(tiny_bench["profile"]).read_text().replace("router: router.npz\n", ""))
    capsys.readouterr()  # drop what the set-up printed
    base = ["bench", "--quiet", "--out", str(tmp_path / "runs")]
    prof, wl = ["--profile", tiny_bench["profile"]], ["--workload", tiny_bench["workload"]]
    cases = [
        ([*prof, *wl, "--methods", "ar,bogus"], "unknown method 'bogus'"),
        (["--profile", "no-such-profile", *wl], "unknown profile 'no-such-profile'"),
        ([*prof, "--workload", "no-such-workload"], "unknown workload 'no-such-workload'"),
        (["--profile", str(root / "malformed.yaml"), *wl], "not valid YAML"),
        (["--profile", str(root / "unknown_key.yaml"), *wl], "unknown key(s) 'colour'"),
        (["--profile", str(root / "missing_drafter.yaml"), *wl], "does not exist"),
        ([*prof, "--workload", str(root / "empty.yaml")], "non-empty `sources:`"),
        ([*prof, "--workload", str(root / "long.yaml"), "--methods", "ar"], "exceeds the models' context"),
        ([*prof, "--workload", str(root / "long.yaml"), "--methods", "ar"], "prompt 'l': prompt of"),
        ([*prof, *wl, "--tree-top-k", "-1"], "tree_top_k must be >= 0"),
        ([*prof, *wl, "--tree-top-k", "2", "--tree-tokens", "0"], "tree total tokens must be at least 1"),
        ([*prof, *wl, "--tree-top-k", "500"], "exceeds the vocabulary"),
        ([*prof, *wl, "--tree-tokens", "5"], "add --tree-top-k"),
        ([*prof, *wl, "--temperature", "nan"], "temperature must be a finite number"),
        ([*prof, *wl, "-K", "100000"], "lower --max-new-tokens or -K"),
        (["--out", str(blocked / "runs"), *prof, *wl], "pass --out to a writable directory"),
        (["--profile", str(root / "odd_vocab.yaml"), *wl], "drafter 'odd' has vocab size 6"),
        ([*prof, "--workload", str(root / "blank.yaml")], "prompt 'blank' is empty"),
        ([*prof, *wl, "--sweep-drafters", "2", "--methods", "ar,bogus"], "unknown method 'bogus'"),
        ([*prof, *wl, "--sweep-drafters", "2", "--tree-top-k", "500"], "exceeds the vocabulary"),
        ([*prof, "--workload", str(root / "long.yaml"), "--sweep-drafters", "2"], "exceeds the models' context"),
        (["--profile", str(root / "no_router.yaml"), *wl, "--methods", "ar,router"],
         "router needs a prompt classifier and profile 'testpool' has none: build one with `hedgespec zoo router"),
        (["--profile", str(root / "no_router.yaml"), *wl, "--methods", "router", "--sweep-drafters", "2"],
         "or use router-label"),
    ]
    for args, message in cases:
        code, err = run_main(*base, *args)
        assert code == 2, (args, err)
        assert message in err and "Traceback" not in err, (args, err)
        assert err.strip().count("\n") == 0, err
        runs = tmp_path / "runs"
        assert not runs.exists() or not any(runs.iterdir()), (args, "a failed start left a run directory")


def test_compare_gates_on_an_artificial_slowdown(tiny_bench, tmp_path, capsys, monkeypatch):
    """A real run against itself is refused; against a copy whose queries took 30% longer it fails."""
    import shutil

    from hedgespec_cli.rundir import RunDir
    from hedgespec_cli.report.summary import summarize_methods

    base = Path(run_bench(settings(tiny_bench, tmp_path / "a", methods="ar,hedgespec"))["run_dir"])
    slow = tmp_path / "slow"
    shutil.copytree(base, slow)
    queries = read_jsonl(slow / "queries.jsonl")
    for q in queries:
        q["wall_s"] *= 1.3
        q["tokens_per_s"] /= 1.3
    (slow / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    results = load_results(slow / "results.json")
    results["methods"] = summarize_methods(queries, ["ar", "hedgespec"], ["near", "far", "rnd"])
    results["run_id"] = "slow"  # another run, as far as compare can tell
    RunDir(slow).write_json("results.json", results)

    def gate(cand):
        monkeypatch.setattr(sys, "argv", ["hedgespec", "compare", str(base), str(cand), "--fail-on", "tokens_per_s:-5%"])
        with pytest.raises(SystemExit) as stop:
            main()
        return stop.value.code, capsys.readouterr()

    code, out = gate(base)
    assert code == 2 and "are the same run" in out.err
    code, out = gate(slow)
    assert code == 1 and "tokens_per_s" in out.err  # 30% is beyond the default drift band


def test_sweep_drafters_pads_the_pool_and_stays_lossless(tiny_bench, tmp_path):
    from hedgespec_cli.bench.sweep import run_sweep

    payload = run_sweep(settings(tiny_bench, tmp_path, methods="ar,fixed:near,hedgespec,router", prompts=2), [1, 5])
    assert payload["by_n"]["1"]["drafters"] == ["near"]
    five = payload["by_n"]["5"]["drafters"]
    assert five[:3] == ["near", "far", "rnd"] and all(d.startswith("pad") for d in five[3:])
    queries = read_jsonl(Path(payload["run_dir"]) / "queries.jsonl")
    assert {q["n_drafters"] for q in queries} == {None, 1, 5}  # None: the `ar` lines
    saved = json.loads((Path(payload["run_dir"]) / "sweep.json").read_text())
    assert saved["complete"] is True and saved["by_n"] == json.loads(json.dumps(payload["by_n"]))
    ar_ids = {}
    for n in ("1", "5"):
        hs = payload["by_n"][n]["methods"]["hedgespec"]
        assert hs["speedup_vs_ar"]["pairs"] == 2
        for row in hs["selection_freq"].values():  # a distribution over this N's drafters
            assert set(row) == set(five[: int(n)]) and sum(row.values()) == pytest.approx(1.0)
    for q in queries:  # every pool size decodes the same text
        assert ar_ids.setdefault(q["query_id"], q["output_ids"]) == q["output_ids"]
    from rich.console import Console

    from hedgespec_cli.report.bench_tables import sweep_phase_table

    for n in ("1", "5"):  # per-round phase times add up to the measured wall time per round
        hs = payload["by_n"][n]["methods"]["hedgespec"]
        assert sum(hs["phase_ms_per_round"].values()) == pytest.approx(hs["wall_s"] * 1e3 / hs["rounds"])
    console = Console(record=True, width=120)
    console.print(sweep_phase_table(payload))
    assert "evaluate" in console.export_text()
    shown = CliRunner().invoke(app, ["report", payload["run_dir"]], env={"COLUMNS": "120"})  # a sweep's folder
    assert shown.exit_code == 0 and "Drafter-count sweep" in shown.output


def test_bench_with_draft_trees_records_the_tree_and_stays_lossless(tiny_bench, tmp_path):
    from hedgespec_cli.selection.trace import read_trace

    payload = run_bench(settings(tiny_bench, tmp_path, methods="ar,fixed:near,hedgespec,oracle", prompts=2,
                                 tree_top_k=3, tree_tokens=10))
    run = Path(payload["run_dir"])
    assert payload["config"]["tree"] == {"top_k": 3, "total_tokens": 10}
    assert payload["validity"]["constraints"]["lossless"] is True  # every method equals ar token for token
    assert read_trace(run / "trace.jsonl").tree == {"top_k": 3, "total_tokens": 10}
    rounds = read_jsonl(run / "rounds.jsonl")
    assert any(r["tree_nodes"] > 0 for r in rounds if r["method"] == "fixed:near")
    assert all(r["tree_nodes"] <= 10 for r in rounds)
    # Tree gamma scores unpruned top_k children: whatever decides on it says it is an upper bound.
    labels = payload["method_labels"]
    for m in ("hedgespec", "oracle"):
        assert "upper bound" in labels[m], m
    assert "upper bound" not in labels["fixed:near"]
    from rich.console import Console

    from hedgespec_cli.report.bench_tables import render_run

    console = Console(width=200, record=True)
    render_run(payload, console)
    assert "gamma is an UPPER BOUND" in " ".join(console.export_text().split())


def test_sampled_hedgespec_is_replayed_exactly_with_the_live_per_query_seeds(tiny_bench, tmp_path):
    # play=sample draws from the selector's generator; the bench seeds one selector per query
    # (selection/seeding.py: SelectorBank, query_seed). A replay that seeds the same way makes the same rounds.
    from hedgespec_cli.selection import SelectorSpec, make_selector
    from hedgespec_cli.selection.replay import replay_query
    from hedgespec_cli.selection.seeding import query_seed
    from hedgespec_cli.selection.trace import read_trace

    methods = ["hedgespec", "hedgespec:learner=hedge"]
    payload = run_bench(settings(tiny_bench, tmp_path, methods="ar," + ",".join(methods), seed=3))
    run = Path(payload["run_dir"])
    trace = read_trace(run / "trace.jsonl")
    rounds = [r for r in read_jsonl(run / "rounds.jsonl")]
    sampled = 0
    for m in methods:
        for i, q in enumerate(trace.queries):
            sel = make_selector(SelectorSpec.parse(m, seed=query_seed(3, 0, i)), trace.N, trace.drafters)
            replayed = replay_query(sel, trace, q, q.gamma, hindsight=False)
            live = [r for r in rounds if r["method"] == m and r["query_id"] == q.id]
            assert [r["drafter"] for r in live] == replayed.arms.tolist(), (m, q.id)
            assert [r["n"] for r in live] == replayed.n.tolist(), (m, q.id)
            sampled += sum(0 < max(r["probs"]) < 1 for r in live)
    assert sampled > 0  # some rounds were drawn from a spread distribution, not a sure choice


def test_another_target_drops_the_profiles_router(tiny_bench, tiny_models, tmp_path):
    """The classifier counts the profile tokenizer's ids: with another target it is not kept."""
    from hedgespec_cli.bench.settings import bench_profile

    kept = bench_profile(settings(tiny_bench, tmp_path))
    assert kept.router is not None
    other = bench_profile(replace(settings(tiny_bench, tmp_path), target=str(tiny_models["target"])))
    assert other.router is None and other.tokenizer is None
