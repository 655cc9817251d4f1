"""Files the toolkit writes: atomic replacement, the one JSON writer, output paths checked up front.

Every JSON file (results, manifests, checkpoints' config.json, --output
exports) goes through `write_json`: strict JSON with None for NaN/inf,
replaced atomically. A path the user names for output (a trace, a plots
folder, a comparison) is checked before any work starts, so a typo costs one
line on stderr instead of a finished run's result.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hedgespec_cli.errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_json_safe(obj: Any) -> Any:
    """A copy of obj that `json.dumps(allow_nan=False)` accepts.

    Non-finite floats become None (JSON has no NaN; DESIGN.md habit 9), numpy
    scalars/arrays become Python numbers/lists, tuples and sets become lists,
    paths become strings.
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, without importing numpy
        return to_json_safe(obj.tolist())
    raise TypeError(f"cannot store {type(obj).__name__} in JSON: {obj!r}")


def dumps_json(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of obj after `to_json_safe`."""
    return json.dumps(to_json_safe(obj), allow_nan=False, indent=indent, ensure_ascii=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """The one way a JSON file is written: obj as indented strict JSON (`dumps_json`), atomically."""
    path = Path(path)
    atomic_write_text(path, dumps_json(obj, indent=2) + "\n")
    return path


def write_output(path: Path, obj: Any) -> None:
    """A user-named JSON output file (`--output`), by `write_json`; an unwritable path is one ConfigError."""
    try:
        write_json(path, obj)
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror or err}; pass --output a writable path") from err


def atomic_write_text(path: Path, text: str) -> None:
    """Replace path with text: a reader sees the old file or the new one, never a mix.
    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_file(path: str | os.PathLike[str], what: str) -> Path:
    """A file path to write `what` to: its folder is created now; ConfigError if it cannot be."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file path")
    _make_folder(path.parent, what)
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write {what} {path}: its folder is not writable; choose another path")
    return path


def output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """A folder to write `what` into, created now; ConfigError if it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} folder {path} is a file; give a folder path")
    _make_folder(path, what)
    if not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write {what} into {path}: not writable; choose another folder")
    return path


def _make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the folder {folder} for {what}: {err.strerror}; choose another path"
        ) from None
