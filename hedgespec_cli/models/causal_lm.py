"""The engine's view of a causal LM: one forward over new ids with a KV cache.

Every model the engine touches (the target, an LM drafter) sits behind
`CausalLM.forward(ids, cache) -> logits`, so decoding code never sees
transformers. Caches keep an explicit length so roll-back is one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class ForwardOut:
    """logits: (T, V) float32 for the T ids fed; hidden: per-layer (T, H) or None."""

    logits: torch.Tensor
    hidden: tuple[torch.Tensor, ...] | None = None


class CausalLM:
    """A Hugging Face causal LM with the engine's forward API."""

    def __init__(self, name: str, model: PreTrainedModel) -> None:
        self.name = name
        self.model = model.eval()
        self.device = model.get_input_embeddings().weight.device
        self.vocab_size = int(model.config.vocab_size)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)

    def new_cache(self) -> KVCache:
        return KVCache(DynamicCache(config=self.model.config))

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, cache: KVCache, *, hidden: bool = False) -> ForwardOut:
        """Feed `ids` (T,) after the `cache.length` tokens already in `cache`."""
        out = self.model(
            input_ids=ids.view(1, -1).to(self.device),
            past_key_values=cache.inner,
            use_cache=True,
            output_hidden_states=hidden,
        )
        cache.length += ids.numel()
        states = tuple(h[0] for h in out.hidden_states) if hidden else None
        return ForwardOut(out.logits[0].float(), states)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
