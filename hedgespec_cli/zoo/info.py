"""What is in a zoo directory: one row per model, read from config.json and safetensors headers.

No torch import: parameter counts and dtypes come from the safetensors header
(8-byte little-endian length + JSON), so `hedgespec zoo info` is instant.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from hedgespec_cli.errors import CheckpointError

_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def _safetensors_summary(model_dir: Path) -> tuple[int, str]:
    """(parameter count, dtype) over every *.safetensors file in `model_dir`."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors file in {model_dir}; rebuild it with `hedgespec zoo build`")
    params, dtypes = 0, set()
    for path in files:
        with path.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            params += math.prod(entry["shape"])
            dtypes.add(_DTYPE_NAMES.get(entry["dtype"], entry["dtype"]))
    return params, "/".join(sorted(dtypes))


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _model_row(name: str, path: Path, role: str, domain: str | None, built: dict) -> dict:
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path} has no config.json; rebuild the zoo with `hedgespec zoo build`")
    config = json.loads((path / "config.json").read_text())
    params, dtype = _safetensors_summary(path)
    return {
        "name": name, "role": role, "domain": domain, "path": str(path),
        "params": params, "dtype": dtype, "size_bytes": _dir_size(path),
        "layers": config.get("num_hidden_layers"), "hidden": config.get("hidden_size"),
        "heldout_loss": built.get("heldout_loss"),
        "steps": built.get("steps"), "train_tokens": built.get("tokens"),
    }


def _devices(manifest: dict) -> str | None:
    """Where the models trained: "cpu", "cuda", or "target cuda, drafters cpu" after a drafters-only
    rebuild elsewhere. Entries without a device fall back to the build's (builds from before
    `--device` trained on the CPU)."""
    if not manifest:
        return None
    build = manifest.get("spec", {}).get("device", "cpu")
    models = manifest.get("models", {})
    target = models.get("target", {}).get("device", build)
    drafters = {m.get("device", build) for n, m in models.items() if n != "target"} or {target}
    if drafters == {target}:
        return target
    return f"target {target}, drafters {'/'.join(sorted(drafters))}"


def zoo_info(zoo_dir: Path) -> dict:
    """Payload describing the zoo at `zoo_dir` (a built directory with target/ and drafters/)."""
    zoo_dir = Path(zoo_dir)
    if not (zoo_dir / "target").is_dir():
        raise CheckpointError(f"{zoo_dir} is not a zoo directory (no target/); "
                              "build one with `hedgespec zoo build --out DIR`")
    manifest_path = zoo_dir / "build.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    built = manifest.get("models", {})
    rows = [_model_row("target", zoo_dir / "target", "target", None, built.get("target", {}))]
    for path in sorted(p for p in (zoo_dir / "drafters").glob("*") if p.is_dir()):
        entry = built.get(path.name, {})
        role = entry.get("role", "generic" if path.name == "generic" else "expert")
        domain = entry.get("domain", None if role == "generic" else path.name)
        rows.append(_model_row(path.name, path, role, domain, entry))
    return {
        "zoo": str(zoo_dir),
        "seed": manifest.get("seed"),
        "vocab_size": manifest.get("vocab_size"),
        "domains": list(manifest.get("sources", {})),
        "wall_s": manifest.get("wall_s"),
        "device": _devices(manifest),
        "torch": manifest.get("versions", {}).get("torch"),
        "total_size_bytes": _dir_size(zoo_dir),
        "models": rows,
    }
