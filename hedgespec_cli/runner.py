"""Loading and checking before a run: profile -> pool, methods and prompts checked before anything is
measured; and `generate`, one query (the query step itself is bench/query.py)."""

from __future__ import annotations

from pathlib import Path

from hedgespec_cli.bench.query import run_query
from hedgespec_cli.config import ModelSpec, Profile
from hedgespec_cli.decoding.engine import Engine
from hedgespec_cli.errors import ConfigError, WorkloadError
from hedgespec_cli.models import Pool, load_pool
from hedgespec_cli.selection.base import SelectorSpec, make_selector, registration


def open_pool(
    profile: Profile, *, device: str | None = None, dtype: str | None = None, drafter_dtype: str | None = None
) -> Pool:
    """Load the profile's target, drafters and prompt classifier once; every method shares them."""
    from hedgespec_cli.selection.classifier import PromptClassifier

    router = PromptClassifier.load(profile.router) if profile.router is not None else None
    pool = load_pool(
        profile.target,
        list(profile.drafters),
        device=device or profile.device,
        dtype=dtype or profile.dtype,
        drafter_dtype=drafter_dtype or profile.drafter_dtype,
        tokenizer_path=profile.tokenizer,
    )
    pool.router = router
    return pool


def adhoc_profile(target: str, drafters: list[str]) -> Profile:
    """A profile from `--target REF --drafter [NAME=]REF ...` flags; REF is a local directory or,
    when no such directory exists, a Hub id `org/name[@revision][/subfolder]`."""
    specs = []
    for i, item in enumerate(drafters):
        name, _, ref = item.rpartition("=")
        specs.append(model_ref(name or Path(ref).name or f"drafter{i}", ref))
    return Profile(
        name="adhoc",
        description="models given on the command line",
        source=Path("."),
        target=model_ref("target", target),
        drafters=tuple(specs),
    )


def model_ref(name: str, ref: str) -> ModelSpec:
    """A local checkpoint directory if one exists at `ref`, else a Hub id if `ref` reads as one."""
    from hedgespec_cli.models.hub import looks_like_hub_id

    if not Path(ref).exists() and looks_like_hub_id(ref):
        return ModelSpec(name, None, hub=ref)
    return ModelSpec(name, Path(ref))


def check_router(methods, profile: Profile) -> None:
    """A method that reads the prompt classifier's guess (`router`) needs the profile to ship one."""
    for m in methods:
        if registration(m).needs_prompt_classifier and profile.router is None:
            raise ConfigError(
                f"{m} needs a prompt classifier and profile {profile.name!r} has none: build one with "
                "`hedgespec zoo router --zoo DIR` and add `router: DIR/router.npz` to the profile, "
                "or use router-label (the prompt's true domain)"
            )


def check_methods(methods, drafter_names: list[str]) -> None:
    """Parse every method and build each selector against the pool's names: a bad name,
    hyperparameter or `fixed:NAME` fails before any model is loaded or any run directory is written."""
    for m in methods:
        spec = SelectorSpec.parse(m)
        if registration(m).selects:
            make_selector(spec, len(drafter_names), drafter_names)


def checked_prompt_ids(engine: Engine, prompts) -> list[list[int]]:
    """Tokenize each workload prompt and check it fits the engine's models (a WorkloadError
    naming the prompt otherwise), so an empty or too long prompt fails before anything is measured."""
    # verbose=False: the context check below says it better than the tokenizer's length warning.
    ids = [engine.pool.tokenizer(p.text, verbose=False)["input_ids"] for p in prompts]
    for p, prompt_ids in zip(prompts, ids):
        try:
            engine.check_prompt(prompt_ids)
        except WorkloadError as err:
            raise WorkloadError(f"prompt {p.id!r}: {err}") from None
    return ids


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
    pool = open_pool(prof, device=device, dtype=dtype)
    engine = Engine(pool, settings, seed=seed)
    ids = pool.tokenizer(prompt, verbose=False)["input_ids"]  # the context check says it better
    record = run_query(
        engine, ids, method, domain=domain, seed=seed, record_gamma=trace is not None
    )
    payload = {
        "profile": prof.name,
        "method": method,
        "text": pool.tokenizer.decode(record.output_ids, skip_special_tokens=True),
        "output_ids": record.output_ids,
        "new_tokens": record.new_tokens,
        "rounds": len(record.rounds),
        "mat": record.mat,
        "tree": settings.tree.to_dict() if settings.tree else None,
        "tokens_per_s": record.tokens_per_s,
        "wall_ms": record.wall_ns / 1e6,
        "phase_ms": {k: v / 1e6 for k, v in record.phase_ns.items()},
        "stop": record.stop,
        "trace": str(trace) if trace else None,
    }
    if trace is not None:
        from hedgespec_cli.selection.trace import Trace, TraceQuery, write_trace

        query = TraceQuery("prompt-0", domain, record.output_ids, record.gamma, None, method, record.gamma_depth,
                           record.prompt_gamma)
        write_trace(trace, Trace(settings.K, settings.temperature, settings.max_new_tokens,
                                 pool.names, pool.domains, [query],
                                 settings.tree.to_dict() if settings.tree else None, None, engine.counterfactual))
    return payload
