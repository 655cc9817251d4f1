"""Hub checkpoints resolved offline from a Hugging Face cache laid out in a temporary HF_HOME.

The cache is built here the way huggingface_hub writes it (models--org--name/snapshots/<sha>/...,
refs/main holding the sha), from the tiny zoo's own files; nothing touches the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hedgespec_cli.config import ModelSpec, load_profile
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.errors import CheckpointError, ConfigError
from hedgespec_cli.models import load_pool
from hedgespec_cli.models.hub import HubRef, locate_profile, resolve
from hedgespec_cli.runner import adhoc_profile

from test_engine import Fixed, reference_greedy

TINY = Path(__file__).resolve().parents[1] / "profiles" / "tiny"
SHA = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(home: Path, repo: str, files: dict[str, Path], sha: str = SHA) -> Path:
    """$HF_HOME/hub/models--org--name/{refs/main, snapshots/<sha>/...}, files symlinked like blobs."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    for rel, src in files.items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).symlink_to(src)
    return snap


def tree(src: Path, prefix: str) -> dict[str, Path]:
    return {f"{prefix}/{p.name}": p for p in src.iterdir() if p.is_file()}


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    files = {**tree(TINY / "target", "target"), **tree(TINY / "eagle3" / "generic", "eagle3/generic"),
             **tree(TINY / "eagle3" / "code", "eagle3/code")}
    lay_out_cache(home, "org/tiny", files)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def test_hub_ref_syntax():
    assert HubRef.parse("org/name") == HubRef("org/name")
    assert HubRef.parse("org/name@v1.0/heads/math") == HubRef("org/name", "v1.0", "heads/math")
    assert str(HubRef("org/name", "abc", "a/b")) == "org/name@abc/a/b"
    for bad in ("name", "org/name/../x", "/abs/path"):
        with pytest.raises(CheckpointError, match="not a Hub id"):
            HubRef.parse(bad)


def test_resolves_from_the_cache_by_branch_and_by_commit(hf_home):
    snap = hf_home / "hub" / "models--org--tiny" / "snapshots" / SHA
    assert resolve(HubRef("org/tiny", None, "target")) == snap / "target"
    assert resolve(HubRef("org/tiny", SHA, "eagle3/code")) == snap / "eagle3" / "code"
    with pytest.raises(CheckpointError, match="has no folder 'eagle3/math'"):
        resolve(HubRef("org/tiny", None, "eagle3/math"))


def test_offline_without_a_cached_copy_is_one_error_naming_the_id(hf_home):
    with pytest.raises(CheckpointError) as err:
        resolve(HubRef("org/absent", "v2", "heads/code"))
    message = str(err.value)
    assert "org/absent@v2/heads/code is not cached" in message and "HF_HUB_OFFLINE=1" in message
    assert "\n" not in message


def test_hub_profile_loads_and_decodes_losslessly(hf_home, tmp_path):
    profile = tmp_path / "hub.yaml"
    profile.write_text(
        "name: hub\n"
        "target: {hub: org/tiny, subfolder: target}\n"
        f"tokenizer: {TINY / 'tokenizer'}\n"
        "drafters:\n"
        f"  - {{name: generic, hub: org/tiny@{SHA}/eagle3/generic}}\n"
        "  - {name: code, kind: eagle3, hub: org/tiny, revision: main, subfolder: eagle3/code}\n")
    prof = load_profile(str(profile))
    assert prof.drafters[0].hub == f"org/tiny@{SHA}/eagle3/generic" and prof.drafters[0].path is None
    assert all(r.problem is None for r in locate_profile(prof))
    pool = load_pool(prof.target, list(prof.drafters), tokenizer_path=prof.tokenizer)
    assert [s.kind for s in pool.specs] == ["eagle3", "eagle3"]  # the first auto-detected
    engine = Engine(pool, DecodeSettings(K=4, max_new_tokens=20, stop_at_eos=False))
    ids = pool.tokenizer("def f(x):\n    return")["input_ids"]
    want = reference_greedy(pool.target.model, ids, 20, None)
    for arm in (0, 1):
        assert engine.decode(ids, Fixed(arm, 2, full=True)).output_ids == want


def test_profile_hub_entries_are_validated(tmp_path):
    def profile(entry: str) -> str:
        path = tmp_path / "p.yaml"
        path.write_text(f"target: {{path: x}}\ndrafters:\n  - {entry}\n")
        return str(path)

    for entry, says in [("{name: a}", "exactly one of `path: DIR`"),
                        ("{name: a, path: x, hub: org/n}", "exactly one of"),
                        ("{name: a, path: x, revision: v1}", "go with `hub:`"),
                        ("{name: a, hub: noslash}", "not a Hub id"),
                        ("{name: a, hub: org/n@v1, revision: v2}", "revision is given twice")]:
        with pytest.raises(ConfigError, match=says):
            load_profile(profile(entry))


def test_adhoc_flags_take_hub_ids_and_local_paths_first(hf_home):
    prof = adhoc_profile("org/tiny/target", [f"g=org/tiny@{SHA}/eagle3/generic", str(TINY / "eagle3" / "code")])
    assert prof.target.hub == "org/tiny/target" and prof.target.path is None
    assert prof.drafters[0].name == "g" and prof.drafters[1].path == TINY / "eagle3" / "code"


def hedgespec(*args: str, env: dict) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "hedgespec_cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), **env}, cwd=root)


def test_dry_check_names_what_is_not_cached(hf_home, tmp_path):
    profile = tmp_path / "mixed.yaml"
    profile.write_text("target: {hub: org/tiny/target}\n"
                       "drafters:\n  - {name: here, hub: org/tiny/eagle3/code}\n"
                       "  - {name: gone, hub: org/elsewhere@v3/heads/x}\n  - {name: nodir, path: nowhere}\n")
    done = hedgespec("profiles", "--check", str(profile), env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("target") and lines[0].rstrip().endswith("/snapshots/" + SHA + "/target")
    assert "org/elsewhere@v3/heads/x" in lines[2] and "MISSING: not cached" in lines[2]
    assert "MISSING: no such directory" in lines[3]
    assert done.stderr.strip() == "error: profile 'mixed': 2 of 4 checkpoints missing (gone, nodir); see the lines above"


def test_generate_with_hub_ids_offline(hf_home):
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["generate", "def f(x):", "--max-new-tokens", "12", "--json"]
    hub = hedgespec(*args, "--target", "org/tiny/target", "--drafter", f"g=org/tiny@{SHA}/eagle3/generic", env=env)
    local = hedgespec(*args, "--target", str(TINY / "target"), "--drafter", f"g={TINY / 'eagle3' / 'generic'}",
                      env=env)
    assert hub.returncode == 0 and local.returncode == 0, hub.stderr + local.stderr
    import json

    assert json.loads(hub.stdout)["text"] == json.loads(local.stdout)["text"]
    gone = hedgespec(*args, "--target", "org/nothere/target", "--drafter", "g=org/nothere/x", env=env)
    assert gone.returncode == 2 and gone.stderr.startswith("error: Hub checkpoint org/nothere/target is not cached")
    assert len(gone.stderr.strip().splitlines()) == 1


def test_bench_takes_hub_target_and_drafters_and_records_them(hf_home, tmp_path):
    import json

    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = hedgespec("bench", "--target", "org/tiny/target", "--drafter", f"g=org/tiny@{SHA}/eagle3/generic",
                     "--drafter", "c=org/tiny/eagle3/code", "--methods", "ar,fixed:g,hedgespec", "--prompts", "2",
                     "--max-new-tokens", "16", "--out", str(tmp_path / "runs"), "--quiet", "--json", env=env)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    prof = payload["config"]["profile"]
    snap = str(hf_home / "hub" / "models--org--tiny" / "snapshots" / SHA)
    assert prof["target"] == {"name": "target", "path": snap + "/target", "hub": "org/tiny/target"}
    assert [(d["name"], d["kind"], d["hub"]) for d in prof["drafters"]] == [
        ("g", "eagle3", f"org/tiny@{SHA}/eagle3/generic"), ("c", "eagle3", "org/tiny/eagle3/code")]
    assert payload["config"]["bench"]["target"] == "org/tiny/target"


def test_paper_profiles_are_listed_and_dry_checked_offline(tmp_path):
    empty = {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    listed = hedgespec("profiles", env=empty)
    assert listed.returncode == 0
    assert {"paper-llama31-8b", "paper-qwen3-8b"} <= {line.split()[0] for line in listed.stdout.splitlines()}
    for name, ids in [("paper-llama31-8b", ["meta-llama/Llama-3.1-8B-Instruct", "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"]),
                      ("paper-qwen3-8b", ["Qwen/Qwen3-8B", "AngelSlim/Qwen3-8B_eagle3"])]:
        done = hedgespec("profiles", "--check", name, env=empty)
        assert done.returncode == 2 and "checkpoints missing" in done.stderr
        for hub_id, line in zip(ids, done.stdout.splitlines()):
            assert f"hf:{hub_id}" in line and "MISSING: not cached" in line
    # With those ids in the cache (stand-ins built from the tiny zoo), the same check passes.
    home = tmp_path / "cached"
    lay_out_cache(home, "meta-llama/Llama-3.1-8B-Instruct", tree(TINY / "target", "."))
    lay_out_cache(home, "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", tree(TINY / "eagle3" / "generic", "."))
    done = hedgespec("profiles", "--check", "paper-llama31-8b", env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.split()[2] == "ok" for line in done.stdout.splitlines())


def test_paper_workload_names_its_datasets_and_fails_cleanly_offline(tmp_path):
    """Valid keys (a typo would be a ConfigError first); offline, the first dataset is named, no network."""
    code = ("from hedgespec_cli.workloads import load_workload\n"
            "from hedgespec_cli.errors import WorkloadError\n"
            "try:\n    load_workload('paper-domains')\nexcept WorkloadError as e:\n    print(e)\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root), "HF_HOME": str(tmp_path / "hf"),
                               "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "cannot load dataset 'openai/openai_humaneval'" in done.stdout


def test_package_checkpoints_are_located_without_importing_the_package(tmp_path):
    from hedgespec_cli.models.hub import locate

    absent = locate("target", ModelSpec("t", None, package="no_such_package_h18", gguf_file="m.gguf"))
    assert absent.problem == "Python package 'no_such_package_h18', which holds this checkpoint, is not installed"
    here = locate("target", ModelSpec("t", None, package="hedgespec_cli", gguf_file="missing.gguf"))
    assert here.path == Path(__file__).resolve().parents[1] / "hedgespec_cli" and here.problem == "no file missing.gguf"
