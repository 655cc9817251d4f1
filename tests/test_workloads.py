"""Profiles and workloads: loading, schedules, and the errors a user sees."""

from __future__ import annotations

import json

import pytest

from hedgespec_cli.config import load_profile
from hedgespec_cli.errors import ConfigError, WorkloadError
from hedgespec_cli.workloads import load_workload


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def wl_dir(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": f"a{i}", "domain": "alpha", "prompt": f"A {i}"} for i in range(4)])
    write_jsonl(tmp_path / "b.jsonl", [{"id": f"b{i}", "domain": "beta", "prompt": f"B {i}"} for i in range(4)])
    return tmp_path


def workload(path, **extra):
    body = {"name": "w", "sources": [{"path": "a.jsonl"}, {"path": "b.jsonl"}], **extra}
    (path / "w.yaml").write_text(json.dumps(body))  # JSON is valid YAML
    return str(path / "w.yaml")


def test_shift_keeps_domain_blocks_and_mixed_interleaves(wl_dir):
    shift = load_workload(workload(wl_dir, schedule="shift", prompts_per_domain=3))
    assert [p.domain for p in shift.prompts] == ["alpha"] * 3 + ["beta"] * 3
    mixed = load_workload(workload(wl_dir, schedule="mixed", seed=1))
    assert sorted(p.id for p in mixed.prompts) == sorted([f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)])
    assert [p.domain for p in mixed.prompts] != sorted(p.domain for p in mixed.prompts)
    assert mixed.prompts == load_workload(workload(wl_dir, schedule="mixed", seed=1)).prompts


def test_spec_bench_question_file_reads_directly(tmp_path):
    rows = [{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
            {"question_id": 82, "category": "math", "turns": ["2+2?"]}]
    write_jsonl(tmp_path / "question.jsonl", rows)
    (tmp_path / "sb.yaml").write_text("name: sb\nschedule: order\nsources:\n  - {path: question.jsonl}\n")
    prompts = load_workload(str(tmp_path / "sb.yaml")).prompts
    assert [(p.id, p.domain, p.text) for p in prompts] == [("81", "writing", "Write a poem."), ("82", "math", "2+2?")]


def test_datasets_source_with_field_mapping(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", [{"body": f"text {i}", "topic": "t"} for i in range(5)])
    (tmp_path / "ds.yaml").write_text(
        "name: ds\nschedule: order\nsources:\n  - {dataset: rows.jsonl, text_field: body, domain_field: topic, limit: 3}\n"
    )
    prompts = load_workload(str(tmp_path / "ds.yaml")).prompts
    assert [(p.domain, p.text) for p in prompts] == [("t", "text 0"), ("t", "text 1"), ("t", "text 2")]


@pytest.mark.parametrize(
    "body, error, message",
    [
        ("name: w\nsources: []\n", WorkloadError, "non-empty `sources:`"),
        ("name: w\nbogus: 1\nsources: [{path: a.jsonl}]\n", ConfigError, "unknown key\\(s\\) 'bogus'"),
        ("name: w\nsources: [{path: a.jsonl}\n", ConfigError, "not valid YAML at line"),
        ("name: w\nschedule: zigzag\nsources: [{path: a.jsonl}]\n", WorkloadError, "unknown schedule 'zigzag'"),
        ("name: w\nsources: [{path: missing.jsonl}]\n", WorkloadError, "does not exist"),
        ("name: w\nsources: [{path: empty.jsonl}]\n", WorkloadError, "is empty"),
        ("name: w\nseed: abc\nsources: [{path: a.jsonl}]\n", ConfigError, "seed must be an integer \\(got 'abc'\\)"),
        ("name: w\nprompts_per_domain: -2\nsources: [{path: a.jsonl}]\n", WorkloadError, "prompts_per_domain must be at least 1"),
        ("name: w\nsources: [{path: a.jsonl, limit: 2.5}]\n", ConfigError, "source #1: limit must be an integer"),
        ("name: w\nsources: [{path: a.jsonl}, {path: a.jsonl}]\n", WorkloadError, "appears more than once"),
    ],
)
def test_bad_workloads(wl_dir, body, error, message):
    write_jsonl(wl_dir / "empty.jsonl", [{"id": "e", "domain": "x", "prompt": "  "}])
    (wl_dir / "bad.yaml").write_text(body)
    with pytest.raises(error, match=message):
        load_workload(str(wl_dir / "bad.yaml"))


def test_unknown_names_list_what_exists():
    with pytest.raises(ConfigError, match="unknown profile 'nope'; available: "):
        load_profile("nope")
    with pytest.raises(ConfigError, match="unknown workload 'nope'"):
        load_workload("nope")


def test_profile_validation(tmp_path):
    good = "name: p\ntarget: {path: t}\ndrafters:\n  - {name: a, path: a, domain: code, role: generic}\n"
    (tmp_path / "p.yaml").write_text(good)
    profile = load_profile(str(tmp_path / "p.yaml"))
    assert profile.generic().name == "a" and profile.drafters[0].path == tmp_path / "a"
    (tmp_path / "q.yaml").write_text(good + "  - {name: b, path: b, colour: red}\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'colour' in .* drafter 'b'"):
        load_profile(str(tmp_path / "q.yaml"))
    (tmp_path / "r.yaml").write_text("name: p\ndrafters: [{name: a, path: a}]\n")
    with pytest.raises(ConfigError, match="needs `target"):
        load_profile(str(tmp_path / "r.yaml"))


@pytest.mark.parametrize("decoding, message", [
    ("{K: five}", "decoding: K must be an integer \\(got 'five'\\)"),
    ("{temperature: hot}", "temperature must be a number"),
    ("{K: true}", "K must be an integer"),
    ("5", "decoding must be a mapping"),
])
def test_profile_decoding_values_are_typed(tmp_path, decoding, message):
    (tmp_path / "p.yaml").write_text(f"name: p\ntarget: {{path: t}}\ndrafters: [{{name: a, path: a}}]\ndecoding: {decoding}\n")
    with pytest.raises(ConfigError, match=message):
        load_profile(str(tmp_path / "p.yaml"))
