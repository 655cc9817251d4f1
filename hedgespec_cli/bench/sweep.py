"""`hedgespec bench --sweep-drafters 2,4,8,16`: how each method scales with the pool size N.

The profile's pool is loaded once. A pool of N drafters takes the generic
drafter first, then the profile's other drafters in order; beyond those it is
padded with weaker copies of the experts (their weights plus seeded Gaussian
noise, `padding` role, no domain label), so larger pools add drafters that
are never the best choice: the setting of the HedgeSpec paper's Figure 5b.
`ar` does not depend on N and runs once; its per-prompt times give every
N's speedup.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from hedgespec_cli.bench.loop import Progress, run_pass, saved_on_interrupt, warm_up
from hedgespec_cli.bench.query import QueryStep
from hedgespec_cli.bench.settings import BenchSettings, resolve_run, settings_dict
from hedgespec_cli.config import ModelSpec
from hedgespec_cli.decoding.engine import Engine
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.models import CausalLM, Pool
from hedgespec_cli.report import summary as S
from hedgespec_cli.rundir import SWEEP_SCHEMA, RunDir, env_fingerprint
from hedgespec_cli.runner import check_methods, check_router, checked_prompt_ids, open_pool
from hedgespec_cli.selection.base import registration

PAD_NOISE = 0.5  # noise std relative to each weight tensor's std


def _generic_first(names: list[str], generic: str) -> list[int]:
    """Pool indices in sweep order: the generic drafter, then the others as the profile lists them."""
    return [names.index(generic)] + [j for j, name in enumerate(names) if name != generic]


def _sizes_names(names: list[str], generic: str, n: int) -> list[str]:
    """The drafter names of the size-n pool (`pad...` for padding) without building it."""
    real = [names[j] for j in _generic_first(names, generic)[:n]]
    return real + [f"pad{i}" for i in range(len(real), n)]


def padded_pool(pool: Pool, generic: str, n: int, seed: int) -> Pool:
    """The first n drafters (generic first), padded with noisy copies of the experts."""
    order = _generic_first(list(pool.names), generic)
    drafters = [pool.drafters[j] for j in order[:n]]
    specs = [pool.specs[j] for j in order[:n]]
    sources = [j for j in order if pool.specs[j].kind == "lm"]
    gen = torch.Generator().manual_seed(seed)
    while len(drafters) < n:
        j = sources[(len(drafters) - len(order)) % len(sources)]
        model = copy.deepcopy(pool.drafters[j].model)
        with torch.no_grad():
            for w in model.parameters():
                w.add_(PAD_NOISE * w.std() * torch.randn(w.shape, generator=gen).to(w))
        name = f"pad{len(drafters)}-{pool.names[j]}"
        drafters.append(CausalLM(name, model))
        specs.append(ModelSpec(name, pool.specs[j].path, kind="lm", domain=None, role="padding"))
    return Pool(pool.target, drafters, pool.tokenizer, specs, target_spec=pool.target_spec, router=pool.router)


def run_sweep(settings: BenchSettings, sizes: list[int], *, progress: Progress | None = None) -> dict[str, Any]:
    """Run every method at every pool size; returns the sweep payload (also saved as sweep.json).

    Each pool size is one bench pass (loop.run_pass, the same per-query step as `bench`)
    over the prompts; `ar` runs one pass with the full pool. No repeats, no resume.
    """
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--sweep-drafters needs pool sizes >= 1 (got {sizes})")
    settings, profile, workload, decode = resolve_run(settings)  # K, T, top-p, tree: checked before any model loads
    names = [d.name for d in profile.drafters]
    # Bad methods (`fixed:NAME` at every pool size), settings and prompts fail before the run dir exists.
    for n in sizes:
        try:
            check_methods(settings.methods, _sizes_names(names, profile.generic().name, n))
        except ConfigError as err:
            raise ConfigError(f"in the pool of {n} drafters: {err}") from None
    check_router(settings.methods, profile)
    pool = open_pool(profile, device=settings.device, dtype=settings.dtype, drafter_dtype=settings.drafter_dtype)
    plain = [m for m in settings.methods if not registration(m).selects]  # `ar`: the same at every N, run once
    methods = [m for m in settings.methods if registration(m).selects]
    prompts = workload.prompts
    full = QueryStep(Engine(pool, decode, seed=settings.seed), settings.seed)  # the full pool: warm-up and `ar`
    ids = checked_prompt_ids(full.engine, prompts)
    run_dir = RunDir.create(settings.out, f"{profile.name}-sweep", workload.name)
    run_dir.write_yaml("config.yaml", {"bench": settings_dict(settings), "sweep_drafters": sizes})
    run_dir.write_json("env.json", env_fingerprint())
    started = time.monotonic()
    # One bar per N, showing the tokens/s and MAT of one method (hedgespec when swept).
    focus = "hedgespec" if "hedgespec" in methods else methods[-1]
    if progress:
        progress.start([f"N={n} {focus}" for n in sizes] + plain, len(prompts))
    warm_up(full, plain, prompts, ids, settings.warmup)  # each pool size warms its own engine below

    def write(by_n: dict, complete: bool) -> dict:
        payload = {
            "schema": SWEEP_SCHEMA,
            "complete": complete,
            "config": {"profile": profile.to_dict(), "workload": workload.to_dict(), "bench": settings_dict(settings)},
            "sizes": sizes,
            "by_n": by_n,
            "elapsed_s": time.monotonic() - started,
            "run_dir": str(run_dir.path),
        }
        run_dir.write_json("sweep.json", payload)
        return payload

    def one_pass(step: QueryStep, methods: list[str], n: int | None, label: str, shown: str) -> list[dict]:
        lines: list[dict] = []

        def keep(method: str, line: dict, record: object) -> None:  # on disk as soon as it is measured
            line["n_drafters"] = n
            run_dir.append_jsonl("queries.jsonl", line)
            lines.append(line)

        def advance() -> None:
            if progress:
                progress.advance(label, next(q for q in lines[::-1] if q["method"] == shown))

        run_pass(step, methods, prompts, ids, 0, on_query=keep, on_prompt=advance)
        return lines

    by_n: dict = {}

    def save() -> None:  # an interrupted or failed sweep keeps every finished pool size
        write(by_n, complete=False)
        run_dir.close()

    with saved_on_interrupt(save, lambda: (
        f"interrupted after {len(by_n)} of {len(sizes)} pool sizes; every finished query is in "
        f"{run_dir.path}/queries.jsonl and the finished sizes in sweep.json (complete: false)"
    )):
        ar_lines: list[dict] = []
        for m in plain:  # once, with the full pool
            ar_lines += one_pass(full, [m], None, m, m)
        for n in sizes:
            sub = padded_pool(pool, profile.generic().name, n, settings.seed)
            step = QueryStep(Engine(sub, decode, seed=settings.seed), settings.seed)  # new groups and stacks
            warm_up(step, methods, prompts, ids, settings.warmup)
            mine = one_pass(step, methods, n, f"N={n} {focus}", focus)
            by_n[str(n)] = {
                "drafters": list(sub.names),
                "methods": S.summarize_methods(ar_lines + mine, list(settings.methods), list(sub.names),
                                               seed=settings.seed),
            }
            write(by_n, complete=False)
    payload = write(by_n, complete=True)
    run_dir.close()
    return payload
