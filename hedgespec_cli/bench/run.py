"""A `hedgespec bench` run: load once, `repeats` passes over prompts x methods, save as it goes.

Models are loaded once and shared by all methods; the passes are loop.py's,
shared with `--sweep-drafters`. Results are appended per query and
`results.json` is rewritten atomically after each prompt, so an interruption
loses nothing that finished (`--resume DIR`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hedgespec_cli.bench.loop import Progress, SilentProgress, run_pass, saved_on_interrupt, warm_up
from hedgespec_cli.bench.query import QueryStep
from hedgespec_cli.bench.settings import BenchSettings, resolve_run, settings_dict, settings_of_run
from hedgespec_cli.config import Profile
from hedgespec_cli.decoding.engine import Engine, QueryRecord
from hedgespec_cli.decoding.settings import DecodeSettings
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.report import summary as S
from hedgespec_cli.report.ecosystem import definitions
from hedgespec_cli.rundir import SCHEMA, RunDir, env_fingerprint
from hedgespec_cli.runner import check_methods, check_router, checked_prompt_ids, open_pool
from hedgespec_cli.selection import REGISTRY, SelectorSpec
from hedgespec_cli.selection.audit import audit, live_arms
from hedgespec_cli.selection.seeding import SelectorBank
from hedgespec_cli.selection.trace import COUNTERFACTUALS, Trace, TraceQuery, read_trace, write_trace
from hedgespec_cli.telemetry import TelemetrySampler
from hedgespec_cli.workloads import Workload

FILES = {
    "config": "config.yaml",
    "env": "env.json",
    "rounds": "rounds.jsonl",
    "queries": "queries.jsonl",
    "telemetry": "telemetry.jsonl",
    "trace": "trace.jsonl",
}


@dataclass(frozen=True)
class Plan:
    """A run resolved and checked without loading a model: settings, profile, prompts, decoding knobs."""

    settings: BenchSettings
    profile: Profile
    workload: Workload
    decode: DecodeSettings

    @classmethod
    def of(cls, settings: BenchSettings) -> Plan:
        settings, profile, workload, decode = resolve_run(settings)
        check_methods(settings.methods, [d.name for d in profile.drafters])
        check_router(settings.methods, profile)
        return cls(settings, profile, workload, decode)


class BenchRun:
    """State of one run directory; `execute` fills it, `finish` summarises it."""

    def __init__(self, plan: Plan, run_dir: RunDir, lines: list[dict],
                 trace: dict[tuple[str, int], TraceQuery]) -> None:
        settings = self.settings = plan.settings
        self.profile, self.workload = plan.profile, plan.workload
        self.dir = run_dir
        self.lines = lines
        self.pool = open_pool(self.profile, device=settings.device, dtype=settings.dtype,
                              drafter_dtype=settings.drafter_dtype)
        # Record what was loaded: Hub ids with their cached paths, auto-detected EAGLE-3 kinds.
        self.profile = replace(self.profile, target=self.pool.target_spec or self.profile.target,
                               drafters=tuple(self.pool.specs))
        self.engine = Engine(self.pool, plan.decode, seed=settings.seed)
        self.ids = checked_prompt_ids(self.engine, self.workload.prompts)
        self._footprint = self.pool.memory()
        # The stacked drafters share their weights with the pool, except the copies of their LM heads: a
        # tied head kept transposed too, and the T = 0 screen's (models/screen.py: bf16, and an untied
        # head's float32 rows).
        self._footprint["stacked_extra_mib"] = sum(getattr(getattr(g, "stack", None), "extra_bytes", 0)
                                                   for g in self.engine.groups) / 2**20
        # NVML samples the run's own GPUs (by UUID), not every GPU of the machine.
        self.sampler = TelemetrySampler(settings.sample_interval, sink=run_dir.file(FILES["telemetry"]),
                                        uuids=_cuda_uuids(self.pool.cuda_devices()))
        self.step = QueryStep(self.engine, settings.seed, trace=trace, energy_mj=self.sampler.energy_mj)
        self.env = env_fingerprint()
        self.started = time.monotonic()
        self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")

    @classmethod
    def open(cls, settings: BenchSettings, resume: Path | None) -> BenchRun:
        plan = Plan.of(settings)  # every check that needs no model, before any model loads or any folder exists
        if resume is None:
            run_dir = RunDir.create(settings.out, settings.profile, settings.workload)
            try:
                run = cls(plan, run_dir, [], {})
            except BaseException:  # a bad method, checkpoint or setting: nothing was measured
                shutil.rmtree(run_dir.path, ignore_errors=True)
                raise
            run_dir.write_yaml(FILES["config"], run.config())
            run_dir.write_json(FILES["env"], run.env)
            return run
        run_dir = RunDir(Path(resume))
        lines = run_dir.read_jsonl(FILES["queries"]) if run_dir.file(FILES["queries"]).exists() else []
        trace = {}
        if run_dir.file(FILES["trace"]).exists():
            trace = {(q.id, 0): q for q in read_trace(run_dir.file(FILES["trace"])).queries}
        return cls(plan, run_dir, lines, trace)

    @property
    def done_queries(self) -> int:
        return sum(not q["warmup"] for q in self.lines)

    def config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bench": settings_dict(s),
            "profile": self.profile.to_dict(),
            "workload": self.workload.to_dict(),
            "methods": list(s.methods),
            "K": s.K,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "tree": tree.to_dict() if (tree := self.engine.settings.tree) else None,
            "counterfactual": dict(zip(self.pool.names, self.engine.counterfactual)),
            "max_new_tokens": s.max_new_tokens,
            "seed": s.seed,
            "device": s.device,
            "dtype": s.dtype,
            "drafter_dtype": s.drafter_dtype,
        }

    def execute(self, progress: Progress) -> None:
        s, prompts = self.settings, self.workload.prompts
        done = {(q["method"], q["query_id"], q["repeat"]) for q in self.lines}
        for m in filter(SelectorBank.persistent, s.methods):  # its learning cannot restart mid-pass
            for r in range(s.repeats):
                n = sum((m, p.id, r) in done for p in prompts)
                if 0 < n < len(prompts):
                    raise ConfigError(
                        f"cannot resume {self.dir.path} exactly: {m} learns across queries (reset=never) and "
                        f"stopped after {n} of {len(prompts)} prompts of repeat {r}; rerun the benchmark"
                    )
        self.sampler.start()
        warm_up(self.step, s.methods, prompts, self.ids, s.warmup)
        progress.start(list(s.methods), len(prompts) * s.repeats)
        for q in self.lines:
            progress.advance(q["method"], q)

        def keep(method: str, line: dict, record: QueryRecord) -> None:
            self.dir.extend_jsonl(FILES["rounds"], S.round_lines(method, line["query_id"], line["repeat"], record),
                                  fsync=False)
            self.dir.append_jsonl(FILES["queries"], line)
            self.lines.append(line)
            progress.advance(method, line)

        for r in range(s.repeats):
            run_pass(self.step, s.methods, prompts, self.ids, r, done=done, on_query=keep,
                     on_prompt=lambda: self.write_results(complete=False, audit=False))

    def _trace(self, queries: list[TraceQuery]) -> Trace:
        s = self.settings
        return Trace(s.K, s.temperature, s.max_new_tokens, self.pool.names, self.pool.domains, queries,
                     tree.to_dict() if (tree := self.engine.settings.tree) else None, s.seed,
                     self.engine.counterfactual)

    def _audit(self) -> dict[str, Any] | None:
        """Every method that ran live, replayed on the run's own trace (selection/audit.py)."""
        queries = self._trace_queries()
        if not queries:
            return None
        # rounds.jsonl, not memory: a resumed run's earlier queries are checked round by round too.
        arms = live_arms(self.dir.read_jsonl(FILES["rounds"]) if self.dir.file(FILES["rounds"]).exists() else [])
        return audit(self._trace(queries), self.lines, seed=self.settings.seed, live_arms=arms)

    def payload(self, complete: bool, audit: bool = True) -> dict[str, Any]:
        """audit: replay every live method on the trace (the runs of all queries so far: once, at the end)."""
        s, names = self.settings, list(self.pool.names)
        methods = S.summarize_methods(self.lines, list(s.methods), names, seed=s.seed)
        telemetry = self.sampler.summary()
        replay_audit = self._audit() if audit else None
        return {
            "schema": SCHEMA,
            "run_id": self.dir.path.name,
            "created_utc": self.created,
            "complete": complete,
            "elapsed_s": time.monotonic() - self.started,
            "config": self.config(),
            "env": self.env,
            "validity": S.validity(
                self.lines, temperature=s.temperature, warmup=s.warmup, min_tokens=s.min_tokens,
                max_repeat_cv=s.max_repeat_cv, methods_payload=methods, telemetry=telemetry,
                replay_audit=replay_audit,
            ),
            "replay_audit": replay_audit,
            "methods": methods,
            "method_labels": {m: self._label(m) for m in s.methods},
            "acceptance_matrix": S.acceptance_matrix(self._trace_queries(), names),
            "metric_definitions": definitions(),
            "oracle_block": self._block_oracle(),
            "telemetry": telemetry,
            "memory": self._memory(telemetry),
            "artifacts": dict(FILES),
        }

    def _memory(self, telemetry: dict) -> dict[str, Any]:
        """Model footprints plus the measured peaks (process RSS; CUDA allocator peak on GPUs)."""
        import torch

        out = {**self._footprint, "peak_rss_mib": (telemetry.get("cpu") or {}).get("peak_rss_mib")}
        devices = self.pool.cuda_devices()
        if devices:  # every GPU the pool spans (a sharded target spans several)
            peaks = {str(d): torch.cuda.max_memory_allocated(d) / 2**20 for d in devices}
            out["peak_cuda_allocated_mib"] = sum(peaks.values())
            out["peak_cuda_allocated_mib_by_device"] = peaks
        return out

    def _label(self, method: str) -> str:
        if method == f"fixed:{self.profile.generic().name}":
            return "single generic drafter (the EAGLE-3-style single-drafter baseline)"
        spec = SelectorSpec.parse(method)
        reg = REGISTRY[spec.name]
        tree = self.engine.settings.tree is not None
        if reg.kind == "reference":  # its hindsight, and so every regret against it, is only as exact as gamma
            inexact = sorted({m for m in self.engine.counterfactual if m not in ("positional", "exact")})
            if tree:
                return spec.description + "; an upper bound: draft-tree gamma ignores pruning"
            if inexact:
                modes = ", ".join(inexact)
                return spec.description + f"; APPROXIMATE: EAGLE-3 gamma scored in counterfactual mode {modes}"
            if self.settings.temperature > 0:
                return spec.description + ("; at T > 0 it ranks drafters by the one-step estimator "
                                           "(biased, DESIGN.md section 5)")
        if tree and reg.needs_full_feedback:
            # Its choices rest on gamma, which for trees scores unpruned top_k children (decoding/tree.py).
            return (f"{spec.description} [draft trees: decides on gamma that is an upper bound, "
                    "as if no node were pruned]")
        return spec.description

    def _block_oracle(self) -> dict[str, Any] | None:
        """The per-block oracle where the workload serves blocks of one domain (`shift`), at T = 0
        (0/1 gamma: exact) and for chains (a tree trace's gamma is an upper bound); None otherwise."""
        if self.workload.schedule != "shift" or self.settings.temperature > 0 or self.engine.settings.tree:
            return None
        by_id = {q.id: q for q in self._trace_queries()}
        served = [by_id[p.id] for p in self.workload.prompts if p.id in by_id]  # serving order
        exact = all(COUNTERFACTUALS[m] for m in self.engine.counterfactual)
        return S.block_oracle_summary(served, list(self.pool.names), self.settings.K, exact=exact)

    def _trace_queries(self) -> list[TraceQuery]:
        return [q for (_, r), q in self.step.trace.items() if r == 0]

    def write_results(self, complete: bool, audit: bool = True) -> dict[str, Any]:
        """Rewrite trace.jsonl and results.json; after each prompt without the replay audit, whose
        cost grows with every query replayed (it would make a long run quadratic), at the end with it."""
        queries = self._trace_queries()
        if queries:
            write_trace(
                self.dir.file(FILES["trace"]),
                self._trace(queries),
            )
        payload = self.payload(complete, audit)
        self.dir.write_json("results.json", payload)
        return payload

    def finish(self, complete: bool) -> dict[str, Any]:
        self.sampler.stop()
        payload = self.write_results(complete)
        self.dir.close()
        payload["run_dir"] = str(self.dir.path)
        return payload


def run_bench(settings: BenchSettings, *, progress: Progress | None = None, resume: Path | None = None) -> dict:
    """Run (or continue) a benchmark; returns the results payload. The run dir is payload['run_dir']."""
    if resume is not None:
        settings = settings_of_run(resume)
    run = BenchRun.open(settings, resume)
    with saved_on_interrupt(
        lambda: run.finish(complete=False),
        lambda: (f"interrupted after {run.done_queries} timed queries; partial results in {run.dir.path} "
                 f"(complete: false); continue with: hedgespec bench --resume {run.dir.path}"),
    ):
        run.execute(progress or SilentProgress())
    return run.finish(complete=True)


def _cuda_uuids(devices: list) -> list[str] | None:
    """NVML-style UUIDs ("GPU-...") of torch CUDA devices; None on a CPU run (the sampler's default)."""
    if not devices:
        return None
    import torch

    return [f"GPU-{torch.cuda.get_device_properties(d).uuid}" for d in devices]
