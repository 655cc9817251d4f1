"""Profiles and YAML settings: frozen dataclasses, validated once.

A profile names the target, the drafter pool and decoding defaults
(DESIGN.md section 9). Paths inside a profile are relative to its file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hedgespec_cli.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE_KEYS = {"name", "description", "target", "tokenizer", "drafters", "dtype", "drafter_dtype", "device", "decoding"}
DRAFTER_KEYS = {"name", "kind", "path", "domain", "role"}
DECODING_TYPES: dict[str, type] = {"K": int, "temperature": float, "top_p": float, "max_new_tokens": int,
                                   "tree_top_k": int, "tree_tokens": int, "counterfactual": str}
DECODING_KEYS = set(DECODING_TYPES)


@dataclass(frozen=True)
class ModelSpec:
    """One checkpoint: where it is and what it is for (role `generic` marks the baseline)."""

    name: str
    path: Path
    kind: str = "lm"
    domain: str | None = None
    role: str | None = None


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
            "target": {"name": self.target.name, "path": str(self.target.path)},
            "tokenizer": str(self.tokenizer) if self.tokenizer else None,
            "drafters": [
                {"name": d.name, "kind": d.kind, "path": str(d.path), "domain": d.domain, "role": d.role}
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
    if "target" not in data or not isinstance(data["target"], dict) or "path" not in data["target"]:
        raise ConfigError(f"{where} needs `target: {{path: DIR}}`")
    drafters = data.get("drafters") or []
    if not isinstance(drafters, list) or not drafters:
        raise ConfigError(f"{where} needs a non-empty `drafters:` list")
    entries = []
    for i, d in enumerate(drafters):
        if not isinstance(d, dict) or "name" not in d or "path" not in d:
            raise ConfigError(f"{where}: drafter #{i + 1} needs at least `name` and `path`")
        check_keys(d, DRAFTER_KEYS, f"{where} drafter {d.get('name')!r}")
        entries.append(
            ModelSpec(str(d["name"]), base / d["path"], d.get("kind", "lm"), d.get("domain"), d.get("role"))
        )
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
    return Profile(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        source=path,
        target=ModelSpec(str(target.get("name", "target")), base / target["path"]),
        drafters=tuple(entries),
        tokenizer=base / data["tokenizer"] if data.get("tokenizer") else None,
        dtype=str(data.get("dtype", "float32")),
        device=str(data.get("device", "cpu")),
        drafter_dtype=str(data["drafter_dtype"]) if data.get("drafter_dtype") else None,
        decoding=decoding,
    )
