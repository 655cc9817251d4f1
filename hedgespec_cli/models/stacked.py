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

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel

_SHAPE_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "head_dim",
)


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


@dataclass
class StackedCache:
    """KV for every drafter of the stack: k, v (layers, N, kv_heads, capacity, head_dim)."""

    k: torch.Tensor
    v: torch.Tensor
    lengths: list[int]


class StackedLlama:
    """Weights of N same-shape Llama models stacked on dim 0; forward over all or one of them."""

    def __init__(self, models: list[PreTrainedModel]) -> None:
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
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=self.device) / d))

        def stack(get) -> torch.Tensor:
            return torch.stack([get(m).detach() for m in models])

        # Linear weights are stored transposed, (N, in, out), so x @ W batches over drafters.
        self.embed = stack(lambda m: m.model.embed_tokens.weight)  # (N, V, H)
        self.blocks = []
        for i in range(self.layers):
            def part(m, name, i=i):
                return m.model.layers[i].get_submodule(name).weight

            attn = {p: stack(lambda m, p=p: part(m, f"self_attn.{p}").T) for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
            mlp = {p: stack(lambda m, p=p: part(m, f"mlp.{p}").T) for p in ("gate_proj", "up_proj", "down_proj")}
            norms = {p: stack(lambda m, p=p: part(m, p)) for p in ("input_layernorm", "post_attention_layernorm")}
            self.blocks.append({**attn, **mlp, **norms})
        self.norm = stack(lambda m: m.model.norm.weight)  # (N, H)
        self.lm_head = stack(lambda m: m.lm_head.weight.T)  # (N, H, V)

    def new_cache(self, capacity: int) -> StackedCache:
        shape = (self.layers, self.n, self.kv_heads, capacity, self.head_dim)
        zeros = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return StackedCache(zeros, zeros.clone(), [0] * self.n)

    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,
        cache: StackedCache,
        member: int | None = None,
        *,
        positions: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Feed ids (T,) to every drafter (member None) or to one -> logits (B, T, V).

        Every fed drafter must hold the same number of cached tokens; the new
        tokens take the positions after them and attend causally, unless a
        draft tree passes `positions` (T,) and `visible` (T, length + T) bool.
        """
        sel = slice(None) if member is None else slice(member, member + 1)
        lengths = cache.lengths[sel]
        start = lengths[0]
        if any(n != start for n in lengths):
            raise ValueError(f"stacked forward needs equal cache lengths, got {lengths}")
        T = ids.numel()
        end = start + T
        B = len(lengths)
        ids = ids.to(self.device)
        # (B, T, H): each drafter embeds the same ids with its own table.
        x = self.embed[sel][:, ids]
        if positions is None:
            pos = torch.arange(start, end, device=self.device, dtype=torch.float32)
        else:
            pos = positions.to(self.device, torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]  # (T, d/2)
        cos = torch.cat([freqs, freqs], -1).cos().to(self.dtype)  # (T, d)
        sin = torch.cat([freqs, freqs], -1).sin().to(self.dtype)
        # Causal mask over the cached prefix plus the new block: (T, end).
        if visible is None:
            mask = torch.ones(T, end, dtype=torch.bool, device=self.device).tril(diagonal=start)
        else:
            mask = visible.to(self.device)
        for layer, w in enumerate(self.blocks):
            h = _rms(x, w["input_layernorm"][sel], self.eps)
            q = (h @ w["q_proj"][sel]).view(B, T, self.heads, self.head_dim).transpose(1, 2)
            k = (h @ w["k_proj"][sel]).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            v = (h @ w["v_proj"][sel]).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
            cache.k[layer, sel, :, start:end] = k
            cache.v[layer, sel, :, start:end] = v
            keys, values = cache.k[layer, sel, :, :end], cache.v[layer, sel, :, :end]
            att = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, enable_gqa=self.heads != self.kv_heads
            )  # (B, heads, T, d)
            x = x + att.transpose(1, 2).reshape(B, T, -1) @ w["o_proj"][sel]
            h = _rms(x, w["post_attention_layernorm"][sel], self.eps)
            x = x + (F.silu(h @ w["gate_proj"][sel]) * (h @ w["up_proj"][sel])) @ w["down_proj"][sel]
        for j in range(self.n)[sel]:
            cache.lengths[j] = end
        return (_rms(x, self.norm[sel], self.eps) @ self.lm_head[sel]).float()  # (B, T, V)


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
