"""The run directory of DESIGN.md section 8, and reading it back.

A run writes `runs/<UTC timestamp>-<profile>-<workload>/` with `config.yaml`,
`env.json`, `results.json` (schema `hedgespec.run/1`), `rounds.jsonl`,
`queries.jsonl` and `telemetry.jsonl`. Whole files are replaced atomically
(temp file in the same directory, fsync, `os.replace`), so a reader never
sees half a `results.json`; JSONL files grow one fsynced line at a time, so an
interrupted run keeps every record it finished. JSON holds `None`, never
NaN/inf.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from hedgespec_cli.errors import RunDirError
from hedgespec_cli.files import atomic_write_text, dumps_json, to_json_safe, write_json

SCHEMA = "hedgespec.run/1"
RESULTS = "results.json"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL file.

    A last line without its newline that does not parse is the record an
    interrupted run was writing: it is dropped. A bad line anywhere else means
    the file is damaged and raises RunDirError.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RunDirError(
            f"cannot read {path}: {err.strerror or err}; pass the directory `hedgespec bench` wrote"
        ) from err
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines):  # unterminated last line: the interrupted write
                break
            raise RunDirError(
                f"{path} line {i} is not valid JSON ({err.msg}); the file is damaged, rerun the benchmark"
            ) from err
        if not isinstance(rec, dict):
            raise RunDirError(f"{path} line {i} is not a JSON object; rerun the benchmark")
        records.append(rec)
    return records


def load_results(path: str | Path) -> dict[str, Any]:
    """The validated `results.json` of a run (path: the run directory or the file itself)."""
    path = Path(path)
    file = path / RESULTS if path.is_dir() else path
    if not file.is_file():
        where = f"no {RESULTS} in {path}" if path.is_dir() else f"{file} does not exist"
        raise RunDirError(
            f"{where}; pass a run directory written by `hedgespec bench` "
            f"(runs/<timestamp>-<profile>-<workload>/) or its {RESULTS}"
        )
    return _read_payload(file, SCHEMA, "results")


def _read_payload(file: Path, schema: str, what: str) -> dict[str, Any]:
    """A JSON object with `schema` from file, or a RunDirError that says what is wrong with it."""
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as err:
        raise RunDirError(f"cannot read {file}: {err.strerror or err}; check the path and its permissions") from err
    except UnicodeDecodeError as err:
        raise RunDirError(f"{file} is not UTF-8 text (byte at offset {err.start}): not a hedgespec {what} file; "
                          "rerun `hedgespec bench`") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{file} is not valid JSON ({err.msg}: line {err.lineno}, column {err.colno}); "
            "it is truncated or was not written by hedgespec: rerun `hedgespec bench`"
        ) from err
    if not isinstance(data, dict) or "schema" not in data:
        raise RunDirError(
            f"{file} has no 'schema' field: not a hedgespec {what} file; "
            f"pass the {file.name} that `hedgespec bench` wrote"
        )
    if data["schema"] != schema:
        raise RunDirError(
            f"{file} has schema {data['schema']!r}, this hedgespec reads {schema!r}; "
            "read it with the hedgespec version that wrote it, or rerun the benchmark"
        )
    return data


# What `report` reads from a results.json; `bench` always writes all of it.
REPORT_FIELDS = ("complete", "config", "elapsed_s", "methods", "validity")
REPORT_CONFIG_FIELDS = ("K", "max_new_tokens", "profile", "temperature", "workload")
REPORT_METHOD_FIELDS = ("acceptance_rate", "by_domain", "eval_overhead_frac", "mat", "regret_vs_oracle",
                        "speedup_vs_ar", "tokens_per_s")
REPORT_VALIDITY_FIELDS = ("constraints", "notes", "valid")


def _require(obj: Any, keys: tuple[str, ...], file: Path, where: str = "") -> None:
    at = f"{file}: {where}" if where else str(file)
    if not isinstance(obj, dict):
        raise RunDirError(f"{at} is not a JSON object; the file is damaged: rerun `hedgespec bench`")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise RunDirError(f"{at} lacks {', '.join(map(repr, missing))}; the file is incomplete or was not written "
                          "by this hedgespec: rerun `hedgespec bench`")


def check_report_fields(data: dict[str, Any], file: Path) -> None:
    """RunDirError unless a loaded results.json holds every field `report` renders."""
    _require(data, REPORT_FIELDS, file)
    _require(data["config"], REPORT_CONFIG_FIELDS, file, "config")
    _require(data["validity"], REPORT_VALIDITY_FIELDS, file, "validity")
    _require(data["methods"], (), file, "methods")
    for name, method in data["methods"].items():
        _require(method, REPORT_METHOD_FIELDS, file, f"method {name!r}")


SWEEP_SCHEMA = "hedgespec.sweep/1"


def load_sweep(folder: str | Path) -> dict[str, Any]:
    """The validated `sweep.json` of a `bench --sweep-drafters` run: every field `report` renders."""
    file = Path(folder) / "sweep.json"
    data = _read_payload(file, SWEEP_SCHEMA, "sweep")
    _require(data, ("by_n", "complete", "elapsed_s", "run_dir"), file)
    by_n = data["by_n"]
    _require(by_n, (), file, "by_n")
    if not by_n:
        raise RunDirError(f"{file} holds no pool size (by_n is empty): the sweep stopped before its first; "
                          "rerun it")
    for n, block in by_n.items():
        _require(block, ("methods",), file, f"pool size {n}")
        _require(block["methods"], (), file, f"pool size {n} methods")
        for name, method in block["methods"].items():
            _require(method, ("mat", "tokens_per_s", "eval_overhead_frac"), file, f"pool size {n} method {name!r}")
    return data


def _slug(text: str) -> str:
    """A file-name-safe form of a profile/workload name (they may be paths)."""
    name = str(text)
    if "/" in name or name.endswith((".yaml", ".yml")):
        name = Path(name).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "unnamed"


class RunDir:
    """One run's directory. JSONL files stay open while the run appends to them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._streams: dict[str, IO[str]] = {}

    @classmethod
    def create(
        cls, root: str | Path, profile: str, workload: str, *, now: datetime | None = None
    ) -> RunDir:
        """Make `<root>/<UTC timestamp>-<profile>-<workload>/` (suffix -2, -3 ... if taken)."""
        root = Path(root)
        stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{stamp}-{_slug(profile)}-{_slug(workload)}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            for attempt in range(1, 1000):
                path = root / (base if attempt == 1 else f"{base}-{attempt}")
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
            else:
                raise FileExistsError(f"{base} and 998 numbered variants exist")
            # mkdir can succeed where files cannot be written (quotas, odd mounts): probe once.
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            reason = err.strerror or str(err)
            raise RunDirError(f"cannot write to {root}: {reason}; pass --out to a writable directory") from err
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        """Atomically replace `name` with obj as indented strict JSON."""
        return write_json(self.file(name), obj)

    def write_yaml(self, name: str, obj: Any) -> Path:
        """Atomically replace `name` with obj as YAML (key order kept)."""
        import yaml

        target = self.file(name)
        atomic_write_text(target, yaml.safe_dump(to_json_safe(obj), sort_keys=False, allow_unicode=True))
        return target

    def append_jsonl(self, name: str, obj: Any, *, fsync: bool = True) -> None:
        """Append one record; flushed and fsynced so an interruption loses nothing finished.

        fsync=False suits high-rate streams whose loss on power failure is
        acceptable; the line still reaches the OS (survives a killed process).
        """
        self.extend_jsonl(name, (obj,), fsync=fsync)

    def extend_jsonl(self, name: str, objs: Iterable[Any], *, fsync: bool = True) -> None:
        """Append several records with one write and one fsync (e.g. a query's rounds)."""
        text = "".join(dumps_json(o) + "\n" for o in objs)
        if not text:
            return
        fh = self._streams.get(name)
        if fh is None:
            fh = self._streams[name] = open(self.file(name), "a", encoding="utf-8")
        fh.write(text)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        fh = self._streams.get(name)
        if fh is not None:
            fh.flush()
        return read_jsonl(self.file(name))

    def close(self) -> None:
        for fh in self._streams.values():
            fh.close()
        self._streams.clear()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


# -- environment fingerprint ----------------------------------------------------


def _dist_version(name: str) -> str | None:
    """Installed version without importing the package (transformers takes seconds)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):  # no git, not a repo, no commits yet
        return None
    return out.stdout


def _nvml_driver(nvml: Any) -> str | None:
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return None
    nvml_error = getattr(nvml, "NVMLError", OSError)
    try:
        nvml.nvmlInit()
    except (nvml_error, OSError):  # no driver or no library: the version stays unknown
        return None
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        return driver.decode() if isinstance(driver, bytes) else str(driver)
    except nvml_error:
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml_error:
            pass


def env_fingerprint(*, cwd: str | Path | None = None, nvml: Any = None) -> dict[str, Any]:
    """What `env.json` records and `compare` checks.

    `device_names` lists the CUDA devices, or `["cpu: <model>"]` on a machine
    without CUDA, so that CPU runs on different processors are told apart too.
    nvml: an NVML module for the driver version (default `pynvml`, if present).
    """
    cpu = _cpu_model()
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": None,
        "transformers": _dist_version("transformers"),
        "numpy": _dist_version("numpy"),
        "hedgespec": _dist_version("hedgespec-cli"),
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cuda": None,
        "cuda_available": False,
        "driver": None,
        "device_names": [f"cpu: {cpu}"],
        "git_sha": None,
        "git_dirty": None,
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["cuda_available"] = True
            env["device_names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            env["driver"] = _nvml_driver(nvml)
    except ImportError:
        env["torch"] = None
    repo = Path(cwd) if cwd is not None else Path.cwd()
    sha = _git(["rev-parse", "HEAD"], repo)
    if sha:
        env["git_sha"] = sha.strip()
        status = _git(["status", "--porcelain"], repo)
        env["git_dirty"] = None if status is None else bool(status.strip())
    return env
