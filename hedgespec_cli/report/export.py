"""A run's results under the names other tools use: `hedgespec report RUN --format vllm|aiperf|json`.

Pure: (results payload, query lines) -> one JSON-ready dict; no typer, no I/O.
Every value is read from results.json, or recomputed from `queries.jsonl`
by the same functions (report/ecosystem.py) that wrote it, so a run exports
the same numbers whenever it is exported. The name-by-name mapping and each
definition are in `ecosystem.DEFINITIONS` (and the README).

- vllm: per method, the keys `vllm bench serve --save-result` writes
  (vllm/benchmarks/serve.py): completed, total_output_tokens, duration,
  output_throughput, {mean,median,std,p90,p99}_{e2el,itl}_ms and the
  spec_decode_* block, which vLLM, like this export, leaves out when nothing
  was drafted.
- aiperf: per method, a list of AIPerf MetricResult records ({tag, header,
  unit, avg, min, max, p50, p90, p99, std, count}; record_models.py), the
  pooled acceptance histogram, and one SpecDecodeAcceptanceRecord per query.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.report import ecosystem
from hedgespec_cli.report.stats import describe

FORMATS = ("table", "json", "vllm", "aiperf")


def export(payload: dict[str, Any], fmt: str, lines: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The payload of format fmt (json, vllm or aiperf); lines: the run's queries.jsonl records."""
    if fmt == "json":
        return payload
    if fmt not in ("vllm", "aiperf"):
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    timed = _timed_by_method(payload, lines)
    methods = {m: {**metrics, **(ecosystem.method_metrics(timed[m]) if "spec_decode" not in metrics else {})}
               for m, metrics in payload["methods"].items()}
    head = {"format": fmt, "run_id": payload.get("run_id"), "complete": payload.get("complete")}
    if fmt == "vllm":
        return {**head, "source": "keys of `vllm bench serve --save-result`, one object per method",
                "methods": {m: to_vllm(x) for m, x in methods.items()}}
    return {**head, "source": "AIPerf MetricResult records and SpecDecodeAcceptanceRecord, per method",
            "methods": {m: to_aiperf(x, timed[m]) for m, x in methods.items()}}


def _timed_by_method(payload: dict[str, Any], lines: list[dict[str, Any]] | None) -> dict[str, list[dict]]:
    if lines is None:
        raise ConfigError("this export needs the run's queries.jsonl next to its results.json; "
                          "pass the run directory `hedgespec bench` wrote")
    out: dict[str, list[dict]] = {m: [] for m in payload["methods"]}
    for q in lines:
        if not q["warmup"] and q["method"] in out:
            out[q["method"]].append(q)
    return out


def _vllm_ms(name: str, d: dict[str, Any] | None) -> dict[str, Any]:
    """vLLM's flat keys for one latency in ms: mean_X_ms, median_X_ms, std_X_ms, p90_X_ms, p99_X_ms."""
    if d is None:
        return {}
    return {f"mean_{name}_ms": d["avg"], f"median_{name}_ms": d["p50"], f"std_{name}_ms": d["std"],
            f"p90_{name}_ms": d["p90"], f"p99_{name}_ms": d["p99"]}


def to_vllm(m: dict[str, Any]) -> dict[str, Any]:
    """One method's metrics under `vllm bench serve` result keys."""
    dist = m["distributions"]
    out = {
        "completed": m["queries"],
        "total_output_tokens": m["new_tokens"],
        "duration": m["wall_s"],  # the sum of query wall times: one query at a time
        "output_throughput": m["tokens_per_s"],
        **_vllm_ms("e2el", dist["query_latency_ms"]),
        **_vllm_ms("itl", dist["round_latency_ms"]),
    }
    sd = m["spec_decode"]
    if sd is not None:
        out.update({
            "spec_decode_acceptance_rate": sd["acceptance_rate_pct"],
            "spec_decode_acceptance_length": sd["acceptance_length"],
            "spec_decode_num_drafts": sd["num_drafts"],
            "spec_decode_draft_tokens": sd["num_draft_tokens"],
            "spec_decode_accepted_tokens": sd["num_accepted_tokens"],
            "spec_decode_per_position_acceptance_rates": sd["per_position_acceptance_rates"],
        })
    return out


def _record(tag: str, header: str, unit: str, stats: dict[str, Any] | None = None, value: Any = None):
    """An AIPerf MetricResult: distribution stats, or a single value as avg (derived metrics)."""
    if stats is not None:
        return {"tag": tag, "header": header, "unit": unit, **{k: v for k, v in stats.items() if k != "unit"}}
    return {"tag": tag, "header": header, "unit": unit, "avg": value}


def to_aiperf(m: dict[str, Any], qs: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's metrics as AIPerf records (qs: its timed query lines, for per-request metrics)."""
    dist = m["distributions"]
    records = [
        _record("request_count", "Request Count", "requests", value=m["queries"]),
        _record("request_latency", "Request Latency", "ms", dist["query_latency_ms"]),
        _record("output_sequence_length", "Output Sequence Length", "tokens", describe([q["new_tokens"] for q in qs])),
        _record("total_output_tokens", "Total Output Tokens", "tokens", value=m["new_tokens"]),
        _record("output_token_throughput", "Output Token Throughput", "tokens/sec", value=m["tokens_per_s"]),
    ]
    if dist["round_latency_ms"] is not None:
        records.append(_record("inter_chunk_latency", "Inter Chunk Latency", "ms", dist["round_latency_ms"]))
    if qs:
        # AIPerf's slow-tail convention: 1 / p(latency / OSL), not p(OSL / latency).
        s_per_token = [q["wall_s"] / q["new_tokens"] for q in qs if q["new_tokens"]]
        for p in (90, 75):
            value = 1.0 / float(np.percentile(s_per_token, p)) if s_per_token else None
            records.append(_record(f"e2e_normalized_interactivity_p{p}", f"E2E Normalized Interactivity p{p}",
                                   "tokens/sec/user", value=value))
    out: dict[str, Any] = {"records": records}
    sd = m["spec_decode"]
    if sd is not None:
        per_query = [(q, r) for q in qs if (r := ecosystem.acceptance_record(q)) is not None]
        records += [
            _record("spec_decode_acceptance_length", "Acceptance Length", "ratio",
                    describe([r["mean_acceptance_length"] for _, r in per_query])),
            _record("spec_decode_token_weighted_acceptance_length", "Token-Weighted Acceptance Length", "ratio",
                    value=sd["acceptance_length"]),
            _record("spec_decode_draft_acceptance_rate", "Draft Acceptance Rate", "%",
                    describe([100.0 * r["draft_acceptance_rate"] for _, r in per_query])),
            _record("spec_decode_overall_draft_acceptance_rate", "Overall Draft Acceptance Rate", "%",
                    value=sd["acceptance_rate_pct"]),
            _record("total_spec_decode_steps", "Total Spec Decode Steps", "count", value=sd["num_drafts"]),
            _record("total_draft_tokens", "Total Draft Tokens", "tokens", value=sd["num_draft_tokens"]),
            _record("total_accepted_draft_tokens", "Total Accepted Draft Tokens", "tokens",
                    value=sd["num_accepted_tokens"]),
        ]
        out["pooled_spec_decode_acceptance_histogram"] = sd["acceptance_histogram"]
        out["spec_decode_acceptance_records"] = [
            {"query_id": q["query_id"], "repeat": q["repeat"], **r} for q, r in per_query]
    if m["energy_j"] is not None:
        records.append(_record("total_gpu_energy", "Total GPU Energy", "J", value=m["energy_j"]))
        records.append(_record("output_tokens_per_joule", "Output Tokens per Joule", "tokens/J",
                               value=m["new_tokens"] / m["energy_j"] if m["energy_j"] else None))
    return out
