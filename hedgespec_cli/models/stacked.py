"""N Llama drafters of one shape, evaluated in one batched forward.

Tiny drafters are dominated by per-call overhead (a 1-layer Llama costs
~0.5 ms per transformers call, nearly all of it Python), so evaluating a pool
of N drafters one call at a time costs N times that. Stacking their weights on
a leading axis turns the pool's full-information prefill into one call whose
cost barely grows with N (DESIGN.md section 5, issue #7).

Only the plain Llama block is implemented (RMSNorm, default RoPE, GQA, SwiGLU,
no biases); `stackable` says whether a checkpoint qualifies, anything else
stays on the transformers path. `tests/test_stacked.py` checks the logits
against transformers'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel

if TYPE_CHECKING:
    from typing_extensions import Unpack

from hedgespec_cli.models.screen import Screen

_SHAPE_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "head_dim",
)


# A Llama decoder layer's weights: stacked name -> submodule path.
_LAYER_PARTS = {
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj", "input_layernorm": "input_layernorm",
    "post_attention_layernorm": "post_attention_layernorm",
}
# Projections that read the same input, stored side by side as one (N, in, sum of outs) tensor.
_FUSED = {"qkv": ("q_proj", "k_proj", "v_proj"), "gate_up": ("gate_proj", "up_proj")}


def stackable(config: PretrainedConfig) -> bool:
    """Plain Llama blocks that this module reproduces exactly."""
    rope = getattr(config, "rope_parameters", None) or {}
    return (
        config.model_type == "llama"
        and config.hidden_act == "silu"
        and rope.get("rope_type", "default") == "default"
        and not config.attention_bias
        and not config.mlp_bias
    )


def shape_key(config: PretrainedConfig) -> tuple:
    """Drafters with equal keys can share one stack."""
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_theta")
    return tuple(getattr(config, k, None) for k in _SHAPE_KEYS) + (rope,)


class Where(TypedDict, total=False):
    """Where a stacked call's rows go and which it keeps (`StackedLlama.hidden`'s keywords)."""

    positions: torch.Tensor | None
    visible: torch.Tensor | None
    last: int | None


@dataclass
class StackedCache:
    """KV for every drafter of the stack: k, v (layers, N, kv_heads, capacity, head_dim)."""

    k: torch.Tensor
    v: torch.Tensor
    lengths: list[int]


class StackedLlama:
    """Weights of N same-shape Llama models stacked on dim 0; forward over all or one of them."""

    def __init__(self, models: list[PreTrainedModel], *, screen: bool = True) -> None:
        """screen: build the T = 0 screen of the heads (models/screen.py; only T = 0 reads it)."""
        c = models[0].config
        self.n, self.layers = len(models), c.num_hidden_layers
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.eps = c.rms_norm_eps
        self.max_positions = c.max_position_embeddings
        self.device = models[0].get_input_embeddings().weight.device
        self.dtype = models[0].get_input_embeddings().weight.dtype
        theta = c.rope_parameters["rope_theta"]
        d = self.head_dim

        def stack(get) -> torch.Tensor:
            return torch.stack([get(m).detach() for m in models])

        # Linear weights are stored transposed, (N, in, out), so x @ W batches over drafters. q, k, v
        # share one tensor and so do gate and up (one batched matmul each: fewer calls per step, the
        # same products, bit for bit); the named entries are views of their columns.
        self.embed = stack(lambda m: m.model.embed_tokens.weight)  # (N, V, H)
        self.blocks = []
        for i in range(self.layers):
            def part(m, name, i=i):
                return m.model.layers[i].get_submodule(_LAYER_PARTS[name]).weight

            w = {name: stack(lambda m, name=name: part(m, name) if name.endswith("norm") else part(m, name).T)
                 for name in _LAYER_PARTS}
            for fused, names in _FUSED.items():
                w[fused] = torch.cat([w[name] for name in names], dim=-1)
                at = 0
                for name in names:
                    width = w[name].shape[-1]
                    w[name] = w[fused][..., at : at + width]
                    at += width
            self.blocks.append(w)
        self.rotary = _Rotary(1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=self.device) / d)),
                              self.dtype)
        self.norm = stack(lambda m: m.model.norm.weight)  # (N, H)
        self.lm_head = stack(lambda m: m.lm_head.weight.T)  # (N, H, V)
        tied = all(m.lm_head.weight is m.model.embed_tokens.weight for m in models)
        # A tied head is stored twice: as the embedding table and transposed for the batched matmul
        # (a transposed view would make that matmul ~20% slower on the CPU).
        self.extra_bytes = self.lm_head.numel() * self.lm_head.element_size() if tied else 0
        # Full information at T = 0 asks only whether each head's argmax is the verified token:
        # answered exactly from a bf16 copy of the heads where that pays (models/screen.py).
        # A tied head's rows are the embedding table; an untied one's are copied (rows gather fast).
        self.screen = Screen.build(self.embed if tied else self.lm_head.mT.contiguous()) if screen else None
        self.extra_bytes += self.screen.extra_bytes(shared=tied) if self.screen is not None else 0
        self._share(models)

    def _share(self, models: list[PreTrainedModel]) -> None:
        """Point every model's parameters at its slice of the stack, so the pool holds one copy of each
        drafter's weights, not two (the models still run, e.g. on the transformers path)."""
        with torch.no_grad():
            for i, m in enumerate(models):
                m.model.embed_tokens.weight.data = self.embed[i]
                for layer, w in zip(m.model.layers, self.blocks):
                    for name in _LAYER_PARTS:  # norms (N, H); linears stored transposed (N, in, out)
                        tensor = w[name]
                        weight = tensor[i] if name.endswith("norm") else tensor[i].T
                        layer.get_submodule(_LAYER_PARTS[name]).weight.data = weight
                m.model.norm.weight.data = self.norm[i]
                if m.lm_head.weight is not m.model.embed_tokens.weight:
                    m.lm_head.weight.data = self.lm_head[i].T

    def new_cache(self, capacity: int) -> StackedCache:
        shape = (self.layers, self.n, self.kv_heads, capacity, self.head_dim)
        zeros = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return StackedCache(zeros, zeros.clone(), [0] * self.n)

    @torch.inference_mode()
    def forward(
        self, ids: torch.Tensor, cache: StackedCache, member: int | None = None, **where: Unpack[Where]
    ) -> torch.Tensor:
        """Feed ids (T,) to every drafter (member None) or to one -> logits (B, T or last, V):
        `project(hidden(...))`, the projection being most of a small drafter's cost."""
        return self.project(self.hidden(ids, cache, member, **where), member)

    def project(self, h: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Final hidden states (B, T, H) of every drafter (member None) or of one -> logits (B, T, V) float32."""
        sel = slice(None) if member is None else slice(member, member + 1)
        return (h @ self.lm_head[sel]).float()

    @torch.inference_mode()
    def hidden(
        self,
        ids: torch.Tensor,
        cache: StackedCache,
        member: int | None = None,
        *,
        positions: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
        last: int | None = None,
    ) -> torch.Tensor:
        """Feed ids (T,) to every drafter (member None) or to one -> the final normed hidden states
        (B, T, H), or of the last `last` rows only (0: none, a prefill).

        Every fed drafter must hold the same number of cached tokens; the new
        tokens take the positions after them and attend causally, unless a
        draft tree passes `positions` (T,) and `visible` (T, length + T) bool.
        """
        b = _block(cache, member, ids.numel(), positions, visible, self.rotary)
        sel, start, end, B, T = b.sel, b.start, b.end, b.B, b.T
        heads, kv = self.heads, self.kv_heads
        # (B, T, H): each drafter embeds the same ids with its own table.
        x = self.embed[sel][:, ids.to(self.device)]
        for layer, w in enumerate(self.blocks):
            h = _rms(x, w["input_layernorm"][sel], self.eps)
            qkv = (h @ w["qkv"][sel]).view(B, T, heads + 2 * kv, self.head_dim).transpose(1, 2)
            qk = _rope(qkv[:, : heads + kv], b.cos, b.sin)  # q's heads and k's, rotated together
            q, k, v = qk[:, :heads], qk[:, heads:], qkv[:, heads + kv :]
            cache.k[layer, sel, :, start:end] = k
            cache.v[layer, sel, :, start:end] = v
            keys, values = cache.k[layer, sel, :, :end], cache.v[layer, sel, :, :end]
            att = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=b.mask, enable_gqa=heads != kv
            )  # (B, heads, T, d)
            x = x + att.transpose(1, 2).reshape(B, T, -1) @ w["o_proj"][sel]
            h = _rms(x, w["post_attention_layernorm"][sel], self.eps)
            gate, up = (h @ w["gate_up"][sel]).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ w["down_proj"][sel]
        for j in range(self.n)[sel]:
            cache.lengths[j] = end
        if last is not None:
            x = x[:, T - min(last, T) :]
        return _rms(x, self.norm[sel], self.eps)  # (B, T or last, H)


@dataclass(frozen=True)
class _Block:
    """Where a stacked call writes: members `sel` (B of them) get rows start..end-1 (T new ones)."""

    sel: slice
    start: int
    end: int
    B: int
    T: int
    cos: torch.Tensor  # (T, d) rotary tables at the rows' positions
    sin: torch.Tensor
    mask: torch.Tensor | None  # (T, end) bool; None: every row sees everything


class _Rotary:
    """Rotary cos/sin tables (positions, d) in the half-split layout, computed once per position and
    grown by doubling as queries get longer (per call they were ~7 small ops of every drafting step)."""

    def __init__(self, inv_freq: torch.Tensor, dtype: torch.dtype) -> None:
        self.inv_freq, self.dtype = inv_freq, dtype
        self.cos = self.sin = inv_freq.new_empty(0, 2 * inv_freq.numel(), dtype=dtype)

    def _cover(self, end: int) -> None:
        if end > self.cos.shape[0]:
            pos = torch.arange(max(end, 2 * self.cos.shape[0], 64), device=self.inv_freq.device)
            freqs = pos.float()[:, None] * self.inv_freq[None, :]  # (P, d/2)
            table = torch.cat([freqs, freqs], -1)
            self.cos, self.sin = table.cos().to(self.dtype), table.sin().to(self.dtype)

    def rows(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(end - start, d) cos and sin at positions start..end-1 (views)."""
        self._cover(end)
        return self.cos[start:end], self.sin[start:end]

    def at(self, positions: torch.Tensor, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, d) cos and sin at explicit positions (T,) below `end` (a draft tree's, each at most its
        row's index: the table is grown from `end`, with no device-to-host read of the positions)."""
        self._cover(end)
        positions = positions.to(self.inv_freq.device)
        return self.cos[positions], self.sin[positions]


def _block(cache: StackedCache, member: int | None, T: int, positions: torch.Tensor | None,
           visible: torch.Tensor | None, rotary: _Rotary) -> _Block:
    """The shared bookkeeping of a stacked call: equal cache lengths, rotary tables and the attention mask
    (causal after the cache by default; a draft tree's explicit positions and visibility otherwise)."""
    sel = slice(None) if member is None else slice(member, member + 1)
    lengths = cache.lengths[sel]
    start = lengths[0]
    if any(n != start for n in lengths):
        raise ValueError(f"a stacked call needs equal cache lengths, got {lengths}")
    end = start + T
    device = rotary.inv_freq.device
    cos, sin = rotary.rows(start, end) if positions is None else rotary.at(positions, end)
    if visible is not None:
        mask = visible.to(device)
    elif T == 1:
        mask = None
    else:
        mask = torch.ones(T, end, dtype=torch.bool, device=device).tril(diagonal=start)
    return _Block(sel, start, end, len(lengths), T, cos, sin, mask)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm in float32, as Llama computes it; weight (B, H) broadcast over T."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight[:, None, :] * xf.to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on (B, heads, T, d) with the half-split convention."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def eagle3_shape_key(head) -> tuple | None:
    """EAGLE-3 heads with equal keys can share one stack (None: never stacked)."""
    if hasattr(head, "embed_tokens"):  # a head with its own embeddings: kept on its own
        return None
    return (head.config, head.fc.weight.dtype, head.fc.weight.device, head.embed_weight.data_ptr())


class StackedEagle3:
    """N same-shape EAGLE-3 heads (sharing the target's embeddings) stacked on dim 0.

    `layer` runs the heads' decoder layer for all of them (member None) or one;
    the numerics are `Eagle3Head.run_layer`'s, batched over heads
    (`tests/test_stacked.py` checks them against the heads one by one).
    """

    def __init__(self, heads: list) -> None:
        c = heads[0].config
        self.n, self.heads, self.kv_heads = len(heads), c.num_attention_heads, c.num_key_value_heads
        self.head_dim = c.head_dim
        self.eps = c.rms_norm_eps
        self.vocab_size = c.vocab_size
        self.embed = heads[0].embed_weight
        self.dtype, self.device = heads[0].fc.weight.dtype, heads[0].fc.weight.device
        self.rotary = _Rotary(heads[0]._inv_freq.to(self.device), self.dtype)

        def stack(get, transpose: bool = True) -> torch.Tensor:
            return torch.stack([(get(h).T if transpose else get(h)).detach() for h in heads])

        layer = [h.midlayer for h in heads]
        self.fc = stack(lambda h: h.fc.weight)  # (N, 3 H_t, H)
        # speculators' first heads trained `fc` with a bias: (N, 1, H), zeros for heads without one
        self.fc_bias: torch.Tensor | None = None
        if any(h.fc.bias is not None for h in heads):
            self.fc_bias = torch.stack([(h.fc.bias if h.fc.bias is not None else torch.zeros_like(h.fc.weight[:, 0]))
                                        .detach()[None] for h in heads])
        self.norm_before_residual = c.norm_before_residual  # part of the shape key: equal for all heads
        self.w = {p: torch.stack([getattr(m.self_attn, p).weight.T.detach() for m in layer])
                  for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
        self.w.update({p: torch.stack([getattr(m.mlp, p).weight.T.detach() for m in layer])
                       for p in ("gate_proj", "up_proj", "down_proj")})
        for p in ("hidden_norm", "input_layernorm", "post_attention_layernorm"):
            self.w[p] = torch.stack([getattr(m, p).weight.detach() for m in layer])
        self.norm = stack(lambda h: h.norm.weight, transpose=False)  # (N, H)
        self.lm_head = stack(lambda h: h.lm_head.weight)  # (N, H, V_d)
        self.target_ids = torch.stack([h.target_ids for h in heads])  # (N, V_d)

    def new_cache(self, capacity: int) -> StackedCache:
        shape = (1, self.n, self.kv_heads, capacity, self.head_dim)
        zeros = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return StackedCache(zeros, zeros.clone(), [0] * self.n)

    @torch.inference_mode()
    def fuse(self, feats: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """(T, 3 H_t) target features -> (B, T, H) each head's fused input."""
        sel = slice(None) if member is None else slice(member, member + 1)
        fused = feats.to(self.dtype) @ self.fc[sel]
        return fused if self.fc_bias is None else fused + self.fc_bias[sel]

    @torch.inference_mode()
    def layer(
        self,
        ids: torch.Tensor,
        feats: torch.Tensor,
        cache: StackedCache,
        member: int | None = None,
        *,
        positions: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Rows pairing ids (T,) with features (B, T, H) after each fed head's cached rows -> hidden (B, T, H).

        Positions follow the cache and attention is causal unless a draft tree
        passes `positions` (T,) and `visible` (T, length + T) bool.
        """
        b = _block(cache, member, ids.numel(), positions, visible, self.rotary)
        sel, start, end, B, T = b.sel, b.start, b.end, b.B, b.T
        w = {k: v[sel] for k, v in self.w.items()}
        emb = F.embedding(ids.to(self.device), self.embed).to(self.dtype)  # (T, H), shared by the heads
        feats = feats.to(self.dtype)
        normed = _rms(feats, w["hidden_norm"], self.eps)
        x = torch.cat([_rms(emb.expand(B, T, -1), w["input_layernorm"], self.eps), normed], dim=-1)  # (B, T, 2H)
        residual = normed if self.norm_before_residual else feats
        q = (x @ w["q_proj"]).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = (x @ w["k_proj"]).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = (x @ w["v_proj"]).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rope(q, b.cos, b.sin), _rope(k, b.cos, b.sin)
        cache.k[0, sel, :, start:end] = k
        cache.v[0, sel, :, start:end] = v
        att = F.scaled_dot_product_attention(
            q, cache.k[0, sel, :, :end], cache.v[0, sel, :, :end], attn_mask=b.mask,
            enable_gqa=self.heads != self.kv_heads,
        )
        h = residual + att.transpose(1, 2).reshape(B, T, -1) @ w["o_proj"]
        m = _rms(h, w["post_attention_layernorm"], self.eps)
        for j in range(self.n)[sel]:
            cache.lengths[j] = end
        return h + (F.silu(m @ w["gate_proj"]) * (m @ w["up_proj"])) @ w["down_proj"]

    @torch.inference_mode()
    def target_argmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, T, H) hidden -> (N, T) target ids of every head's argmax: `target_logits(...).argmax(-1)`
        without the target-vocabulary tensor (draft ids map to target ids in increasing order)."""
        draft = (_rms(hidden, self.norm, self.eps) @ self.lm_head).float()  # (N, T, V_d)
        return self.target_ids.gather(1, draft.argmax(dim=-1))

    @torch.inference_mode()
    def target_logits(self, hidden: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """(B, T, H) hidden -> (B, T, V) float32 target-vocabulary logits, -inf outside each draft vocabulary."""
        sel = slice(None) if member is None else slice(member, member + 1)
        draft = (_rms(hidden, self.norm[sel], self.eps) @ self.lm_head[sel]).float()  # (B, T, V_d)
        out = draft.new_full((*draft.shape[:-1], self.vocab_size), float("-inf"))
        idx = self.target_ids[sel][:, None, :].expand(-1, draft.shape[1], -1)
        return out.scatter_(-1, idx, draft)
