"""Speculative-decoding metrics as vLLM and AIPerf name and define them.

Pure functions over the dicts `queries.jsonl` holds (like report/summary.py),
so every number here is recomputed from a saved run directory alone. What
vLLM and AIPerf call each quantity was read in their sources, not copied:

- vLLM: `vllm/v1/spec_decode/metrics.py` (SpecDecodingStats.observe_draft,
  SpecDecodingLogging.log, the SpecDecodingProm counters) and the
  `spec_decode_*` keys of `vllm bench serve` (`vllm/benchmarks/serve.py`).
- AIPerf (ai-dynamo/aiperf): `src/aiperf/common/models/spec_decode_models.py`
  (SpecDecodeAcceptanceRecord), `src/aiperf/metrics/types/spec_decode_metrics.py`,
  `power_efficiency_metrics.py`, `e2e_normalized_interactivity_metrics.py`, and
  the MetricResult record of `aiperf/common/models/record_models.py`.

A *draft* is a round whose drafter proposed at least one token (drafted > 0):
vLLM counts one per request per engine step that carried speculative tokens
(`num_drafts`), AIPerf one per verification step (`num_spec_steps`). A last
round whose draft the token budget cuts to length 0 is no draft; `ar` has none.
Accepted tokens exclude the bonus token, as in both tools.

From a query line: drafts = pos_reached[0] (every draft reaches position 0),
and pos_accepted[i] = drafts that kept position i, so drafts accepting at
least j tokens = pos_accepted[j-1]: the histogram needs no per-round data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hedgespec_cli.report.stats import describe

# (our key in a method's payload, vLLM name, AIPerf name, unit, definition): the README table, and
# `metric_definitions` in results.json. "~" marks an analogue whose definition differs as stated.
DEFINITIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("queries", "completed", "request_count", "requests", "timed (non-warm-up) queries of the method"),
    ("new_tokens", "total_output_tokens", "total_output_tokens", "tokens",
     "tokens appended after the prompt (EOS/length cuts applied), summed over timed queries"),
    ("tokens_per_s", "output_throughput", "output_token_throughput", "tokens/s",
     "new_tokens / sum of query wall times: queries run one at a time, so this is the tools' "
     "output tokens / benchmark duration without the gaps between queries"),
    ("spec_decode.num_drafts", "spec_decode_num_drafts (Prometheus vllm:spec_decode_num_drafts)",
     "total_spec_decode_steps", "drafts", "rounds whose drafter proposed at least one token"),
    ("spec_decode.num_draft_tokens", "spec_decode_draft_tokens (vllm:spec_decode_num_draft_tokens)",
     "total_draft_tokens", "tokens", "draft tokens proposed, summed over drafts (a draft tree counts its depth)"),
    ("spec_decode.num_accepted_tokens", "spec_decode_accepted_tokens (vllm:spec_decode_num_accepted_tokens)",
     "total_accepted_draft_tokens", "tokens", "draft tokens accepted, summed over drafts; bonus token excluded"),
    ("spec_decode.acceptance_rate_pct", "spec_decode_acceptance_rate", "spec_decode_overall_draft_acceptance_rate",
     "%", "100 * num_accepted_tokens / num_draft_tokens (the acceptance_rate key holds the same as a fraction)"),
    ("spec_decode.acceptance_length", "spec_decode_acceptance_length ('Mean acceptance length')",
     "spec_decode_token_weighted_acceptance_length", "tokens/draft",
     "1 + num_accepted_tokens / num_drafts: tokens per draft with the bonus token, pooled over drafts. AIPerf's "
     "spec_decode_acceptance_length is a per-request mean instead (see --format aiperf). Differs from MAT, "
     "which divides the tokens actually appended by all rounds"),
    ("spec_decode.per_position_acceptance_rates", "spec_decode_per_position_acceptance_rates "
     "(vllm:spec_decode_num_accepted_tokens_per_pos / num_drafts)", "-", "fraction",
     "position i: drafts that accepted draft token i / all drafts. Unconditional, unlike the "
     "per_position_acceptance key, which divides by the drafts that reached position i"),
    ("spec_decode.acceptance_histogram", "- (vLLM exports counters only)",
     "pooled_spec_decode_acceptance_histogram (per request: SpecDecodeAcceptanceRecord.acceptance_histogram)",
     "drafts", "{j: drafts that accepted exactly j draft tokens}, sparse (zero counts left out), bonus excluded"),
    ("distributions.query_tokens_per_s", "-",
     "~ e2e_normalized_interactivity (per request OSL / request_latency; AIPerf reports 1 / p(latency / OSL))",
     "tokens/s", "per timed query: new tokens / its wall time, prefill included"),
    ("distributions.query_latency_ms", "e2el (mean_e2el_ms, median_e2el_ms, std_e2el_ms, p99_e2el_ms)",
     "request_latency", "ms", "per timed query: wall time from the start of prefill to the last token, "
     "in process (no HTTP, no queueing)"),
    ("distributions.round_latency_ms", "~ itl (one chunk per engine step; vLLM counts the first chunk in TTFT)",
     "~ inter_chunk_latency", "ms", "per round: draft + verify + evaluate + learn + other time, prefill excluded"),
    ("energy_j", "-", "total_gpu_energy", "J",
     "sum over timed queries of the NVML total-energy counter's change across the query (all sampled GPUs, "
     "whole board); None without the counter"),
    ("energy_per_token_j", "-", "1 / output_tokens_per_joule", "J/token", "energy_j / new_tokens"),
)

STAT_UNITS = {"query_tokens_per_s": "tokens/s", "query_latency_ms": "ms", "round_latency_ms": "ms"}


def definitions() -> list[dict[str, str]]:
    """The mapping table as JSON records."""
    return [dict(zip(("key", "vllm", "aiperf", "unit", "definition"), row)) for row in DEFINITIONS]


def query_fields(record: Any, energy_j: float | None = None) -> dict[str, Any]:
    """Per-query fields the ecosystem metrics need beyond the others (an engine QueryRecord in).

    round_ms: each round's wall time (draft + verify + evaluate + learn + other), ms.
    energy_j: the NVML energy counter's change across the query, J (None without one).
    """
    return {
        "round_ms": [round((r.draft_ns + r.verify_ns + r.evaluate_ns + r.learn_ns + r.other_ns) / 1e6, 6)
                     for r in record.rounds],
        "energy_j": energy_j,
    }


def _exact_counts(drafts: int, pos_accepted: list[int]) -> dict[int, int]:
    """{j: drafts that accepted exactly j draft tokens}, zero counts left out."""
    at_least = [drafts, *pos_accepted, 0]  # at_least[j]: drafts that accepted >= j tokens
    return {j: at_least[j] - at_least[j + 1] for j in range(len(at_least) - 1) if at_least[j] > at_least[j + 1]}


def _drafts(q: dict[str, Any]) -> int:
    return int(q["pos_reached"][0]) if q["pos_reached"] else 0


def spec_decode(qs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """vLLM's spec-decode quantities pooled over queries; None when no query drafted (`ar`)."""
    drafts = sum(_drafts(q) for q in qs)
    if not drafts:
        return None
    draft_tokens = sum(q["drafted"] for q in qs)
    accepted = sum(q["accepted"] for q in qs)
    per_pos = np.sum([q["pos_accepted"] for q in qs], axis=0)  # (K,)
    hist: dict[int, int] = {}
    for q in qs:
        for j, c in _exact_counts(_drafts(q), q["pos_accepted"]).items():
            hist[j] = hist.get(j, 0) + c
    return {
        "num_drafts": drafts,
        "num_draft_tokens": draft_tokens,
        "num_accepted_tokens": accepted,
        "acceptance_rate_pct": 100.0 * accepted / draft_tokens,
        "acceptance_length": 1.0 + accepted / drafts,
        "per_position_acceptance_rates": [float(k / drafts) for k in per_pos],
        "acceptance_histogram": {str(j): c for j, c in sorted(hist.items())},
    }


def distributions(qs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-query tokens/s and latency, per-round latency: avg/min/max/p50/p90/p99/std with units.

    round_latency_ms is None for runs whose query lines predate `round_ms`."""
    rounds = None if any("round_ms" not in q for q in qs) else [ms for q in qs for ms in q["round_ms"]]
    values = {
        "query_tokens_per_s": [q["tokens_per_s"] for q in qs],
        "query_latency_ms": [q["wall_s"] * 1e3 for q in qs],
        "round_latency_ms": rounds,
    }
    return {k: None if v is None else {"unit": STAT_UNITS[k], **describe(v)} for k, v in values.items()}


def energy(qs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Energy of the timed queries and per generated token; None unless every query has a reading."""
    readings = [q.get("energy_j") for q in qs]
    if not qs or any(e is None for e in readings):
        return {"energy_j": None, "energy_per_token_j": None}
    total = float(sum(readings))
    tokens = sum(q["new_tokens"] for q in qs)
    return {"energy_j": total, "energy_per_token_j": total / tokens if tokens else None}


def method_metrics(qs: list[dict[str, Any]]) -> dict[str, Any]:
    """The keys this module adds to one method's payload (its timed query lines in)."""
    return {"spec_decode": spec_decode(qs), "distributions": distributions(qs), **energy(qs)}


def acceptance_record(q: dict[str, Any]) -> dict[str, Any] | None:
    """One query as AIPerf's per-request SpecDecodeAcceptanceRecord; None for a query without drafts."""
    drafts = _drafts(q)
    if not drafts:
        return None
    return {
        "engine": "hedgespec",
        "mean_acceptance_length": 1.0 + q["accepted"] / drafts,
        "draft_acceptance_rate": q["accepted"] / q["drafted"],  # a fraction here; AIPerf's metric shows %
        "acceptance_histogram": {str(j): c for j, c in sorted(_exact_counts(drafts, q["pos_accepted"]).items())},
        "num_accepted_draft_tokens": q["accepted"],
        "num_draft_tokens": q["drafted"],
        "num_spec_steps": drafts,
        "num_spec_tokens": len(q["pos_accepted"]),
        "completion_tokens": q["new_tokens"],
    }
