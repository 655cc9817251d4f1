"""The zoo's acceptance matrix, measured by the engine on held-out prompts.

Each prompt is decoded once at T = 0 with full-information feedback, which
scores every drafter at every generated position (`gamma`). From those traces:
mean gamma per (domain, drafter), and each drafter's greedy acceptance length
(MAT of `fixed:NAME`) per domain, by exact replay (DESIGN.md section 5).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from hedgespec_cli.bench.query import run_query
from hedgespec_cli.config import load_profile
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.runner import open_pool
from hedgespec_cli.selection.replay import replay
from hedgespec_cli.selection.trace import Trace, TraceQuery
from hedgespec_cli.workloads import load_workload


def acceptance_matrix(
    profile: str, workload: str, *, per_domain: int, K: int = 5, max_new_tokens: int = 128, progress=None
) -> dict[str, Any]:
    """{gamma: {domain: {drafter: mean}}, acceptance_length: {domain: {drafter: MAT}}, prompts: {domain: n}}."""
    if per_domain < 1:
        raise ConfigError(f"--per-domain must be >= 1, got {per_domain}")
    prof = load_profile(profile)
    pool = open_pool(prof)
    engine = Engine(pool, DecodeSettings(K=K, max_new_tokens=max_new_tokens))
    taken: dict[str, int] = defaultdict(int)
    prompts = []
    for p in load_workload(workload).prompts:
        if taken[p.domain] < per_domain:
            taken[p.domain] += 1
            prompts.append(p)
    queries = []
    for i, p in enumerate(prompts):
        record = run_query(engine, pool.tokenizer(p.text)["input_ids"], f"fixed:{prof.generic().name}",
                           domain=p.domain, record_gamma=True)
        queries.append(TraceQuery.of_record(p.id, p.domain, record))
        if progress is not None:
            progress(i + 1, len(prompts))
    trace = Trace(K, 0.0, max_new_tokens, pool.names, pool.domains, queries, counterfactual=engine.counterfactual)
    runs = replay(trace, [f"fixed:{n}" for n in pool.names]).runs
    gamma: dict[str, list[np.ndarray]] = defaultdict(list)
    for q in queries:
        gamma[q.domain].append(q.gamma)
    lengths: dict[str, dict[str, float]] = defaultdict(dict)
    for name in pool.names:
        by_domain: dict[str, list[int]] = defaultdict(list)
        for qr in runs[f"fixed:{name}"].queries:
            by_domain[qr.domain].extend(qr.n.tolist())
        for domain, ns in by_domain.items():
            lengths[domain][name] = float(np.mean(ns))
    return {
        "profile": prof.name,
        "K": K,
        "max_new_tokens": max_new_tokens,
        "prompts": dict(taken),
        "gamma": {d: dict(zip(pool.names, np.concatenate(g).mean(axis=0).tolist())) for d, g in sorted(gamma.items())},
        "acceptance_length": {d: lengths[d] for d in sorted(lengths)},
    }
