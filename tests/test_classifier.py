"""The `router` baseline's prompt classifier: naive Bayes by hand, its file, the shipped one, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hedgespec_cli.config import load_profile
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.classifier import PromptClassifier

REPO = Path(__file__).resolve().parents[1]


def test_naive_bayes_by_hand():
    # vocab 3; domain a saw tokens 0,0,1; domain b saw 2,2,2,1. alpha = 1.
    clf = PromptClassifier.fit({"a": [[0, 0, 1]], "b": [[2, 2], [2, 1]]}, 3)
    assert clf.counts.tolist() == [[2, 1, 0], [0, 1, 3]]
    # theta_a = (3, 2, 1) / 6, theta_b = (1, 2, 4) / 7; prompt [0, 1, 1]:
    want_a = math.log(3 / 6) + 2 * math.log(2 / 6)
    want_b = math.log(1 / 7) + 2 * math.log(2 / 7)
    np.testing.assert_allclose(clf.scores([0, 1, 1]), [want_a, want_b])
    assert clf.predict([0, 1, 1]) == "a" and clf.predict([2]) == "b"
    assert clf.predict([1, 1, 99, -1]) == clf.predict([1, 1])  # unknown ids are ignored


def test_the_file_round_trips_and_bad_files_say_how_to_fix_them(tmp_path):
    clf = PromptClassifier.fit({"a": [[0, 0, 1]], "b": [[2, 2, 1]]}, 3, alpha=0.5, provenance={"x": 1})
    clf.save(tmp_path / "r.npz")
    back = PromptClassifier.load(tmp_path / "r.npz")
    assert back.domains == ("a", "b") and back.alpha == 0.5 and back.provenance == {"x": 1}
    np.testing.assert_array_equal(back.counts, clf.counts)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="hedgespec zoo router"):
        PromptClassifier.load(tmp_path / "junk.npz")
    with pytest.raises(ConfigError, match="hedgespec zoo router"):
        PromptClassifier.load(tmp_path / "missing.npz")


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoTokenizer

    profile = load_profile("tiny")
    tok = AutoTokenizer.from_pretrained(str(profile.tokenizer), local_files_only=True)
    return profile, PromptClassifier.load(profile.router), tok


def test_the_shipped_classifier_routes_the_workload_prompts_but_not_perfectly(shipped):
    from hedgespec_cli.zoo.router import evaluate_router, read_prompts

    profile, clf, tok = shipped
    assert set(clf.domains) == {d.domain for d in profile.drafters if d.domain}
    report = evaluate_router(clf, tok, read_prompts(REPO / "workloads" / "prompts", clf.domains))
    assert report["prompts"] == 168
    # Measured when it was built: 166 of 168 (a code prompt -> dialogue, a dialogue prompt -> biology).
    assert report["accuracy"] == pytest.approx(166 / 168)
    assert report["misrouted"] == {"code": {"dialogue": 1}, "dialogue": {"biology": 1}}


def test_prompts_unlike_the_training_text_are_misrouted(shipped):
    # The paper's point about offline routers: a natural rewording moves prompts off the classifier's
    # training distribution. Math problems asked in chat style go to the dialogue drafter.
    _, clf, tok = shipped
    rows = [json.loads(x) for x in (REPO / "workloads" / "prompts" / "math.jsonl").read_text().splitlines()]
    plain = [clf.predict(tok(r["prompt"])["input_ids"]) for r in rows]
    chatty = [clf.predict(tok(CHATTY + r["prompt"])["input_ids"]) for r in rows]
    assert plain.count("math") == 24
    assert chatty.count("dialogue") == 23 and chatty.count("math") == 1  # measured on the shipped file


CHATTY = ("hey! how are you doing today? i'm good thanks. so my friend asked me this and i have no idea, "
          "can you help me out? ")


def test_default_methods_hold_router_only_with_a_classifier():
    from hedgespec_cli.selection.base import default_bench

    assert "router" in default_bench("g") and "router-label" in default_bench("g")
    without = default_bench("g", classifier=False)
    assert "router" not in without and "router-label" in without


def test_the_chat_style_workload_moves_prompts_off_the_routers_training_text(shipped):
    from hedgespec_cli.workloads import load_workload

    _, clf, tok = shipped
    wl = load_workload("chat-style")
    assert len(wl.prompts) == 18 and all(p.text.startswith(CHATTY) for p in wl.prompts)
    routed = [clf.predict(tok(p.text)["input_ids"]) for p in wl.prompts]
    wrong = [r for r, p in zip(routed, wl.prompts) if r != p.domain]
    assert len(wrong) == 10 and set(wrong) == {"dialogue"}  # measured on the shipped file
