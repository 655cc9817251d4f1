"""Replay against the live run it came from: the check behind every "exact" claim (DESIGN.md section 5).

A bench run decodes every query with each method and records one method's
full-information gamma (the trace). Replaying a method on that trace predicts
its rounds; when the same method also ran live in the run, the two can be
compared query by query. For `fixed:NAME` this is the audit of the one-step
counterfactual estimator itself: drafter NAME's MAT predicted from another
method's gamma against NAME's MAT when it actually drafted every round.

- T = 0: the prediction is deterministic; where `fidelity` says "exact" every
  query must match (rounds, and the drafter of every round when the live
  decisions are given). A mismatch breaks the claim, and the run's validity.
- T > 0: the prediction is the mean over `draws` seeded replays
  (acceptance ~ Bernoulli(gamma)); the error per query is predicted minus
  live MAT, reported as a mean over queries with a percentile-bootstrap 95%
  CI. The one-step estimator is biased at T > 0 (DESIGN.md section 5): gamma
  at depth d is scored after the committed token, which the target sampled
  from p, while a real round continues only after an accepted draft token,
  drawn from min(p, q).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hedgespec_cli.selection.base import SelectorSpec, registration
from hedgespec_cli.selection.replay import fidelity, replay
from hedgespec_cli.selection.trace import Trace


def mean_ci(values: Sequence[float], *, seed: int = 0, n_boot: int = 2000, level: float = 0.95) -> dict[str, float]:
    """Mean and its percentile-bootstrap CI over the values (queries); one value: a zero-width interval."""
    from hedgespec_cli.report.stats import bootstrap_mean_ci

    mean, (lo, hi) = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed, level=level)
    return {"mean": mean, "ci95": [lo, hi]}


def live_by_query(lines: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """queries.jsonl lines -> {method label: {query id: line}}, timed lines of repeat 0, `ar` left out."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for q in lines:
        if q["warmup"] or q["repeat"] != 0 or not registration(q["method"]).selects:
            continue
        out.setdefault(SelectorSpec.parse(q["method"]).label, {})[q["query_id"]] = q
    return out


def live_arms(rounds: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[int]]:
    """{(method label, query id): drafter per round} of the first repeat, from rounds.jsonl lines."""
    arms: dict[tuple[str, str], list[int]] = {}
    for r in rounds:
        if r.get("repeat", 0) == 0 and registration(r["method"]).selects:
            arms.setdefault((SelectorSpec.parse(r["method"]).label, r["query_id"]), []).append(r["drafter"])
    return arms


def audit(
    trace: Trace,
    lines: Iterable[Mapping[str, Any]],
    *,
    seed: int | None = None,
    draws: int = 16,
    live_arms: Mapping[tuple[str, str], Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Every method that ran live and is registered: replayed against live, per query and overall.

    live_arms: optional {(method label, query id): drafter per round} (rounds.jsonl), checked
    round by round where replay claims exactness. Returns the payload's `replay_audit`.
    """
    live = live_by_query(lines)
    # metasd-ucb and router are refused by replay (their feedback is not in a trace): not audited.
    labels = [m for m in live if not registration(m).not_replayable]
    if not labels:
        return {"methods": {}, "exact_claims_hold": None, "draws": 0}
    seed = trace.seed if seed is None else seed
    seed = 0 if seed is None else seed
    n_draws = 1 if trace.temperature == 0 else draws
    results = [replay(trace, labels, seed=seed, draw_seed=seed + d) for d in range(n_draws)]
    ids = [q.id for q in trace.queries]
    methods: dict[str, Any] = {}
    for label in labels:
        spec = SelectorSpec.parse(label, seed=seed)
        fid = fidelity(trace, spec, seed=seed)
        per_query, live_tok, live_rounds, pred_rounds, mismatches = {}, 0, 0, 0.0, []
        for qi, qid in enumerate(ids):
            line = live[label].get(qid)
            if line is None:
                continue
            runs = [r.runs[label].queries[qi] for r in results]
            predicted = float(np.mean([run.L / run.rounds for run in runs]))
            measured = line["new_tokens"] / line["rounds"]
            per_query[qid] = {"live_mat": measured, "replay_mat": predicted, "error": predicted - measured,
                              "live_rounds": line["rounds"], "replay_rounds": float(np.mean([r.rounds for r in runs]))}
            live_tok, live_rounds = live_tok + line["new_tokens"], live_rounds + line["rounds"]
            pred_rounds += float(np.mean([r.rounds for r in runs]))
            if n_draws == 1:
                arms = live_arms.get((label, qid)) if live_arms else None
                same = runs[0].rounds == line["rounds"] and runs[0].L == line["new_tokens"] and (
                    arms is None or list(arms) == runs[0].arms.tolist())
                if not same:
                    mismatches.append(qid)
        if not per_query:
            continue
        errors = [q["error"] for q in per_query.values()]
        tokens = sum(trace.queries[ids.index(q)].L for q in per_query)
        methods[label] = {
            "fidelity": fid.label,
            "fidelity_reason": fid.reason,
            "source": sorted({q.source for q in trace.queries if q.source}) or None,
            "queries": len(per_query),
            "live_mat": live_tok / live_rounds,
            "replay_mat": tokens / pred_rounds,
            "mat_error": tokens / pred_rounds - live_tok / live_rounds,
            "error_per_query": mean_ci(errors, seed=seed),
            "max_abs_error_per_query": float(np.max(np.abs(errors))),
            "queries_differing": mismatches if n_draws == 1 else None,
            "per_query": per_query,
        }
    claims = [m for m in methods.values() if m["fidelity"] == "exact"]
    holds = None if not claims else all(not m["queries_differing"] for m in claims)
    return {"methods": methods, "exact_claims_hold": holds, "draws": n_draws, "seed": seed}
