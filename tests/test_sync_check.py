"""benchmarks/sync_check.py off a GPU: its tally and plumbing, with PyTorch's switch faked (the real
check needs CUDA and runs in benchmarks/gpu_check.sh)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sync_check  # noqa: E402

SYNC = "called a synchronizing CUDA operation"


def test_syncs_are_tallied_by_the_line_that_made_them_and_nothing_else():
    modes: list[str] = []

    def decode():
        for _ in range(3):
            warnings.warn(SYNC, stacklevel=1)  # one line, three times
        warnings.warn(SYNC, stacklevel=1)
        warnings.warn("an unrelated warning", stacklevel=1)
        return "record"

    out, counts = sync_check.count_syncs(decode, set_mode=modes.append)
    here = f"tests/{Path(__file__).name}"
    assert out == "record" and modes == ["warn", "default"]
    assert sorted(counts.values()) == [1, 3] and all(line.startswith(here + ":") for line in counts)


def test_the_switch_is_turned_back_off_when_decoding_fails():
    modes: list[str] = []

    def decode():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        sync_check.count_syncs(decode, set_mode=modes.append)
    assert modes == ["warn", "default"]


def test_lines_are_named_from_the_checkout_or_the_installed_package():
    assert sync_check.where(str(sync_check.ROOT / "hedgespec_cli" / "x.py")) == "hedgespec_cli/x.py"
    assert sync_check.where("/v/lib/python3.11/site-packages/transformers/a.py") == "transformers/a.py"


def test_without_cuda_it_says_so_and_exits_0(capsys):
    assert sync_check.main(["--device", "cpu"]) == 0
    assert "needs a CUDA device" in capsys.readouterr().out
