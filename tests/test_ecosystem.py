"""vLLM / AIPerf metrics: hand-computed values on synthetic rounds, the exports, NVML energy, a tiny bench."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hedgespec_cli.bench.run import run_bench
from hedgespec_cli.rundir import load_results, read_jsonl
from hedgespec_cli.bench.settings import resolve_settings
from hedgespec_cli.cli.app import app
from hedgespec_cli.decoding.engine import QueryRecord, RoundRecord
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.report import ecosystem
from hedgespec_cli.report.export import export
from hedgespec_cli.report.summary import query_line, summarize_methods
from hedgespec_cli.telemetry import TelemetrySampler

from test_telemetry import FakeNvml

MS = 1_000_000  # ns


def _round(drafted, accepted, n, draft_ms, verify_ms, other_ms=0):
    return RoundRecord(0, n, drafted, accepted, draft_ms * MS, verify_ms * MS, 0, 0, other_ms * MS)


def _lines(energy=(1.8, 1.2)):
    """Two queries, K = 3. A: accepted 2, 0, 3 of 3 drafted, then a round the budget cut to 0 drafts;
    B: accepted 1 of 2, then 3 of 3. Round times 4, 2, 4, 1 ms and 3, 5 ms; walls 20 and 10 ms."""
    a = QueryRecord(5, [1] * 9, [_round(3, 2, 3, 1, 2, 1), _round(3, 0, 1, 1, 1), _round(3, 3, 4, 1, 2, 1),
                                 _round(0, 0, 1, 0, 1)], None, {"prefill": 2 * MS}, 20 * MS)
    b = QueryRecord(5, [1] * 6, [_round(2, 1, 2, 1, 2), _round(3, 3, 4, 2, 3)], None, {"prefill": 1 * MS}, 10 * MS)
    return [query_line("m", qid, "d", 0, False, rec, 3, energy_j=e)
            for qid, rec, e in (("A", a, energy[0]), ("B", b, energy[1]))]


def test_spec_decode_quantities_match_hand_counts_and_vllm_definitions():
    m = summarize_methods(_lines(), ["m"], ["d0"])["m"]
    sd = m["spec_decode"]
    # Drafts: A's rounds 1-3 and B's two; A's last round proposed nothing.
    assert (sd["num_drafts"], sd["num_draft_tokens"], sd["num_accepted_tokens"]) == (5, 14, 9)
    assert sd["acceptance_rate_pct"] == pytest.approx(100 * 9 / 14)
    assert sd["acceptance_length"] == pytest.approx(1 + 9 / 5)  # vLLM: 1 + accepted / drafts
    assert m["mat"] == pytest.approx(15 / 6)  # MAT divides appended tokens by all rounds: not the same number
    # Position i accepted in drafts with a > i: a = 2, 0, 3, 1, 3 -> 4, 3, 2 of 5 drafts (unconditional).
    assert sd["per_position_acceptance_rates"] == pytest.approx([0.8, 0.6, 0.4])
    assert m["per_position_acceptance"] == pytest.approx([4 / 5, 3 / 4, 2 / 3])  # today's: conditional on reaching i
    assert sd["acceptance_histogram"] == {"0": 1, "1": 1, "2": 1, "3": 2}


def test_distributions_and_energy_per_token_match_hand_values():
    m = summarize_methods(_lines(), ["m"], ["d0"])["m"]
    d = m["distributions"]
    r = d["round_latency_ms"]  # 1, 2, 3, 4, 4, 5 ms
    assert (r["unit"], r["count"], r["min"], r["max"], r["p50"]) == ("ms", 6, 1.0, 5.0, 3.5)
    assert r["avg"] == pytest.approx(19 / 6)
    assert r["p90"] == pytest.approx(4.5) and r["p99"] == pytest.approx(4.95)  # linear interpolation
    assert r["std"] == pytest.approx(math.sqrt(71 / 6 - (19 / 6) ** 2))  # population std, as vLLM and AIPerf
    t = d["query_tokens_per_s"]  # 9 / 20 ms, 6 / 10 ms
    assert (t["avg"], t["p50"], t["min"], t["max"]) == pytest.approx((525.0, 525.0, 450.0, 600.0))
    assert t["p90"] == pytest.approx(585.0) and t["std"] == pytest.approx(75.0)
    assert d["query_latency_ms"]["avg"] == pytest.approx(15.0) and d["query_latency_ms"]["std"] == pytest.approx(5.0)
    assert m["energy_j"] == pytest.approx(3.0) and m["energy_per_token_j"] == pytest.approx(3.0 / 15)
    partial = summarize_methods(_lines(energy=(1.8, None)), ["m"], ["d0"])["m"]
    assert partial["energy_j"] is None and partial["energy_per_token_j"] is None  # one query unmeasured: no figure


def test_ar_has_no_spec_decode_block():
    rec = QueryRecord(3, [1, 2], [RoundRecord(None, 1, 0, 0, 0, MS, 0, 0, 0)] * 2, None, {}, 4 * MS)
    m = summarize_methods([query_line("ar", "A", None, 0, False, rec, 3)], ["ar"], ["d0"])["ar"]
    assert m["spec_decode"] is None and m["energy_per_token_j"] is None
    assert "spec_decode_num_drafts" not in export({"methods": {"ar": m}}, "vllm", [])["methods"]["ar"]


def test_vllm_and_aiperf_exports_carry_the_same_numbers_and_aiperfs_per_request_view():
    lines = _lines()
    payload = {"run_id": "r", "complete": True, "methods": summarize_methods(lines, ["m"], ["d0"])}
    v = export(payload, "vllm", lines)["methods"]["m"]
    sd = payload["methods"]["m"]["spec_decode"]
    assert v["spec_decode_acceptance_length"] == sd["acceptance_length"]
    assert v["spec_decode_acceptance_rate"] == sd["acceptance_rate_pct"]
    assert (v["spec_decode_num_drafts"], v["spec_decode_draft_tokens"], v["spec_decode_accepted_tokens"]) == (5, 14, 9)
    assert v["spec_decode_per_position_acceptance_rates"] == sd["per_position_acceptance_rates"]
    assert (v["completed"], v["total_output_tokens"]) == (2, 15) and v["output_throughput"] == pytest.approx(15 / 0.03)
    assert v["median_itl_ms"] == 3.5 and v["mean_e2el_ms"] == pytest.approx(15.0)

    a = export(payload, "aiperf", lines)["methods"]["m"]
    rec = {r["tag"]: r for r in a["records"]}
    assert rec["spec_decode_token_weighted_acceptance_length"]["avg"] == sd["acceptance_length"]
    # AIPerf's spec_decode_acceptance_length averages per-request means: A 1 + 5/3, B 1 + 4/2.
    assert rec["spec_decode_acceptance_length"]["avg"] == pytest.approx((1 + 5 / 3 + 3.0) / 2)
    assert rec["spec_decode_draft_acceptance_rate"]["avg"] == pytest.approx(100 * (5 / 9 + 4 / 5) / 2)
    assert rec["total_spec_decode_steps"]["avg"] == 5 and rec["inter_chunk_latency"]["p50"] == 3.5
    # Slow tail: 1 / p90 of seconds per token (1/600 and 1/450 s).
    assert rec["e2e_normalized_interactivity_p90"]["avg"] == pytest.approx(1 / (1 / 600 + 0.9 * (1 / 450 - 1 / 600)))
    assert rec["output_tokens_per_joule"]["avg"] == pytest.approx(15 / 3.0)
    assert a["pooled_spec_decode_acceptance_histogram"] == sd["acceptance_histogram"]
    per_request = {r["query_id"]: r for r in a["spec_decode_acceptance_records"]}
    assert per_request["A"]["acceptance_histogram"] == {"0": 1, "2": 1, "3": 1}
    for r in per_request.values():  # AIPerf's record invariants
        assert sum(r["acceptance_histogram"].values()) == r["num_spec_steps"]
        assert sum(int(j) * c for j, c in r["acceptance_histogram"].items()) == r["num_accepted_draft_tokens"]


def test_a_run_written_before_these_keys_is_exported_from_its_queries():
    lines = _lines()
    methods = summarize_methods(lines, ["m"], ["d0"])
    old = {"methods": {"m": {k: v for k, v in methods["m"].items()
                             if k not in ("spec_decode", "distributions", "energy_j", "energy_per_token_j")}}}
    assert export(old, "vllm", lines) == export({"methods": methods}, "vllm", lines)
    with pytest.raises(ConfigError, match="queries.jsonl"):
        export(old, "aiperf", None)


class CountingNvml(FakeNvml):
    """Both GPUs have an energy counter that advances 700 and 300 mJ per read."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.counter = {0: 5_000_000, 1: 9_000_000}

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.counter[h[1]] += 700 if h[1] == 0 else 300
        return self.counter[h[1]]


def test_sampler_energy_reading_sums_gpus_and_is_none_without_a_counter(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    s = TelemetrySampler(0.05, nvml=CountingNvml()).start()
    first, second = s.energy_mj(), s.energy_mj()
    assert second - first == 1000
    s.stop()
    assert s.energy_mj() is None  # stopped: the counters belong to the final summary
    partial = TelemetrySampler(0.05, nvml=FakeNvml()).start()  # GPU 1 has no counter
    assert partial.energy_mj() is None
    partial.stop()


def test_tiny_bench_results_reproduce_from_the_run_dir_and_exports_agree(tiny_bench, tmp_path, monkeypatch):
    # The fake NVML module stands in for pynvml: every query reads the two counters once before
    # and once after, so each timed query draws exactly (700 + 300) mJ.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", CountingNvml())
    settings = resolve_settings({"profile": tiny_bench["profile"], "workload": tiny_bench["workload"],
                                 "methods": "ar,fixed:near,hedgespec", "prompts": 2, "max_new_tokens": 10,
                                 "out": str(tmp_path), "min_tokens": 1}, None)
    run = Path(run_bench(settings)["run_dir"])
    results = load_results(run)
    queries, rounds = read_jsonl(run / "queries.jsonl"), read_jsonl(run / "rounds.jsonl")
    timed = [q for q in queries if not q["warmup"]]
    for name, m in results["methods"].items():
        mine = [q for q in timed if q["method"] == name]
        assert json.loads(json.dumps(ecosystem.method_metrics(mine))) == {
            k: m[k] for k in ("spec_decode", "distributions", "energy_j", "energy_per_token_j")}
        assert m["energy_per_token_j"] == pytest.approx(len(mine) * 1.0 / m["new_tokens"])
        assert m["distributions"]["round_latency_ms"]["count"] == m["rounds"]
    assert results["methods"]["ar"]["spec_decode"] is None
    sd = results["methods"]["hedgespec"]["spec_decode"]
    assert sd["acceptance_length"] == pytest.approx(1 + sd["num_accepted_tokens"] / sd["num_drafts"])
    assert {d["key"] for d in results["metric_definitions"]} >= {"spec_decode.acceptance_length", "energy_per_token_j"}
    # round_ms is the per-round time rounds.jsonl splits into phases.
    by_key = {(r["method"], r["query_id"], r["repeat"], r["round"]): r for r in rounds}
    for q in timed:
        for i, ms in enumerate(q["round_ms"]):
            r = by_key[q["method"], q["query_id"], q["repeat"], i]
            assert ms == pytest.approx(sum(r[f"{p}_ms"] for p in ("draft", "verify", "evaluate", "learn", "other")),
                                       abs=1e-5)

    out = tmp_path / "vllm.json"
    res = CliRunner().invoke(app, ["report", str(run), "--format", "vllm", "--output", str(out)])
    assert res.exit_code == 0, res.output
    v = json.loads(out.read_text())["methods"]["hedgespec"]
    assert v["spec_decode_acceptance_length"] == sd["acceptance_length"]
    assert v["spec_decode_num_drafts"] == sd["num_drafts"]
    assert v["output_throughput"] == results["methods"]["hedgespec"]["tokens_per_s"]
    res = CliRunner().invoke(app, ["report", str(run), "--format", "aiperf"])
    assert res.exit_code == 0, res.output
    rec = {r["tag"]: r for r in json.loads(res.output)["methods"]["fixed:near"]["records"]}
    near = results["methods"]["fixed:near"]
    assert rec["total_gpu_energy"]["avg"] == near["energy_j"]
    assert rec["request_latency"]["p99"] == near["distributions"]["query_latency_ms"]["p99"]
    res = CliRunner().invoke(app, ["report", str(run), "--format", "vllm", "--json"])
    assert isinstance(res.exception, ConfigError) and "--json is --format json" in str(res.exception)
    (tmp_path / "a-file").write_text("")  # an --output under a file: one ConfigError, checked up front
    res = CliRunner().invoke(app, ["report", str(run), "--format", "vllm", "--output", str(tmp_path / "a-file" / "x")])
    assert isinstance(res.exception, ConfigError) and "cannot write --output" in str(res.exception)


def test_the_readme_documents_every_mapped_key():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for key, vllm, aiperf, unit, _ in ecosystem.DEFINITIONS:
        assert f"| `{key}` | {vllm} | {aiperf} | {unit} |" in readme, key
