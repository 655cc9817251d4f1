"""EAGLE-3 head: real-format checkpoints written here by hand, loaded through `load_eagle3`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hedgespec_cli.errors import CheckpointError
from hedgespec_cli.models.eagle3 import Eagle3Config, fused_layers, load_eagle3, rope_inv_freq, save_eagle3

VOCAB, DRAFT, HIDDEN, INTER, HEADS, KV_HEADS, LAYERS = 97, 40, 64, 128, 4, 2, 4


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A tiny random Llama target (model ids only, no tokenizer), saved and in memory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("eagle_target") / "target"
    model.save_pretrained(path)
    return path, model


def real_config(**overrides) -> dict:
    """config.json as EAGLE's released Llama-3.1 heads write it (old-style keys, no head_dim)."""
    cfg = {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_act": "silu",
           "hidden_size": HIDDEN, "intermediate_size": INTER, "num_attention_heads": HEADS,
           "num_key_value_heads": KV_HEADS, "num_hidden_layers": 1, "rms_norm_eps": 1e-5,
           "max_position_embeddings": 2048, "vocab_size": VOCAB, "draft_vocab_size": DRAFT,
           "tie_word_embeddings": False, "torch_dtype": "float16"}
    return {**cfg, **overrides}


def real_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """Every tensor of a real head under its real name; draft vocab = a random sorted subset."""
    g = torch.Generator().manual_seed(seed)
    d = HIDDEN // HEADS
    shapes = {
        "fc.weight": (HIDDEN, 3 * HIDDEN),
        "midlayer.hidden_norm.weight": (HIDDEN,), "midlayer.input_layernorm.weight": (HIDDEN,),
        "midlayer.post_attention_layernorm.weight": (HIDDEN,),
        "midlayer.self_attn.q_proj.weight": (HEADS * d, 2 * HIDDEN),
        "midlayer.self_attn.k_proj.weight": (KV_HEADS * d, 2 * HIDDEN),
        "midlayer.self_attn.v_proj.weight": (KV_HEADS * d, 2 * HIDDEN),
        "midlayer.self_attn.o_proj.weight": (HIDDEN, HEADS * d),
        "midlayer.mlp.gate_proj.weight": (INTER, HIDDEN), "midlayer.mlp.up_proj.weight": (INTER, HIDDEN),
        "midlayer.mlp.down_proj.weight": (HIDDEN, INTER),
        "norm.weight": (HIDDEN,), "lm_head.weight": (DRAFT, HIDDEN),
    }
    state = {k: (1 + 0.1 * torch.randn(s, generator=g)) if len(s) == 1 else 0.1 * torch.randn(s, generator=g)
             for k, s in shapes.items()}
    used = torch.randperm(VOCAB, generator=g)[:DRAFT].sort().values
    state["d2t"] = used - torch.arange(DRAFT)  # EAGLE: d2t[i] = used_tokens[i] - i
    state["t2d"] = torch.zeros(VOCAB, dtype=torch.bool)
    state["t2d"][used] = True
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def write_head(path: Path, config: dict | None = None, state: dict | None = None, fmt: str = "safetensors") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or real_config()))
    state = real_state() if state is None else state
    if fmt == "safetensors":
        save_file(state, str(path / "model.safetensors"))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path


@pytest.fixture(scope="module")
def head(target, tmp_path_factory):
    return load_eagle3(write_head(tmp_path_factory.mktemp("head") / "h"), target[1].get_input_embeddings())


def features(head, model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        hidden = model(input_ids=ids[None], output_hidden_states=True).hidden_states
    return head.fuse(tuple(h[0] for h in hidden)).detach()


def test_fused_layers_are_eagles_inputs_of_layers_2_half_and_minus_3():
    assert fused_layers(32) == (2, 16, 29)  # Llama-3.1-8B
    assert fused_layers(8) == (2, 4, 5)  # the zoo's target
    assert fused_layers(4) == (1, 2, 2)
    with pytest.raises(CheckpointError, match="at least 3 layers"):
        fused_layers(2)


def test_shapes_and_fuse_picks_the_right_layers(head, target):
    model = target[1]
    ids = torch.randint(0, VOCAB, (9,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hs = model(input_ids=ids[None], output_hidden_states=True).hidden_states
    assert len(hs) == LAYERS + 1
    feats = head.fuse(tuple(h[0] for h in hs))
    assert feats.shape == (9, HIDDEN)
    by_hand = head.fc(torch.cat([hs[1][0], hs[2][0], hs[2][0]], dim=-1))  # L=4 -> layers (1, 2, 2)
    torch.testing.assert_close(feats, by_hand)
    logits, hidden = head(ids, feats, head.new_cache())
    assert logits.shape == (9, DRAFT) and logits.dtype == torch.float32
    assert hidden.shape == (9, HIDDEN)
    assert head.embed_weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # shared, not copied


def test_batched_equals_incremental_and_chunked(head, target):
    ids = torch.randint(0, VOCAB, (11,), generator=torch.Generator().manual_seed(1))
    feats = features(head, target[1], ids)
    full_logits, full_hidden = head(ids, feats, head.new_cache())
    cache = head.new_cache()
    one = [head(ids[i:i + 1], feats[i:i + 1], cache) for i in range(11)]
    torch.testing.assert_close(torch.cat([o[0] for o in one]), full_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([o[1] for o in one]), full_hidden, atol=1e-5, rtol=1e-4)
    cache = head.new_cache()
    chunks = [head(ids[a:b], feats[a:b], cache)[0] for a, b in ((0, 3), (3, 10), (10, 11))]
    torch.testing.assert_close(torch.cat(chunks), full_logits, atol=1e-5, rtol=1e-4)
    assert cache.length == 11


def test_crop_then_refeed_reproduces_logits(head, target):
    ids = torch.randint(0, VOCAB, (10,), generator=torch.Generator().manual_seed(2))
    feats = features(head, target[1], ids)
    cache = head.new_cache()
    logits, hidden = head(ids, feats, cache)
    # Draft two deep on fed-back hidden states, then roll back as after a rejection.
    head(ids[:1], hidden[-1:], cache)
    head(ids[1:2], hidden[-1:], cache)
    assert cache.length == 12
    cache.crop(6)
    again, _ = head(ids[6:], feats[6:], cache)
    torch.testing.assert_close(again, logits[6:], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        cache.crop(11)


def test_vocab_map_follows_d2t_and_t2d(head):
    state = real_state()
    used = torch.arange(DRAFT) + state["d2t"]
    draft_ids = torch.tensor([0, 5, DRAFT - 1])
    assert head.to_target_ids(draft_ids).tolist() == used[draft_ids].tolist()
    draft_logits = torch.randn(3, DRAFT)
    full = head.target_logits(draft_logits)
    assert full.shape == (3, VOCAB)
    assert torch.equal(torch.isfinite(full[0]), state["t2d"])
    torch.testing.assert_close(full[:, used], draft_logits)
    assert torch.equal(full.argmax(-1), head.to_target_ids(draft_logits.argmax(-1)))


def test_save_round_trip_bin_format_and_shipped_embeddings(head, target, tmp_path):
    embed = target[1].get_input_embeddings()
    ids = torch.randint(0, VOCAB, (5,), generator=torch.Generator().manual_seed(3))
    feats = features(head, target[1], ids)
    save_eagle3(head, tmp_path / "saved")
    assert set(load_file(str(tmp_path / "saved" / "model.safetensors"))) == set(real_state())
    for path in (tmp_path / "saved", write_head(tmp_path / "bin", fmt="bin")):
        again = load_eagle3(path, embed)
        torch.testing.assert_close(again(ids, feats, again.new_cache())[0], head(ids, feats, head.new_cache())[0])
    state = {**real_state(), "embed_tokens.weight": torch.randn(VOCAB, HIDDEN).half()}
    own = load_eagle3(write_head(tmp_path / "own", state=state), embed)
    assert torch.equal(own.embed_weight, state["embed_tokens.weight"].float())
    save_eagle3(own, tmp_path / "own2")
    assert "embed_tokens.weight" in load_file(str(tmp_path / "own2" / "model.safetensors"))


def test_rope_matches_transformers_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    llama3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    for rope in ({"rope_type": "default", "rope_theta": 10000.0}, llama3):
        ours = rope_inv_freq(Eagle3Config.from_dict(real_config(rope_scaling=rope, head_dim=128)))
        theirs = LlamaRotaryEmbedding(LlamaConfig(hidden_size=4096, num_attention_heads=32, rope_parameters=rope))
        torch.testing.assert_close(ours, theirs.inv_freq.float())


def _drop(state, key):
    return {k: v for k, v in state.items() if k != key}


BAD = {
    "unknown architecture": ({"architectures": ["LlamaForCausalLM"]}, None,
                             "config.json: key 'architectures'.*LlamaForCausalLMEagle3"),
    "missing config key": ({"hidden_size": None}, None, "config.json: key 'hidden_size' is missing"),
    "heads do not divide hidden": ({"num_attention_heads": 5}, None, "'num_attention_heads' = 5 does not divide"),
    "draft vocab too big": ({"draft_vocab_size": VOCAB + 1}, None, "'draft_vocab_size' = 98 exceeds vocab_size"),
    "unsupported rope": ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, None, "rope type 'dynamic'"),
    "missing weight": ({}, lambda s: _drop(s, "midlayer.mlp.up_proj.weight"),
                       r"model.safetensors does not match.*missing keys \['midlayer.mlp.up_proj.weight'\]"),
    "unexpected weight": ({}, lambda s: {**s, "midlayer.extra.weight": torch.zeros(2)},
                          r"unexpected keys \['midlayer.extra.weight'\]"),
    "wrong weight shape": ({}, lambda s: {**s, "fc.weight": torch.zeros(HIDDEN, 100)},
                           r"model.safetensors: fc.weight has shape \(64, 100\), config.json implies \(64, 192\)"),
    "d2t shape": ({}, lambda s: {**s, "d2t": s["d2t"][:-1].clone()}, r"d2t has shape \(39,\)"),
    "t2d disagrees with d2t": ({}, lambda s: {**s, "t2d": ~s["t2d"]}, "t2d marks 57 target ids, not the 40"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_checkpoints_fail_clearly(case, target, tmp_path):
    overrides, mutate, message = BAD[case]
    config = {k: v for k, v in real_config(**overrides).items() if v is not None}
    state = real_state() if mutate is None else mutate(real_state())
    with pytest.raises(CheckpointError, match=message):
        load_eagle3(write_head(tmp_path / "bad", config, state), target[1].get_input_embeddings())


def test_missing_files_and_foreign_target_fail_clearly(target, tmp_path):
    path = write_head(tmp_path / "h")
    with pytest.raises(CheckpointError, match="target's embeddings, but they are \\(50, 64\\)"):
        load_eagle3(path, torch.nn.Embedding(50, HIDDEN))
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no model.safetensors or pytorch_model.bin"):
        load_eagle3(path, target[1].get_input_embeddings())


def test_training_smoke_saves_heads_that_load_back(target, tmp_path):
    from hedgespec_cli.zoo.eagle import train_eagle_heads

    g = torch.Generator().manual_seed(0)
    corpora = {"alpha": torch.randint(3, 40, (400,), generator=g), "beta": torch.randint(30, 90, (400,), generator=g)}
    kwargs = {"seed": 0, "time_budget_s": 60.0, "max_steps": 2, "seq_len": 16, "batch_size": 2,
              "draft_vocab_size": 48}
    manifest = train_eagle_heads(target[0], corpora, tmp_path / "a", **kwargs)
    assert [h["name"] for h in manifest["heads"]] == ["generic", "alpha", "beta"]
    assert manifest["fused_layers"] == [1, 2, 2]
    assert json.loads((tmp_path / "a" / "eagle3.json").read_text()) == manifest
    embed = target[1].get_input_embeddings()
    for entry in manifest["heads"]:
        assert entry["steps"] == 2 and len(entry["greedy_accept"]) == 3
        loaded = load_eagle3(tmp_path / "a" / entry["path"], embed)
        ids = corpora["alpha"][:6]
        logits, _ = loaded(ids, features(loaded, target[1], ids), loaded.new_cache())
        assert logits.shape == (6, 48) and torch.isfinite(logits).all()
    alpha = load_eagle3(tmp_path / "a" / "alpha", embed)
    assert set(alpha.to_target_ids(torch.arange(48)).tolist()) >= set(range(3, 40))  # its own frequent tokens
    train_eagle_heads(target[0], corpora, tmp_path / "b", **kwargs)  # same seed, same step cap: same heads
    first, second = (load_file(str(tmp_path / d / "generic" / "model.safetensors")) for d in ("a", "b"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_training_time_test_sees_what_drafting_sees(head, target):
    """Unrolled step k of training at row t == drafting k+1 deep after the prefix ending at t."""
    from hedgespec_cli.zoo.eagle import _UnrolledKV

    s, steps = 8, 3
    ids = torch.randint(0, VOCAB, (s + steps,), generator=torch.Generator().manual_seed(4))
    feats = features(head, target[1], ids)[:s]
    kv, hidden, per_step = _UnrolledKV(), feats[None], []
    causal, diagonal = torch.ones(s, s, dtype=torch.bool).tril(), torch.eye(s, dtype=torch.bool)
    with torch.no_grad():
        for k in range(steps):
            mask = torch.cat([causal] + [diagonal] * k, dim=1)
            hidden = head.run_layer(ids[None, 1 + k:1 + k + s], hidden, torch.arange(s) + k, kv, mask)
            per_step.append(head.logits(hidden)[0])
    t = 4
    cache = head.new_cache()
    logits, out = head(ids[1:t + 2], feats[:t + 1], cache)  # prefix: features 0..t with tokens 1..t+1
    torch.testing.assert_close(logits[-1], per_step[0][t], atol=1e-5, rtol=1e-4)
    for k in range(1, steps):  # feed back the head's own hidden with the next token
        logits, out = head(ids[t + 1 + k:t + 2 + k], out[-1:], cache)
        torch.testing.assert_close(logits[0], per_step[k][t], atol=1e-5, rtol=1e-4)
