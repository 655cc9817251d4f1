"""`hedgespec generate` through the real CLI on tiny checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from hedgespec_cli.cli.app import app

runner = CliRunner()


def generate(tiny_models, *args):
    pool = ["--drafter", f"near={tiny_models['near']}", "--drafter", f"rnd={tiny_models['random']}"]
    return runner.invoke(app, ["generate", "the cat", "--target", str(tiny_models["target"]), *pool, *args])


def test_generate_ar_and_fixed_agree_and_report_numbers(tiny_models, tmp_path):
    ar = generate(tiny_models, "--method", "ar", "--max-new-tokens", "24", "--json")
    assert ar.exit_code == 0, ar.output
    ar = json.loads(ar.stdout)
    assert ar["mat"] == 1.0 and ar["rounds"] == ar["new_tokens"]
    trace = tmp_path / "t.jsonl"
    fx = generate(tiny_models, "--method", "fixed:near", "-K", "3", "--max-new-tokens", "24", "--json", "--trace", str(trace))
    assert fx.exit_code == 0, fx.output
    fx = json.loads(fx.stdout)
    assert fx["output_ids"] == ar["output_ids"]
    assert fx["mat"] == fx["new_tokens"] / fx["rounds"] and fx["tokens_per_s"] > 0
    header, query = (json.loads(line) for line in trace.read_text().splitlines())
    assert header["drafters"] == ["near", "rnd"] and len(query["gamma"]) == fx["new_tokens"]


def test_generate_text_output_has_table(tiny_models):
    res = generate(tiny_models, "--method", "hedgespec", "--max-new-tokens", "12")
    assert res.exit_code == 0, res.output
    assert "MAT (tokens/round)" in res.output and "tokens/s" in res.output


def run_main(*args):
    """The console entry point in a subprocess: exit code and stderr as a user sees them."""
    code = "from hedgespec_cli.cli.app import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_generate_errors_are_one_line(tiny_models, tmp_path):
    pool = ["--drafter", str(tiny_models["near"])]
    for args, message in [
        (["--target", str(tmp_path / "missing")], "does not exist"),
        (["--target", str(tiny_models["target"]), "--method", "nonsense"], "unknown method 'nonsense'"),
        (["--target", str(tiny_models["target"]), "-K", "0"], "K must be at least 1"),
        (["--target", str(tiny_models["target"]), "--method", "ar", "--trace", str(tmp_path / "t.jsonl")],
         "ar selects none"),
    ]:
        res = run_main("generate", "x", *args, *pool)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().count("\n") == 0 and message in res.stderr
        assert "Traceback" not in res.stderr


def test_help_shows_the_defaults_in_brackets():
    # Rich markup would swallow an unescaped "[default: ...]" and leave "Draft length ."
    res = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "[default: tiny]" in res.output and "[default: mixed-domain]" in res.output
    res = runner.invoke(app, ["zoo", "build", "--help"], env={"COLUMNS": "250"})
    assert "[default: code,math,biology,legal,scripture,dialogue,manuals; also available: chat,multistep]" in res.output
