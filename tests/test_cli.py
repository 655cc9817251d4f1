"""The console entry point itself (`main`), as a user's shell runs it: usage errors, help, version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def hedgespec(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "hedgespec_cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("args, says", [
    (["bench", "--K", "abc"], "Invalid value for '-K'"),
    (["bench", "--nope"], "No such option: --nope"),
    (["compare"], "Missing argument 'BASE'"),
    (["compare", "--format", "xml", "a", "b"], "'xml' is not one of"),
    (["nosuchcmd"], "No such command 'nosuchcmd'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, says):
    done = hedgespec(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
    assert "--help`" in lines[0]  # where to look next


def test_help_and_version():
    from hedgespec_cli import __version__

    assert hedgespec("--version").stdout.strip() == f"hedgespec {__version__}"
    for args in (["-h"], ["bench", "-h"], []):
        done = hedgespec(*args)
        assert done.returncode == 0 and "Usage: hedgespec" in done.stdout and "Traceback" not in done.stderr


def test_bad_output_paths_fail_before_any_work(tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cases = [
        (["generate", "hi", "--trace", str(tmp_path)], "is a folder; give a file path"),
        (["generate", "hi", "--trace", str(a_file / "t.jsonl")], "cannot create the folder"),
        (["simulate", "--save-trace", str(a_file / "t.jsonl")], "cannot create the folder"),
        (["bench", "--plots", str(a_file)], "is a file; give a folder path"),
        (["report", str(tmp_path), "--plots", str(a_file)], "is a file; give a folder path"),
    ]
    for args, says in cases:
        done = hedgespec(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and says in lines[0], (args, done.stderr)


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from hedgespec_cli.files import atomic_write_text

    atomic_write_text(tmp_path / "r.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_resume_refuses_new_settings(tmp_path):
    done = hedgespec("bench", "--resume", str(tmp_path), "-K", "3", "--sweep-drafters", "2")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --resume continues a run with the settings in its config.yaml; "
        "drop --K, --sweep-drafters (or start a new run without --resume)"
    )
