"""Statistics for benchmark reports: pure numpy, no I/O.

- `paired_geomean_ratio`: per-prompt ratios cand/base, their geometric mean
  and a seeded percentile-bootstrap CI (Spec-Bench style speedups are ratios,
  and ratios average geometrically: a 2x and a 0.5x prompt cancel out).
- `per_prompt_pairs`: (base, cand) per prompt, its repeats combined by
  geometric mean, so that repeats do not count as independent prompts.
- `mann_whitney_p`: two-sided Mann-Whitney U test, normal approximation with
  tie and continuity correction, for samples that cannot be paired.
- `summarize`: mean, median, min, max and coefficient of variation.
- `describe`: avg/min/max/p50/p90/p99/std the way vLLM and AIPerf report a distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _positive(name: str, x: ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be finite and positive for a ratio (got {a[~(np.isfinite(a) & (a > 0))][:3]})")
    return a


def geomean(x: ArrayLike) -> float:
    """Geometric mean of positive values."""
    return float(np.exp(np.mean(np.log(_positive("x", x)))))


def per_prompt_pairs(pairs: dict[tuple[str, int], tuple[float, float]]) -> np.ndarray:
    """{(prompt id, repeat): (base, cand)} -> (prompts, 2): each prompt's repeats combined by geometric mean.

    A bootstrap over (prompt, repeat) pairs would treat repeats of one prompt as
    independent prompts and narrow the interval; prompts are the unit of pairing.
    """
    by_prompt: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(pairs):  # sorted: a set's order varies with the hash seed
        by_prompt.setdefault(key[0], []).append(pairs[key])
    means = [np.exp(np.log(np.array(v, dtype=np.float64)).mean(axis=0)) for v in by_prompt.values()]
    return np.array(means).reshape(-1, 2)


def paired_geomean_ratio(
    base: ArrayLike,
    cand: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    level: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """Geometric mean of `cand[i] / base[i]` and its percentile-bootstrap CI.

    Resamples the pairs with replacement `n_boot` times (rng seeded with seed,
    so the interval is reproducible); the CI is the (1-level)/2 and
    (1+level)/2 quantiles of the resampled geometric means. One pair gives a
    zero-width interval: callers decide how many pairs they trust.
    """
    b, c = _positive("base", base), _positive("cand", cand)
    if b.shape != c.shape:
        raise ValueError(f"base and cand must pair up: {b.size} vs {c.size} values")
    mean, (lo, hi) = bootstrap_mean_ci(np.log(c) - np.log(b), n_boot=n_boot, seed=seed, level=level)
    return float(np.exp(mean)), (float(np.exp(lo)), float(np.exp(hi)))


def bootstrap_mean_ci(
    x: ArrayLike, n_boot: int = 2000, seed: int = 0, *, level: float = 0.95
) -> tuple[float, tuple[float, float]]:
    """Mean of x and its seeded percentile-bootstrap CI (resample x with replacement n_boot times)."""
    v = np.asarray(x, dtype=np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("the bootstrap needs at least one finite value")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1 (got {n_boot}, {level})")
    n = v.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunks keep the (chunk, n) index matrix small for workloads of many prompts.
    chunk = max(1, min(n_boot, 2_000_000 // n))
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))  # (m, n)
        means[start : start + m] = v[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), (float(lo), float(hi))


def _average_ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n with ties sharing their mean rank; also the size of each tie group."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    # Start index of each run of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, s.size])
    mean_rank = starts + (sizes + 1) / 2.0  # 1-based average rank of each run
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(mean_rank, sizes)
    return ranks, sizes


def mann_whitney_p(x: ArrayLike, y: ArrayLike) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation).

    U1 = R1 - n1(n1+1)/2, mean n1 n2 / 2, variance
    n1 n2 / 12 * ((n+1) - sum(t^3 - t) / (n(n-1))) over tie groups of size t,
    z = (|U1 - mean| - 1/2) / sd, p = erfc(z / sqrt 2). Exact small-sample
    tables are not used: below ~8 values per side the p-value is approximate.
    All values tied -> p = 1.
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("Mann-Whitney needs at least one value on each side")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("Mann-Whitney needs finite values")
    n1, n2 = a.size, b.size
    n = n1 + n2
    ranks, ties = _average_ranks(np.concatenate([a, b]))
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    tie_term = float(np.sum(ties**3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if var <= 0:
        return 1.0
    z = max(0.0, abs(u1 - n1 * n2 / 2.0) - 0.5) / math.sqrt(var)
    return float(min(1.0, math.erfc(z / math.sqrt(2.0))))


def describe(x: ArrayLike) -> dict[str, float | int | None]:
    """count, avg, min, max, p50, p90, p99 and std of a sample, as serving benchmarks report it.

    Conventions of `vllm bench serve` (vllm/benchmarks/serve.py) and AIPerf
    (aiperf/metrics/metric_dicts.py, `to_result`): percentiles by numpy's
    default linear interpolation, std the population one (ddof 0). Every
    field but count is None for no values (JSON-ready: no NaN).
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        return {"count": 0, **dict.fromkeys(("avg", "min", "max", "p50", "p90", "p99", "std"))}
    if not np.all(np.isfinite(a)):
        raise ValueError("describe needs finite values")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"count": int(a.size), "avg": float(a.mean()), "min": float(a.min()), "max": float(a.max()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "std": float(a.std())}


def summarize(x: ArrayLike) -> dict[str, float | int | None]:
    """n, mean, median, min, max, and cv = sample std (ddof 1) / mean.

    cv is None for fewer than two values or a zero mean; every field but n is
    None for no values (JSON-ready: no NaN).
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None, "cv": None}
    if not np.all(np.isfinite(a)):
        raise ValueError("summarize needs finite values")
    mean = float(a.mean())
    cv = float(a.std(ddof=1) / abs(mean)) if a.size > 1 and mean != 0 else None
    return {
        "n": int(a.size),
        "mean": mean,
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "cv": cv,
    }
