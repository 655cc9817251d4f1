"""The engine's view of a causal LM: one forward over new ids with a KV cache.

Every model the engine touches (the target, an LM drafter) sits behind
`CausalLM.forward(ids, cache) -> logits`, so decoding code never sees
transformers. Caches keep an explicit length so roll-back is one call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel


@dataclass
class KVCache:
    """A KV cache of `length` tokens, rolled back with `crop`."""

    inner: DynamicCache = field(default_factory=DynamicCache)
    length: int = 0

    def crop(self, length: int) -> None:
        """Keep the first `length` tokens. transformers 5.x `crop` takes a negative drop count."""
        drop = self.length - length
        if drop < 0:
            raise ValueError(f"cannot crop a cache of {self.length} tokens to {length}")
        if drop:
            self.inner.crop(-drop)
            self.length = length

    def keep(self, start: int, rows: list[int]) -> None:
        """Keep the first `start` tokens, then the tokens at `rows` (each >= start) in that order.

        Compacts a draft tree's verification pass down to the accepted path.
        """
        if any(r < start or r >= self.length for r in rows):
            raise ValueError(f"rows {rows} are outside {start}..{self.length - 1}")
        if rows == list(range(start, start + len(rows))):
            self.crop(start + len(rows))
            return
        idx = torch.tensor(rows, dtype=torch.long)
        for layer in self.inner.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            pick = idx.to(layer.keys.device)
            layer.keys = torch.cat([layer.keys[..., :start, :], layer.keys[..., pick, :]], dim=-2)
            layer.values = torch.cat([layer.values[..., :start, :], layer.values[..., pick, :]], dim=-2)
        self.length = start + len(rows)


@dataclass(frozen=True)
class ForwardOut:
    """logits: (T, V) float32 for the T ids fed; hidden: per-layer (T, H) or None."""

    logits: torch.Tensor
    hidden: tuple[torch.Tensor, ...] | None = None


def cache_kwarg(model: PreTrainedModel) -> str:
    """The forward keyword that takes a KV cache: `cache` from transformers 5.24, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class CausalLM:
    """A Hugging Face causal LM with the engine's forward API."""

    def __init__(self, name: str, model: PreTrainedModel) -> None:
        self.name = name
        self.model = model.eval()
        self.device = model.get_input_embeddings().weight.device
        self.vocab_size = int(model.config.vocab_size)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self._cache_kw = cache_kwarg(model)

    def new_cache(self) -> KVCache:
        return KVCache(DynamicCache(config=self.model.config))

    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,
        cache: KVCache,
        *,
        hidden: bool = False,
        positions: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
        last: int | None = None,
    ) -> ForwardOut:
        """Feed `ids` (T,) after the `cache.length` tokens already in `cache`.

        Draft trees pass `positions` (T,) and `visible` (T, cache.length + T)
        bool, which cached or new token each new one attends to; by default
        the positions follow the cache and attention is causal. last: logits
        of the last `last` rows only (at least one: transformers reads 0 as all).
        """
        extra: dict[str, Any] = {}
        if last is not None:
            extra["logits_to_keep"] = max(last, 1)
        if positions is not None:
            extra["position_ids"] = positions.view(1, -1).to(self.device)
        if visible is not None:
            # A prepared 4D mask goes to the attention unchanged (additive: 0 or the dtype's min).
            dtype = self.model.get_input_embeddings().weight.dtype
            additive = torch.zeros(visible.shape, dtype=dtype, device=self.device)
            masked = ~visible.to(self.device)
            extra["attention_mask"] = additive.masked_fill_(masked, torch.finfo(dtype).min)[None, None]
        out = self.model(
            input_ids=ids.view(1, -1).to(self.device),
            use_cache=True,
            output_hidden_states=hidden,
            **{self._cache_kw: cache.inner},
            **extra,
        )
        cache.length += ids.numel()
        states = tuple(h[0] for h in out.hidden_states) if hidden else None
        return ForwardOut(out.logits[0].float(), states)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
