"""EAGLE-3 heads in both published formats (EAGLE's and vLLM's `speculators`) against references
written here from each format's own code, and `eagle_aux_hidden_state_layer_ids` honoured.

The references read each format's raw config.json and state dict under its own tensor names and
run the network the way the format's code does (a full causal pass, no cache; EAGLE's
`LlamaDecoderLayeremb` and speculators' `Eagle3DecoderLayer`; the fused target layers picked as
vLLM records them: the residual stream entering layer i, i.e. transformers' hidden_states[i], in
layer order). Random weights; agreement to float32 round-off.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hedgespec_cli.config import ModelSpec
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.errors import CheckpointError
from hedgespec_cli.models import load_pool
from hedgespec_cli.models.eagle3 import is_eagle3_checkpoint, load_eagle3
from hedgespec_cli.models.speculators import config_from_speculators

from test_engine import Fixed, reference_greedy

VOCAB, DRAFT, HIDDEN, INTER, HEADS, KV_HEADS, LAYERS = 97, 40, 64, 96, 4, 2, 6
TINY = Path(__file__).resolve().parents[1] / "profiles" / "tiny"


@pytest.fixture(scope="module")
def target():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


# -- the two formats, as their trainers write them ------------------------------------------------

def layer_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    d = HIDDEN // HEADS
    return {f"{prefix}hidden_norm.weight": (HIDDEN,), f"{prefix}input_layernorm.weight": (HIDDEN,),
            f"{prefix}post_attention_layernorm.weight": (HIDDEN,),
            f"{prefix}self_attn.q_proj.weight": (HEADS * d, 2 * HIDDEN),
            f"{prefix}self_attn.k_proj.weight": (KV_HEADS * d, 2 * HIDDEN),
            f"{prefix}self_attn.v_proj.weight": (KV_HEADS * d, 2 * HIDDEN),
            f"{prefix}self_attn.o_proj.weight": (HIDDEN, HEADS * d),
            f"{prefix}mlp.gate_proj.weight": (INTER, HIDDEN), f"{prefix}mlp.up_proj.weight": (INTER, HIDDEN),
            f"{prefix}mlp.down_proj.weight": (HIDDEN, INTER)}


def random_state(prefix: str, *, fc_bias: bool, embed: bool, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"fc.weight": (HIDDEN, 3 * HIDDEN), **layer_shapes(prefix), "norm.weight": (HIDDEN,),
              "lm_head.weight": (DRAFT, HIDDEN)}
    if fc_bias:
        shapes["fc.bias"] = (HIDDEN,)
    if embed:
        shapes["embed_tokens.weight"] = (VOCAB, HIDDEN)
    state = {k: (1 + 0.2 * torch.randn(s, generator=g)) if k.endswith("norm.weight")
             else 0.15 * torch.randn(s, generator=g) for k, s in shapes.items()}
    used = torch.randperm(VOCAB, generator=g)[:DRAFT].sort().values
    state["d2t"] = used - torch.arange(DRAFT)
    state["t2d"] = torch.zeros(VOCAB, dtype=torch.bool)
    state["t2d"][used] = True
    return state


def eagle_config(aux: list[int] | None = None) -> dict:
    cfg = {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama", "hidden_act": "silu",
           "hidden_size": HIDDEN, "intermediate_size": INTER, "num_attention_heads": HEADS,
           "num_key_value_heads": KV_HEADS, "num_hidden_layers": 1, "rms_norm_eps": 1e-5, "rope_theta": 5e5,
           "max_position_embeddings": 2048, "vocab_size": VOCAB, "draft_vocab_size": DRAFT}
    if aux is not None:
        cfg["eagle_aux_hidden_state_layer_ids"] = aux
    return cfg


def speculators_config(*, norm_before_residual: bool, aux: list[int] | None = None) -> dict:
    """As speculators saves it: the layer config through `to_diff_dict`, so keys equal to
    LlamaConfig's defaults (here max_position_embeddings, hidden_act) are absent."""
    from transformers import LlamaConfig

    layer = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=1,
                        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, rms_norm_eps=1e-5,
                        rope_theta=5e5, max_position_embeddings=2048).to_diff_dict()
    cfg = {"speculators_model_type": "eagle3", "architectures": ["Eagle3Speculator"],
           "transformer_layer_config": layer, "draft_vocab_size": DRAFT,
           "norm_before_residual": norm_before_residual, "target_hidden_size": None,
           "speculators_config": {"algorithm": "eagle3", "verifier": {"name_or_path": "org/target"}}}
    if aux is not None:
        cfg["eagle_aux_hidden_state_layer_ids"] = aux
    return cfg


def write(path: Path, config: dict, state: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
    return path


# -- references, one per format --------------------------------------------------------------------

def _rms(x, w, eps):  # Llama's RMSNorm
    return w * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _layer(emb, hidden, w, p, *, heads, kv_heads, head_dim, eps, theta, norm_before_residual):
    """One EAGLE-3 decoder layer over a whole sequence (1, T, H), causal, positions 0..T-1."""
    if norm_before_residual:  # speculators' option
        hidden = _rms(hidden, w[p + "hidden_norm.weight"], eps)
        residual = hidden
    else:  # EAGLE's layer; speculators' default
        residual = hidden
        hidden = _rms(hidden, w[p + "hidden_norm.weight"], eps)
    x = torch.cat([_rms(emb, w[p + "input_layernorm.weight"], eps), hidden], dim=-1)
    b, t, _ = x.shape
    q = (x @ w[p + "self_attn.q_proj.weight"].T).view(b, t, heads, head_dim).transpose(1, 2)
    k = (x @ w[p + "self_attn.k_proj.weight"].T).view(b, t, kv_heads, head_dim).transpose(1, 2)
    v = (x @ w[p + "self_attn.v_proj.weight"].T).view(b, t, kv_heads, head_dim).transpose(1, 2)
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rot(z):
        z1, z2 = z[..., : head_dim // 2], z[..., head_dim // 2:]
        return z * cos + torch.cat([-z2, z1], -1) * sin

    q, k = rot(q), rot(k)
    k, v = (z.repeat_interleave(heads // kv_heads, dim=1) for z in (k, v))  # repeat_kv
    scores = q @ k.transpose(2, 3) / math.sqrt(head_dim)
    scores = scores + torch.full((t, t), float("-inf")).triu(1)
    att = (scores.softmax(-1, dtype=torch.float32) @ v).transpose(1, 2).reshape(b, t, heads * head_dim)
    h = residual + att @ w[p + "self_attn.o_proj.weight"].T
    m = _rms(h, w[p + "post_attention_layernorm.weight"], eps)
    mlp = (torch.nn.functional.silu(m @ w[p + "mlp.gate_proj.weight"].T) * (m @ w[p + "mlp.up_proj.weight"].T))
    return h + mlp @ w[p + "mlp.down_proj.weight"].T


def _head_logits(hidden, w, eps, d2t):
    """Final norm + lm_head, mapped onto the target vocabulary (-inf elsewhere): (T, V)."""
    draft = _rms(hidden, w["norm.weight"], eps) @ w["lm_head.weight"].T
    out = torch.full((*draft.shape[:-1], VOCAB), float("-inf"))
    out[..., torch.arange(DRAFT) + d2t] = draft
    return out[0]


def _aux(target_hidden, ids, num_layers):
    """vLLM: the residual stream entering each listed layer, in layer order; EAGLE's default ids."""
    ids = sorted(ids) if ids else sorted({2, num_layers // 2, num_layers - 3})
    picked = [target_hidden[i] for i in ids]
    while len(picked) < 3:  # fewer than 7 layers: EAGLE's set has duplicates, repeated (our convention)
        picked.append(picked[-1])
    return torch.cat(picked, -1)


def reference_eagle(config, state, tokens, target_hidden, embed):
    """SafeAILab/EAGLE's EAGLE-3 `Model`: flat Llama config, `midlayer.*`, fc without bias."""
    c = config
    feats = _aux(target_hidden, c.get("eagle_aux_hidden_state_layer_ids"), len(target_hidden) - 1)
    fused = feats @ state["fc.weight"].T
    emb = state.get("embed_tokens.weight", embed)[tokens][None]
    out = _layer(emb, fused[None], state, "midlayer.", heads=c["num_attention_heads"],
                 kv_heads=c["num_key_value_heads"], head_dim=c["hidden_size"] // c["num_attention_heads"],
                 eps=c["rms_norm_eps"], theta=c["rope_theta"], norm_before_residual=False)
    return _head_logits(out, state, c["rms_norm_eps"], state["d2t"])


def reference_speculators(config, state, tokens, target_hidden, embed):
    """speculators' `Eagle3Speculator`: layer config nested (LlamaConfig fills the rest), `layers.0.*`,
    optional fc bias, `norm_before_residual`."""
    from transformers import LlamaConfig

    layer = LlamaConfig(**config["transformer_layer_config"])
    feats = _aux(target_hidden, config.get("eagle_aux_hidden_state_layer_ids"), len(target_hidden) - 1)
    fused = feats @ state["fc.weight"].T + state.get("fc.bias", torch.zeros(HIDDEN))
    emb = state.get("embed_tokens.weight", embed)[tokens][None]
    out = _layer(emb, fused[None], state, "layers.0.", heads=layer.num_attention_heads,
                 kv_heads=layer.num_key_value_heads, head_dim=layer.hidden_size // layer.num_attention_heads,
                 eps=layer.rms_norm_eps, theta=layer.rope_parameters["rope_theta"],
                 norm_before_residual=config["norm_before_residual"])
    return _head_logits(out, state, layer.rms_norm_eps, state["d2t"])


def ours(path, target, tokens, *, one_by_one: bool = False):
    head = load_eagle3(path, target.get_input_embeddings())
    with torch.no_grad():
        hidden = tuple(h[0] for h in target(input_ids=tokens[None], output_hidden_states=True).hidden_states)
    feats = head.fuse(hidden)
    cache = head.new_cache()
    if one_by_one:  # incremental, through the KV cache, as drafting runs
        logits = torch.cat([head(tokens[i:i + 1], feats[i:i + 1], cache)[0] for i in range(len(tokens))])
    else:
        logits = head(tokens, feats, cache)[0]
    return head.target_logits(logits), hidden


def assert_same(got, want):
    finite = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), finite)  # the same draft vocabulary
    torch.testing.assert_close(got[finite], want[finite], atol=2e-5, rtol=1e-5)


TOKENS = torch.randint(0, VOCAB, (13,), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("aux", [None, [0, 3, 4]])
@pytest.mark.parametrize("embed", [False, True])
def test_eagle_format_matches_its_reference(target, tmp_path, aux, embed):
    config, state = eagle_config(aux), random_state("midlayer.", fc_bias=False, embed=embed, seed=2)
    got, hidden = ours(write(tmp_path / "h", config, state), target, TOKENS, one_by_one=embed)
    assert_same(got, reference_eagle(config, state, TOKENS, hidden, target.get_input_embeddings().weight))


@pytest.mark.parametrize("norm_before_residual", [False, True])
@pytest.mark.parametrize("fc_bias,embed,aux", [(True, True, None), (False, True, [1, 2, 5]), (False, False, None)])
def test_speculators_format_matches_its_reference(target, tmp_path, norm_before_residual, fc_bias, embed, aux):
    config = speculators_config(norm_before_residual=norm_before_residual, aux=aux)
    state = random_state("layers.0.", fc_bias=fc_bias, embed=embed, seed=3)
    state["verifier_norm.weight"] = torch.ones(HIDDEN)  # training-only copies speculators may save
    state["verifier_lm_head.weight"] = torch.zeros(DRAFT, HIDDEN)
    path = write(tmp_path / "s", config, state)
    assert is_eagle3_checkpoint(path)
    got, hidden = ours(path, target, TOKENS, one_by_one=norm_before_residual)
    assert_same(got, reference_speculators(config, state, TOKENS, hidden, target.get_input_embeddings().weight))


def test_the_options_change_the_output(target, tmp_path):
    """Each option read from the config changes the logits, so the tests above can see it ignored."""
    state = random_state("layers.0.", fc_bias=True, embed=True, seed=4)
    base, _ = ours(write(tmp_path / "a", speculators_config(norm_before_residual=False), state), target, TOKENS)
    nbr, _ = ours(write(tmp_path / "b", speculators_config(norm_before_residual=True), state), target, TOKENS)
    aux, _ = ours(write(tmp_path / "c", speculators_config(norm_before_residual=False, aux=[0, 1, 5]), state),
                  target, TOKENS)
    no_bias, _ = ours(write(tmp_path / "d", speculators_config(norm_before_residual=False),
                            {k: v for k, v in state.items() if k != "fc.bias"}), target, TOKENS)
    finite = torch.isfinite(base)
    for other in (nbr, aux, no_bias):
        assert (other[finite] - base[finite]).abs().max() > 1e-3


def test_speculators_config_fills_llama_defaults():
    cfg = config_from_speculators(speculators_config(norm_before_residual=True, aux=[5, 1, 2]))
    assert (cfg.hidden_size, cfg.draft_vocab_size, cfg.max_position_embeddings) == (HIDDEN, DRAFT, 2048)
    assert cfg.norm_before_residual and cfg.aux_layers == (5, 1, 2)
    assert cfg.feature_layers(LAYERS) == (1, 2, 5)  # layer order, as vLLM records them
    with pytest.raises(CheckpointError, match=r"valid ids 0\.\.3"):
        cfg.feature_layers(4)


@pytest.mark.parametrize("change,match", [
    (lambda c, s: c.update(speculators_model_type="eagle"), "only 'eagle3'"),
    (lambda c, s: c["transformer_layer_config"].update(model_type="qwen3"), "only Llama decoder layers"),
    (lambda c, s: c["transformer_layer_config"].update(attention_bias=True), "attention_bias"),
    (lambda c, s: c.update(eagle_aux_hidden_state_layer_ids=[1, 2]), "exactly three target layers"),
    (lambda c, s: s.update({"layers.1.hidden_norm.weight": torch.ones(HIDDEN)}), "decoder layers 1"),
    (lambda c, s: c.update(norm_before_fc=True), "norm_before_fc"),
])
def test_unsupported_speculators_heads_fail_clearly(target, tmp_path, change, match):
    config = speculators_config(norm_before_residual=False)
    state = random_state("layers.0.", fc_bias=False, embed=True, seed=6)
    change(config, state)
    with pytest.raises(CheckpointError, match=match):
        load_eagle3(write(tmp_path / "x", config, state), target.get_input_embeddings())


# -- real checkpoints of the tiny zoo, in both formats, decoding with the tiny target ---------------

def as_speculators(eagle_dir: Path, out: Path, *, aux: list[int] | None = None) -> Path:
    """The zoo's EAGLE-format head rewritten as speculators saves it (same tensors, other names)."""
    from transformers import LlamaConfig

    raw = json.loads((eagle_dir / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
            "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings")
    layer = LlamaConfig(num_hidden_layers=1, **{k: raw[k] for k in keys}).to_diff_dict()
    config = {"speculators_model_type": "eagle3", "architectures": ["Eagle3Speculator"],
              "transformer_layer_config": layer, "draft_vocab_size": raw["draft_vocab_size"],
              "norm_before_residual": False}
    if aux is not None:
        config["eagle_aux_hidden_state_layer_ids"] = aux
    state = {("layers.0." + k.removeprefix("midlayer.")) if k.startswith("midlayer.") else k: v
             for k, v in load_file(str(eagle_dir / "model.safetensors")).items()}
    return write(out, config, state)


def with_aux(eagle_dir: Path, out: Path, aux: list[int]) -> Path:
    config = {**json.loads((eagle_dir / "config.json").read_text()), "eagle_aux_hidden_state_layer_ids": aux}
    return write(out, config, load_file(str(eagle_dir / "model.safetensors")))


@pytest.fixture(scope="module")
def zoo_heads(tmp_path_factory):
    root, generic = tmp_path_factory.mktemp("formats"), TINY / "eagle3" / "generic"
    return {"eagle": generic, "speculators": as_speculators(generic, root / "spec"),
            "eagle-aux-default": with_aux(generic, root / "aux-default", [5, 2, 4]),
            "speculators-aux-other": as_speculators(generic, root / "spec-aux", aux=[1, 3, 6])}


def decode_all(pool, prompts, steps=32):
    engine = Engine(pool, DecodeSettings(K=4, max_new_tokens=steps, stop_at_eos=False))
    outs = []
    for text in prompts:
        ids = pool.tokenizer(text)["input_ids"]
        rec = engine.decode(ids, Fixed(0, 1, full=False))
        outs.append((ids, rec.output_ids, [r.n for r in rec.rounds]))
    return outs


PROMPTS = ["def add(a, b):\n    return", "The court held that the contract", "Solve 12 + 30 ="]


@pytest.mark.parametrize("fmt", ["speculators", "eagle-aux-default", "speculators-aux-other"])
def test_zoo_head_in_each_format_decodes_losslessly(zoo_heads, fmt):
    """The default kind auto-detects either format; the repackaged head is the same head (same
    tokens per round), and a head told other layers reads them (other rounds, still lossless)."""
    base = load_pool(ModelSpec("target", TINY / "target"), [ModelSpec("h", zoo_heads["eagle"], kind="eagle3")],
                     tokenizer_path=TINY / "tokenizer")
    pool = load_pool(ModelSpec("target", TINY / "target"), [ModelSpec("h", zoo_heads[fmt])],
                     tokenizer_path=TINY / "tokenizer")
    assert pool.specs[0].kind == "eagle3"
    want, got = decode_all(base, PROMPTS), decode_all(pool, PROMPTS)
    for (ids, out, rounds), (_, out_base, rounds_base) in zip(got, want):
        assert out == reference_greedy(pool.target.model, ids, 32, None)
        assert out == out_base
        if fmt == "speculators-aux-other":
            continue
        assert rounds == rounds_base  # identical acceptance: nothing lost in the repackaging
    if fmt == "speculators-aux-other":
        assert [r for _, _, r in got] != [r for _, _, r in want]


def test_pool_heads_on_different_layers_and_ids_beyond_the_target_fail(zoo_heads, tmp_path):
    specs = [ModelSpec("a", zoo_heads["eagle"]), ModelSpec("b", zoo_heads["speculators-aux-other"])]
    pool = load_pool(ModelSpec("target", TINY / "target"), specs, tokenizer_path=TINY / "tokenizer")
    with pytest.raises(CheckpointError, match=r"fuse different target layers \(b: \[1, 3, 6\]; a: \[2, 4, 5\]\)"):
        Engine(pool, DecodeSettings(K=4, max_new_tokens=8))
    far = with_aux(zoo_heads["eagle"], tmp_path / "far", [2, 4, 8])  # the tiny target has 8 layers: 0..7
    with pytest.raises(CheckpointError, match=r"valid ids 0\.\.7"):
        load_pool(ModelSpec("target", TINY / "target"), [ModelSpec("far", far)], tokenizer_path=TINY / "tokenizer")


def test_stacked_heads_keep_fc_bias_and_norm_before_residual(zoo_heads, tmp_path):
    """Two speculators heads with both options, stacked, draft exactly as they do one by one."""
    from hedgespec_cli.decoding.drafters import StackedEagle3Group

    paths = []
    for i in range(2):
        path = as_speculators(zoo_heads["eagle"], tmp_path / f"s{i}")
        config = {**json.loads((path / "config.json").read_text()), "norm_before_residual": True}
        state = load_file(str(path / "model.safetensors"))
        state["fc.bias"] = 0.05 * torch.randn(state["fc.weight"].shape[0], generator=torch.Generator().manual_seed(i))
        paths.append(write(path, config, state))
    pool = load_pool(ModelSpec("target", TINY / "target"), [ModelSpec(f"s{i}", p) for i, p in enumerate(paths)],
                     tokenizer_path=TINY / "tokenizer")
    settings = DecodeSettings(K=4, max_new_tokens=24, stop_at_eos=False)
    stacked, single = Engine(pool, settings), Engine(pool, settings, stack_drafters=False)
    assert any(isinstance(g, StackedEagle3Group) for g in stacked.groups)
    for text in PROMPTS:
        ids = pool.tokenizer(text)["input_ids"]
        for arm in range(2):
            a, b = stacked.decode(ids, Fixed(arm, 2, True)), single.decode(ids, Fixed(arm, 2, True))
            assert a.output_ids == b.output_ids == reference_greedy(pool.target.model, ids, 24, None)
            assert [r.n for r in a.rounds] == [r.n for r in b.rounds]
            np_a, np_b = a.gamma, b.gamma
            torch.testing.assert_close(torch.as_tensor(np_a), torch.as_tensor(np_b), atol=1e-4, rtol=1e-4)
