"""Drafters behind one interface, in groups that are evaluated together.

The engine's cache invariant (see engine.py): between rounds an up-to-date
drafter has consumed every committed token but the last. `draft` first
consumes whatever committed tokens the drafter has not seen (one batched
catch-up), `observe` brings every member of a group up to date after a round
and returns its distribution at each newly verified position
(full-information feedback), `settle` only rolls one member back (bandit
methods do not evaluate the drafters they did not choose).

A group is one drafter on the transformers path (`LMGroup`), or several
plain-Llama drafters of one shape whose weights are stacked so the whole
group is evaluated in one forward (`StackedGroup`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from hedgespec_cli.models import CausalLM, Pool
from hedgespec_cli.models.stacked import StackedLlama, shape_key, stackable

Pick = Callable[[torch.Tensor], torch.Tensor]  # (V,) logits -> (1,) token id


class DrafterGroup(Protocol):
    members: tuple[int, ...]  # pool indices of the group's drafters, in order

    def new_state(self, capacity: int) -> Any: ...

    def prefill(self, state: Any, x: torch.Tensor, L: int) -> None:
        """Every member consumes the committed prefix x[:L-1] (full-information runs)."""

    def draft(self, state: Any, member: int, x: torch.Tensor, L: int, k: int, pick: Pick) -> tuple[torch.Tensor, torch.Tensor]:
        """Member `member` (index into members) chain-drafts k tokens at L.. -> ids (k,), q logits (k, V)."""

    def observe(self, state: Any, x: torch.Tensor, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None) -> torch.Tensor:
        """n tokens were verified (committed length now L) -> q logits (members, n, V) at them.

        chosen/drafted: the member that drafted this round and its draft-time
        q rows, which a group may reuse instead of recomputing.
        """

    def settle(self, state: Any, member: int, L: int) -> None:
        """Roll one member back to the cache invariant for committed length L."""


def _chain(step: Callable[[torch.Tensor], torch.Tensor], first: torch.Tensor, k: int, pick: Pick) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain drafting: pick from q, feed the pick back, k times -> ids (k,), q logits (k, V)."""
    logits, tokens, rows = first, [], []
    for i in range(k):
        tok = pick(logits)
        tokens.append(tok)
        rows.append(logits)
        if i < k - 1:
            logits = step(tok)
    return torch.cat(tokens), torch.stack(rows)


class LMGroup:
    """One independent causal LM on the transformers path (any architecture)."""

    def __init__(self, index: int, lm: CausalLM) -> None:
        self.members, self.lm = (index,), lm

    def new_state(self, capacity: int):
        return self.lm.new_cache()

    def prefill(self, cache, x: torch.Tensor, L: int) -> None:
        if L > 1:
            self.lm.forward(x[: L - 1], cache)

    def draft(self, cache, member: int, x: torch.Tensor, L: int, k: int, pick: Pick):
        first = self.lm.forward(x[cache.length : L], cache).logits[-1]  # (V,) q at position L
        return _chain(lambda tok: self.lm.forward(tok, cache).logits[-1], first, k, pick)

    def observe(self, cache, x: torch.Tensor, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None) -> torch.Tensor:
        # A chosen drafter's draft rows are valid up to its first rejected
        # token: they were computed on exactly the verified prefix.
        known = drafted[: min(n, len(drafted))] if chosen is not None and drafted is not None else None
        self.settle(cache, 0, L)
        fresh = self.lm.forward(x[cache.length : L - 1], cache).logits if cache.length < L - 1 else None
        return torch.cat([t for t in (known, fresh) if t is not None])[-n:].unsqueeze(0)  # (1, n, V)

    def settle(self, cache, member: int, L: int) -> None:
        cache.crop(min(cache.length, L - 1))


class StackedGroup:
    """Plain-Llama drafters of one shape: one batched forward evaluates them all."""

    def __init__(self, indices: list[int], lms: list[CausalLM]) -> None:
        self.members = tuple(indices)
        self.stack = StackedLlama([lm.model for lm in lms])

    def new_state(self, capacity: int):
        return self.stack.new_cache(capacity)

    def prefill(self, cache, x: torch.Tensor, L: int) -> None:
        if L > 1:
            self.stack.forward(x[: L - 1], cache)

    def draft(self, cache, member: int, x: torch.Tensor, L: int, k: int, pick: Pick):
        first = self.stack.forward(x[cache.lengths[member] : L], cache, member)[0, -1]
        return _chain(lambda tok: self.stack.forward(tok, cache, member)[0, -1], first, k, pick)

    def observe(self, cache, x: torch.Tensor, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None) -> torch.Tensor:
        # Align every member at the shortest cache (the chosen one is rolled
        # back and recomputed with the others: one call instead of two).
        m = min(min(cache.lengths), L - 1)
        cache.lengths[:] = [m] * len(cache.lengths)
        return self.stack.forward(x[m : L - 1], cache)[:, -n:]  # (members, n, V)

    def settle(self, cache, member: int, L: int) -> None:
        cache.lengths[member] = min(cache.lengths[member], L - 1)


def group_drafters(pool: Pool, *, stack: bool = True) -> list[DrafterGroup]:
    """Split the pool into groups: same-shape plain-Llama LMs stacked, the rest one by one."""
    groups: list[DrafterGroup] = []
    by_shape: dict[tuple, list[int]] = {}
    for j, (spec, lm) in enumerate(zip(pool.specs, pool.drafters)):
        config = getattr(getattr(lm, "model", None), "config", None)  # None: not a transformers model
        if stack and spec.kind == "lm" and config is not None and stackable(config):
            by_shape.setdefault(shape_key(config), []).append(j)
        else:
            groups.append(LMGroup(j, lm))
    for indices in by_shape.values():
        if len(indices) == 1:
            groups.append(LMGroup(indices[0], pool.drafters[indices[0]]))
        else:
            groups.append(StackedGroup(indices, [pool.drafters[j] for j in indices]))
    return groups
