"""The EAGLE-3 drafter head (SafeAILab/EAGLE, arXiv 2503.01840) in plain torch.

One Llama decoder layer. Its attention reads `[norm(embed(x_{t+1})) ; norm(f_t)]`
(2H wide), where `f_t` is either the fused target feature at position t
(`fc` over three target layers; depth-1 drafts) or the head's own output hidden
state at t, taken *before* the final norm (deeper drafts, as EAGLE's
`topK_genrate` feeds `out_hidden` back). The final `norm` + `lm_head` score a
reduced draft vocabulary; `d2t` maps draft id -> target id by offset.

Checkpoint (the real format, as released by EAGLE and read by vLLM/SGLang):
`config.json` (Llama keys + `draft_vocab_size`, optional `target_hidden_size`)
and `model.safetensors` or `pytorch_model.bin` holding `fc.weight`, `midlayer.*`
(`hidden_norm`, `input_layernorm`, `post_attention_layernorm`,
`self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`), `norm.weight`,
`lm_head.weight`, `d2t`, `t2d` and optionally `embed_tokens.weight`. Read as vLLM reads them too:
`eagle_aux_hidden_state_layer_ids` (the fused target layers) and `norm_before_residual`. vLLM's
`speculators` packaging of the same head is mapped onto this one in `models/speculators.py`.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import Tensor, nn

from hedgespec_cli.errors import CheckpointError
from hedgespec_cli.files import write_json

# Names real EAGLE-3 Llama-head checkpoints put in `architectures` (EAGLE's releases,
# SpecForge and SGLang write the first; vLLM also registers the second).
ARCHITECTURES = ("LlamaForCausalLMEagle3", "Eagle3LlamaForCausalLM")
ROPE_TYPES = ("default", "linear", "llama3")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def fused_layers(num_layers: int) -> tuple[int, int, int]:
    """Indices into transformers' `hidden_states` (L+1 entries) that EAGLE-3 fuses, in `fc` order.

    EAGLE's modified Llama (eagle/model/modeling_llama_kv.py) records the residual
    stream *entering* decoder layers `idx in {2, L//2, L-3}`, in layer order, and
    concatenates them. transformers' `hidden_states[i]` is exactly the input of layer
    i (`[0]` = embeddings, `[L]` = the final-normed output), so the indices carry over
    unchanged, sorted ascending: (2, 16, 29) for a 32-layer target. Below 7 layers two
    indices coincide; EAGLE would then record fewer than three states, we repeat one.
    """
    if num_layers < 3:
        raise CheckpointError(f"an EAGLE-3 head needs a target with at least 3 layers, got {num_layers}")
    return tuple(sorted((2, num_layers // 2, num_layers - 3)))  # type: ignore[return-value]


@dataclass(frozen=True)
class Eagle3Config:
    """The head's shape, parsed and validated once from `config.json`."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_type: str
    rope_theta: float
    rope_scaling: tuple[tuple[str, float], ...]  # the rope type's extra numbers, sorted by key
    max_position_embeddings: int
    vocab_size: int
    draft_vocab_size: int
    target_hidden_size: int
    architecture: str = ARCHITECTURES[0]
    # The target layers whose inputs `fc` fuses, as the checkpoint names them (vLLM's
    # `eagle_aux_hidden_state_layer_ids`); None: EAGLE's default `fused_layers(L)`.
    aux_layers: tuple[int, ...] | None = None
    # vLLM/speculators variant: the residual around attention is the *normed* feature.
    norm_before_residual: bool = False
    fc_bias: bool = False  # speculators' first releases trained `fc` with a bias

    def feature_layers(self, num_layers: int) -> tuple[int, ...]:
        """Indices into the target's `hidden_states` (L+1 entries) that `fc` reads, ascending.

        vLLM records the residual stream entering decoder layer i for each listed i, in
        layer order, which is transformers' `hidden_states[i]`; so ids in 0..L-1, sorted.
        """
        if self.aux_layers is None:
            return fused_layers(num_layers)
        bad = [i for i in self.aux_layers if not 0 <= i < num_layers]
        if bad:
            raise CheckpointError(f"the EAGLE-3 head reads target layers {list(self.aux_layers)} "
                                  f"(eagle_aux_hidden_state_layer_ids), but the target has {num_layers} layers "
                                  f"(valid ids 0..{num_layers - 1}); use the head trained for this target")
        return tuple(sorted(self.aux_layers))

    @classmethod
    def from_file(cls, path: Path) -> Eagle3Config:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable ({err}); an EAGLE-3 head needs a JSON config.json") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: not a JSON object; an EAGLE-3 head needs a Llama-style config.json")
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> Eagle3Config:
        def bad(key: str, why: str) -> CheckpointError:
            return CheckpointError(f"{source}: key {key!r} {why}")

        archs = raw.get("architectures") or []
        arch = next((a for a in archs if a in ARCHITECTURES), None)
        if arch is None:
            raise bad("architectures", f"is {archs!r}, not an EAGLE-3 Llama head; real heads say "
                      f"{list(ARCHITECTURES[:1])} (set it so if this really is an EAGLE-3 head, e.g. one "
                      "trained with EAGLE's traineagle3 template, which says LlamaForCausalLM)")

        def num(key: str, default: Any = None, kind: type = int) -> Any:
            value = raw.get(key, default)
            if value is None:
                raise bad(key, "is missing; add it to config.json (an EAGLE-3 head needs Llama's shape keys)")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
                    or (kind is int and int(value) != value):
                raise bad(key, f"is {value!r}; it must be a positive {kind.__name__}")
            return kind(value)

        hidden, heads = num("hidden_size"), num("num_attention_heads")
        kv_heads = num("num_key_value_heads", heads)  # Llama's default: plain multi-head attention
        if "head_dim" not in raw and hidden % heads:
            raise bad("num_attention_heads", f"= {heads} does not divide hidden_size = {hidden}; "
                      "fix one of them or give head_dim explicitly")
        head_dim = num("head_dim", hidden // heads)
        if heads % kv_heads:
            raise bad("num_key_value_heads", f"= {kv_heads} does not divide num_attention_heads = {heads}")
        if head_dim % 2:
            raise bad("head_dim", f"= {head_dim} is odd; rotary embeddings rotate pairs of channels")
        if num("num_hidden_layers", 1) != 1:
            raise bad("num_hidden_layers", f"= {raw['num_hidden_layers']}; an EAGLE-3 head has exactly one layer")
        if raw.get("hidden_act", "silu") != "silu":
            raise bad("hidden_act", f"= {raw['hidden_act']!r}; the Llama head's MLP is SwiGLU ('silu')")
        vocab, draft_vocab = num("vocab_size"), num("draft_vocab_size")
        if draft_vocab > vocab:
            raise bad("draft_vocab_size", f"= {draft_vocab} exceeds vocab_size = {vocab}; the draft "
                      "vocabulary is a subset of the target's, fix either value")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise bad("rope_scaling", f"is {rope!r}; it must be an object such as {{\"rope_type\": \"linear\", ...}}")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise bad("rope_scaling", f"has rope type {rope_type!r}; supported: {', '.join(ROPE_TYPES)}")
        extra = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                                                   "original_max_position_embeddings")}.get(rope_type, ())
        missing = [k for k in extra if not isinstance(rope.get(k), (int, float))]
        if missing:
            raise bad("rope_scaling", f"of type {rope_type!r} lacks {', '.join(missing)}")
        return cls(
            aux_layers=aux_layer_ids(raw, source), norm_before_residual=flag(raw, "norm_before_residual", source),
            hidden_size=hidden, intermediate_size=num("intermediate_size"), num_attention_heads=heads,
            num_key_value_heads=kv_heads, head_dim=head_dim,
            rms_norm_eps=num("rms_norm_eps", 1e-6, float),  # LlamaConfig's default
            rope_type=rope_type, rope_theta=float(rope.get("rope_theta", num("rope_theta", 10_000.0, float))),
            rope_scaling=tuple(sorted((k, float(rope[k])) for k in extra)),
            max_position_embeddings=num("max_position_embeddings", 2048), vocab_size=vocab,
            draft_vocab_size=draft_vocab, target_hidden_size=num("target_hidden_size", hidden), architecture=arch)

    def to_dict(self) -> dict[str, Any]:
        """config.json as real heads write it (old-style rope keys, read by EAGLE, vLLM, SGLang, transformers)."""
        out: dict[str, Any] = {
            "architectures": [self.architecture], "model_type": "llama", "hidden_act": "silu",
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "num_hidden_layers": 1, "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta, "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size, "draft_vocab_size": self.draft_vocab_size,
            "tie_word_embeddings": False,
        }
        if self.rope_type != "default":
            out["rope_scaling"] = {"rope_type": self.rope_type, "type": self.rope_type, **dict(self.rope_scaling)}
        # EAGLE reads the target's embeddings only when this key is absent, so write it only when it differs.
        if self.target_hidden_size != self.hidden_size:
            out["target_hidden_size"] = self.target_hidden_size
        if self.aux_layers is not None:
            out["eagle_aux_hidden_state_layer_ids"] = list(self.aux_layers)
        if self.norm_before_residual:
            out["norm_before_residual"] = True
        return out


def aux_layer_ids(raw: dict[str, Any], source: str) -> tuple[int, ...] | None:
    """`eagle_aux_hidden_state_layer_ids`, top level or under `eagle_config`, the two places vLLM reads
    it from; None when absent or empty (vLLM then uses its default, as we do)."""
    nested = raw.get("eagle_config")
    ids = raw.get("eagle_aux_hidden_state_layer_ids") or (
        nested.get("eagle_aux_hidden_state_layer_ids") if isinstance(nested, dict) else None)
    if not ids:
        return None
    if not isinstance(ids, list) or len(ids) != 3 or not all(isinstance(i, int) and not isinstance(i, bool)
                                                             and i >= 0 for i in ids):
        raise CheckpointError(f"{source}: key 'eagle_aux_hidden_state_layer_ids' is {ids!r}; an EAGLE-3 head "
                              "fuses exactly three target layers, given as non-negative integers")
    return tuple(ids)


def flag(raw: dict[str, Any], key: str, source: str, default: bool = False) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise CheckpointError(f"{source}: key {key!r} is {value!r}; it must be true or false")
    return value


def feature_layers(pool: Any, num_layers: int) -> tuple[int, ...]:
    """The one set of target layers every EAGLE-3 head of `pool` fuses (the engine stores one feature
    row per position); heads trained on different layers cannot share a pool."""
    wants = {s.name: d.config.feature_layers(num_layers) for s, d in zip(pool.specs, pool.drafters)
             if s.kind == "eagle3"}
    distinct = sorted(set(wants.values()))
    if len(distinct) > 1:
        by = "; ".join(", ".join(n for n, w in wants.items() if w == layers) + f": {list(layers)}"
                       for layers in distinct)
        raise CheckpointError(f"the pool's EAGLE-3 heads fuse different target layers ({by}); one run feeds "
                              "every head the same layers, so use heads trained on the same layers")
    return distinct[0] if distinct else fused_layers(num_layers)


def rope_inv_freq(cfg: Eagle3Config) -> Tensor:
    """Llama's rotary inverse frequencies (D/2,), float32, with the config's scaling folded in."""
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim)
    s = dict(cfg.rope_scaling)
    if cfg.rope_type == "linear":  # positions / factor == frequencies / factor
        return inv / s["factor"]
    if cfg.rope_type == "llama3":  # Llama 3.1: slow (long-wavelength) bands scaled, fast kept, smooth between
        old = s["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = ((old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])).clamp(0, 1)
        return (1 - smooth) * inv / s["factor"] + smooth * inv
    return inv


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Llama's half-split rotation: x (..., T, D), cos/sin (T, D)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class KVStore(Protocol):
    """Where the layer puts new keys/values: returns all keys/values the new rows may attend to."""

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...


class Eagle3Cache:
    """The head's KV cache: (1, n_kv, capacity, D) buffers grown by doubling; `crop` just moves `length`."""

    def __init__(self) -> None:
        self.length = 0
        self._k: Tensor | None = None
        self._v: Tensor | None = None

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        need = self.length + k.shape[2]
        if self._k is None or self._v is None or need > self._k.shape[2]:
            cap = max(need, 64, 2 * (0 if self._k is None else self._k.shape[2]))
            grown = [t.new_empty((*t.shape[:2], cap, t.shape[3])) for t in (k, v)]
            if self._k is not None and self._v is not None:
                grown[0][:, :, :self.length] = self._k[:, :, :self.length]
                grown[1][:, :, :self.length] = self._v[:, :, :self.length]
            self._k, self._v = grown
        self._k[:, :, self.length:need] = k
        self._v[:, :, self.length:need] = v
        self.length = need
        return self._k[:, :, :need], self._v[:, :, :need]

    def crop(self, length: int) -> None:
        """Keep the first `length` positions (roll back rejected drafts)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop an EAGLE-3 cache of {self.length} positions to {length}")
        self.length = length


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # normalise in float32, as Llama does
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class _Attention(nn.Module):
    def __init__(self, cfg: Eagle3Config) -> None:
        super().__init__()
        self.n, self.n_kv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(2 * cfg.hidden_size, self.n * self.d, bias=False)  # 2H: [embed ; feature]
        self.k_proj = nn.Linear(2 * cfg.hidden_size, self.n_kv * self.d, bias=False)
        self.v_proj = nn.Linear(2 * cfg.hidden_size, self.n_kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.n * self.d, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, kv: KVStore, mask: Tensor | None) -> Tensor:
        b, t, _ = x.shape  # x (B, T, 2H)
        q = _rotate(self.q_proj(x).view(b, t, self.n, self.d).transpose(1, 2), cos, sin)  # (B, n, T, D)
        k = _rotate(self.k_proj(x).view(b, t, self.n_kv, self.d).transpose(1, 2), cos, sin)  # (B, n_kv, T, D)
        v = self.v_proj(x).view(b, t, self.n_kv, self.d).transpose(1, 2)
        keys, values = kv.extend(k, v)  # (B, n_kv, S, D), S = attended positions
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=self.n != self.n_kv)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.n * self.d))


class _MLP(nn.Module):
    def __init__(self, cfg: Eagle3Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _MidLayer(nn.Module):
    """EAGLE's `LlamaDecoderLayeremb`: the residual stream is the feature, not the embedding."""

    def __init__(self, cfg: Eagle3Config) -> None:
        super().__init__()
        self.self_attn, self.mlp = _Attention(cfg), _MLP(cfg)
        self.hidden_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.norm_before_residual = cfg.norm_before_residual

    def forward(self, emb: Tensor, feat: Tensor, cos: Tensor, sin: Tensor, kv: KVStore,
                mask: Tensor | None) -> Tensor:
        x = torch.cat((self.input_layernorm(emb), self.hidden_norm(feat)), dim=-1)  # (B, T, 2H), embedding first
        residual = x[..., emb.shape[-1]:] if self.norm_before_residual else feat  # normed feature, or raw
        h = residual + self.self_attn(x, cos, sin, kv, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Eagle3Head(nn.Module):
    """An EAGLE-3 head. `embed` is the target's (V, H) token embedding, shared, never copied or saved;
    a head whose checkpoint ships `embed_tokens.weight` owns it instead (`own_embed=True`)."""

    def __init__(self, config: Eagle3Config, embed: Tensor, *, own_embed: bool = False) -> None:
        super().__init__()
        cfg = self.config = config
        self.fc = nn.Linear(3 * cfg.target_hidden_size, cfg.hidden_size, bias=cfg.fc_bias)
        self.midlayer = _MidLayer(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.draft_vocab_size, bias=False)
        self.register_buffer("d2t", torch.zeros(cfg.draft_vocab_size, dtype=torch.long))  # target = draft + d2t
        self.register_buffer("t2d", torch.ones(cfg.vocab_size, dtype=torch.bool))  # target id in draft vocab?
        self.register_buffer("target_ids", torch.arange(cfg.draft_vocab_size), persistent=False)  # (V_d,)
        if own_embed:  # registered, so it moves with .to() and is saved under its real name
            self.embed_tokens = nn.Embedding.from_pretrained(embed, freeze=True)
        else:  # a plain attribute: .to() on the head must never convert the target's own weights
            self._shared_embed = embed.detach()
        self._inv_freq = rope_inv_freq(cfg)  # kept float32 whatever the head's dtype

    def set_vocab_map(self, d2t: Tensor, t2d: Tensor) -> None:
        """Install the draft<->target vocabulary map (validated by the caller)."""
        dev = self.fc.weight.device
        self.d2t, self.t2d = d2t.to(dev, torch.long), t2d.to(dev, torch.bool)
        self.target_ids = torch.arange(len(self.d2t), device=dev) + self.d2t

    @property
    def embed_weight(self) -> Tensor:
        return self.embed_tokens.weight if hasattr(self, "embed_tokens") else self._shared_embed

    def new_cache(self) -> Eagle3Cache:
        return Eagle3Cache()

    def fuse(self, target_hidden: tuple[Tensor, ...]) -> Tensor:
        """Target `hidden_states` (L+1 tensors of (..., T, H_t)) -> fused features (..., T, H)."""
        picked = [target_hidden[i] for i in self.config.feature_layers(len(target_hidden) - 1)]
        if picked[0].shape[-1] != self.config.target_hidden_size:
            raise CheckpointError(f"the EAGLE-3 head expects target hidden size {self.config.target_hidden_size}, "
                                  f"the target gives {picked[0].shape[-1]}; use the head trained for this target")
        return self.fc(torch.cat(picked, dim=-1).to(self.fc.weight))  # (..., T, 3*H_t) -> (..., T, H)

    def run_layer(self, token_ids: Tensor, features: Tensor, positions: Tensor, kv: KVStore,
                  mask: Tensor | None) -> Tensor:
        """The layer on a batch: ids (B, T), features (B, T, H), positions (T,), mask (T, S) bool or
        None (attend to all S) -> output hidden (B, T, H), before the final norm. For training and trees."""
        inv = self._inv_freq = self._inv_freq.to(features.device)
        angles = positions.to(inv)[:, None] * inv[None, :]  # (T, D/2)
        emb_angles = torch.cat((angles, angles), dim=-1)  # (T, D): Llama's half-split layout
        w = self.fc.weight
        cos, sin = emb_angles.cos().to(w.dtype), emb_angles.sin().to(w.dtype)
        emb = F.embedding(token_ids, self.embed_weight).to(w.dtype)  # (B, T, H)
        return self.midlayer(emb, features.to(w.dtype), cos, sin, kv, mask)

    def logits(self, hidden: Tensor) -> Tensor:
        """(..., H) -> float32 draft-vocab logits (..., V_d)."""
        return self.lm_head(self.norm(hidden)).float()

    @torch.inference_mode()
    def forward(self, token_ids: Tensor, features: Tensor, cache: Eagle3Cache) -> tuple[Tensor, Tensor]:
        """Row i: feature at position t = cache.length + i paired with the token at t+1 (EAGLE's pairing);
        returns draft logits (T, V_d) for the token at t+2 and the hidden (T, H) to feed back."""
        t, start = token_ids.numel(), cache.length
        positions = torch.arange(start, start + t, device=features.device)
        # Row i sees cached positions and new rows up to itself; one row sees everything.
        mask = None if t == 1 else torch.ones(t, start + t, dtype=torch.bool, device=features.device).tril(start)
        hidden = self.run_layer(token_ids.reshape(1, t).to(features.device), features.reshape(1, t, -1),
                                positions, cache, mask)[0]
        return self.logits(hidden), hidden

    def to_target_ids(self, draft_ids: Tensor) -> Tensor:
        return draft_ids + self.d2t[draft_ids]

    def target_logits(self, draft_logits: Tensor) -> Tensor:
        """(..., V_d) -> (..., V) with -inf outside the draft vocabulary."""
        out = draft_logits.new_full((*draft_logits.shape[:-1], self.config.vocab_size), float("-inf"))
        return out.index_copy_(-1, self.target_ids, draft_logits)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def is_eagle3_checkpoint(path: Path) -> bool:
    """config.json names an EAGLE-3 head: EAGLE's architectures, or a speculators `eagle3` model type."""
    try:
        raw = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(raw, dict):
        return False
    architectures = raw.get("architectures") or []
    return raw.get("speculators_model_type") == "eagle3" or any(a in ARCHITECTURES for a in architectures)


def load_eagle3(path: Path, target_embed: nn.Embedding, *, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> Eagle3Head:
    """Load a real-format EAGLE-3 head; any mismatch is a `CheckpointError` naming file and key."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"EAGLE-3 head directory {path} does not exist; fix the path")
    from hedgespec_cli.models.speculators import is_speculators_config, read_speculators_head

    if is_speculators_config(path / "config.json"):  # vLLM's `speculators` format: same head, other names
        cfg, state, source = read_speculators_head(path)
    else:
        cfg = Eagle3Config.from_file(path / "config.json")
        state, source = read_weights(path)
    return build_eagle3(cfg, state, source, target_embed, dtype=dtype, device=device)


def build_eagle3(cfg: Eagle3Config, state: dict[str, Tensor], source: str, target_embed: nn.Embedding, *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Eagle3Head:
    """A head from its parsed config and a state dict under our (EAGLE's) names; checks every tensor."""
    if "fc.bias" in state and not cfg.fc_bias:  # some trainers give `fc` a bias; the weights say so
        cfg = replace(cfg, fc_bias=True)
    own = "embed_tokens.weight" in state  # some heads (e.g. for a differently sized target) ship their own
    embed = target_embed.weight
    if not own and tuple(embed.shape) != (cfg.vocab_size, cfg.hidden_size):
        raise CheckpointError(
            f"{source} has no embed_tokens.weight, so the head uses the target's embeddings, but they are "
            f"{tuple(embed.shape)} and the head needs (vocab_size, hidden_size) = ({cfg.vocab_size}, "
            f"{cfg.hidden_size}); use the head trained for this target")
    if cfg.draft_vocab_size == cfg.vocab_size and "d2t" not in state and "t2d" not in state:
        # Full-vocabulary heads may omit the map (EAGLE deletes it then): identity.
        state["d2t"] = torch.zeros(cfg.vocab_size, dtype=torch.long)
        state["t2d"] = torch.ones(cfg.vocab_size, dtype=torch.bool)
    # Built on `meta` (no allocation, no random init), then the checkpoint's tensors are assigned.
    with torch.device("meta"):
        head = Eagle3Head(cfg, torch.empty(cfg.vocab_size, cfg.hidden_size) if own
                          else embed.detach().to(device=device, dtype=dtype), own_embed=own)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match its config.json: missing keys {missing or 'none'}, "
                              f"unexpected keys {unexpected or 'none'}; is this an EAGLE-3 Llama head?")
    for key, shape in expected.items():
        _check_shape(source, key, state[key], shape)
    _check_vocab_map(source, state["d2t"], state["t2d"], cfg)
    head.load_state_dict(state, strict=True, assign=True)
    head._inv_freq = rope_inv_freq(cfg)
    head.set_vocab_map(state["d2t"], state["t2d"])
    return head.to(device=device, dtype=dtype).requires_grad_(False).eval()


def save_eagle3(head: Eagle3Head, path: Path) -> None:
    """Write `config.json` + `model.safetensors` in the real format (the target's embeddings are not saved)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {**head.config.to_dict(), "torch_dtype": str(head.fc.weight.dtype).removeprefix("torch.")}
    write_json(path / "config.json", config)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})


def read_weights(path: Path) -> tuple[dict[str, Tensor], str]:
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(file)), str(file)
            return torch.load(file, map_location="cpu", weights_only=True), str(file)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
            raise CheckpointError(f"{file}: unreadable ({type(err).__name__}: {err}); re-download or "
                                  "re-save the head") from None
    raise CheckpointError(f"{path} holds no {' or '.join(WEIGHT_FILES)}; an EAGLE-3 head directory needs "
                          "one of them next to config.json (sharded heads are not supported)")


def _check_shape(source: str, key: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise CheckpointError(f"{source}: {key} has shape {tuple(tensor.shape)}, config.json implies {shape}; "
                              "the weights and config.json belong to different heads")


def _check_vocab_map(source: str, d2t: Tensor, t2d: Tensor, cfg: Eagle3Config) -> None:
    """d2t offsets must land on distinct target ids, exactly the ones t2d marks."""
    if d2t.is_floating_point() or t2d.is_floating_point():
        raise CheckpointError(f"{source}: d2t must hold integers and t2d booleans; re-export the vocab map")
    target = torch.arange(cfg.draft_vocab_size) + d2t.long()
    marked = t2d.bool()
    if target.min() < 0 or target.max() >= cfg.vocab_size or len(target.unique()) != len(target):
        raise CheckpointError(f"{source}: d2t maps draft ids outside [0, {cfg.vocab_size}) or twice onto one "
                              "target id; the vocab map is corrupt")
    if int(marked.sum()) != cfg.draft_vocab_size or not bool(marked[target].all()):
        raise CheckpointError(f"{source}: t2d marks {int(marked.sum())} target ids, not the "
                              f"{cfg.draft_vocab_size} that d2t maps to; d2t and t2d come from different heads")
