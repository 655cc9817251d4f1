"""Workloads: prompt sources per domain and the order they are served in (DESIGN.md section 9).

Sources: JSONL shipped in the repo (`{"id", "domain", "prompt"}` per line),
Spec-Bench's `question.jsonl` (`question_id`, `category`, `turns`; the
category becomes the domain), or any Hugging Face `datasets` dataset (a local
file or folder, or a hub name when online) with a field mapping.
Schedules: `mixed` (seeded interleaving), `shift` (blocks of one domain, then
the next: the distribution-shift case) or `order` (the sources' own order).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hedgespec_cli.config import check_keys, check_value, find_named, read_yaml
from hedgespec_cli.errors import WorkloadError

WORKLOAD_KEYS = {"name", "description", "sources", "schedule", "prompts_per_domain", "seed", "max_new_tokens"}
SOURCE_KEYS = {"domain", "path", "dataset", "config", "split", "data_files", "text_field", "turns_field",
               "domain_field", "limit", "seed"}
SCHEDULES = ("mixed", "shift", "order")
_JSON_KINDS = {str: "string", list: "array", int: "number", float: "number", bool: "boolean", type(None): "null"}


@dataclass(frozen=True)
class Prompt:
    id: str
    domain: str | None
    text: str


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    source: Path
    prompts: tuple[Prompt, ...]
    schedule: str
    seed: int
    max_new_tokens: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": str(self.source),
            "schedule": self.schedule,
            "seed": self.seed,
            "max_new_tokens": self.max_new_tokens,
            "prompts": len(self.prompts),
            "domains": sorted({p.domain or "-" for p in self.prompts}),
        }


def load_workload(name_or_path: str, *, limit: int | None = None) -> Workload:
    """Read a workload YAML, load its sources, and order the prompts by its schedule."""
    path = find_named(name_or_path, "workloads", "workload")
    data = read_yaml(path, "workload")
    where = f"workload {path}"
    check_keys(data, WORKLOAD_KEYS, where)
    schedule = data.get("schedule", "mixed")
    if schedule not in SCHEDULES:
        raise WorkloadError(f"{where}: unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    sources = data.get("sources") or []
    if not isinstance(sources, list) or not sources:
        raise WorkloadError(f"{where} needs a non-empty `sources:` list")
    for key in ("prompts_per_domain", "seed", "max_new_tokens"):
        check_value(key, data.get(key), int, where)
    for key in ("prompts_per_domain", "max_new_tokens"):
        if data.get(key) is not None and data[key] < 1:
            raise WorkloadError(f"{where}: {key} must be at least 1 (got {data[key]})")
    per_domain = data.get("prompts_per_domain")
    seed = data.get("seed", 0)
    by_source = []
    for i, src in enumerate(sources):
        if not isinstance(src, dict):
            raise WorkloadError(f"{where}: source #{i + 1} must be a mapping")
        check_keys(src, SOURCE_KEYS, f"{where} source #{i + 1}")
        for key in ("limit", "seed"):
            check_value(key, src.get(key), int, f"{where} source #{i + 1}")
        prompts = _load_source(src, path.parent, where)
        by_source.append(prompts[:per_domain] if per_domain else prompts)
    ordered = schedule_prompts(by_source, schedule, seed)
    if limit is not None:
        ordered = ordered[:limit]
    if not ordered:
        raise WorkloadError(f"{where} yields no prompts; check its sources and prompts_per_domain")
    seen: set[str] = set()
    twice = [p.id for p in ordered if p.id in seen or seen.add(p.id)]
    if twice:  # runs key their records by prompt id
        raise WorkloadError(f"{where}: prompt id {twice[0]!r} appears more than once; give every prompt a unique `id`")
    empty = [p.id for p in ordered if not p.text.strip()]
    if empty:
        raise WorkloadError(f"{where}: prompt {empty[0]!r} is empty; remove it or fix its source")
    return Workload(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        source=path,
        prompts=tuple(ordered),
        schedule=schedule,
        seed=seed,
        max_new_tokens=data.get("max_new_tokens"),
    )


def schedule_prompts(groups: list[list[Prompt]], schedule: str, seed: int) -> list[Prompt]:
    """Order prompts: `shift` keeps each domain's block together, `mixed` interleaves."""
    if schedule == "order":
        return [p for g in groups for p in g]
    by_domain: dict[str | None, list[Prompt]] = {}
    for p in (p for g in groups for p in g):
        by_domain.setdefault(p.domain, []).append(p)
    if schedule == "shift":
        return [p for block in by_domain.values() for p in block]
    mixed = [p for block in by_domain.values() for p in block]
    random.Random(seed).shuffle(mixed)
    return mixed


def _load_source(src: dict, base: Path, where: str) -> list[Prompt]:
    if "dataset" in src:
        return _load_dataset(src, base, where)
    if "path" not in src:
        raise WorkloadError(f"{where}: each source needs `path` (JSONL) or `dataset`")
    path = base / src["path"]
    if not path.is_file():
        raise WorkloadError(f"{where}: prompt file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM is not part of the JSON
    except OSError as err:
        raise WorkloadError(f"{where}: cannot read prompt file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:  # JSON text is UTF-8 (RFC 8259); Latin-1 and UTF-16 files land here
        raise WorkloadError(
            f"{path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise WorkloadError(f"{path}:{lineno} is not valid JSON") from None
        if not isinstance(row, dict):
            raise WorkloadError(f"{path}:{lineno} is a JSON {_JSON_KINDS.get(type(row), type(row).__name__)}, "
                                'not an object; write one {"id": ..., "prompt": ...} object per line')
        rows.append(row)
    return [_row_to_prompt(r, src, f"{path}:{i + 1}", f"{path.stem}-{i}") for i, r in enumerate(rows)]


def _row_to_prompt(row: dict, src: dict, where: str, fallback_id: str) -> Prompt:
    """One record -> Prompt, for our JSONL, Spec-Bench rows and datasets rows alike."""
    text_field, turns_field = src.get("text_field"), src.get("turns_field", "turns")
    if text_field:
        text = row.get(text_field)
    elif "prompt" in row:
        text = row["prompt"]
    elif "text" in row:
        text = row["text"]
    else:
        turns = row.get(turns_field)
        text = turns[0] if isinstance(turns, list) and turns else None
    if not isinstance(text, str):
        raise WorkloadError(
            f"{where}: no prompt text (looked for {text_field or 'prompt/text/' + turns_field}); "
            "set text_field or turns_field in the workload source"
        )
    domain = src.get("domain") or row.get(src.get("domain_field", "domain")) or row.get("category")
    qid = row.get("id", row.get("question_id", fallback_id))
    return Prompt(str(qid), domain, text)


def _load_dataset(src: dict, base: Path, where: str) -> list[Prompt]:
    import datasets  # heavy; only workloads that name a dataset pay for it

    name = src["dataset"]
    local = base / name
    kwargs: dict[str, Any] = {"split": src.get("split", "train")}
    if local.exists():
        if local.is_file():
            fmt = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(local.suffix)
            if fmt is None:
                raise WorkloadError(f"{where}: cannot tell the format of {local}; use .jsonl, .json, .csv or .parquet")
            name, kwargs["data_files"] = fmt, str(local)
        else:
            name = str(local)
    elif src.get("data_files"):
        kwargs["data_files"] = src["data_files"]
    try:
        ds = datasets.load_dataset(name, src.get("config"), **kwargs)  # config: e.g. gsm8k's "main"
    except Exception as err:  # datasets raises many types (FileNotFound, ConnectionError, ValueError)
        raise WorkloadError(f"{where}: cannot load dataset {src['dataset']!r}: {str(err).splitlines()[0]}") from None
    if src.get("seed") is not None:
        ds = ds.shuffle(seed=int(src["seed"]))
    if src.get("limit"):
        ds = ds.select(range(min(int(src["limit"]), len(ds))))
    stem = Path(str(src["dataset"])).stem
    return [_row_to_prompt(dict(row), src, f"{src['dataset']} row {i}", f"{stem}-{i}") for i, row in enumerate(ds)]
