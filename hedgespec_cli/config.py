"""Profiles and YAML settings: frozen dataclasses, validated once.

A profile names the target, the drafter pool and decoding defaults
(DESIGN.md section 9). Paths inside a profile are relative to its file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hedgespec_cli.decoding.settings import KNOBS
from hedgespec_cli.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE_KEYS = {"name", "description", "target", "tokenizer", "router", "drafters", "dtype", "drafter_dtype", "device",
                "decoding"}
LOCATION_KEYS = {"path", "hub", "revision", "subfolder", "package", "gguf_file"}
DRAFTER_KEYS = {"name", "kind", "domain", "role"} | LOCATION_KEYS
TARGET_KEYS = {"name"} | LOCATION_KEYS
DECODING_TYPES = KNOBS  # a profile's `decoding:` sets the same knobs as the flags (decoding/settings.py)
DECODING_KEYS = set(DECODING_TYPES)


DEFAULT_KIND = "lm"  # a drafter entry without `kind:` (models/loading.py LOADERS has every kind)


@dataclass(frozen=True)
class ModelSpec:
    """One checkpoint: where it is and what it is for (role `generic` marks the baseline).

    `hub` (`org/name[@revision][/subfolder]`) names a Hugging Face Hub checkpoint instead of a
    local `path`; `models.hub.resolve_spec` fills `path` from the local cache at load time.
    """

    name: str
    path: Path | None
    kind: str = DEFAULT_KIND
    domain: str | None = None
    role: str | None = None
    hub: str | None = None
    package: str | None = None  # an installed Python package whose directory holds the checkpoint
    gguf_file: str | None = None  # a GGUF file in the directory, loaded (de-quantised) by transformers

    def to_dict(self) -> dict[str, Any]:
        """name and path, plus the Hub id when the checkpoint came from the Hub."""
        out = {"name": self.name, "path": str(self.path) if self.path else None}
        extra = {"hub": self.hub, "package": self.package, "gguf_file": self.gguf_file}
        return {**out, **{k: v for k, v in extra.items() if v}}

    @property
    def where(self) -> str:
        """The location as the user wrote it: the Hub id, else the path."""
        if self.path is None:
            where = f"hf:{self.hub}" if self.hub else f"package:{self.package}"
        else:
            where = str(self.path)
        return f"{where}/{self.gguf_file}" if self.gguf_file else where


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    source: Path
    target: ModelSpec
    drafters: tuple[ModelSpec, ...]
    tokenizer: Path | None = None
    dtype: str = "float32"
    device: str = "cpu"
    drafter_dtype: str | None = None  # None: the target's dtype
    decoding: dict[str, Any] = field(default_factory=dict)
    router: Path | None = None  # the `router` baseline's prompt classifier (hedgespec zoo router)

    def drafter_index(self, name: str) -> int:
        names = [d.name for d in self.drafters]
        if name not in names:
            raise ConfigError(f"no drafter named {name!r} in profile {self.name!r}; drafters: {', '.join(names)}")
        return names.index(name)

    def generic(self) -> ModelSpec:
        """The drafter with role `generic` (the single-drafter baseline), else the first."""
        return next((d for d in self.drafters if d.role == "generic"), self.drafters[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": str(self.source),
            "target": self.target.to_dict(),
            "tokenizer": str(self.tokenizer) if self.tokenizer else None,
            "router": str(self.router) if self.router else None,
            "drafters": [
                {**d.to_dict(), "kind": d.kind, "domain": d.domain, "role": d.role}
                for d in self.drafters
            ],
            "dtype": self.dtype,
            "drafter_dtype": self.drafter_dtype,
            "device": self.device,
            "decoding": dict(self.decoding),
        }


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping from path, or a ConfigError that says where it is broken."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} {path} is not valid YAML{where}; fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping of keys to values")
    return data


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def is_kind(value: Any, kind: type) -> bool:
    """YAML scalars as settings read them: bools are not numbers, integers are numbers."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def check_value(key: str, value: Any, kind: type, where: str) -> None:
    """ConfigError naming the key, what it must be and what it got, unless `value` is of `kind` (or None)."""
    if value is not None and not is_kind(value, kind):
        raise ConfigError(f"{where}: {key} must be {_KIND_NAMES.get(kind, kind.__name__)} (got {value!r})")


def check_field_types(obj: Any, where: str) -> None:
    """Every field of a dataclass against its annotation (`int`, `float | None`, `tuple[str, ...]`, ...)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        kinds = [k for k in typing.get_args(hint) if k is not type(None)] if typing.get_args(hint) else [hint]
        kind = typing.get_origin(kinds[0]) or kinds[0]
        if kind is tuple:
            if value is not None and not (isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)):
                raise ConfigError(f"{where}: {f.name} must be a list of strings (got {value!r})")
        elif kind in _KIND_NAMES:
            check_value(f.name, value, kind, where)


# numpy's and torch's generators both accept seeds in this range; a run derives per-query seeds
# from it (seed * 1_000_003 + ...), which stay below torch's 2**64 limit.
SEED_MAX = 2**32 - 1


def check_seed(seed: Any, where: str = "seed") -> None:
    """ConfigError unless seed is an integer in [0, SEED_MAX]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{where} must be an integer from 0 to {SEED_MAX} (got {seed!r})")


def profile_path(base: Path, value: Any, where: str) -> Path:
    """A path written in a profile, relative to the profile's folder; it must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: path must be a non-empty string (got {value!r}); "
                          "write the checkpoint folder, relative to the profile file")
    return base / value


def check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; allowed: {', '.join(sorted(allowed))}"
        )


def find_named(name_or_path: str, folder: str, what: str) -> Path:
    """A YAML by path, or by name under ./<folder>/ or the repository's <folder>/."""
    direct = Path(name_or_path)
    if direct.suffix in (".yaml", ".yml"):
        if direct.is_file():
            return direct
        raise ConfigError(f"{what} file {direct} does not exist")
    for base in (Path.cwd() / folder, REPO_ROOT / folder):
        candidate = base / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(list_named(folder)) or "none"
    raise ConfigError(f"unknown {what} {name_or_path!r}; available: {known} (or pass a .yaml path)")


def list_named(folder: str) -> list[str]:
    names: set[str] = set()
    for base in (Path.cwd() / folder, REPO_ROOT / folder):
        if base.is_dir():
            names.update(p.stem for p in base.glob("*.yaml"))
    return sorted(names)


def load_profile(name_or_path: str) -> Profile:
    path = find_named(name_or_path, "profiles", "profile")
    data = read_yaml(path, "profile")
    where = f"profile {path}"
    check_keys(data, PROFILE_KEYS, where)
    base = path.parent
    if "target" not in data or not isinstance(data["target"], dict):
        raise ConfigError(f"{where} needs `target: {{path: DIR}}` or `target: {{hub: org/name}}`")
    check_keys(data["target"], TARGET_KEYS, f"{where} target")
    drafters = data.get("drafters") or []
    if not isinstance(drafters, list) or not drafters:
        raise ConfigError(f"{where} needs a non-empty `drafters:` list")
    entries = []
    for i, d in enumerate(drafters):
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"{where}: drafter #{i + 1} needs at least `name` and `path` (or `hub`)")
        label = f"{where} drafter {d.get('name')!r}"
        check_keys(d, DRAFTER_KEYS, label)
        local, hub = _location(d, base, label)
        entries.append(ModelSpec(str(d["name"]), local, d.get("kind", DEFAULT_KIND), d.get("domain"), d.get("role"),
                                 hub, d.get("package"), d.get("gguf_file")))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: drafter names must be unique (got {', '.join(names)})")
    decoding = data.get("decoding") or {}
    if not isinstance(decoding, dict):
        raise ConfigError(f"{where}: decoding must be a mapping such as {{K: 5, temperature: 0.0}} (got {decoding!r})")
    check_keys(decoding, DECODING_KEYS, f"{where} decoding")
    for key, value in decoding.items():
        check_value(key, value, DECODING_TYPES[key], f"{where} decoding")
    target = data["target"]
    target_path, target_hub = _location(target, base, f"{where} target")
    tokenizer = data.get("tokenizer")
    if tokenizer is not None and (not isinstance(tokenizer, str) or not tokenizer.strip()):
        raise ConfigError(f"{where}: tokenizer must be a non-empty string (got {tokenizer!r}); "
                          "write the tokenizer's folder, or leave the key out to use the target's")
    return Profile(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        source=path,
        target=ModelSpec(str(target.get("name", "target")), target_path, hub=target_hub,
                         package=target.get("package"), gguf_file=target.get("gguf_file")),
        drafters=tuple(entries),
        tokenizer=base / tokenizer if tokenizer is not None else None,
        dtype=str(data.get("dtype", "float32")),
        device=str(data.get("device", "cpu")),
        drafter_dtype=str(data["drafter_dtype"]) if data.get("drafter_dtype") else None,
        decoding=decoding,
        router=profile_path(base, data["router"], f"{where} router") if "router" in data else None,
    )


def _location(entry: dict, base: Path, where: str) -> tuple[Path | None, str | None]:
    """(local path, None) or (None, Hub id) from a target/drafter entry; `revision` and `subfolder`
    keys are folded into the id (`org/name@revision/subfolder`)."""
    if sum(k in entry for k in ("path", "hub", "package")) != 1:
        raise ConfigError(f"{where} needs exactly one of `path: DIR` (local), `hub: org/name` (Hugging Face Hub) "
                          "or `package: NAME` (an installed Python package holding the checkpoint)")
    for key in ("hub", "revision", "subfolder", "package", "gguf_file"):  # `path`: profile_path checks it
        check_value(key, entry.get(key), str, where)
    if "package" in entry:
        if "revision" in entry or "subfolder" in entry:
            raise ConfigError(f"{where}: revision and subfolder go with `hub:`, not with `package:`")
        return None, None
    if "path" in entry:
        if "revision" in entry or "subfolder" in entry:
            raise ConfigError(f"{where}: revision and subfolder go with `hub:`, not with a local `path:`")
        return profile_path(base, entry["path"], where), None
    from hedgespec_cli.errors import CheckpointError
    from hedgespec_cli.models.hub import HubRef

    try:
        ref = HubRef.parse(entry["hub"])
    except CheckpointError as err:
        raise ConfigError(f"{where}: {err}") from None
    if entry.get("revision"):
        if ref.revision:
            raise ConfigError(f"{where}: the revision is given twice (in `hub:` after @ and in `revision:`)")
        ref = HubRef(ref.repo_id, entry["revision"], ref.subfolder)
    if entry.get("subfolder"):
        if ref.subfolder:
            raise ConfigError(f"{where}: the subfolder is given twice (in `hub:` and in `subfolder:`)")
        ref = HubRef(ref.repo_id, ref.revision, entry["subfolder"].strip("/"))
    return None, str(ref)
