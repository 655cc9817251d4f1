"""Replay selectors on a gamma trace: offline, exactly as the live engine where `fidelity` says so.

Per query with L generated tokens, rounds start at s = 0. Each round:
  1. the selector chooses drafter j (`choose(s)`);
  2. draft length k = min(K, max_new_tokens - s - 1) (k = 0: a plain target step);
  3. accepted a = leading ones of accept[s : s+k, j] (with gamma by drafting
     depth, EAGLE-3's exact mode: of accept[s+m, m, j], m < k);
  4. n = min(a + 1, L - s) tokens are appended (the end of the text cuts the
     round as EOS / the length cap does live);
  5. feedback: FullFeedback(gamma[s : s+n], gamma_depth[s : s+n]) to full-information
     selectors, at the rounds the engine evaluates (after the rounds where the
     selector `wants_feedback`, and the last), over the rounds since the last;
     BanditFeedback(j, n, k, K) to the others. A method whose registration
     says `not_replayable` (metasd-ucb: its block-divergence reward needs
     distributions along the drafts, which a trace does not hold) is refused
     with that reason rather than run on a proxy reward;
  6. s += n.
MAT = mean n over rounds.

Selectors are seeded as the live bench seeds them (selection/seeding.py): a
fresh selector per query from the run seed and the query's index, one per
pass for `reset: never` methods.

Fidelity, per method (`fidelity`): replay is EXACT (it makes the live run's
rounds and decisions) only when T = 0, the trace holds chains (no tree), the
trace says its gamma is the exact counterfactual for every drafter the method
can choose (Trace.exact_counterfactual; e.g. not for EAGLE-3 heads scored
along the actual round) and the method's feedback is a function of the trace
(not MetaSD-UCB's block divergence). Otherwise it is APPROXIMATE (or an
UPPER BOUND for trees), and `replay` of a run directory measures the error
against the methods that ran live. At T > 0 replay is an APPROXIMATION:
accept[s, j] ~ Bernoulli(gamma[s, j]), drawn once per trace from a seeded
generator, independently per position and drafter, and shared by all methods
so their comparison is paired; full-information selectors still see the real
gamma.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.base import REGISTRY, Selector, SelectorSpec, make_selector
from hedgespec_cli.selection.estimators import round_lengths
from hedgespec_cli.selection.feedback import BanditFeedback, FullFeedback, QueryContext
from hedgespec_cli.selection.seeding import SelectorBank
from hedgespec_cli.selection.trace import Trace, TraceError, TraceQuery, is_binary

REFERENCES = tuple(n for n, r in REGISTRY.items() if r.hindsight)  # oracle, oracle-round: every replay reports them


@dataclass(frozen=True)
class QueryRun:
    """One method on one query; arrays are per round, (R,), except n_all (R, N).

    n_all[t, j]: tokens round t would have appended with drafter j (the exact
    counterfactual at T = 0), used for regret against the best fixed drafter.
    """

    query_id: str
    domain: str | None
    L: int
    starts: np.ndarray
    arms: np.ndarray
    n: np.ndarray
    drafted: np.ndarray
    accepted: np.ndarray
    n_all: np.ndarray

    @property
    def rounds(self) -> int:
        return int(self.n.size)

    def regret(self) -> np.ndarray:
        """Per-round regret against this query's best fixed drafter on the same rounds, (R,) tokens.

        r_t = n_all[t, j*] - n[t], j* = argmax_j sum_t n_all[t, j] (paper-style
        regret: the one-step counterfactual of the best drafter in hindsight).
        """
        best = int(np.argmax(self.n_all.sum(axis=0)))
        return self.n_all[:, best] - self.n


@dataclass(frozen=True)
class Fidelity:
    """How far a method's replay can be trusted: "exact", "approximate" or "upper bound", and why."""

    label: str
    reason: str

    @property
    def exact(self) -> bool:
        return self.label == "exact"


@dataclass(frozen=True)
class MethodRun:
    label: str
    kind: str
    queries: tuple[QueryRun, ...]
    fidelity: Fidelity = Fidelity("exact", "")


@dataclass(frozen=True)
class ReplayResult:
    trace: Trace
    seed: int
    exact: bool  # every requested method's replay equals the live engine (fidelity "exact")
    runs: dict[str, MethodRun]  # requested methods and the references, by label
    requested: tuple[str, ...]


def drafters_used(spec: SelectorSpec, trace: Trace) -> set[int] | None:
    """The drafters a method can choose: fixed:NAME's one, else all (None)."""
    if REGISTRY[spec.name].kind == "fixed":
        return {int(make_selector(spec, trace.N, trace.drafters).arm)}
    return None


def fidelity(trace: Trace, spec: SelectorSpec, seed: int | None = None) -> Fidelity:
    """Whether replaying `spec` on `trace` reproduces the live run exactly (module docstring).

    seed: the seed replay used (None: the trace's own). An online method may
    draw random numbers (sampled play, random tie-breaks): it is exact only
    when seeded as the live run was, i.e. with the run seed the trace records
    and each query's recorded index.
    """
    if trace.tree is not None:
        return Fidelity("upper bound", "draft-tree trace: gamma counts the target's token among a drafter's "
                        "top_k as if no node had been pruned")
    if trace.temperature > 0:
        return Fidelity("approximate", f"T = {trace.temperature}: acceptance drawn as Bernoulli(gamma)")
    if trace.counterfactual is None:
        return Fidelity("approximate", "the trace does not record how its gamma was scored (an older trace)")
    used = drafters_used(spec, trace)
    if not trace.exact_counterfactual(used):
        modes = sorted({trace.counterfactual[j] for j in (used if used is not None else range(trace.N))}
                       - {"positional"})
        return Fidelity("approximate", f"gamma scored in counterfactual mode {', '.join(modes)}, "
                        "not the exact counterfactual of a round started at each position")
    if REGISTRY[spec.name].kind == "online":
        if trace.seed is None or any(q.index is None for q in trace.queries):
            return Fidelity("approximate", "the trace does not record the live run's seed and query order, "
                            "so randomized choices (sampled play, tie-breaks) may differ")
        if seed is not None and seed != trace.seed:
            return Fidelity("approximate", f"replayed with seed {seed}, the live run used {trace.seed}: "
                            "randomized choices (sampled play, tie-breaks) differ")
    return Fidelity("exact", "T = 0, exact counterfactual: the live engine makes the same rounds")


def run_length(accept: np.ndarray, s: int, k: int, j: int) -> int:
    """Accepted drafts of a round starting at s drafting k with drafter j: leading ones of
    accept[s : s+k, j], read along the drafting depth when accept is (L, K, N)."""
    if accept.ndim == 2:
        return leading_ones(accept[s : s + k, j])
    m = np.arange(min(k, accept.shape[0] - s))
    return leading_ones(accept[s + m, m, j])


def leading_ones(row: np.ndarray) -> int:
    """Length of the run of ones at the start of a 0/1 vector."""
    zeros = np.flatnonzero(row < 0.5)
    return int(zeros[0]) if zeros.size else int(row.size)


def acceptance_draws(trace: Trace, seed: int) -> list[np.ndarray]:
    """Per query (L, N) 0/1 acceptance: gamma itself at T = 0, seeded Bernoulli(gamma) at T > 0."""
    if trace.temperature == 0:
        for q in trace.queries:
            if not is_binary(q.acceptance):
                raise TraceError(
                    f"query {q.id!r}: a temperature-0 trace must hold 0/1 gamma (argmax matches); "
                    "fix the trace's temperature or regenerate it"
                )
        return [q.acceptance for q in trace.queries]
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])  # apart from selector streams
    return [(rng.random(q.acceptance.shape) < q.acceptance).astype(np.float64) for q in trace.queries]


def replay_query(
    selector: Selector, trace: Trace, query: TraceQuery, accept: np.ndarray, *, hindsight: bool
) -> QueryRun:
    """Run one selector over one query (module docstring, steps 1-6)."""
    K, gamma, L, N = trace.K, query.gamma, query.L, trace.N
    table = round_lengths(accept, K)  # (L, N) counterfactual n for every start and drafter
    ctx = QueryContext(
        query.domain, trace.drafters, trace.drafter_domains, K, accept if hindsight else None
    )
    starts, arms, ns, drafted, accepted = [], [], [], [], []
    selector.begin_query(ctx)
    if selector.needs_full_feedback and query.prompt_gamma is not None:  # as the engine, after its prefill
        selector.observe_prompt(query.prompt_gamma)
    s = done = waiting = 0  # full feedback: positions delivered, rounds since (the engine's evaluations)
    while s < L:
        j = selector.choose(s).arm
        if not 0 <= j < N:
            raise ValueError(f"{selector.name} chose drafter {j} outside 0..{N - 1}")
        k = min(K, trace.max_new_tokens - s - 1)
        a = run_length(accept, s, k, j)
        n = min(a + 1, L - s)
        starts.append(s), arms.append(j), ns.append(n), drafted.append(k), accepted.append(min(a, n))
        s += n
        if not selector.needs_full_feedback:
            selector.update(BanditFeedback(j, n, k, K, None))
            continue
        waiting += 1
        if s >= L or selector.wants_feedback(waiting):
            depth = None if query.gamma_depth is None else query.gamma_depth[done:s]
            selector.update(FullFeedback(gamma[done:s], j, K, depth))
            done, waiting = s, 0
    selector.end_query()
    idx = np.asarray(starts, dtype=np.int64)
    return QueryRun(
        query.id, query.domain, L, idx, np.asarray(arms), np.asarray(ns), np.asarray(drafted),
        np.asarray(accepted), table[idx],
    )


def replay(
    trace: Trace, methods: Sequence[str | SelectorSpec], *, seed: int | None = None, draw_seed: int | None = None
) -> ReplayResult:
    """Replay every method (plus the hindsight references) over every query of the trace.

    Selectors are seeded as the live bench seeds them (selection/seeding.py),
    from `seed` (default: the trace's run seed, else 0): a `reset: never`
    method keeps one selector for the pass, seeded `seed`; any other gets a
    fresh one per query, seeded `query_seed(seed, 0, index)` with the
    query's recorded index (its place in the trace when none is recorded).
    draw_seed (default: seed) seeds the T > 0 acceptance draws alone.
    """
    if not trace.queries:
        raise TraceError("the trace has no queries; record some before replaying")
    if seed is None:
        seed = trace.seed if trace.seed is not None else 0
    specs = [SelectorSpec.parse(m, seed=seed) if isinstance(m, str) else m for m in methods]
    labels = [s.label for s in specs]
    dupes = sorted({lb for lb in labels if labels.count(lb) > 1})
    if dupes:
        raise ConfigError(f"method(s) listed twice: {', '.join(dupes)}; list each once")
    for spec in specs:
        why = REGISTRY[spec.name].not_replayable
        if why:
            raise ConfigError(f"{spec.name} cannot be replayed on a trace: {why}")
    for ref in REFERENCES:
        if ref not in labels:
            specs.append(SelectorSpec(ref, seed=seed))
    accepts = acceptance_draws(trace, seed if draw_seed is None else draw_seed)
    runs = {}
    for spec in specs:
        kind = REGISTRY[spec.name].kind
        bank = SelectorBank(trace.drafters, seed, 0)  # seeded as the live bench seeds its selectors
        queries = []
        for i, (q, a) in enumerate(zip(trace.queries, accepts)):
            selector = bank.get(spec.label, q.index if q.index is not None else i)
            queries.append(replay_query(selector, trace, q, a, hindsight=kind == "reference"))
        runs[spec.label] = MethodRun(spec.label, kind, tuple(queries), fidelity(trace, spec, seed))
    exact = all(runs[label].fidelity.exact for label in labels)
    return ReplayResult(trace, seed, exact, runs, tuple(labels))


def default_methods(drafters: Sequence[str]) -> list[str]:
    """Every registered online method, the two references and fixed:NAME for each drafter."""
    online = [name for name, reg in REGISTRY.items() if reg.kind == "online" and not reg.not_replayable]
    return online + list(REFERENCES) + [f"fixed:{d}" for d in drafters]


# -- metrics -------------------------------------------------------------------------

UNITS = {
    "mat": "tokens per round (bonus included)",
    "rounds": "target verification rounds, summed over queries",
    "regret_per_round": "tokens per round: best fixed drafter in hindsight per query, counterfactual on the "
                        "method's own rounds, minus the method",
    "mat_gap": "tokens per round: reference MAT minus method MAT",
    "extra_rounds": "rounds: method rounds minus reference rounds, summed over queries",
    "extra_rounds_pct": "percent of the reference's rounds",
    "selection_freq": "fraction of the domain's rounds",
}


def regret_curve(runs: Sequence[QueryRun], checkpoints: Sequence[int]) -> dict[str, float]:
    """Mean over queries of the cumulative regret after r rounds of a query (tokens).

    A query shorter than r contributes its final cumulative regret.
    """
    out = {}
    finals = [np.cumsum(q.regret()) for q in runs]
    for r in checkpoints:
        out[str(r)] = float(np.mean([c[min(r, c.size) - 1] for c in finals]))
    return out


def method_metrics(run: MethodRun, refs: dict[str, MethodRun], drafters: Sequence[str]) -> dict:
    """One method's numbers (units in UNITS); the dict drives both the tables and --json."""
    qs = run.queries
    tokens = sum(q.L for q in qs)
    rounds = sum(q.rounds for q in qs)
    drafted = sum(int(q.drafted.sum()) for q in qs)
    accepted = sum(int(q.accepted.sum()) for q in qs)
    regret = sum(float(q.regret().sum()) for q in qs)
    out = {
        "kind": run.kind,
        "mat": tokens / rounds,
        "rounds": rounds,
        "tokens": tokens,
        "acceptance_rate": accepted / drafted if drafted else None,
        "regret_per_round": regret / rounds,
    }
    for name, ref in refs.items():
        ref_rounds = sum(q.rounds for q in ref.queries)
        out[f"vs_{name.replace('-', '_')}"] = {
            "mat_gap": tokens / ref_rounds - tokens / rounds,
            "extra_rounds": rounds - ref_rounds,
            "extra_rounds_pct": 100.0 * (rounds - ref_rounds) / ref_rounds,
        }
    by_domain, freq = {}, {}
    for domain in dict.fromkeys(q.domain for q in qs):
        dq = [q for q in qs if q.domain == domain]
        key = str(domain)
        arms = np.concatenate([q.arms for q in dq])
        counts = np.bincount(arms, minlength=len(drafters))
        by_domain[key] = {"mat": sum(q.L for q in dq) / arms.size, "rounds": int(arms.size)}
        freq[key] = {d: float(c / arms.size) for d, c in zip(drafters, counts)}
    out["by_domain"] = by_domain
    out["selection_freq"] = freq
    return out


def replay_payload(result: ReplayResult) -> dict:
    """Build the data once: the command renders it as tables or dumps it as JSON."""
    trace = result.trace
    refs = {r: result.runs[r] for r in REFERENCES}
    notes = [
        "oracle-round: per round the longest accepted run from the same position (no method "
        "appends more in a round starting there)",
    ]
    caveats = []
    if result.exact:
        caveats.append("T = 0, exact counterfactual: replay is exact for every method listed "
                       "(the live engine makes the same rounds and decisions)")
    if trace.temperature > 0:
        caveats.append(
            f"T = {trace.temperature}: replay is an APPROXIMATION; acceptance is sampled as "
            f"Bernoulli(gamma) per position and drafter (seed {result.seed}), shared by all methods"
        )
    if trace.tree is not None:
        caveats.append(
            f"draft-tree trace (top_k={trace.tree['top_k']}, total_tokens={trace.tree['total_tokens']}): "
            "replay is an UPPER BOUND; it counts a position as accepted when the target's token is among "
            "the drafter's top_k, as if no node had been pruned"
        )
    if trace.temperature == 0 and trace.tree is None:
        inexact = {}
        for label in (*result.requested, *REFERENCES):
            f = result.runs[label].fidelity
            if not f.exact:
                inexact.setdefault(f.reason, []).append(label)
        for reason, labels in inexact.items():
            caveats.append(f"APPROXIMATE for {', '.join(labels)}: {reason}")
    notes[:0] = caveats
    return {
        "schema": "hedgespec.replay/1",
        "trace": {
            **trace.header(),
            "queries": len(trace.queries),
            "tokens": sum(q.L for q in trace.queries),
        },
        "seed": result.seed,
        "exact": result.exact,
        "notes": notes,
        "units": UNITS,
        "fidelity": {
            label: {"label": result.runs[label].fidelity.label, "reason": result.runs[label].fidelity.reason}
            for label in (*result.requested, *(r for r in REFERENCES if r not in result.requested))
        },
        "methods": {
            label: {**method_metrics(result.runs[label], refs, trace.drafters),
                    "fidelity": result.runs[label].fidelity.label}
            for label in result.requested
        },
    }
