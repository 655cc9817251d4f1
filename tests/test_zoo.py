"""A miniature zoo built through the real build code (local sources only, a few steps)."""

from __future__ import annotations

import json

import pytest
import yaml

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.zoo.train import ModelShape, lr_at, StageBudget

MINI_TARGET = ModelShape(hidden=64, layers=2, heads=2, kv_heads=2, intermediate=128,
                         tie_embeddings=False)
MINI_DRAFTER = ModelShape(hidden=32, layers=1, heads=2, kv_heads=2, intermediate=64,
                          tie_embeddings=True)


def _mini_spec(root, seed=0):
    from hedgespec_cli.zoo.build import BuildSpec

    return BuildSpec(
        out_dir=root / "tiny", data_dir=root / "data", prompts_dir=root / "prompts",
        domains=("code", "math"), seed=seed, time_budget_s=600, max_steps=3,
        max_chars=60_000, vocab_size=400, seq_len=32, batch_size=2, eval_windows=2,
        prompts_per_domain=3, target_shape=MINI_TARGET, drafter_shape=MINI_DRAFTER, continuations=3,
    )


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory):
    from hedgespec_cli.zoo.build import build_zoo

    root = tmp_path_factory.mktemp("zoo")
    manifest = build_zoo(_mini_spec(root))
    return root, manifest


def test_checkpoints_load_with_auto_classes(mini_zoo):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _ = mini_zoo
    tok = AutoTokenizer.from_pretrained(root / "tiny" / "tokenizer")
    ids = tok("def f(x):\n    return x", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id  # prompts start like training documents
    assert tok.decode(ids[0], skip_special_tokens=True) == "def f(x):\n    return x"
    dirs = [root / "tiny" / "target"] + sorted((root / "tiny" / "drafters").iterdir())
    assert [d.name for d in dirs[1:]] == ["code", "generic", "math"]
    for path in dirs:
        assert (path / "model.safetensors").exists()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        assert model.config.vocab_size == len(tok)
        assert len(AutoTokenizer.from_pretrained(path)) == len(tok)  # self-contained
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tok))


def test_manifest_profile_and_prompts(mini_zoo):
    root, manifest = mini_zoo
    on_disk = json.loads((root / "tiny" / "build.json").read_text())
    assert on_disk == manifest
    assert set(manifest["models"]) == {"target", "generic", "code", "math"}
    for name, entry in manifest["models"].items():
        assert entry["steps"] == 3
        assert set(entry["heldout_loss"]) == {"code", "math"}
    assert manifest["sources"]["code"]["licence"] == "PSF-2.0"

    profile = yaml.safe_load((root / "tiny.yaml").read_text())
    assert profile["target"] == {"path": "tiny/target"}
    assert profile["tokenizer"] == "tiny/tokenizer"
    assert profile["drafters"][0] == {"name": "generic", "kind": "lm", "path": "tiny/drafters/generic",
                                      "domain": None, "role": "generic"}
    assert {d["name"] for d in profile["drafters"]} == {"generic", "code", "math"}
    for d in profile["drafters"]:
        assert (root / d["path"] / "config.json").exists()
    from hedgespec_cli.config import load_profile

    loaded = load_profile(str(root / "tiny.yaml"))  # the engine's own validation
    assert loaded.generic().name == "generic"

    # The router's classifier is built from the same training split and shipped with the profile;
    # these code and math prompts are easy to tell apart.
    from hedgespec_cli.selection.classifier import PromptClassifier

    assert profile["router"] == "tiny/router.npz"
    assert PromptClassifier.load(loaded.router).domains == ("code", "math")
    assert manifest["router"]["heldout_prompts"]["prompts"] == 6
    assert manifest["router"]["heldout_prompts"]["accuracy"] == 1.0

    for domain in ("code", "math"):
        rows = [json.loads(x) for x in (root / "prompts" / f"{domain}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [f"{domain}-{i:04d}" for i in range(3)]
        assert all(r["domain"] == domain and r["prompt"].strip() for r in rows)


def test_prompts_come_from_heldout_documents(mini_zoo):
    from pathlib import Path

    from hedgespec_cli.zoo.corpora import load_corpus

    root, _ = mini_zoo
    corpus = load_corpus("math", Path(root / "data"), 60_000)
    train_text = "\n".join(d.text for d in corpus.train)
    held_text = "\n".join(d.text for d in corpus.heldout)
    rows = [json.loads(x) for x in (root / "prompts" / "math.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["prompt"] in held_text
    assert not {d.id for d in corpus.train} & {d.id for d in corpus.heldout}
    assert train_text  # something left to train on


def test_info_command(mini_zoo):
    from typer.testing import CliRunner

    from hedgespec_cli.cli.app import app

    root, _ = mini_zoo
    result = CliRunner().invoke(app, ["zoo", "info", str(root / "tiny"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    by_name = {m["name"]: m for m in payload["models"]}
    assert by_name["target"]["role"] == "target"
    assert by_name["generic"]["role"] == "generic" and by_name["generic"]["domain"] is None
    assert by_name["code"]["role"] == "expert" and by_name["code"]["domain"] == "code"
    assert by_name["target"]["dtype"] == "float16"
    assert by_name["target"]["params"] > by_name["code"]["params"]
    assert by_name["target"]["steps"] == 3 and by_name["code"]["steps"] == 3  # the mini build's cap
    assert by_name["code"]["train_tokens"] == 3 * 2 * 32  # steps x batch x seq_len
    assert payload["device"] == "cpu" and payload["torch"]
    text = CliRunner().invoke(app, ["zoo", "info", str(root / "tiny")])
    assert text.exit_code == 0 and "generic" in text.stdout
    assert "built on cpu" in " ".join(text.stdout.split())  # the caption, however rich wraps it


def test_info_on_a_non_zoo_directory_is_a_clean_error(tmp_path):
    from hedgespec_cli.errors import CheckpointError
    from hedgespec_cli.zoo.info import zoo_info

    with pytest.raises(CheckpointError, match="zoo build"):
        zoo_info(tmp_path)


def test_spec_rejects_unknown_domain(tmp_path):
    from hedgespec_cli.zoo.build import BuildSpec

    with pytest.raises(ConfigError, match="choose from"):
        BuildSpec(out_dir=tmp_path, domains=("code", "poetry"))


def test_lr_schedule_ends_low_whether_stopped_by_time_or_steps():
    assert lr_at(0.0, 1.0) < 0.05
    assert lr_at(0.03, 1.0) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0) == pytest.approx(0.1)
    budget = StageBudget(seconds=100.0, max_steps=10)
    assert budget.progress(5, 10.0) == 0.5
    assert budget.progress(1, 90.0) == 0.9


def test_math_generator_is_seeded():
    from hedgespec_cli.zoo.mathgen import problem_sets

    assert problem_sets(3, 5) == problem_sets(3, 5)
    assert problem_sets(3, 5) != problem_sets(4, 5)
    assert all(doc.count("The answer is") == 4 for doc in problem_sets(3, 5))


def test_every_worked_step_of_both_math_generators_is_right():
    import re

    from hedgespec_cli.zoo.mathgen import MULTISTEP_TEMPLATES, TEMPLATES, multistep_sets, problem_sets

    assert multistep_sets(3, 5) == multistep_sets(3, 5) != multistep_sets(4, 5)
    text = "\n\n".join(problem_sets(7, 300) + multistep_sets(7, 300))
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b, "/": lambda a, b: a / b}
    steps = re.findall(r"(?<![\d.$])(\d+) ([-+x/]) (\d+) = (\d+)(?![\d.])", text)
    assert len(steps) > 1500
    wrong = [s for s in steps if ops[s[1]](int(s[0]), int(s[2])) != int(s[3])]
    assert wrong == []
    # Every multi-step template turned up (checked by its question) and had its steps checked above.
    for phrase in ("How much change", "saves $", "A recipe for", "drives for", "A machine makes",
                   "gives 1/", "Fencing costs", "go to a museum"):
        assert phrase in text, phrase
    assert len(MULTISTEP_TEMPLATES) == 8 and len(TEMPLATES) == 9
    assert all(doc.count("The answer is") == 3 for doc in multistep_sets(7, 50))


def test_reuse_target_redistils_drafters_only(tmp_path_factory):
    """A drafters-only rebuild keeps the tokenizer and target byte for byte."""
    from dataclasses import replace

    from hedgespec_cli.errors import ConfigError
    from hedgespec_cli.zoo.build import build_zoo

    root = tmp_path_factory.mktemp("reuse")
    spec = _mini_spec(root)
    first = build_zoo(spec)
    target = (spec.out_dir / "target" / "model.safetensors").read_bytes()
    second = build_zoo(replace(spec, reuse_target=True, max_steps=4))
    assert (spec.out_dir / "target" / "model.safetensors").read_bytes() == target
    assert second["models"]["target"] == first["models"]["target"]
    assert all(second["models"][n]["steps"] == 4 for n in ("generic", "code", "math"))
    with pytest.raises(ConfigError, match="previous build's --seed"):
        build_zoo(replace(spec, reuse_target=True, seed=1))


def test_a_drafters_only_rebuild_distils_the_same_drafters(tmp_path_factory):
    """The teacher is the saved target in float32 on both paths, so the same seed and steps
    give the same drafters byte for byte (a fresh build once distilled from a float16 teacher)."""
    from dataclasses import replace

    from hedgespec_cli.zoo.build import build_zoo

    root = tmp_path_factory.mktemp("same_drafters")
    spec = _mini_spec(root)
    build_zoo(spec)
    drafters = {n: (spec.out_dir / "drafters" / n / "model.safetensors").read_bytes() for n in ("generic", "code")}
    build_zoo(replace(spec, reuse_target=True))
    for name, weights in drafters.items():
        assert (spec.out_dir / "drafters" / name / "model.safetensors").read_bytes() == weights, name


def test_build_with_eagle_heads_gives_a_loadable_eagle3_profile(tmp_path_factory):
    from dataclasses import replace

    from hedgespec_cli.config import load_profile
    from hedgespec_cli.decoding.engine import DecodeSettings, Engine
    from hedgespec_cli.bench.query import run_query
    from hedgespec_cli.runner import open_pool
    from hedgespec_cli.zoo.build import build_zoo

    root = tmp_path_factory.mktemp("eagle_zoo")
    spec = replace(_mini_spec(root), target_shape=replace(MINI_TARGET, layers=3), max_steps=2, eagle_budget_s=60)
    build_zoo(spec)
    profile = load_profile(str(root / "tiny-eagle3.yaml"))
    assert [d.kind for d in profile.drafters] == ["eagle3"] * 3
    assert profile.generic().name == "generic"
    pool = open_pool(profile)
    engine = Engine(pool, DecodeSettings(K=3, max_new_tokens=12))
    ids = pool.tokenizer("def f(x):\n    return")["input_ids"]
    want = run_query(engine, ids, "ar").output_ids
    assert run_query(engine, ids, "hedgespec", domain="code").output_ids == want

    # Smaller heads (narrower MLP, smaller draft vocabulary) retrain in place, same format.
    from hedgespec_cli.zoo.eagle import build_eagle_zoo

    manifest = build_eagle_zoo(root / "tiny", root / "data", time_budget_s=60, max_steps=1,
                               draft_vocab_size=40, intermediate_size=24)
    assert manifest["settings"]["intermediate_size"] == 24
    small = open_pool(load_profile(str(root / "tiny-eagle3.yaml")))
    assert all(h.config.intermediate_size == 24 and h.config.draft_vocab_size == 40 for h in small.drafters)


def test_acceptance_matrix_is_measured_by_the_engine(mini_zoo):
    from hedgespec_cli.zoo.matrix import acceptance_matrix

    root, _ = mini_zoo
    (root / "wl.yaml").write_text(
        "name: wl\nschedule: shift\nsources: [{path: prompts/code.jsonl}, {path: prompts/math.jsonl}]\n"
    )
    out = acceptance_matrix(str(root / "tiny.yaml"), str(root / "wl.yaml"), per_domain=2, K=3, max_new_tokens=12)
    assert out["prompts"] == {"code": 2, "math": 2}
    assert set(out["gamma"]) == {"code", "math"} and set(out["gamma"]["code"]) == {"generic", "code", "math"}
    for domain in ("code", "math"):
        for drafter, length in out["acceptance_length"][domain].items():
            assert 1.0 <= length <= 4.0  # 1 .. K + 1 tokens per round
            assert 0.0 <= out["gamma"][domain][drafter] <= 1.0


def test_continuations_are_the_targets_greedy_text(mini_zoo):
    """On-policy distillation data: a train-split prefix, then exactly the target's argmax tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from hedgespec_cli.zoo.build import SilentProgress, _Data, _continuations

    root, _ = mini_zoo
    target = AutoModelForCausalLM.from_pretrained(root / "tiny" / "target", dtype=torch.float32).eval()
    stream = torch.arange(3, 300, dtype=torch.int32) % 397
    data = _Data(train={"code": stream})
    spec = _mini_spec(root)
    bank = _continuations(target, data, spec, SilentProgress())["code"]
    prefix = (spec.seq_len + 1) // 4
    assert bank.shape == (spec.continuations, spec.seq_len + 1)
    for row in bank:
        start = int(row[0]) - 3
        assert torch.equal(row[:prefix], stream[start:start + prefix].long())  # a real prefix
        with torch.no_grad():
            greedy = target(input_ids=row[None, :-1]).logits[0].argmax(-1)
        assert torch.equal(row[prefix:], greedy[prefix - 1:])


def test_sampler_mixes_in_continuations_at_the_set_rate(tmp_path):
    from dataclasses import replace

    import torch

    from hedgespec_cli.zoo.build import _Data, _sampler

    spec = replace(_mini_spec(tmp_path), batch_size=400)
    data = _Data(train={"code": torch.zeros(500, dtype=torch.int32)})
    bank = {"code": torch.ones(5, spec.seq_len + 1, dtype=torch.long)}
    for frac, lo, hi in ((0.0, 0, 0), (1.0, 400, 400), (0.5, 150, 250)):
        sample, _ = _sampler(data, ["code"], replace(spec, onpolicy_frac=frac), seed=0, onpolicy=bank)
        batch = sample()
        assert batch.shape == (400, spec.seq_len + 1)
        assert lo <= int(batch[:, 0].sum()) <= hi  # rows from the bank are all ones


def test_spec_rejects_an_onpolicy_share_outside_0_1(tmp_path):
    from hedgespec_cli.zoo.build import BuildSpec

    with pytest.raises(ConfigError, match="onpolicy-frac"):
        BuildSpec(out_dir=tmp_path, onpolicy_frac=1.5)
    with pytest.raises(ConfigError, match="continuations"):
        BuildSpec(out_dir=tmp_path, continuations=-1)


def test_target_steps_caps_the_target_alone(tmp_path_factory):
    from dataclasses import replace

    from hedgespec_cli.zoo.build import build_zoo

    root = tmp_path_factory.mktemp("target_steps")
    manifest = build_zoo(replace(_mini_spec(root), target_steps=5, continuations=0))
    assert manifest["models"]["target"]["steps"] == 5
    assert all(manifest["models"][n]["steps"] == 3 for n in ("generic", "code", "math"))
    assert manifest["spec"]["target_steps"] == 5 and manifest["spec"]["device"] == "cpu"


def test_spec_rejects_a_bad_device_or_target_steps(tmp_path):
    from hedgespec_cli.zoo.build import BuildSpec

    with pytest.raises(ConfigError, match="--device must be cpu or cuda"):
        BuildSpec(out_dir=tmp_path, device="tpu")
    with pytest.raises(ConfigError, match="--target-steps"):
        BuildSpec(out_dir=tmp_path, target_steps=0)
    with pytest.raises(ConfigError, match="--reuse-target keeps the old one"):
        BuildSpec(out_dir=tmp_path, target_steps=10, reuse_target=True)
    for flag, kwargs in (("--max-steps", {"max_steps": 0}), ("--batch-size", {"batch_size": 0})):
        with pytest.raises(ConfigError, match=f"{flag} must be >= 1, got 0"):
            BuildSpec(out_dir=tmp_path, **kwargs)
    from hedgespec_cli.zoo.matrix import acceptance_matrix

    with pytest.raises(ConfigError, match="--per-domain must be >= 1"):
        acceptance_matrix("tiny", "domain-shift", per_domain=0)


def test_info_says_where_each_part_was_trained():
    from hedgespec_cli.zoo.info import _devices

    assert _devices({}) is None
    assert _devices({"spec": {}, "models": {"target": {}, "code": {}}}) == "cpu"  # before --device
    assert _devices({"spec": {"device": "cuda"}, "models": {"target": {}, "code": {}}}) == "cuda"
    mixed = {"spec": {"device": "cpu"}, "models": {"target": {"device": "cuda"}, "code": {"device": "cpu"}}}
    assert _devices(mixed) == "target cuda, drafters cpu"


def test_build_on_cuda_without_a_gpu_is_one_clear_line(tmp_path):
    """Through `python -m hedgespec_cli`, as a user without a GPU would see it."""
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    res = subprocess.run([sys.executable, "-m", "hedgespec_cli", "zoo", "build", "--device", "cuda",
                          "--out", str(tmp_path / "z"), "--data-dir", str(tmp_path / "data"), "--max-steps", "1"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "no CUDA device is visible" in res.stderr
    assert not (tmp_path / "z").exists()


def test_chats_render_as_two_speaker_documents():
    from hedgespec_cli.zoo.corpora import render_chats

    def msg(text, who):
        return {"text": text, "sender": who, "timestamp": "t"}

    chats = {
        "b": {"messages": [[msg("hi", "u1"), msg("how  are\nyou?", "u1")], [msg("fine", "u2")],
                           [msg("good", "u1")], [msg("bye", "u2")]]},
        "a": {"messages": [[msg("x", "u1")], [msg("y", "u2")], [msg("z", "u1")]]},  # 3 turns: too short
        "c": {"messages": [[msg("mail me at a@b.com", "u1")], [msg("ok", "u2")], [msg("k", "u1")], [msg("k", "u2")]]},
        "d": {"messages": [[msg("1", "u1")], [msg("2", "u2")], [msg("3", "u3")], [msg("4", "u1")]]},  # three people
        "e": {"messages": [[msg("hi", "v1"), msg("how are you?", "v1")], [msg("fine", "v2")],
                           [msg("good", "v1")], [msg("bye", "v2")]]},  # the same text as "b"
    }
    docs = render_chats(chats)
    assert [d.id for d in docs] == ["chat/b"]
    assert docs[0].text == "A: hi\nA: how are you?\nB: fine\nA: good\nB: bye"


def test_default_domains_are_the_shipped_zoos():
    import yaml as _yaml

    from hedgespec_cli.zoo.build import BuildSpec
    from hedgespec_cli.zoo.corpora import DEFAULT_DOMAINS, DOMAINS

    assert set(DEFAULT_DOMAINS) <= set(DOMAINS)
    from pathlib import Path

    profile = _yaml.safe_load((Path(__file__).parents[1] / "profiles" / "tiny.yaml").read_text())
    shipped = tuple(d["domain"] for d in profile["drafters"] if d["domain"])
    assert shipped == DEFAULT_DOMAINS
    assert BuildSpec(out_dir="o", data_dir="d", prompts_dir=None).domains == DEFAULT_DOMAINS


def test_a_cached_corpus_of_another_loader_revision_is_rebuilt(tmp_path, monkeypatch):
    import dataclasses

    from hedgespec_cli.zoo import corpora

    first = corpora.load_corpus("math", tmp_path, 20_000)  # written with revision 1
    head = json.loads((tmp_path / "corpora" / "math.jsonl").read_text().splitlines()[0])
    assert head["revision"] == 1
    calls = []
    real = corpora.DOMAINS["math"]

    def load(raw_dir, max_chars):
        calls.append(max_chars)
        return real.load(raw_dir, max_chars)

    monkeypatch.setitem(corpora.DOMAINS, "math", dataclasses.replace(real, load=load))
    assert corpora.load_corpus("math", tmp_path, 20_000) == first and calls == []  # same revision: cached
    monkeypatch.setitem(corpora.DOMAINS, "math", dataclasses.replace(real, load=load, revision=2))
    corpora.load_corpus("math", tmp_path, 20_000)
    assert calls == [20_000]  # another revision: loaded again
