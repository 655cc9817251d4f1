"""The run directory: names, atomic and incremental writes, validated reads, env.json."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml

from hedgespec_cli.rundir import SCHEMA, RunDir, env_fingerprint, load_results, read_jsonl
from hedgespec_cli.errors import RunDirError
from hedgespec_cli.files import dumps_json, to_json_safe

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_create_names_and_collisions(tmp_path):
    a = RunDir.create(tmp_path / "runs", "tiny-zoo", "mixed", now=NOW)
    b = RunDir.create(tmp_path / "runs", "tiny-zoo", "mixed", now=NOW)
    c = RunDir.create(tmp_path / "runs", "profiles/big model.yaml", "workloads/shift.yaml", now=NOW)
    assert a.path.name == "20260102T030405Z-tiny-zoo-mixed"
    assert b.path.name == "20260102T030405Z-tiny-zoo-mixed-2"
    assert c.path.name == "20260102T030405Z-big-model-shift"
    assert all(p.path.is_dir() and not any(p.path.iterdir()) for p in (a, b, c))


def test_create_unwritable_root_says_how_to_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirError, match=r"cannot write to .*file.*pass --out to a writable directory"):
        RunDir.create(blocker / "runs", "p", "w")


def test_json_safe_replaces_non_finite_and_numpy():
    obj = {"a": float("nan"), "b": [float("inf"), 1.5, np.float32(2.0)], "c": np.arange(3), "d": (1, None)}
    assert to_json_safe(obj) == {"a": None, "b": [None, 1.5, 2.0], "c": [0, 1, 2], "d": [1, None]}
    assert json.loads(dumps_json({"x": np.float64("nan")})) == {"x": None}
    with pytest.raises(TypeError):
        to_json_safe(object())


def test_write_json_and_yaml_are_atomic_and_strict(tmp_path):
    run = RunDir.create(tmp_path, "p", "w", now=NOW)
    run.write_json("results.json", {"schema": SCHEMA, "x": float("-inf")})
    run.write_json("results.json", {"schema": SCHEMA, "x": 1.0})  # replaces
    run.write_yaml("config.yaml", {"K": 5, "temperature": float("nan"), "drafters": [{"name": "a"}]})
    assert [p.name for p in sorted(run.path.iterdir())] == ["config.yaml", "results.json"]  # no temp files
    assert load_results(run.path)["x"] == 1.0
    assert yaml.safe_load(run.file("config.yaml").read_text()) == {
        "K": 5, "temperature": None, "drafters": [{"name": "a"}]}


def test_append_jsonl_incremental_and_readable_while_open(tmp_path):
    with RunDir.create(tmp_path, "p", "w", now=NOW) as run:
        run.append_jsonl("queries.jsonl", {"i": 0, "v": float("nan")})
        run.extend_jsonl("queries.jsonl", [{"i": 1}, {"i": 2}], fsync=False)
        # Another reader (a separate open) sees every finished line already.
        assert read_jsonl(run.file("queries.jsonl")) == [{"i": 0, "v": None}, {"i": 1}, {"i": 2}]
        assert run.read_jsonl("queries.jsonl")[-1] == {"i": 2}


def test_read_jsonl_drops_an_interrupted_last_line_only(tmp_path):
    f = tmp_path / "rounds.jsonl"
    f.write_text('{"n": 1}\n{"n": 2}\n{"n": 3, "dra')
    assert read_jsonl(f) == [{"n": 1}, {"n": 2}]
    f.write_text('{"n": 1}\n{"n": 2, "dra\n{"n": 3}\n')
    with pytest.raises(RunDirError, match="line 2 is not valid JSON"):
        read_jsonl(f)


def test_load_results_validation(tmp_path):
    with pytest.raises(RunDirError, match="no results.json in"):
        load_results(tmp_path)
    with pytest.raises(RunDirError, match="does not exist"):
        load_results(tmp_path / "nope.json")
    f = tmp_path / "results.json"
    f.write_text(json.dumps({"schema": SCHEMA, "methods": {"a": 1}})[:20])
    with pytest.raises(RunDirError, match="not valid JSON.*truncated"):
        load_results(tmp_path)
    f.write_text(json.dumps({"methods": {}}))
    with pytest.raises(RunDirError, match="no 'schema' field"):
        load_results(f)
    f.write_text(json.dumps({"schema": "hedgespec.run/0"}))
    with pytest.raises(RunDirError, match="schema 'hedgespec.run/0'"):
        load_results(f)
    f.write_text(json.dumps({"schema": SCHEMA, "complete": False}))
    assert load_results(f)["complete"] is False


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_env_fingerprint_git_and_versions(tmp_path):
    env = env_fingerprint(cwd=tmp_path)  # not a repository: tolerated
    assert env["git_sha"] is None and env["git_dirty"] is None
    for key in ("python", "torch", "transformers", "cuda", "driver", "device_names", "cpu_model"):
        assert key in env
    assert env["device_names"], "CPU-only machines name their CPU"
    json.loads(dumps_json(env))

    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "x")
    clean = env_fingerprint(cwd=tmp_path)
    assert len(clean["git_sha"]) == 40 and clean["git_dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert env_fingerprint(cwd=tmp_path)["git_dirty"] is True
