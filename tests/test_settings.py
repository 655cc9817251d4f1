"""Decoding settings: one precedence rule, defaults written once and read by the help texts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hedgespec_cli.decoding.settings import (
    DEFAULT_COUNTERFACTUAL,
    KNOBS,
    DecodeSettings,
    TreeShape,
    knob_defaults,
    resolve_knobs,
)
from hedgespec_cli.errors import ConfigError


def test_defaults_are_the_dataclasses():
    d = knob_defaults()
    plain = DecodeSettings()
    assert set(d) == set(KNOBS)
    assert (d["K"], d["temperature"], d["top_p"], d["max_new_tokens"], d["counterfactual"]) == (
        plain.K, plain.temperature, plain.top_p, plain.max_new_tokens, plain.counterfactual)
    assert d["counterfactual"] == DEFAULT_COUNTERFACTUAL
    assert d["tree_top_k"] == 0 and plain.tree is None  # chains
    assert d["tree_tokens"] == TreeShape().total_tokens
    assert DecodeSettings.of(resolve_knobs()) == plain


def test_flag_beats_workload_beats_profile_beats_default():
    flags = {"K": 3, "temperature": None, "max_new_tokens": None, "tree_top_k": None}
    workload = {"max_new_tokens": 40}
    profile = {"K": 7, "temperature": 0.5, "max_new_tokens": 90, "tree_top_k": 4}
    knobs = resolve_knobs(flags, workload, profile)
    assert knobs["K"] == 3  # the flag
    assert knobs["max_new_tokens"] == 40  # the workload, over the profile
    assert knobs["temperature"] == 0.5 and knobs["tree_top_k"] == 4  # the profile, the flag being unset
    assert knobs["top_p"] == DecodeSettings().top_p  # nobody set it
    settings = DecodeSettings.of(knobs)
    assert settings.tree == TreeShape(4, TreeShape().total_tokens)
    assert resolve_knobs({"max_new_tokens": None}, {"max_new_tokens": None}, {})["max_new_tokens"] == 128


def test_resolved_settings_are_validated():
    with pytest.raises(ConfigError, match="K must be at least 1"):
        DecodeSettings.of(resolve_knobs({"K": 0}))


def help_text(command: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    done = subprocess.run([sys.executable, "-m", "hedgespec_cli", command, "--help"], capture_output=True, text=True,
                          env=env, check=True)
    return " ".join(done.stdout.replace("\u2502", " ").split())  # rich's box borders out


def test_help_texts_read_the_defaults():
    text = help_text("bench")
    d = knob_defaults()
    for phrase in (f"Draft length [default: profile, else {d['K']}]", f"else {d['tree_tokens']}]",
                   f"else {d['counterfactual']}]", "Run seed [default: 0]", "[default: mixed-domain]"):
        assert phrase in text, phrase
    text = help_text("generate")
    assert f"Tokens to generate at most [default: profile, else {d['max_new_tokens']}]" in text
