"""Synthetic drafter-selection environments, run through the replay machinery.

No models: N drafters with per-domain acceptance probabilities alpha[d, j].
Acceptance of drafter j at each position is drawn either i.i.d.
Bernoulli(alpha) or from a two-state Markov chain with the same mean and
lag-1 correlation `stickiness` (runs of acceptances, as real drafters show).
The draws form T = 0 style 0/1 gamma traces, which `replay` runs exactly.

Presets:
- one-good: for each domain d, drafter d mod N accepts with probability
  `good`, every other drafter with `good - gap`.
- experts: drafter 0 is generic (`generic` everywhere), drafters 1..N-1 are
  experts of one domain each (`good` there, `off` elsewhere); N-1 domains.

Schedules: `mixed` draws each prompt's domain uniformly (seeded); `shift`
plays the domains in contiguous blocks, domain 0 first (D - 1 shifts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.base import REGISTRY
from hedgespec_cli.selection.oracles import domain_blocks
from hedgespec_cli.selection.replay import MethodRun, ReplayResult, method_metrics, regret_curve, replay
from hedgespec_cli.selection.trace import Trace, TraceQuery

RECOVERY_WINDOW = 5  # consecutive rounds on the new best drafter that count as recovered
CURVE_CHECKPOINTS = (5, 10, 20, 40)


@dataclass(frozen=True)
class SimEnv:
    """accept: (D, N) per-position acceptance probability of drafter j in domain d."""

    drafters: tuple[str, ...]
    drafter_domains: tuple[str | None, ...]
    domains: tuple[str, ...]
    accept: np.ndarray
    model: str = "bernoulli"
    stickiness: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in ("bernoulli", "markov"):
            raise ConfigError(f"model {self.model!r}; choose bernoulli or markov")
        if not 0 <= self.stickiness < 1:
            raise ConfigError(f"stickiness must be in [0, 1) (got {self.stickiness})")
        a = np.asarray(self.accept, dtype=np.float64)
        if a.shape != (len(self.domains), len(self.drafters)) or a.min() < 0 or a.max() > 1:
            raise ConfigError("acceptance probabilities must be a (domains, drafters) table in [0, 1]")

    def best(self, d: int) -> int:
        return int(np.argmax(self.accept[d]))


def default_methods() -> list[str]:
    """`simulate` without --methods: every replayable online method but those that read the prompt's
    true domain (a synthetic pool's label names the best drafter by construction), then the
    reference of the default bench."""
    online = [n for n, r in REGISTRY.items() if r.kind == "online" and not r.not_replayable and not r.reads_true_domain]
    return online + [n for n, r in REGISTRY.items() if r.hindsight and r.in_default_bench]


def _prob(name: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a probability in [0, 1] (got {value})")
    return value


def one_good_env(n_drafters: int, *, n_domains: int = 1, good: float = 0.8, gap: float = 0.3,
                 model: str = "bernoulli", stickiness: float = 0.0) -> SimEnv:
    if n_drafters < 1 or n_domains < 1:
        raise ConfigError("one-good needs at least one drafter and one domain")
    worse = _prob("good - gap", _prob("good", good) - gap)
    domains = tuple(f"dom{d}" for d in range(n_domains))
    accept = np.full((n_domains, n_drafters), worse)
    labels: list[str | None] = [None] * n_drafters
    for d in range(n_domains):
        accept[d, d % n_drafters] = good
        labels[d % n_drafters] = labels[d % n_drafters] or domains[d]
    names = tuple(f"d{j}" for j in range(n_drafters))
    return SimEnv(names, tuple(labels), domains, accept, model, stickiness)


def experts_env(n_drafters: int, *, good: float = 0.85, generic: float = 0.6, off: float = 0.3,
                model: str = "bernoulli", stickiness: float = 0.0) -> SimEnv:
    if n_drafters < 2:
        raise ConfigError("the experts preset needs at least 2 drafters (a generic one and an expert)")
    D = n_drafters - 1
    domains = tuple(f"dom{d}" for d in range(D))
    accept = np.full((D, n_drafters), _prob("off", off))
    accept[:, 0] = _prob("generic", generic)
    accept[np.arange(D), np.arange(1, n_drafters)] = _prob("good", good)
    names = ("generic",) + tuple(f"expert{d}" for d in range(D))
    return SimEnv(names, (None,) + domains, domains, accept, model, stickiness)


PRESETS = {"one-good": one_good_env, "experts": experts_env}
PRESET_OPTIONS = {
    "one-good": ("n_domains", "good", "gap", "model", "stickiness"),
    "experts": ("good", "generic", "off", "model", "stickiness"),
}


def make_env(preset: str, n_drafters: int, options: dict) -> SimEnv:
    """A preset environment; options the preset does not take raise ConfigError."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    extra = sorted(set(options) - set(PRESET_OPTIONS[preset]))
    if extra:
        raise ConfigError(
            f"option(s) {', '.join(extra)} do not apply to preset {preset}; "
            f"it takes {', '.join(PRESET_OPTIONS[preset])}"
        )
    return PRESETS[preset](n_drafters, **options)


def sample_accept(env: SimEnv, d: int, L: int, rng: np.random.Generator) -> np.ndarray:
    """(L, N) 0/1 acceptance of every drafter at L positions of a domain-d prompt."""
    p = env.accept[d]  # (N,)
    u = rng.random((L, p.size))
    if env.model == "bernoulli":
        return (u < p).astype(np.float64)
    # Markov runs: P(1 | 1) = p + rho (1 - p), P(1 | 0) = p (1 - rho): mean p, lag-1 correlation rho
    rho = env.stickiness
    after_one, after_zero = p + rho * (1 - p), p * (1 - rho)
    x = np.zeros((L, p.size))
    x[0] = u[0] < p
    for s in range(1, L):
        x[s] = u[s] < np.where(x[s - 1] > 0, after_one, after_zero)
    return x


def domain_schedule(kind: str, n_prompts: int, n_domains: int, rng: np.random.Generator) -> np.ndarray:
    """Domain index per prompt, (P,)."""
    if kind == "mixed":
        return rng.integers(n_domains, size=n_prompts)
    if kind == "shift":
        return np.minimum(np.arange(n_prompts) * n_domains // n_prompts, n_domains - 1)
    raise ConfigError(f"schedule {kind!r}; choose mixed or shift")


def simulate_trace(env: SimEnv, *, K: int, prompts: int, tokens: int, schedule: str, seed: int) -> Trace:
    """A T = 0 style trace drawn from the environment (token ids are placeholders)."""
    if prompts < 1 or tokens < 1 or K < 1:
        raise ConfigError("prompts, tokens and K must each be at least 1")
    rng = np.random.default_rng(seed)
    order = domain_schedule(schedule, prompts, len(env.domains), rng)
    queries = tuple(
        TraceQuery(f"{env.domains[d]}-{i:04d}", env.domains[d], (0,) * tokens, sample_accept(env, d, tokens, rng))
        for i, d in enumerate(order)
    )
    # Drawn per position: the counterfactual is exact by construction.
    return Trace(K, 0.0, tokens, env.drafters, env.drafter_domains, queries,
                 counterfactual=("positional",) * len(env.drafters))


def shift_recovery(run: MethodRun, env: SimEnv, window: int = RECOVERY_WINDOW) -> list[int | None]:
    """Per shift: rounds after it before the method plays the new domain's best drafter
    `window` rounds in a row (None: never within the new domain's block)."""
    qs, out = run.queries, []
    index = {name: d for d, name in enumerate(env.domains)}
    for i in range(1, len(qs)):
        if qs[i].domain == qs[i - 1].domain:
            continue
        best = env.best(index[qs[i].domain])
        block = []
        for q in qs[i:]:
            if q.domain != qs[i].domain:
                break
            block.append(q.arms)
        hits = np.concatenate(block) == best  # (rounds in the block,)
        runs = np.convolve(hits, np.ones(window), mode="valid") >= window
        out.append(int(np.argmax(runs)) if runs.any() else None)
    return out


def block_regret(run: MethodRun) -> float:
    """Regret (tokens) against a shifting comparator: the best fixed drafter per block of
    consecutive prompts of one domain, counterfactual on the method's own rounds.

    Per block B: j* = argmax_j sum over B's rounds of n_all[t, j]; regret = sum n_all[t, j*] - n_t.
    It switches once per shift, as a learner kept across queries may; `QueryRun.regret` is the
    per-query comparator (it may switch at every query).
    """
    qs, total = run.queries, 0.0
    for block in domain_blocks([q.domain for q in qs]):
        n_all = np.concatenate([qs[i].n_all for i in block])  # (rounds in the block, N)
        n = np.concatenate([qs[i].n for i in block])
        total += float(n_all[:, int(np.argmax(n_all.sum(axis=0)))].sum() - n.sum())
    return total


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def _one_seed(result: ReplayResult, env: SimEnv) -> dict[str, dict]:
    trace = result.trace
    refs = {r: result.runs[r] for r in ("oracle", "oracle-round")}
    out = {}
    for label in result.requested:
        run = result.runs[label]
        m = method_metrics(run, refs, trace.drafters)
        out[label] = {
            "mat": m["mat"],
            "regret_per_round": m["regret_per_round"],
            "regret_per_round_block": block_regret(run) / m["rounds"],
            "mat_gap_vs_oracle": m["vs_oracle"]["mat_gap"],
            "curve": regret_curve(run.queries, CURVE_CHECKPOINTS),
            "recovery": shift_recovery(run, env),
        }
    return out


def run_simulation(
    *,
    preset: str,
    n_drafters: Sequence[int],
    methods: Sequence[str],
    seeds: int,
    K: int = 5,
    prompts: int = 24,
    tokens: int = 128,
    schedule: str = "mixed",
    env_options: dict | None = None,
) -> dict:
    """Sweep over N and seeds; returns the payload (means and stds over seeds)."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds})")
    sweep = []
    for N in n_drafters:
        env = make_env(preset, N, env_options or {})
        per_seed = []
        for seed in range(seeds):
            trace = simulate_trace(env, K=K, prompts=prompts, tokens=tokens, schedule=schedule, seed=seed)
            per_seed.append(_one_seed(replay(trace, methods, seed=seed), env))
        rows = {}
        for label in per_seed[0]:
            runs = [s[label] for s in per_seed]
            recov = [r for s in runs for r in s["recovery"]]
            done = [r for r in recov if r is not None]
            rows[label] = {
                "mat": _stats([r["mat"] for r in runs]),
                "regret_per_round": _stats([r["regret_per_round"] for r in runs]),
                "regret_per_round_block": _stats([r["regret_per_round_block"] for r in runs]),
                "mat_gap_vs_oracle": _stats([r["mat_gap_vs_oracle"] for r in runs]),
                "curve": {c: float(np.mean([r["curve"][c] for r in runs])) for c in runs[0]["curve"]},
                "recovery": {
                    "shifts": len(recov),
                    "recovered": len(done),
                    "mean_rounds": float(np.mean(done)) if done else None,
                    "max_rounds": int(max(done)) if done else None,
                },
            }
        sweep.append({
            "n_drafters": N,
            "domains": list(env.domains),
            "acceptance": {d: dict(zip(env.drafters, map(float, env.accept[i]))) for i, d in enumerate(env.domains)},
            "methods": rows,
        })
    return {
        "schema": "hedgespec.simulate/1",
        "settings": {
            "preset": preset, "n_drafters": list(n_drafters), "methods": list(methods), "seeds": seeds,
            "K": K, "prompts": prompts, "tokens": tokens, "schedule": schedule, **(env_options or {}),
        },
        "units": {
            "mat": "tokens per round",
            "regret_per_round": "tokens per round vs the best fixed drafter per query (counterfactual, "
                                "on the method's own rounds)",
            "regret_per_round_block": "tokens per round vs the best fixed drafter per block of prompts of one "
                                      "domain (a shifting comparator: one switch per shift; counterfactual, "
                                      "on the method's own rounds)",
            "mat_gap_vs_oracle": "tokens per round: oracle MAT minus method MAT",
            "curve": f"mean cumulative regret (tokens) after r rounds of a query, r in {list(CURVE_CHECKPOINTS)}",
            "recovery": f"rounds after a domain shift before {RECOVERY_WINDOW} consecutive rounds on the "
                        "new domain's best drafter",
        },
        "sweep": sweep,
    }
