"""`hedgespec bench`'s settings: what a run depends on, resolved and checked before any model loads.

`resolve_settings` merges flags over a `--config` file, `resolve_run` fills the
rest from the workload, the profile and the dataclasses' defaults
(decoding/settings.py), `settings_of_run` reads a run directory's back for
`--resume`. The run itself is run.py, which imports this module and never
the other way round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hedgespec_cli.config import Profile, check_field_types, check_keys, check_seed, load_profile, read_yaml
from hedgespec_cli.decoding.settings import KNOBS, DecodeSettings, TreeShape, resolve_knobs
from hedgespec_cli.errors import ConfigError, HedgespecError

if TYPE_CHECKING:
    from hedgespec_cli.workloads import Workload

# Telemetry interval bounds (seconds): each tick reads NVML and /proc in a Python thread that
# shares the interpreter with the decode loop, so ticks faster than 10 ms would load the run
# they measure; a tick rarer than hourly records nothing over a benchmark.
SAMPLE_INTERVAL_S = (0.01, 3600.0)


@dataclass(frozen=True)
class BenchSettings:
    """Everything a run depends on; saved as `config.yaml`. None = take it from the profile/workload."""

    profile: str = "tiny"
    target: str | None = None  # replaces the profile's target: a directory or a Hub id (and its tokenizer)
    drafters: tuple[str, ...] | None = None  # replace the profile's pool: [NAME=]directory-or-Hub-id each
    workload: str = "mixed-domain"
    methods: tuple[str, ...] | None = None
    # The decoding knobs (KNOBS): None until `resolve_run`; their defaults live on DecodeSettings.
    temperature: float | None = None
    top_p: float | None = None
    K: int | None = None
    tree_top_k: int | None = None  # > 0: EAGLE dynamic draft trees of depth K; 0 = chains
    tree_tokens: int | None = None  # nodes kept per tree
    counterfactual: str | None = None  # EAGLE-3 heads' full-information scoring: exact, depth1 or aligned
    max_new_tokens: int | None = None
    prompts: int | None = None
    repeats: int = 1
    warmup: int = 1
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    drafter_dtype: str | None = None  # drafters' weights; None: the profile's, else the target's dtype
    out: str = "runs"
    sample_interval: float = 0.1
    threads: int | None = None  # torch intra-op threads on CPU; None keeps torch's default
    min_tokens: int = 1000
    max_repeat_cv: float = 0.05

    def __post_init__(self) -> None:
        check_field_types(self, "bench settings")
        for key in ("repeats", "prompts"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be at least 1 (got {value})")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0 (got {self.warmup})")
        if self.tree_top_k is not None and self.tree_top_k < 0:
            raise ConfigError(f"tree_top_k must be >= 0 (got {self.tree_top_k}); 0 drafts chains")
        if self.tree_top_k and self.tree_tokens is not None:
            TreeShape(self.tree_top_k, self.tree_tokens)  # validates before any run directory exists
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1 (got {self.threads})")
        lo, hi = SAMPLE_INTERVAL_S
        if not lo <= self.sample_interval <= hi:  # NaN fails too
            raise ConfigError(f"sample_interval must be a number of seconds from {lo:g} to {hi:g} "
                              f"(got {self.sample_interval})")
        check_seed(self.seed)
        seen: dict[str, str] = {}
        for m in self.methods or ():
            key = _method_key(m)
            if key in seen:
                same = f"{m!r} twice" if seen[key] == m else f"{seen[key]!r} and {m!r}, the same method"
                raise ConfigError(f"--methods lists {same}; give each method once")
            seen[key] = m


BENCH_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(BenchSettings)}  # what --help shows


def _method_key(method: str) -> str:
    """A method's identity: its label with every default filled in (`hedgespec` = `hedgespec:play=sample`)."""
    from hedgespec_cli.selection import SelectorSpec

    try:
        return SelectorSpec.parse(method).label
    except HedgespecError:  # not a registered method: check_methods names it later
        return method


def resolve_settings(flags: dict[str, Any], config_file: Path | None) -> BenchSettings:
    """Precedence: flag > config file > (profile/workload, applied at run time) > default."""
    keys = {f.name for f in fields(BenchSettings)}
    merged: dict[str, Any] = {}
    if config_file is not None:
        data = read_yaml(config_file, "config file")
        check_keys(data, keys, f"config file {config_file}")
        merged.update(data)
    merged.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(merged.get("methods"), str):
        from hedgespec_cli.selection.base import split_methods

        merged["methods"] = split_methods(merged["methods"])
    for key in ("methods", "drafters"):
        if isinstance(merged.get(key), list):
            merged[key] = tuple(merged[key])
    return BenchSettings(**merged)


def settings_of_run(run_dir: Path) -> BenchSettings:
    from hedgespec_cli.errors import RunDirError

    cfg = Path(run_dir) / "config.yaml"
    if not cfg.is_file():
        raise RunDirError(f"cannot resume {run_dir}: no config.yaml there; pass a run directory made by bench")
    data = read_yaml(cfg, "run config")
    # A folder that merely holds some config.yaml must not become a run directory.
    if "bench" not in data:
        raise RunDirError(f"cannot resume {run_dir}: its config.yaml has no `bench:` section: not a run directory "
                          "written by `hedgespec bench`; pass one (runs/<timestamp>-<profile>-<workload>/)")
    if "sweep_drafters" in data:
        raise RunDirError(f"cannot resume {run_dir}: it is a --sweep-drafters run, which does not resume; "
                          "its finished pool sizes are in sweep.json, rerun the sweep for the rest")
    bench = data["bench"]
    if not isinstance(bench, dict):
        raise RunDirError(f"cannot resume {run_dir}: its `bench:` section must be a mapping of settings "
                          f"(got {bench!r}); pass a run directory written by `hedgespec bench`")
    unknown = sorted(set(bench) - {f.name for f in fields(BenchSettings)})
    if unknown:
        raise RunDirError(f"cannot resume {run_dir}: unknown setting(s) {', '.join(map(repr, unknown))} in the "
                          "`bench:` section of its config.yaml (written by a newer hedgespec?); "
                          "resume it with the version that started it")
    try:
        return resolve_settings(bench, None)
    except ConfigError as err:
        raise RunDirError(f"cannot resume {run_dir}: its config.yaml: {err}") from None


def settings_dict(settings: BenchSettings) -> dict[str, Any]:
    out = asdict(settings)
    out["methods"] = list(settings.methods) if settings.methods else None
    out["drafters"] = list(settings.drafters) if settings.drafters else None
    return out


def bench_profile(settings: BenchSettings) -> Profile:
    """The settings' profile, with `--target` / `--drafter` replacing its target / pool."""
    from hedgespec_cli.runner import adhoc_profile

    prof = load_profile(settings.profile)
    if settings.target is None and not settings.drafters:
        return prof
    given = adhoc_profile(settings.target or "", list(settings.drafters or ()))
    return replace(prof, target=given.target if settings.target else prof.target,
                   tokenizer=None if settings.target else prof.tokenizer,  # a new target brings its tokenizer
                   # The classifier counts the old tokenizer's ids: with another target it would misroute silently.
                   router=None if settings.target else prof.router,
                   drafters=given.drafters if settings.drafters else prof.drafters)


def resolve_run(settings: BenchSettings) -> tuple[BenchSettings, Profile, Workload, DecodeSettings]:
    """Fill what the user left unset, check it, and build the engine's settings; loads no model.

    The decoding knobs follow `resolve_knobs` (decoding/settings.py): flag (merged with `--config` by
    `resolve_settings`) > workload (`max_new_tokens`) > the profile's `decoding:` > the defaults on the
    dataclasses. Methods default to `default_bench`; device and dtypes to the profile's. The returned
    settings hold every resolved value (what `config.yaml` records and `--resume` replays).
    """
    import torch

    from hedgespec_cli.selection.base import default_bench
    from hedgespec_cli.workloads import load_workload

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    settings = replace(settings, threads=torch.get_num_threads())  # what actually ran, for config.yaml
    prof = bench_profile(settings)  # the profile with --target / --drafter applied
    d = prof.decoding
    # --tree-tokens alone, on a profile that drafts chains (a resumed run has tree_top_k set, maybe 0).
    if settings.tree_tokens is not None and settings.tree_top_k is None and not d.get("tree_top_k"):
        raise ConfigError("--tree-tokens sizes draft trees, but this run drafts chains; "
                          "add --tree-top-k (children per node) or drop --tree-tokens")
    workload = load_workload(settings.workload, limit=settings.prompts)
    knobs = resolve_knobs({k: getattr(settings, k) for k in KNOBS}, {"max_new_tokens": workload.max_new_tokens}, d)
    settings = replace(
        settings,
        **knobs,
        methods=settings.methods or default_bench(prof.generic().name, classifier=prof.router is not None),
        device=settings.device or prof.device,
        dtype=settings.dtype or prof.dtype,
        drafter_dtype=settings.drafter_dtype or prof.drafter_dtype or settings.dtype or prof.dtype,
    )
    return settings, prof, workload, DecodeSettings.of(knobs)  # K, T, top-p, tree: validated here
