"""Drafter kinds behind one interface, so the engine never asks what a drafter is.

The engine's cache invariant (see engine.py): between rounds an up-to-date
drafter has consumed every committed token but the last. `draft` first
consumes whatever committed tokens the drafter has not seen (one batched
catch-up), `observe` brings it up to date after a round and returns its
distribution at each newly verified position (full-information feedback),
`settle` only rolls it back (bandit methods do not evaluate it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from hedgespec_cli.models import CausalLM, KVCache

Pick = Callable[[torch.Tensor], torch.Tensor]  # (V,) logits -> (1,) token id


@dataclass
class Committed:
    """The query as drafters may read it: ids x[:L] are committed, x[L:] is scratch."""

    x: torch.Tensor  # (capacity,) ids


class Drafter(Protocol):
    name: str

    def new_state(self) -> Any: ...

    def prefill(self, state: Any, ctx: Committed, L: int) -> None:
        """Consume the committed prefix x[:L-1] (full-information runs, at the start)."""

    def draft(self, state: Any, ctx: Committed, L: int, k: int, pick: Pick) -> tuple[torch.Tensor, torch.Tensor]:
        """Chain-draft k tokens at positions L..L+k-1 -> ids (k,), q logits (k, V)."""

    def observe(self, state: Any, ctx: Committed, L: int, n: int, drafted: torch.Tensor | None) -> torch.Tensor:
        """After n tokens were verified (committed length now L) -> q logits (n, V) at them.

        drafted: the q rows this drafter produced while drafting this round
        (only for the chosen drafter), reused instead of recomputed.
        """

    def settle(self, state: Any, L: int) -> None:
        """Roll back whatever lies beyond the cache invariant for committed length L."""


class LMDrafter:
    """An independent causal LM sharing the target's tokenizer (DESIGN.md section 4)."""

    def __init__(self, lm: CausalLM) -> None:
        self.lm = lm
        self.name = lm.name

    def new_state(self) -> KVCache:
        return self.lm.new_cache()

    def prefill(self, cache: KVCache, ctx: Committed, L: int) -> None:
        if L > 1:
            self.lm.forward(ctx.x[: L - 1], cache)

    def draft(self, cache: KVCache, ctx: Committed, L: int, k: int, pick: Pick) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.lm.forward(ctx.x[cache.length : L], cache).logits[-1]  # (V,) q at position L
        tokens, rows = [], []
        for step in range(k):
            tok = pick(logits)
            tokens.append(tok)
            rows.append(logits)
            if step < k - 1:
                logits = self.lm.forward(tok, cache).logits[-1]
        return torch.cat(tokens), torch.stack(rows)

    def observe(self, cache: KVCache, ctx: Committed, L: int, n: int, drafted: torch.Tensor | None) -> torch.Tensor:
        # A chosen drafter's draft rows are valid up to its first rejected token:
        # they were computed on exactly the verified prefix.
        known = drafted[: min(n, len(drafted))] if drafted is not None else None
        self.settle(cache, L)
        fresh = self.lm.forward(ctx.x[cache.length : L - 1], cache).logits if cache.length < L - 1 else None
        parts = [t for t in (known, fresh) if t is not None]
        return torch.cat(parts)[-n:]  # (n, V)

    def settle(self, cache: KVCache, L: int) -> None:
        cache.crop(min(cache.length, L - 1))


# Drafter kinds by the profile's `kind:` key; models/ builds the model, this wraps it.
DRAFTER_KINDS: dict[str, Callable[[Any], Drafter]] = {"lm": LMDrafter}
