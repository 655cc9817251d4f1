"""`hedgespec generate`: one prompt, one method, through the bench's query step (bench/query.py)."""

from __future__ import annotations

from pathlib import Path

from hedgespec_cli.bench.query import run_query
from hedgespec_cli.decoding.engine import Engine
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.runner import adhoc_profile, check_router, open_pool
from hedgespec_cli.selection.base import registration


def generate_once(
    *,
    prompt: str,
    profile: str,
    target: Path | None,
    drafters: list[str],
    method: str | None,
    K: int | None,
    temperature: float | None,
    top_p: float | None,
    tree_top_k: int | None,
    tree_tokens: int | None,
    max_new_tokens: int | None,
    seed: int,
    device: str | None,
    dtype: str | None,
    domain: str | None,
    trace: Path | None,
) -> dict:
    """`hedgespec generate`: load, decode one prompt, optionally save its trace -> payload."""
    from hedgespec_cli.config import check_seed, load_profile
    from hedgespec_cli.decoding.settings import DecodeSettings, resolve_knobs

    check_seed(seed)
    if target is not None:
        if not drafters:
            raise ConfigError("--target needs at least one --drafter [NAME=]PATH")
        prof = adhoc_profile(str(target), drafters)
    else:
        prof = load_profile(profile)
    flags = {"K": K, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
             "tree_top_k": tree_top_k, "tree_tokens": tree_tokens}
    settings = DecodeSettings.of(resolve_knobs(flags, prof.decoding))  # flag > profile > default
    method = method or f"fixed:{prof.generic().name}"
    check_router([method], prof)  # before any model loads
    if trace is not None and not registration(method).selects:
        raise ConfigError(f"--trace records every drafter's gamma while a method selects drafters; {method} "
                          "selects none: pass a method such as hedgespec or fixed:NAME")
    pool = open_pool(prof, device=device, dtype=dtype)
    engine = Engine(pool, settings, seed=seed)
    ids = pool.tokenizer(prompt, verbose=False)["input_ids"]  # the context check says it better
    record = run_query(
        engine, ids, method, domain=domain, seed=seed, record_gamma=trace is not None
    )
    tree = settings.tree.to_dict() if settings.tree else None
    payload = {
        "profile": prof.name,
        "method": method,
        "text": pool.tokenizer.decode(record.output_ids, skip_special_tokens=True),
        "output_ids": record.output_ids,
        "new_tokens": record.new_tokens,
        "rounds": len(record.rounds),
        "mat": record.mat,
        "tree": tree,
        "tokens_per_s": record.tokens_per_s,
        "wall_ms": record.wall_ns / 1e6,
        "phase_ms": {k: v / 1e6 for k, v in record.phase_ns.items()},
        "stop": record.stop,
        "trace": str(trace) if trace else None,
    }
    if trace is not None:
        from hedgespec_cli.selection.trace import Trace, TraceQuery, write_trace

        query = TraceQuery.of_record("prompt-0", domain, record, source=method)
        write_trace(trace, Trace(settings.K, settings.temperature, settings.max_new_tokens,
                                 pool.names, pool.domains, (query,), tree, None, engine.counterfactual))
    return payload
