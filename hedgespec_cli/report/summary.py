"""Aggregate per-query records into the run payload (DESIGN.md sections 7-8).

Pure functions over the dicts that `queries.jsonl` holds, so a saved run can
be re-summarised from its files alone. Definitions (units in the names):

- MAT: sum of tokens appended / number of rounds (bonus token included).
- acceptance_rate: accepted draft tokens / drafted tokens (for draft trees,
  drafted counts the tree depth per round, the most a round can accept;
  tree_nodes counts the tokens the trees sent to the target).
- tokens_per_s: sum of new tokens / sum of query wall time (prefill included).
- speedup_vs_ar: geometric mean over prompts of the method's tokens/s over
  `ar`'s (a prompt's repeats merged by geometric mean), with a seeded
  percentile-bootstrap 95% CI over prompts.
- eval_overhead_frac: (evaluate + learn time) / wall time.
- regret_vs_oracle: MAT(oracle) - MAT(method), in tokens per round.
- oracle_block (run level, `shift` workloads at T = 0): the best fixed drafter
  per block of one domain in hindsight, the reference of a learner kept
  across queries (`hedgespec:reset=never,learner=tracking`).
- estimator (full-information methods, chains): the one-step estimator
  (DESIGN.md section 5) against the rounds actually played: for each round,
  the tokens min(A_s[j], L - s) it predicts for the chosen drafter j from the
  query's own gamma, against the n the round appended. Exact at T = 0; at
  T > 0 its bias is this measurement. Per query also `estimated_A`: each
  drafter's mean predicted round length over the query's positions.

Next to these, each method carries the quantities vLLM and AIPerf report
(spec_decode, distributions, energy_per_token_j), defined in report/ecosystem.py.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from hedgespec_cli.report import ecosystem
from hedgespec_cli.report.stats import paired_geomean_ratio, per_prompt_pairs
from hedgespec_cli.selection.estimators import expected_round_lengths
from hedgespec_cli.selection.oracles import block_oracle

PHASES = ("prefill", "draft", "verify", "evaluate", "learn", "other")


def _estimator(record: Any, K: int) -> dict[str, Any] | None:
    """The estimator's predicted tokens for the rounds played vs what they appended (None without
    the query's gamma, or for draft trees, whose gamma scores top-k children, not a chain)."""
    if record.gamma is None or any(r.tree_nodes for r in record.rounds):
        return None
    n_hat = expected_round_lengths(record.acceptance, K)  # (L, N)
    s, estimated, actual, rounds = 0, 0.0, 0, 0
    for r in record.rounds:
        if r.drafter is not None and r.drafted:
            estimated += float(n_hat[s, r.drafter])
            actual += r.n
            rounds += 1
        s += r.n
    return {"rounds": rounds, "estimated_tokens": estimated, "tokens": actual,
            "estimated_A": _floats(n_hat.mean(axis=0)) if len(n_hat) else None}


def query_line(
    method: str, query_id: str, domain: str | None, repeat: int, warmup: bool, record: Any, K: int,
    energy_j: float | None = None,
) -> dict[str, Any]:
    """One `queries.jsonl` record from an engine QueryRecord (energy_j: NVML energy over the query)."""
    reached, kept = np.zeros(K, dtype=int), np.zeros(K, dtype=int)
    selections: dict[int, int] = defaultdict(int)
    for r in record.rounds:
        flags = r.accept_flags  # kept positions, then the rejected one (if any)
        reached[: len(flags)] += 1
        kept[: r.accepted] += 1
        if r.drafter is not None:
            selections[r.drafter] += 1
    return {
        "method": method,
        "query_id": query_id,
        "repeat": repeat,
        "domain": domain,
        "warmup": warmup,
        "new_tokens": record.new_tokens,
        "rounds": len(record.rounds),
        "mat": record.mat,
        "wall_s": record.wall_ns / 1e9,
        "tokens_per_s": record.tokens_per_s,
        "drafted": sum(r.drafted for r in record.rounds),
        "accepted": sum(r.accepted for r in record.rounds),
        "tree_nodes": sum(r.tree_nodes for r in record.rounds),
        "phase_ms": {k: v / 1e6 for k, v in record.phase_ns.items()},
        "selections": {str(k): v for k, v in sorted(selections.items())},
        "pos_reached": reached.tolist(),
        "pos_accepted": kept.tolist(),
        "stop": record.stop,
        "output_ids": record.output_ids,
        "estimator": _estimator(record, K),
        **ecosystem.query_fields(record, energy_j),
    }


def round_lines(method: str, query_id: str, repeat: int, record: Any) -> list[dict[str, Any]]:
    return [
        {
            "method": method, "query_id": query_id, "repeat": repeat, "round": i,
            "drafter": r.drafter, "n": r.n, "drafted": r.drafted, "accepted": r.accepted,
            "tree_nodes": r.tree_nodes,
            "probs": _floats(r.decision.probs) if r.decision else None,
            "weights": _floats(r.decision.weights) if r.decision and r.decision.weights is not None else None,
            "draft_ms": r.draft_ns / 1e6, "verify_ms": r.verify_ns / 1e6,
            "evaluate_ms": r.evaluate_ns / 1e6, "learn_ms": r.learn_ns / 1e6, "other_ms": r.other_ns / 1e6,
        }
        for i, r in enumerate(record.rounds)
    ]


def _floats(v) -> list[float]:
    return [round(float(x), 6) for x in v]


def summarize_methods(
    lines: list[dict[str, Any]], methods: list[str], drafters: list[str], seed: int = 0
) -> dict[str, Any]:
    """methods payload: {method: metrics} over the timed (non-warm-up) queries."""
    timed = [q for q in lines if not q["warmup"]]
    by_method: dict[str, list[dict]] = defaultdict(list)
    for q in timed:
        by_method[q["method"]].append(q)
    ar = {(q["query_id"], q["repeat"]): q["tokens_per_s"] for q in by_method.get("ar", [])}
    out: dict[str, Any] = {}
    for m in methods:
        qs = by_method.get(m, [])
        if not qs:
            continue
        out[m] = _metrics(qs, drafters)
        out[m]["speedup_vs_ar"] = _speedup(qs, ar, seed)
    oracle_mat = out.get("oracle", {}).get("mat")
    curves = regret_curves(timed)
    for m, metrics in out.items():
        metrics["regret_vs_oracle"] = None if oracle_mat is None else oracle_mat - metrics["mat"]
        metrics["regret_curve_vs_oracle"] = curves.get(m)
    return out


def regret_curves(lines: list[dict[str, Any]]) -> dict[str, list[int]]:
    """{method: cumulative extra rounds (target forward passes) against the oracle, the best fixed
    drafter per query in hindsight, after each query of the first repeat in workload order}.

    Only methods that finished every query the oracle finished; {} without an oracle.
    """
    first = [q for q in lines if q["repeat"] == 0 and not q["warmup"]]
    rounds: dict[str, dict[str, int]] = defaultdict(dict)
    order: list[str] = []
    for q in first:
        rounds[q["method"]][q["query_id"]] = q["rounds"]
        if q["query_id"] not in order:
            order.append(q["query_id"])
    oracle = rounds.get("oracle")
    if not oracle:
        return {}
    order = [i for i in order if i in oracle]
    return {m: np.cumsum([per_query[i] - oracle[i] for i in order]).tolist()
            for m, per_query in rounds.items() if m not in ("oracle", "ar") and set(per_query) >= set(order)}


def _metrics(qs: list[dict], drafters: list[str]) -> dict[str, Any]:
    tokens = sum(q["new_tokens"] for q in qs)
    rounds = sum(q["rounds"] for q in qs)
    wall = sum(q["wall_s"] for q in qs)
    drafted = sum(q["drafted"] for q in qs)
    phase = {p: sum(q["phase_ms"].get(p, 0.0) for q in qs) for p in PHASES}
    reached = np.sum([q["pos_reached"] for q in qs], axis=0)
    kept = np.sum([q["pos_accepted"] for q in qs], axis=0)
    by_domain: dict[str, list[dict]] = defaultdict(list)
    for q in qs:
        by_domain[q["domain"] or "-"].append(q)
    per_repeat: dict[int, list[dict]] = defaultdict(list)
    for q in qs:
        per_repeat[q["repeat"]].append(q)
    repeat_tps = [sum(q["new_tokens"] for q in r) / sum(q["wall_s"] for q in r) for r in per_repeat.values()]
    return {
        "queries": len(qs),
        "new_tokens": tokens,
        "rounds": rounds,
        "mat": tokens / rounds,
        "acceptance_rate": sum(q["accepted"] for q in qs) / drafted if drafted else None,
        "tokens_per_s": tokens / wall,
        "wall_s": wall,
        "eval_overhead_frac": (phase["evaluate"] + phase["learn"]) / (wall * 1e3),
        "phase_frac": {p: v / (wall * 1e3) for p, v in phase.items()},
        "phase_ms_per_round": {p: v / rounds for p, v in phase.items()},
        "per_position_acceptance": [float(k / r) if r else None for k, r in zip(kept, reached)],
        "repeat_tokens_per_s": repeat_tps,
        "repeat_cv": float(np.std(repeat_tps) / np.mean(repeat_tps)) if len(repeat_tps) > 1 else None,
        "by_domain": {
            d: {
                "mat": sum(q["new_tokens"] for q in dq) / sum(q["rounds"] for q in dq),
                "tokens_per_s": sum(q["new_tokens"] for q in dq) / sum(q["wall_s"] for q in dq),
                "queries": len(dq),
            }
            for d, dq in sorted(by_domain.items())
        },
        "selection_freq": _selection_freq(by_domain, drafters),
        "estimator": _estimator_summary(qs),
        **ecosystem.method_metrics(qs),
    }


def _estimator_summary(qs: list[dict]) -> dict[str, Any] | None:
    """Predicted vs actual tokens per round over the rounds a drafter was chosen (tokens/round)."""
    parts = [q["estimator"] for q in qs if q.get("estimator") and q["estimator"]["rounds"]]
    if not parts:
        return None
    rounds = sum(e["rounds"] for e in parts)
    estimated, actual = sum(e["estimated_tokens"] for e in parts), sum(e["tokens"] for e in parts)
    return {"rounds": rounds, "estimated_per_round": estimated / rounds, "actual_per_round": actual / rounds,
            "bias_per_round": (estimated - actual) / rounds}


def _selection_freq(by_domain: dict[str, list[dict]], drafters: list[str]) -> dict[str, dict[str, float]] | None:
    freq = {}
    for d, dq in sorted(by_domain.items()):
        counts = np.zeros(len(drafters))
        for q in dq:
            for j, c in q["selections"].items():
                counts[int(j)] += c
        if counts.sum() == 0:
            return None  # ar: no drafter is ever chosen
        freq[d] = {name: float(c / counts.sum()) for name, c in zip(drafters, counts)}
    return freq


def _speedup(qs: list[dict], ar: dict, seed: int) -> dict[str, Any] | None:
    keys = [(q["query_id"], q["repeat"]) for q in qs]
    pairs = per_prompt_pairs({k: (ar[k], q["tokens_per_s"]) for k, q in zip(keys, qs) if k in ar})  # (prompts, 2)
    if not len(pairs):
        return None
    geomean, ci = paired_geomean_ratio(pairs[:, 0], pairs[:, 1], seed=seed)
    return {"geomean": geomean, "ci95": list(ci), "pairs": len(pairs)}


def acceptance_matrix(trace_queries: list[Any], drafters: list[str]) -> dict[str, dict[str, float]] | None:
    """{domain: {drafter: mean gamma}} from full-information gamma: free with hedgespec."""
    by_domain: dict[str, list[np.ndarray]] = defaultdict(list)
    for tq in trace_queries:
        by_domain[tq.domain or "-"].append(np.asarray(tq.gamma))
    if not by_domain:
        return None
    return {
        d: dict(zip(drafters, np.concatenate(gs).mean(axis=0).tolist())) for d, gs in sorted(by_domain.items())
    }


def validity(
    lines: list[dict[str, Any]],
    *,
    temperature: float,
    warmup: int,
    min_tokens: int,
    max_repeat_cv: float,
    methods_payload: dict[str, Any],
    telemetry: dict[str, Any] | None,
    replay_audit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """MLPerf-style verdict: each constraint True/False, or None when it could not be checked."""
    timed = [q for q in lines if not q["warmup"]]
    ar = {(q["query_id"], q["repeat"]): q["output_ids"] for q in timed if q["method"] == "ar"}
    if temperature > 0 or not ar:
        lossless, mismatches = None, []
    else:
        mismatches = sorted(
            {q["method"] for q in timed
             if (q["query_id"], q["repeat"]) in ar and q["output_ids"] != ar[(q["query_id"], q["repeat"])]}
        )
        lossless = not mismatches
    cvs = [m["repeat_cv"] for m in methods_payload.values() if m["repeat_cv"] is not None]
    throttled = None
    if telemetry and telemetry.get("gpu_available"):
        throttled = bool(telemetry.get("throttled"))
    constraints = {
        "lossless": lossless,
        "warmup": warmup > 0,
        "min_tokens": bool(methods_payload) and all(m["new_tokens"] >= min_tokens for m in methods_payload.values()),
        "repeat_spread": (max(cvs) <= max_repeat_cv) if cvs else None,
        "no_throttling": None if throttled is None else not throttled,
        # Wherever replay (and so the oracle, regret and estimator) claims exactness, the run's own
        # live methods must agree with it query by query (selection/audit.py).
        "replay_exact": (replay_audit or {}).get("exact_claims_hold"),
    }
    broken = sorted(m for m, a in ((replay_audit or {}).get("methods") or {}).items()
                    if a["fidelity"] == "exact" and a["queries_differing"])
    notes = {
        "lossless": (
            "not checked: T > 0 (distribution equality is tested statistically in the test suite)"
            if temperature > 0 else "not checked: ar not among the methods" if not ar
            else f"outputs differ from ar for: {', '.join(mismatches)}" if mismatches
            else "every method's output equals ar's, token for token"
        ),
        "warmup": f"{warmup} warm-up prompt(s) per method, excluded from timing",
        "min_tokens": f"each method generated at least {min_tokens} timed tokens",
        "repeat_spread": f"coefficient of variation of tokens/s across repeats <= {max_repeat_cv:.0%}"
        if cvs else "not checked: one repeat",
        "no_throttling": "no GPU throttling seen" if throttled is False else "GPU throttling seen"
        if throttled else "not checked: no GPU telemetry",
        "replay_exact": f"replay claims exactness but differs from the live run for: {', '.join(broken)}"
        if broken else "every method replay calls exact reproduces its live rounds and decisions, query by query"
        if (replay_audit or {}).get("exact_claims_hold") else "not checked: replay claims exactness for no "
        "method that ran live (approximate counterfactual, T > 0, trees, or no trace)",
    }
    valid = all(v is not False for v in constraints.values())
    return {"valid": valid, "constraints": constraints, "notes": notes}


def block_oracle_summary(
    trace_queries: list[Any], drafters: list[str], K: int, *, exact: bool
) -> dict[str, Any] | None:
    """The per-block oracle of a `shift` workload: the best fixed drafter per block of consecutive
    prompts of one domain, in hindsight, from the trace (queries in serving order), at T = 0 (0/1
    gamma, by depth where recorded). exact: the trace's counterfactual is exact for every drafter,
    so this is what `fixed:NAME` of each block's best drafter plays there; else an approximation
    (EAGLE-3 heads scored in depth1/aligned mode). None without a trace."""
    if not trace_queries:
        return None
    blocks = block_oracle([q.acceptance for q in trace_queries], [q.domain for q in trace_queries], K)
    tokens = sum(q.L for q in trace_queries)
    rounds = sum(b.rounds for b in blocks)
    per_query = sum(b.rounds_per_query for b in blocks)
    return {
        "mat": tokens / rounds,
        "rounds": rounds,
        "new_tokens": tokens,
        "queries": len(trace_queries),
        "mat_per_query_oracle": tokens / per_query,
        "exact": exact,
        "blocks": [
            {"domain": b.domain, "queries": len(b.queries), "drafter": drafters[b.arm], "rounds": b.rounds,
             "rounds_per_query_oracle": b.rounds_per_query}
            for b in blocks
        ],
    }
