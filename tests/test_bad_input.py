"""Bad input, as a user's shell meets it: one `error:` line on stderr, exit 2, no traceback,
and no run directory created or changed when nothing was measured (issue 15).

Every case runs the console entry point in-process. Cheap settings are also checked to
fail before any model loads: the loaders are wrapped to count their calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hedgespec_cli.rundir import read_jsonl


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Names of the pools the run loads: the real loader, counted."""
    import hedgespec_cli.bench.run as bench_run
    import hedgespec_cli.bench.sweep as sweep

    calls: list[str] = []
    real = bench_run.open_pool

    def counted(profile, **kw):
        calls.append(profile.name)
        return real(profile, **kw)

    monkeypatch.setattr(bench_run, "open_pool", counted)
    monkeypatch.setattr(sweep, "open_pool", counted)
    return calls


def assert_one_error_line(code: int, err: str, says: str, case) -> None:
    assert code == 2, (case, err)
    assert "Traceback" not in err, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
    assert says in lines[0], (case, err)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes: what "unchanged" means."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- settings that are wrong whatever the models: refused before any model loads or any run dir exists ----------


CHEAP = [
    (["--temperature", "1e-300"], "temperature 1e-300 is too small to sample at"),
    (["--temperature", "0.001"], "use --temperature 0 for greedy decoding"),
    (["--methods", "ar,fixed:near,ar"], "--methods lists 'ar' twice"),
    (["--methods", "ar,hedgespec,hedgespec:play=sample"], "lists 'hedgespec' and 'hedgespec:play=sample', the same method"),
    (["--seed", "-1"], "seed must be an integer from 0 to 4294967295 (got -1)"),
    (["--seed", str(2**64 + 1)], "seed must be an integer from 0 to 4294967295"),
    (["--sample-interval", "nan"], "sample_interval must be a number of seconds from 0.01 to 3600 (got nan)"),
    (["--sample-interval", "inf"], "sample_interval must be a number of seconds from 0.01 to 3600 (got inf)"),
    (["--sample-interval", "1e-300"], "sample_interval must be a number of seconds from 0.01 to 3600"),
    (["-K", "0"], "K must be at least 1"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--temperature", "-1"], "temperature must be a finite number >= 0"),
    (["--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    (["--sweep-drafters", "2", "-K", "0"], "K must be at least 1"),
    (["--sweep-drafters", "2", "--temperature", "1e-300"], "temperature 1e-300 is too small"),
]


@pytest.mark.parametrize("args, says", CHEAP, ids=[" ".join(a) for a, _ in CHEAP])
def test_bad_settings_fail_before_any_model_loads(args, says, tiny_bench, tmp_path, run_main, loads):
    out = tmp_path / "runs"
    code, err = run_main("bench", "--quiet", "--out", str(out), "--profile", tiny_bench["profile"],
                         "--workload", tiny_bench["workload"], *args)
    assert_one_error_line(code, err, says, args)
    assert loads == [], "a cheap setting was checked only after loading the models"
    assert not out.exists(), "a refused run created its run directory"


def test_a_profile_with_bad_decoding_defaults_fails_before_loading(tiny_bench, tmp_path, run_main, loads):
    prof = tmp_path / "p.yaml"
    prof.write_text(Path(tiny_bench["profile"]).read_text().replace("temperature: 0.0", "temperature: 1.0e-30"))
    code, err = run_main("bench", "--quiet", "--out", str(tmp_path / "runs"), "--profile", str(prof),
                         "--workload", tiny_bench["workload"])
    assert_one_error_line(code, err, "temperature 1e-30 is too small", prof)
    assert loads == [] and not (tmp_path / "runs").exists()


# -- profiles whose paths are not paths ---------------------------------------------------------------------------


def _profile_variant(tiny_bench, tmp_path, name: str, edit) -> Path:
    import yaml

    data = yaml.safe_load(Path(tiny_bench["profile"]).read_text())
    data["router"] = str(Path(tiny_bench["root"]) / data["router"])  # relative to the original's folder
    edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


PROFILE_PATHS = [
    ("target-empty", lambda d: d["target"].update(path=""), "target: path must be a non-empty string (got '')"),
    ("target-number", lambda d: d["target"].update(path=5), "target: path must be a non-empty string (got 5)"),
    ("target-null", lambda d: d["target"].update(path=None), "target: path must be a non-empty string (got None)"),
    ("drafter-number", lambda d: d["drafters"][1].update(path=7), "drafter 'far': path must be a non-empty string (got 7)"),
    ("drafter-empty", lambda d: d["drafters"][0].update(path=""), "drafter 'near': path must be a non-empty string"),
    ("tokenizer-number", lambda d: d.update(tokenizer=3), "tokenizer must be a non-empty string (got 3)"),
    ("tokenizer-empty", lambda d: d.update(tokenizer=""), "tokenizer must be a non-empty string (got '')"),
    ("router-number", lambda d: d.update(router=3), "router: path must be a non-empty string (got 3)"),
]


@pytest.mark.parametrize("name, edit, says", PROFILE_PATHS, ids=[c[0] for c in PROFILE_PATHS])
def test_a_profile_path_that_is_not_a_path(name, edit, says, tiny_bench, tmp_path, run_main, loads):
    prof = _profile_variant(tiny_bench, tmp_path, name, edit)
    code, err = run_main("bench", "--quiet", "--out", str(tmp_path / "runs"), "--profile", str(prof),
                         "--workload", tiny_bench["workload"])
    assert_one_error_line(code, err, says, name)
    assert loads == [] and not (tmp_path / "runs").exists()


# -- damaged checkpoints -------------------------------------------------------------------------------------------


def _truncate(ckpt: Path) -> None:
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _empty(ckpt: Path) -> None:
    (ckpt / "model.safetensors").write_bytes(b"")


def _garbage(ckpt: Path) -> None:
    (ckpt / "model.safetensors").write_bytes(os.urandom(4096))


def _corrupt_header(ckpt: Path) -> None:
    """A header length that fits the file, then bytes that are not its JSON."""
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:24] = b"\x00not json here\x00\x00"
    weights.write_bytes(bytes(data))


def _wider_config(ckpt: Path) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["hidden_size"] *= 2
    (ckpt / "config.json").write_text(json.dumps(cfg))


DAMAGE = [
    ("target", _truncate, "cannot load 'target'"), ("target", _empty, "cannot load 'target'"),
    ("target", _garbage, "cannot load 'target'"), ("target", _corrupt_header, "cannot load 'target'"),
    ("target", _wider_config, "config.json does not match its weights"),
    ("near", _truncate, "cannot load 'near'"), ("near", _empty, "cannot load 'near'"),
    ("near", _corrupt_header, "cannot load 'near'"),
    ("near", _wider_config, "config.json does not match its weights"),
]


@pytest.mark.parametrize("which, damage, says", DAMAGE, ids=[f"{w}-{d.__name__[1:]}" for w, d, _ in DAMAGE])
def test_a_damaged_checkpoint_is_one_line(which, damage, says, tiny_models, tiny_bench, tmp_path, run_main):
    ckpt = tmp_path / which
    shutil.copytree(tiny_models["target" if which == "target" else which], ckpt)
    damage(ckpt)
    key = "target" if which == "target" else "near"
    prof = tmp_path / "p.yaml"
    router = Path(tiny_bench["root"]) / "router.npz"  # the copy lives elsewhere: keep its classifier
    prof.write_text(Path(tiny_bench["profile"]).read_text().replace(str(tiny_models[key]), str(ckpt))
                    .replace("router: router.npz", f"router: {router}"))
    assert str(ckpt) in prof.read_text()
    out = tmp_path / "runs"
    code, err = run_main("bench", "--quiet", "--out", str(out), "--profile", str(prof),
                         "--workload", tiny_bench["workload"], "--methods", "ar,fixed:near")
    assert_one_error_line(code, err, says, (which, damage.__name__))
    assert str(ckpt) in err and "LOAD REPORT" not in err and "\x1b[" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_shape_mismatch_names_a_tensor_and_both_shapes(tiny_models, tmp_path):
    from hedgespec_cli.errors import CheckpointError
    from hedgespec_cli.models import ModelSpec, load_pool

    ckpt = tmp_path / "target"
    shutil.copytree(tiny_models["target"], ckpt)
    _wider_config(ckpt)
    with pytest.raises(CheckpointError, match=r"e\.g\. .+: weights \[\d+(, \d+)*\], config \[\d+(, \d+)*\]"):
        load_pool(ModelSpec("target", ckpt), [ModelSpec("near", tiny_models["near"])])


# -- workloads -----------------------------------------------------------------------------------------------------


def test_workload_files_that_are_not_jsonl_objects(tiny_bench, tmp_path, run_main):
    (tmp_path / "strings.jsonl").write_text('"just a prompt"\n"another"\n')
    (tmp_path / "latin1.jsonl").write_bytes('{"id": "a", "prompt": "café au lait"}\n'.encode("latin-1"))
    (tmp_path / "lists.jsonl").write_text('[1, 2]\n')
    cases = [("strings", "strings.jsonl:1 is a JSON string, not an object"),
             ("latin1", "latin1.jsonl is not UTF-8 text (byte 0xe9 at offset"),
             ("lists", "lists.jsonl:1 is a JSON array, not an object")]
    for name, says in cases:
        (tmp_path / f"{name}.yaml").write_text(f"name: {name}\nsources: [{{path: {name}.jsonl}}]\n")
        code, err = run_main("bench", "--quiet", "--out", str(tmp_path / "runs"), "--profile", tiny_bench["profile"],
                             "--workload", str(tmp_path / f"{name}.yaml"))
        assert_one_error_line(code, err, says, name)
        assert not (tmp_path / "runs").exists()


# -- resume --------------------------------------------------------------------------------------------------------


def _resume_dirs(tmp_path: Path, tiny_bench) -> list[tuple[Path, str]]:
    bench = {"profile": tiny_bench["profile"], "workload": tiny_bench["workload"], "methods": ["ar"]}
    made = []
    for name, config, says in [
        ("unrelated", {"name": "my experiment", "K": 3}, "has no `bench:` section: not a run directory written by"),
        ("scalar", {"bench": 5}, "its `bench:` section must be a mapping of settings (got 5)"),
        ("newer", {"bench": {**bench, "speculative_budget": 3}},
         "unknown setting(s) 'speculative_budget' in the `bench:` section"),
        ("sweep", {"bench": bench, "sweep_drafters": [2]}, "is a --sweep-drafters run"),
        ("badtype", {"bench": {**bench, "seed": -4}}, "seed must be an integer from 0 to 4294967295 (got -4)"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(json.dumps(config))
        (folder / "notes.txt").write_text("mine\n")
        made.append((folder, says))
    not_yaml = tmp_path / "notyaml"
    not_yaml.mkdir()
    (not_yaml / "config.yaml").write_text("- a list\n- not a mapping\n")
    made.append((not_yaml, "must be a YAML mapping"))
    return made


def test_resume_refuses_a_folder_that_is_not_a_bench_run(tiny_bench, tmp_path, run_main, loads):
    for folder, says in _resume_dirs(tmp_path, tiny_bench):
        before = snapshot(folder)
        code, err = run_main("bench", "--quiet", "--resume", str(folder))
        assert_one_error_line(code, err, says, folder.name)
        assert snapshot(folder) == before, f"--resume {folder.name} changed the folder"
    assert loads == []


# -- report on damaged files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def a_run(tiny_bench, tmp_path_factory) -> Path:
    from hedgespec_cli.bench.run import run_bench
    from hedgespec_cli.bench.settings import resolve_settings

    out = tmp_path_factory.mktemp("a-run")
    s = resolve_settings({"profile": tiny_bench["profile"], "workload": tiny_bench["workload"],
                          "methods": "ar,fixed:near", "prompts": 2, "out": str(out)}, None)
    return Path(run_bench(s)["run_dir"])


def test_report_on_damaged_results_and_sweeps(a_run, tmp_path, run_main):
    full = json.loads((a_run / "results.json").read_text())
    sweep = {"schema": "hedgespec.sweep/1", "complete": True, "sizes": [2], "elapsed_s": 1.0, "run_dir": "x",
             "config": {}, "by_n": {"2": {"drafters": ["a", "b"], "methods": {}}}}
    files = {
        "schema-only": ("results.json", json.dumps({"schema": "hedgespec.run/1"}),
                        "results.json lacks 'complete', 'config', 'elapsed_s', 'methods', 'validity'"),
        "no-methods": ("results.json", json.dumps({k: v for k, v in full.items() if k != "methods"}),
                       "results.json lacks 'methods'"),
        "method-fields": ("results.json", json.dumps({**full, "methods": {"ar": {"mat": 1.0}}}),
                          "results.json: method 'ar' lacks 'acceptance_rate'"),
        "config-fields": ("results.json", json.dumps({**full, "config": {"K": 3}}),
                          "results.json: config lacks 'max_new_tokens', 'profile', 'temperature', 'workload'"),
        "sweep-truncated": ("sweep.json", json.dumps(sweep)[:40], "sweep.json is not valid JSON"),
        "sweep-no-by_n": ("sweep.json", json.dumps({k: v for k, v in sweep.items() if k != "by_n"}),
                          "sweep.json lacks 'by_n'"),
        "sweep-schema": ("sweep.json", json.dumps({**sweep, "schema": "other/1"}), "has schema 'other/1'"),
        "sweep-empty-by_n": ("sweep.json", json.dumps({**sweep, "by_n": {}}), "sweep.json holds no pool size"),
        "sweep-latin1": ("sweep.json", None, "sweep.json is not UTF-8 text"),
    }
    for name, (file, text, says) in files.items():
        folder = tmp_path / name
        folder.mkdir()
        if text is None:
            (folder / file).write_bytes('{"schema": "é"}'.encode("latin-1"))
        else:
            (folder / file).write_text(text)
        before = snapshot(folder)
        code, err = run_main("report", str(folder))
        assert_one_error_line(code, err, says, name)
        assert snapshot(folder) == before


def test_report_still_renders_a_whole_run(a_run, run_main):
    code, err = run_main("report", str(a_run))
    assert code == 0 and err == ""


# -- interrupts keep what was measured and resume without duplicates ------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_saves_and_resume_finishes_without_duplicates(sig, tiny_bench, tmp_path, run_main):
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    args = ["--profile", tiny_bench["profile"], "--workload", tiny_bench["workload"], "--methods", "ar,fixed:near",
            "--max-new-tokens", "64", "--repeats", "3", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "hedgespec_cli", "bench", "--quiet", *args],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        queries = list(out.glob("*/queries.jsonl"))
        if queries and len(read_jsonl(queries[0])) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted; make it longer"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    run = next(out.iterdir())
    partial = json.loads((run / "results.json").read_text())
    assert partial["complete"] is False
    measured = read_jsonl(run / "queries.jsonl")
    code, err = run_main("bench", "--quiet", "--resume", str(run))
    assert code == 0, err
    queries = read_jsonl(run / "queries.jsonl")
    assert queries[: len(measured)] == measured  # nothing measured was lost or rewritten
    keys = [(q["method"], q["query_id"], q["repeat"]) for q in queries if not q["warmup"]]
    assert len(keys) == len(set(keys)) == 2 * 6 * 3
    assert json.loads((run / "results.json").read_text())["complete"] is True


def test_generate_refuses_a_seed_out_of_range_before_loading(run_main, monkeypatch):
    import hedgespec_cli.bench.generate as generate

    loaded: list = []
    monkeypatch.setattr(generate, "open_pool", lambda *a, **k: loaded.append(a))
    code, err = run_main("generate", "hello", "--seed", "-1")
    assert_one_error_line(code, err, "seed must be an integer from 0 to 4294967295 (got -1)", "generate")
    assert loaded == []


def test_an_unknown_drafter_kind_fails_before_the_target_loads(tiny_bench, tmp_path, run_main, monkeypatch):
    import hedgespec_cli.models.loading as loading

    loaded: list[str] = []
    real = loading._load_model
    monkeypatch.setattr(loading, "_load_model", lambda spec, *a: loaded.append(spec.name) or real(spec, *a))
    prof = _profile_variant(tiny_bench, tmp_path, "kind", lambda d: d["drafters"][2].update(kind="eagle"))
    code, err = run_main("bench", "--quiet", "--out", str(tmp_path / "runs"), "--profile", str(prof),
                         "--workload", tiny_bench["workload"])
    assert_one_error_line(code, err, "drafter 'rnd' has kind 'eagle'; supported kinds: lm, eagle3", "kind")
    assert loaded == [], "the target loaded before the drafters' kinds were checked"
    assert not any((tmp_path / "runs").iterdir())  # the run directory made for it is gone
