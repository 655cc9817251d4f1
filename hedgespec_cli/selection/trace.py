"""Gamma traces: every drafter's per-position gamma for a set of decoded queries.

A trace lets `replay` run any selector offline, exactly as the live engine
would at T = 0 (see replay.py). JSONL, one header line, then one line per query:

    {"schema": "hedgespec.trace/1", "K": 5, "temperature": 0.0, "max_new_tokens": 128,
     "drafters": ["generic", "code"], "drafter_domains": [null, "code"]}
    {"id": "code-0007", "domain": "code", "tokens": [17, 4, ...], "gamma": [[1.0, 0.0], ...]}

`gamma` has one row per generated token (L rows for L tokens) and one column
per drafter, in `drafters` order.

Optional fields, written by `bench` so that replay can say what it reproduces:
  header `seed`: the run seed; each query's selector is seeded from it and the
      query's `index` (its place in the workload) as the live bench seeds it
      (selection/seeding.py), so argmax ties break the same way;
  header `counterfactual`: per drafter, how its gamma was scored (COUNTERFACTUALS);
  query `source`: the method whose run recorded the query's gamma;
  query `gamma_depth`: (L, K, N) gamma by the depth a position is drafted at
      (EAGLE-3 heads in the `exact` mode; estimators.py), `gamma` being depth 1.
A trace without `counterfactual` makes no exactness claim.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hedgespec_cli.errors import HedgespecError
from hedgespec_cli.files import atomic_write_text, output_file

SCHEMA = "hedgespec.trace/1"

# How a drafter's gamma at a position was scored, and whether it is the exact counterfactual
# "a round started here" (DESIGN.md section 5).
COUNTERFACTUALS = {
    "positional": True,   # a plain LM: q at a position depends only on the committed prefix
    "exact": True,        # EAGLE-3: per start, the chain the head would have drafted (query gamma_depth)
    "depth1": False,      # EAGLE-3: every position scored from target features (optimistic)
    "aligned": False,     # EAGLE-3: scored along the actual round from its start
}


class TraceError(HedgespecError):
    """A trace file is missing, malformed or inconsistent."""


class Recorded(Protocol):
    """What a trace keeps of a decoded query (decoding/engine.py QueryRecord)."""

    output_ids: list[int]
    gamma: np.ndarray | None
    gamma_depth: np.ndarray | None
    prompt_gamma: np.ndarray | None


@dataclass(frozen=True)
class TraceQuery:
    """One decoded query. gamma: (L, N) float64, one row per generated token."""

    id: str
    domain: str | None
    tokens: tuple[int, ...]
    gamma: np.ndarray
    index: int | None = None  # the prompt's place in the workload (selector seeding)
    source: str | None = None  # the method whose run recorded gamma
    gamma_depth: np.ndarray | None = None  # (L, K, N) by drafting depth; None: gamma at every depth
    prompt_gamma: np.ndarray | None = None  # (P-1, N) on the prompt, teacher-forced (Engine._prompt_gamma)

    @property
    def acceptance(self) -> np.ndarray:
        """What the estimators read: gamma by depth when recorded, else gamma."""
        return self.gamma if self.gamma_depth is None else self.gamma_depth

    @classmethod
    def of_record(
        cls, id: str, domain: str | None, record: Recorded, index: int | None = None, source: str | None = None
    ) -> TraceQuery:
        """A decoded query's trace entry (the engine's QueryRecord of a full-information run)."""
        if record.gamma is None:
            raise ValueError(f"query {id!r} was decoded without full information: it has no gamma to trace")
        return cls(id, domain, tuple(record.output_ids), record.gamma, index, source, record.gamma_depth,
                   record.prompt_gamma)

    def __post_init__(self) -> None:
        if self.gamma_depth is not None:
            d = np.asarray(self.gamma_depth, dtype=np.float64)
            object.__setattr__(self, "gamma_depth", d)
            shaped = d.ndim == 3 and d.shape[0] == len(self.tokens)
            if not shaped or not np.all(np.isfinite(d)) or d.min() < 0 or d.max() > 1:
                raise TraceError(f"query {self.id!r}: gamma_depth must be (L, K, N) values in [0, 1] with "
                                 f"L = {len(self.tokens)}, got shape {d.shape}; regenerate the trace")
        if self.prompt_gamma is not None:
            pg = np.asarray(self.prompt_gamma, dtype=np.float64)
            object.__setattr__(self, "prompt_gamma", pg)
            n = np.shape(self.gamma)[-1] if np.ndim(self.gamma) == 2 else None
            shaped = pg.ndim == 2 and pg.shape[1] == n
            if not shaped or not np.all(np.isfinite(pg)) or (pg.size and (pg.min() < 0 or pg.max() > 1)):
                raise TraceError(f"query {self.id!r}: prompt_gamma must be (P-1, N) values in [0, 1] with the "
                                 f"N of gamma, got shape {pg.shape}; regenerate the trace")
        g = np.asarray(self.gamma, dtype=np.float64)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "tokens", tuple(int(t) for t in self.tokens))
        where = f"query {self.id!r}"
        if not self.tokens:
            raise TraceError(f"{where} has no generated tokens; every query needs at least one")
        if g.ndim != 2 or g.shape[0] != len(self.tokens):
            raise TraceError(
                f"{where}: gamma must have one row per generated token ({len(self.tokens)} rows), "
                f"got shape {g.shape}; regenerate the trace"
            )
        if not np.all(np.isfinite(g)) or g.min() < 0 or g.max() > 1:
            raise TraceError(f"{where}: gamma values must be finite and in [0, 1]; regenerate the trace")

    @property
    def L(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Trace:
    """Decoding settings, the drafter pool and the queries, validated on construction."""

    K: int
    temperature: float
    max_new_tokens: int
    drafters: tuple[str, ...]
    drafter_domains: tuple[str | None, ...]
    queries: tuple[TraceQuery, ...]
    tree: dict[str, int] | None = None  # {"top_k", "total_tokens"} when recorded with draft trees
    seed: int | None = None  # the run seed the live selectors were seeded from
    counterfactual: tuple[str, ...] | None = None  # per drafter, a COUNTERFACTUALS key

    def __post_init__(self) -> None:
        if self.counterfactual is not None:
            object.__setattr__(self, "counterfactual", tuple(self.counterfactual))
            if len(self.counterfactual) != len(self.drafters) or not set(self.counterfactual) <= set(COUNTERFACTUALS):
                raise TraceError(
                    f"trace counterfactual must name one of {', '.join(COUNTERFACTUALS)} per drafter, "
                    f"got {list(self.counterfactual)}"
                )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise TraceError(f"trace seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "drafters", tuple(self.drafters))
        object.__setattr__(self, "drafter_domains", tuple(self.drafter_domains))
        object.__setattr__(self, "queries", tuple(self.queries))
        if not isinstance(self.K, int) or self.K < 1:
            raise TraceError(f"trace K must be an integer >= 1, got {self.K!r}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise TraceError(f"trace temperature must be a number >= 0, got {self.temperature!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise TraceError(f"trace max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not self.drafters or len(set(self.drafters)) != len(self.drafters):
            raise TraceError(f"trace drafters must be non-empty and unique, got {list(self.drafters)}")
        if len(self.drafter_domains) != len(self.drafters):
            raise TraceError("trace drafter_domains must have one entry (or null) per drafter")
        if self.tree is not None and not (
            isinstance(self.tree, dict)
            and all(isinstance(self.tree.get(k), int) and self.tree[k] >= 1 for k in ("top_k", "total_tokens"))
        ):
            raise TraceError(f"trace tree must be {{top_k: int >= 1, total_tokens: int >= 1}}, got {self.tree!r}")
        ids = set()
        for q in self.queries:
            if q.gamma.shape[1] != len(self.drafters):
                raise TraceError(
                    f"query {q.id!r}: gamma has {q.gamma.shape[1]} columns for {len(self.drafters)} drafters"
                )
            if q.gamma_depth is not None and q.gamma_depth.shape[1:] != (self.K, len(self.drafters)):
                raise TraceError(f"query {q.id!r}: gamma_depth must be (L, K={self.K}, N={len(self.drafters)}), "
                                 f"got {q.gamma_depth.shape}")
            if self.counterfactual and "exact" in self.counterfactual and q.gamma_depth is None:
                raise TraceError(f"query {q.id!r}: a drafter scored in the exact mode needs gamma_depth")
            if q.L > self.max_new_tokens:
                raise TraceError(f"query {q.id!r}: {q.L} tokens exceed max_new_tokens {self.max_new_tokens}")
            if q.id in ids:
                raise TraceError(f"duplicate query id {q.id!r}; query ids must be unique")
            ids.add(q.id)

    @property
    def N(self) -> int:
        return len(self.drafters)

    def exact_counterfactual(self, drafters: set[int] | None = None) -> bool:
        """True when gamma is the exact counterfactual for these drafters (all by default)."""
        if self.counterfactual is None:
            return False
        cols = range(self.N) if drafters is None else drafters
        return all(COUNTERFACTUALS[self.counterfactual[j]] for j in cols)

    def header(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "K": self.K,
            "temperature": float(self.temperature),
            "max_new_tokens": self.max_new_tokens,
            "drafters": list(self.drafters),
            "drafter_domains": list(self.drafter_domains),
            **({"tree": dict(self.tree)} if self.tree else {}),
            **({"seed": self.seed} if self.seed is not None else {}),
            **({"counterfactual": list(self.counterfactual)} if self.counterfactual else {}),
        }


def query_record(q: TraceQuery) -> dict[str, Any]:
    """One query as its JSON line's dict."""
    out = {"id": q.id, "domain": q.domain, "tokens": list(q.tokens), "gamma": q.gamma.tolist()}
    if q.index is not None:
        out["index"] = q.index
    if q.source is not None:
        out["source"] = q.source
    if q.gamma_depth is not None:
        out["gamma_depth"] = q.gamma_depth.tolist()
    if q.prompt_gamma is not None:
        out["prompt_gamma"] = q.prompt_gamma.tolist()
    return out


def write_trace(path: str | os.PathLike[str], trace: Trace) -> Path:
    """Write the trace as JSONL atomically (a reader never sees half a trace)."""
    path = output_file(path, "trace")
    lines = [json.dumps(trace.header())] + [json.dumps(query_record(q)) for q in trace.queries]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise TraceError(f"{where}: missing field {key!r}")
    return record[key]


def _numbers(value: Any, what: str, shape: str) -> np.ndarray:
    """A JSON list of numbers as a float64 array; TraceError naming `what` (and its `shape`) if it is not one."""
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TraceError(f"{what} must be a rectangular{shape} list of numbers") from None


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and validate a trace; any problem raises TraceError naming the file and line."""
    path = Path(path)
    if path.is_dir() and (path / "trace.jsonl").is_file():  # a bench run directory
        path = path / "trace.jsonl"
    elif path.is_file() and path.name == "results.json" and (path.parent / "trace.jsonl").is_file():
        path = path.parent / "trace.jsonl"
    if not path.is_file():
        raise TraceError(
            f"trace file {path} not found; give a .jsonl trace (a bench run directory's trace.jsonl, "
            "or one written by `hedgespec simulate --save-trace PATH` or `generate --trace PATH`)"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError(f"cannot read trace {path}: {err}") from None
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise TraceError(f"{path}:{lineno}: not valid JSON ({err.msg}); the trace is corrupt") from None
        if not isinstance(record, dict):
            raise TraceError(f"{path}:{lineno}: expected a JSON object")
        records.append((lineno, record))
    if not records:
        raise TraceError(f"{path} is empty; a trace starts with a header line")
    lineno, head = records[0]
    where = f"{path}:{lineno}"
    if head.get("schema") != SCHEMA:
        raise TraceError(f"{where}: schema is {head.get('schema')!r}, expected {SCHEMA!r}; not a hedgespec trace")
    try:
        queries = []
        for lineno, rec in records[1:]:
            where = f"{path}:{lineno}"
            tokens = _field(rec, "tokens", where)
            gamma = _field(rec, "gamma", where)
            if not isinstance(tokens, list) or not isinstance(gamma, list):
                raise TraceError(f"{where}: tokens and gamma must be JSON lists")
            g = _numbers(gamma, f"{where}: gamma", "")
            index = rec.get("index")
            if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
                raise TraceError(f"{where}: index must be an integer >= 0, got {index!r}")
            depth = rec.get("gamma_depth")
            depth = None if depth is None else _numbers(depth, f"{where}: gamma_depth", " (L, K, N)")
            prompt = rec.get("prompt_gamma")
            prompt = None if prompt is None else _numbers(prompt, f"{where}: prompt_gamma", " (P-1, N)")
            queries.append(TraceQuery(str(_field(rec, "id", where)), rec.get("domain"), tokens, g,
                                      index, rec.get("source"), depth, prompt))
        where = f"{path}"
        return Trace(
            K=_field(head, "K", where),
            temperature=_field(head, "temperature", where),
            max_new_tokens=_field(head, "max_new_tokens", where),
            drafters=tuple(_field(head, "drafters", where)),
            drafter_domains=tuple(head.get("drafter_domains") or [None] * len(head.get("drafters", []))),
            queries=tuple(queries),
            tree=head.get("tree"),
            seed=head.get("seed"),
            counterfactual=head.get("counterfactual"),
        )
    except TraceError as err:
        msg = str(err)
        raise TraceError(msg if msg.startswith(str(path)) else f"{where}: {msg}") from None
    except (TypeError, ValueError) as err:
        raise TraceError(f"{where}: malformed trace ({err})") from None


def is_binary(gamma: np.ndarray) -> bool:
    """True when every value is exactly 0 or 1 (gamma at T = 0)."""
    return bool(np.all((gamma == 0) | (gamma == 1)))

