"""Comparing two benchmark runs: what changed, and is the change real?

Pure logic over the files of DESIGN.md section 8: `results.json` for the run
level numbers, `queries.jsonl` for paired per-prompt statistics. No typer, no
rich; `hedgespec compare` and CI scripts call these functions.

Significance, per metric:
- MAT and acceptance rate at T = 0: greedy decoding is deterministic, so any
  change is significant.
- speedup_vs_ar, eval_overhead_frac (and MAT, acceptance rate at T > 0): the
  metric per queries.jsonl line, lines matched on (method, query_id, repeat);
  a prompt's repeats are combined by geometric mean so that the bootstrap
  resamples prompts, the independent unit. Significant when the 95% CI of the
  geometric-mean ratio cand/base excludes 1. With fewer than two paired
  prompts: Mann-Whitney over the unpaired lines (the repeats), p < 0.05.
  speedup_vs_ar per line is the method's tokens/s over `ar`'s on the same
  prompt and repeat of the same run: bench runs every method on a prompt
  before the next prompt, so a drift of the whole machine cancels in it.
- Timing metrics (tokens_per_s, speedup_vs_ar, eval_overhead_frac): the
  paired bootstrap sees prompt-to-prompt noise, not what moves a whole run:
  a machine drift shifts every prompt's tokens/s alike, and even the
  within-run ratio to `ar` moved by up to 9.5% between identical runs of
  hedgespec on the 2-core CI machine (benchmarks/gate_noise.py). So a timing
  change is significant only when its CI excludes no change and the change
  (the paired geometric mean) passes the drift band of a NoiseModel:
  calibrated from identical runs (`calibrate_noise`, `hedgespec calibrate`)
  or, without one, DEFAULT_DRIFT.
- Runs without per-query lines: speedup_vs_ar's run-level CIs must not
  overlap (conservative); anything else without data: significant None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hedgespec_cli.errors import ConfigError, RunDirError
from hedgespec_cli.report import stats
from hedgespec_cli.rundir import SCHEMA, load_results, read_jsonl
from hedgespec_cli.selection.base import AR


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _ratio(num: Any, den: Any) -> float | None:
    n, d = _number(num), _number(den)
    return None if n is None or not d else n / d


def _eval_overhead(q: dict[str, Any]) -> float | None:
    """(evaluate + learn) / wall of one query, as the run-level eval_overhead_frac."""
    phase = q.get("phase_ms")
    if not isinstance(phase, dict):
        return None
    spent = (_number(phase.get("evaluate")) or 0.0) + (_number(phase.get("learn")) or 0.0)
    return _ratio(spent, 1e3 * (_number(q.get("wall_s")) or 0.0))


def _tokens_per_s(q: dict[str, Any]) -> float | None:
    return _number(q.get("tokens_per_s"))


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    bigger_is_better: bool
    # The metric for one queries.jsonl line, for paired tests; None: no per-query form.
    per_query: Callable[[dict[str, Any]], float | None] | None
    # Per line, divide by `ar`'s value on the same prompt and repeat of the same run.
    relative_to_ar: bool = False
    # A timing metric: what moves a whole run (machine drift, run-level effects) moves it.
    drifts: bool = False


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("tokens_per_s", "tokens/s", True, _tokens_per_s, drifts=True),
        Metric("mat", "tokens/round", True, lambda q: _number(q.get("mat"))),
        Metric("acceptance_rate", "fraction", True, lambda q: _ratio(q.get("accepted"), q.get("drafted"))),
        Metric("eval_overhead_frac", "fraction", False, _eval_overhead, drifts=True),
        Metric("speedup_vs_ar", "x", True, _tokens_per_s, relative_to_ar=True, drifts=True),
    )
}
ALIASES = {"speedup": "speedup_vs_ar", "tps": "tokens_per_s"}
ENV_KEYS = ("python", "torch", "transformers", "device_names")
DETERMINISTIC_AT_T0 = frozenset({"mat", "acceptance_rate"})
MIN_PAIRS = 2  # a bootstrap over one prompt has zero width: never "significant"
ALPHA = 0.05
# Without a calibration, timing changes within these bands are drift: about the
# largest change between identical runs seen on the project's 2-core CI machine
# (tokens/s 14% between back-to-back runs on a shared machine; hedgespec's
# speedup vs ar 9.5%, its eval overhead fraction 10% on a quiet one;
# benchmarks/gate_noise.py; README "Regression gates").
DEFAULT_DRIFT = {"tokens_per_s": 0.15, "speedup_vs_ar": 0.10, "eval_overhead_frac": 0.15}
NOISE_SCHEMA = "hedgespec.noise/2"


@dataclass(frozen=True)
class NoiseModel:
    """How far identical code moves each timing metric of each method on this machine (relative change).

    A timing change is significant only when its paired 95% CI excludes 0
    (prompt-to-prompt noise) and the change passes +-band (what moves a whole
    run: the machine's drift, run-level effects).
    band: {metric: {method: b}}; default: {metric: b} for methods not calibrated.
    """

    band: dict[str, dict[str, float]]
    default: dict[str, float]
    source: str
    profile: str | None = None  # what the calibration ran on; None: not calibrated
    workload: str | None = None

    def for_metric(self, metric: str, method: str) -> float:
        return self.band.get(metric, {}).get(method, self.default.get(metric, 0.0))


DEFAULT_NOISE = NoiseModel(
    {}, dict(DEFAULT_DRIFT),
    "default drift bands (not calibrated): " + ", ".join(f"{k} {v:.0%}" for k, v in DEFAULT_DRIFT.items()),
)


@dataclass(frozen=True)
class RunInfo:
    path: str
    run_id: str | None
    created_utc: str | None
    profile: str | None
    workload: str | None
    complete: bool | None
    valid: bool | None


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one method, base vs cand.

    change: cand / base - 1 of the run-level values. ci95: the paired CI as a
    relative change (lo, hi), when a paired test ran. significant: None when
    no test applies.
    """

    method: str
    metric: str
    unit: str
    bigger_is_better: bool
    base: float | None
    cand: float | None
    change: float | None
    ci95: tuple[float, float] | None
    test: str
    p_value: float | None
    n: int | None
    significant: bool | None

    @property
    def worse(self) -> bool:
        """The change goes the wrong way for this metric."""
        if self.change is None:
            return False
        return self.change < 0 if self.bigger_is_better else self.change > 0


@dataclass(frozen=True)
class Comparison:
    base: RunInfo
    cand: RunInfo
    noise: str  # where the tokens/s drift band comes from
    forced: bool
    differences: tuple[str, ...]  # what differed (only non-empty when forced)
    warnings: tuple[str, ...]
    deltas: tuple[MetricDelta, ...]
    only_in_base: tuple[str, ...]
    only_in_cand: tuple[str, ...]


@dataclass(frozen=True)
class FailRule:
    metric: str
    threshold: float  # relative change; negative: fail below it, positive: above it


@dataclass(frozen=True)
class Failure:
    rule: FailRule
    delta: MetricDelta

    def describe(self) -> str:
        d = self.delta
        why = "significant" if d.significant else "untested: no data for a test"
        return f"{d.method} {d.metric} {d.change:+.1%} beyond {self.rule.threshold:+.1%} ({why}, {d.test})"


# -- reading --------------------------------------------------------------------


def _run_dir(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if p.suffix == ".json" and not p.is_dir() else p


def _load_queries(run_dir: Path, results: dict[str, Any]) -> list[dict[str, Any]] | None:
    name = _get(results, "artifacts", "queries") or "queries.jsonl"
    file = run_dir / name
    return read_jsonl(file) if file.is_file() else None


def _info(path: Path, r: dict[str, Any]) -> RunInfo:
    return RunInfo(
        path=str(path),
        run_id=r.get("run_id"),
        created_utc=r.get("created_utc"),
        profile=_get(r, "config", "profile", "name"),
        workload=_get(r, "config", "workload", "name"),
        complete=r.get("complete"),
        valid=_get(r, "validity", "valid"),
    )


def _temperature(r: dict[str, Any]) -> float | None:
    t = _get(r, "config", "temperature")
    return _number(t if t is not None else _get(r, "config", "profile", "temperature"))


def _differences(b: dict[str, Any], c: dict[str, Any]) -> list[str]:
    """What must match for a comparison to mean anything."""
    checks = [("schema", ("schema",)), ("profile", ("config", "profile", "name")),
              ("workload", ("config", "workload", "name")), ("prompts", ("config", "bench", "prompts")),
              ("max_new_tokens", ("config", "max_new_tokens"))]
    checks += [(f"env.{k}", ("env", k)) for k in ENV_KEYS]
    return [f"{label} {_get(b, *keys)!r} vs {_get(c, *keys)!r}"
            for label, keys in checks if _get(b, *keys) != _get(c, *keys)]


def _metric_value(block: Any, metric: str) -> float | None:
    value = _get(block, metric)
    if metric == "speedup_vs_ar" and isinstance(value, dict):
        value = value.get("geomean")
    return _number(value)


# -- testing ----------------------------------------------------------------------


def _per_line(
    queries: list[dict[str, Any]] | None, method: str, metric: Metric
) -> dict[tuple[str, int], float]:
    """(query_id, repeat) -> positive value of the metric, warm-up lines excluded.

    relative_to_ar metrics divide by `ar`'s value on the same (query_id, repeat).
    """
    value = metric.per_query
    if value is None:
        return {}

    def lines(name: str) -> dict[tuple[str, int], float]:
        out: dict[tuple[str, int], float] = {}
        for q in queries or ():
            repeat = q.get("repeat", 0)
            if q.get("method") != name or q.get("warmup"):
                continue
            v = value(q)
            if v is None or v <= 0:
                continue
            if isinstance(repeat, int) and not isinstance(repeat, bool):  # else: not a line bench wrote
                out[(str(q.get("query_id")), repeat)] = v
        return out

    mine = lines(method)
    if not metric.relative_to_ar:
        return mine
    ar = lines(AR)
    return {key: v / ar[key] for key, v in mine.items() if key in ar}


def _paired_test(
    base: dict[tuple[str, int], float], cand: dict[tuple[str, int], float], n_boot: int, seed: int,
    band: float = 0.0,
) -> tuple[str, tuple[float, float] | None, float | None, int | None, bool | None]:
    """-> (test, ci95 of the relative change, p, n, significant).

    band: the relative change that identical code reaches between runs; a
    change is significant only when its CI lies entirely beyond +-band.
    """
    beyond = f" beyond +-{band:.1%} drift" if band else ""
    pairs = stats.per_prompt_pairs({key: (base[key], cand[key]) for key in base.keys() & cand.keys()})  # (Q, 2)
    if len(pairs) >= MIN_PAIRS:
        g, (lo, hi) = stats.paired_geomean_ratio(pairs[:, 0], pairs[:, 1], n_boot=n_boot, seed=seed)
        lo, hi = lo - 1.0, hi - 1.0
        # The CI excludes no change (prompt noise), and the change itself passes the band (run-level
        # drift): the band is a bound on the change between identical runs, so it is not added to the CI.
        return "paired-bootstrap" + beyond, (lo, hi), None, len(pairs), bool((hi < 0 or lo > 0) and abs(g - 1.0) > band)
    if len(base) >= 2 and len(cand) >= 2:
        p = stats.mann_whitney_p(list(base.values()), list(cand.values()))
        shift = stats.geomean(list(cand.values())) / stats.geomean(list(base.values())) - 1.0
        return "mann-whitney" + beyond, None, p, len(base) + len(cand), bool(p < ALPHA and abs(shift) > band)
    return "none", None, None, None, None


def _delta(
    method: str,
    metric: Metric,
    b: dict[str, Any],
    c: dict[str, Any],
    qb: list[dict[str, Any]] | None,
    qc: list[dict[str, Any]] | None,
    greedy: bool,
    n_boot: int,
    seed: int,
    noise: NoiseModel,
) -> MetricDelta:
    bv = _metric_value(_get(b, "methods", method), metric.name)
    cv = _metric_value(_get(c, "methods", method), metric.name)
    change = None
    if bv is not None and cv is not None:
        change = cv / bv - 1.0 if bv != 0 else (0.0 if cv == 0 else None)
    test, ci, p, n, sig = "none", None, None, None, None
    base_lines, cand_lines = _per_line(qb, method, metric), _per_line(qc, method, metric)
    if bv is None or cv is None:
        test = "missing"
    elif greedy and metric.name in DETERMINISTIC_AT_T0:
        test, sig = "deterministic (T=0)", not math.isclose(bv, cv, rel_tol=1e-9, abs_tol=1e-12)
    elif base_lines or cand_lines or not metric.relative_to_ar:
        band = noise.for_metric(metric.name, method) if metric.drifts else 0.0
        test, ci, p, n, sig = _paired_test(base_lines, cand_lines, n_boot, seed, band)
    else:  # speedup without per-query lines: the runs' own CIs
        bci = _get(b, "methods", method, "speedup_vs_ar", "ci95")
        cci = _get(c, "methods", method, "speedup_vs_ar", "ci95")
        if _is_interval(bci) and _is_interval(cci):
            test, sig = "ci-overlap", bool(cci[0] > bci[1] or cci[1] < bci[0])
    return MetricDelta(
        method, metric.name, metric.unit, metric.bigger_is_better, bv, cv, change, ci, test, p, n, sig
    )


def _is_interval(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(x) is not None for x in v)


# -- public API -------------------------------------------------------------------


def _same_run(bdir: Path, cdir: Path, b: dict[str, Any], c: dict[str, Any]) -> bool:
    """One directory, or a copy of one run (same run id and creation time)."""
    if bdir.resolve() == cdir.resolve():
        return True
    same_id = (b.get("run_id"), b.get("created_utc")) == (c.get("run_id"), c.get("created_utc"))
    return b.get("run_id") is not None and same_id


def compare_runs(
    base_dir: str | Path, cand_dir: str | Path, *, force: bool = False, n_boot: int = 2000, seed: int = 0,
    noise: NoiseModel = DEFAULT_NOISE,
) -> Comparison:
    """Compare the candidate run with the base run, metric by metric and method by method.

    Raises RunDirError when a run is unreadable, when base and candidate are
    the same run, or when schema, profile, workload, prompt limit,
    max_new_tokens or environment differ and force is False.
    """
    b, c = load_results(base_dir), load_results(cand_dir)
    bdir, cdir = _run_dir(base_dir), _run_dir(cand_dir)
    if _same_run(bdir, cdir, b, c):
        raise RunDirError(
            f"{cand_dir} and {base_dir} are the same run (run id {c.get('run_id')!r}): comparing a run with "
            "itself always passes, so a CI job doing it has a bug; compare against a base run from another commit"
        )
    diffs = _differences(b, c)
    if diffs and not force:
        raise RunDirError(
            f"cannot compare {cand_dir} with {base_dir}: {'; '.join(diffs)}; "
            "compare runs of the same profile, workload, prompts, max_new_tokens and environment, or pass --force"
        )
    qb, qc = _load_queries(bdir, b), _load_queries(cdir, c)
    warnings = []
    for label, d, r, q in (("base", bdir, b, qb), ("candidate", cdir, c, qc)):
        if r.get("complete") is False:
            warnings.append(f"{label} run {d} is incomplete (interrupted): it covers finished queries only")
        if _get(r, "validity", "valid") is False:
            warnings.append(f"{label} run {d} failed its validity checks: {_failed_constraints(r)}")
        if q is None:
            warnings.append(f"no queries.jsonl in {d}: no paired per-prompt statistics")
    keys = [("config", k) for k in ("temperature", "top_p", "K", "tree", "seed", "device", "dtype", "drafter_dtype",
                                    "counterfactual")] + [("config", "bench", "threads")]
    for path in keys:
        vb, vc = _get(b, *path), _get(c, *path)
        if vb != vc:
            warnings.append(f"{'.'.join(path)} differs: {vb!r} vs {vc!r}")
    greedy = _temperature(b) == 0.0 and _temperature(c) == 0.0
    bm, cm = _get(b, "methods") or {}, _get(c, "methods") or {}
    common = [m for m in bm if m in cm]
    deltas = tuple(
        _delta(m, metric, b, c, qb, qc, greedy, n_boot, seed, noise)
        for m in common
        for metric in METRICS.values()
    )
    for key, measured in (("profile", noise.profile), ("workload", noise.workload)):
        used = _get(b, "config", key, "name")
        if measured is not None and used != measured:
            warnings.append(f"the drift band was calibrated on {key} {measured!r}, these runs use {used!r}")
    return Comparison(
        base=_info(bdir, b),
        cand=_info(cdir, c),
        noise=noise.source,
        forced=force and bool(diffs),
        differences=tuple(diffs),
        warnings=tuple(warnings),
        deltas=deltas,
        only_in_base=tuple(m for m in bm if m not in cm),
        only_in_cand=tuple(m for m in cm if m not in bm),
    )


# Two-sided 97.5% quantiles of Student's t by degrees of freedom (1..30); beyond 30, 2.0 (1.96 rounded up).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def _run_levels(lines: list[dict[tuple[str, int], float]]) -> np.ndarray | None:
    """(runs,) log geometric mean per run over the (prompt, repeat) lines every run has; None if none."""
    common = set.intersection(*(set(x) for x in lines)) if lines else set()
    if not common:
        return None
    keys = sorted(common)
    return np.array([np.mean(np.log([x[k] for k in keys])) for x in lines])


def calibrate_noise(run_dirs: list[str | Path]) -> dict[str, Any]:
    """The drift bands of identical runs, per timing metric and method: the payload of a noise file.

    Each run's level of a metric is its geometric mean over the prompts all
    runs share; what moves a whole run is the spread of these levels, s (the
    sd of their logs, k - 1 degrees of freedom). Two future runs of identical
    code differ in log level by N(0, 2 s^2), so the band is the 95% prediction
    bound of that difference, exp(t_{0.975, k-1} sqrt(2) s) - 1: Student's t
    pays for estimating s from few runs (k = 3: t = 4.30; k = 8: 2.36). Runs
    taken back to back share the machine's state of the moment; calibrate on
    runs spread over the time a CI gate spans, or the band is too narrow.
    """
    if len(run_dirs) < 3:
        raise ConfigError("calibration needs at least three runs of the same code (a spread needs two "
                          "degrees of freedom to mean much); run `hedgespec bench` several times with the same "
                          "settings")
    runs = [(_run_dir(d), load_results(d)) for d in run_dirs]
    for i, (d, r) in enumerate(runs):
        for d0, r0 in runs[:i]:
            if _same_run(d0, d, r0, r):
                raise RunDirError(f"{d} and {d0} are the same run; calibrate on separate runs")
        diffs = _differences(runs[0][1], r)
        if diffs:
            raise RunDirError(f"cannot calibrate with {d} and {runs[0][0]}: {'; '.join(diffs)}; "
                              "calibrate on runs of the same profile, workload, prompts and environment")
    queries = [_load_queries(d, r) for d, r in runs]
    if any(q is None for q in queries):
        raise RunDirError("calibration needs each run's queries.jsonl (per-prompt timings)")
    methods = [m for m in (_get(runs[0][1], "methods") or {}) if all(m in (_get(r, "methods") or {}) for _, r in runs)]
    k = len(runs)
    t = _T975[k - 2] if k - 1 <= len(_T975) else 2.0
    band: dict[str, dict[str, float]] = {}
    largest: dict[str, dict[str, float]] = {}
    for metric in (m for m in METRICS.values() if m.drifts):
        for m in methods:
            if metric.relative_to_ar and m == AR:
                continue  # ar over ar is 1 by definition
            levels = _run_levels([_per_line(q, m, metric) for q in queries])
            if levels is None:
                continue
            s = float(np.std(levels, ddof=1))
            band.setdefault(metric.name, {})[m] = math.expm1(t * math.sqrt(2.0) * s)
            largest.setdefault(metric.name, {})[m] = math.expm1(float(levels.max() - levels.min()))
    if not band:
        raise RunDirError("no method has per-prompt timings shared by every run; nothing to calibrate")
    r0 = runs[0][1]
    return {
        "schema": NOISE_SCHEMA,
        "definition": "per timing metric and method, b = exp(t_{0.975,k-1} sqrt(2) s) - 1 with s the sd of "
                      "the k runs' log geometric means over their common prompts: the 95% prediction bound "
                      "of the change between two runs of identical code",
        "runs": [str(d) for d, _ in runs],
        "t_quantile": t,
        "profile": _get(r0, "config", "profile", "name"),
        "workload": _get(r0, "config", "workload", "name"),
        "env": {k: _get(r0, "env", k) for k in ENV_KEYS},
        "band": band,
        "largest_change": largest,
    }


def load_noise(path: str | Path) -> NoiseModel:
    """A noise file written by `hedgespec calibrate` -> NoiseModel (uncalibrated methods: the metric's largest band)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--noise {path}: no such file; write one with `hedgespec calibrate RUN RUN ... "
                          f"-o {path}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--noise {path}: not a readable JSON noise file ({err}); "
                          "write one with `hedgespec calibrate`") from None
    band = data.get("band") if isinstance(data, dict) else None
    ok = (isinstance(data, dict) and data.get("schema") == NOISE_SCHEMA and isinstance(band, dict) and band
          and all(k in METRICS and isinstance(v, dict) and v and all(_number(b) is not None and b >= 0
                                                                     for b in v.values())
                  for k, v in band.items()))
    if not ok or not isinstance(band, dict):
        raise ConfigError(f"--noise {path}: not a {NOISE_SCHEMA} file with a non-negative band per metric "
                          "and method; write one with `hedgespec calibrate`")
    bands = {k: {str(m): float(b) for m, b in v.items()} for k, v in band.items()}
    return NoiseModel(bands, {k: max(v.values()) for k, v in bands.items()},
                      f"drift bands calibrated from {len(data.get('runs') or ())} identical runs ({path})",
                      profile=data.get("profile"), workload=data.get("workload"))


def _failed_constraints(r: dict[str, Any]) -> str:
    cons = _get(r, "validity", "constraints") or {}
    failed = [k for k, v in cons.items() if v is False]
    return ", ".join(failed) or "see validity in results.json"


_FAIL_ON = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*(%?)\s*$")


def parse_fail_on(spec: str) -> tuple[str, float]:
    """'tokens_per_s:-5%' -> ('tokens_per_s', -0.05). A fraction without % also works.

    The sign says which way is a regression: negative for bigger-is-better
    metrics (fail below), positive for smaller-is-better ones (fail above).
    """
    m = _FAIL_ON.match(spec)
    if m is None:
        raise ConfigError(f"--fail-on {spec!r} is not METRIC:THRESHOLD; write e.g. tokens_per_s:-5%")
    name, value = ALIASES.get(m.group(1), m.group(1)), float(m.group(2))
    if name not in METRICS:
        raise ConfigError(f"--fail-on {spec!r}: unknown metric {m.group(1)!r}; use one of {', '.join(METRICS)}")
    if not m.group(3):
        raise ConfigError(f"--fail-on {spec!r}: give the threshold as a relative change in percent, "
                          f"e.g. {m.group(1)}:{m.group(2)}%")
    threshold = value / 100.0
    metric = METRICS[name]
    if metric.bigger_is_better and threshold <= -1.0:
        raise ConfigError(f"--fail-on {spec!r}: {name} cannot fall by 100% or more, so this gate "
                          f"would never trip; write e.g. {name}:-5%")
    if (metric.bigger_is_better and threshold > 0) or (not metric.bigger_is_better and threshold < 0):
        sign, word = ("-", "bigger") if metric.bigger_is_better else ("+", "smaller")
        raise ConfigError(
            f"--fail-on {spec!r}: {name} is {word}-is-better, so its regression threshold "
            f"must be {sign}X%, e.g. {name}:{sign}5%"
        )
    return name, threshold


def gate_notes(rules: list[FailRule], noise: NoiseModel) -> list[str]:
    """Gates that a drift band makes stricter than written: a timing change within the band is never significant."""
    notes = []
    for rule in rules:
        band = noise.default.get(rule.metric) if METRICS[rule.metric].drifts else None
        if band and abs(rule.threshold) < band:
            notes.append(f"--fail-on {rule.metric}:{rule.threshold:+.0%} is within the {band:.0%} drift band: "
                         f"it trips only on changes beyond {band:.0%} (calibrate the band with `hedgespec calibrate`)")
    return notes


def find_failures(comparison: Comparison, rules: list[FailRule]) -> list[Failure]:
    """Changes beyond a rule's threshold that are significant or cannot be tested.

    An untestable change (no per-prompt data) fails on the threshold alone, so
    that a gate never passes silently for lack of data.
    """
    out = []
    for rule in rules:
        for d in comparison.deltas:
            if d.metric != rule.metric or d.change is None or not d.worse or d.significant is False:
                continue
            if d.ci95 is not None and (d.ci95[0] > 0 if d.bigger_is_better else d.ci95[1] < 0):
                continue  # the run totals moved the wrong way, but the paired prompts say better
            if abs(d.change) > abs(rule.threshold):
                out.append(Failure(rule, d))
    return out


def build_payload(comparisons: list[Comparison], rules: list[FailRule]) -> dict[str, Any]:
    """Everything `hedgespec compare` reports, once: JSON output and tables both read it."""
    entries = [to_payload(c, find_failures(c, rules)) for c in comparisons]
    return {
        "schema": "hedgespec.compare/1",
        "run_schema": SCHEMA,
        "fail_on": [asdict(r) for r in rules],
        "failed": any(e["failures"] for e in entries),
        "comparisons": entries,
    }


def to_payload(comparison: Comparison, failures: list[Failure] | None = None) -> dict[str, Any]:
    """The JSON-ready form of one comparison."""
    return {
        "base": asdict(comparison.base),
        "cand": asdict(comparison.cand),
        "noise": comparison.noise,
        "forced": comparison.forced,
        "differences": list(comparison.differences),
        "warnings": list(comparison.warnings),
        "only_in_base": list(comparison.only_in_base),
        "only_in_cand": list(comparison.only_in_cand),
        "metrics": [asdict(d) for d in comparison.deltas],
        "failures": [
            {"method": f.delta.method, "metric": f.delta.metric, "change": f.delta.change,
             "threshold": f.rule.threshold, "significant": f.delta.significant, "message": f.describe()}
            for f in failures or ()
        ],
    }


def to_github_benchmark(
    source: Comparison | dict[str, Any], *, bigger_is_better: bool = True, label: str | None = None
) -> list[dict[str, Any]]:
    """Entries for github-action-benchmark's customBiggerIsBetter (or ...SmallerIsBetter) tool.

    source: a Comparison (the candidate's values, base in `extra`) or a loaded
    results.json. Only metrics of the requested direction are listed, since
    the action reads one direction per file. label prefixes each name.
    """
    prefix = f"{label} " if label else ""
    out: list[dict[str, Any]] = []
    if isinstance(source, Comparison):
        for d in source.deltas:
            if d.bigger_is_better != bigger_is_better or d.cand is None:
                continue
            extra = f"base {source.base.run_id or source.base.path}: {d.base}"
            if d.change is not None:
                extra += f" ({d.change:+.1%}, {d.test}, significant={d.significant})"
            out.append({"name": f"{prefix}{d.method} {d.metric}", "unit": d.unit, "value": d.cand, "extra": extra})
        return out
    for method, block in (_get(source, "methods") or {}).items():
        for metric in METRICS.values():
            value = _metric_value(block, metric.name)
            if metric.bigger_is_better == bigger_is_better and value is not None:
                out.append({"name": f"{prefix}{method} {metric.name}", "unit": metric.unit, "value": value})
    return out
