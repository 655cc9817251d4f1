"""Loading and checking before a run: profile -> pool, methods and prompts checked before anything is
measured."""

from __future__ import annotations

from pathlib import Path

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
