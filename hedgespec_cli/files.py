"""Files the toolkit writes for the user: atomic replacement, and output paths checked up front.

A path the user names for output (a trace, a plots folder, a comparison) is
checked before any work starts, so a typo costs one line on stderr instead of
a finished run's result.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hedgespec_cli.errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_output(path: Path, text: str) -> None:
    """A user-named output file (`--output`), written atomically; an unwritable path is one ConfigError."""
    try:
        atomic_write_text(path, text)
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
