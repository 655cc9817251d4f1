"""A drafter group's q at the positions an evaluation scores, read the way the score needs it.

Full-information feedback reads every drafter's q at every verified position
(DESIGN.md section 5): at T > 0 the whole distribution (sum min(p, q)), at
T = 0 one bit, whether q's argmax is the verified token. A group hands the
engine `QRows` rather than logits, so a group that can answer the bit without
the full projection does (a stacked Llama group's `Hidden`: models/screen.py);
the logits are computed only where they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from hedgespec_cli.decoding.verify import argmax
from hedgespec_cli.models.stacked import StackedLlama


class QRows(Protocol):
    """q of a group's m members at n consecutive positions; by drafting depth (m, n, K) in
    EAGLE-3's exact mode, where each position is scored once per depth it can be drafted at."""

    def logits(self) -> torch.Tensor:
        """(m, n, V) float32 logits, or (m, n, K, V) by depth."""
        ...

    def hits(self, target: torch.Tensor) -> torch.Tensor:
        """target (n,) -> (m, n) or by depth (m, n, K) bool, argmax q == the target at that position
        (the first maximum on ties): gamma at T = 0."""
        ...


def _at(target: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """target (n,) shaped to compare with argmax ids (m, n) or by depth (m, n, K)."""
    return target if ids.dim() == 2 else target.view(-1, *(1,) * (ids.dim() - 2))


class Logits:
    """q as logits already computed, in the pieces of consecutive positions (dim 1) the calls gave."""

    def __init__(self, *pieces: torch.Tensor) -> None:
        self.pieces = pieces

    def logits(self) -> torch.Tensor:
        return self.pieces[0] if len(self.pieces) == 1 else torch.cat(self.pieces, dim=1)

    def hits(self, target: torch.Tensor) -> torch.Tensor:
        if len(self.pieces) == 1:
            ids = argmax(self.pieces[0])
            return ids == _at(target, ids)
        out, a = [], 0
        for q in self.pieces:
            out.append(argmax(q) == target[a : a + q.shape[1]])
            a += q.shape[1]
        return torch.cat(out, dim=1)


@dataclass(frozen=True)
class Picks:
    """At T = 0, q known only by its argmax: token ids (m, n[, K]), all `hits` reads (EAGLE-3's exact
    mode, whose pruned chains need no more). `logits()` gives the one-hot stand-in, 0 at the pick
    and -inf elsewhere, for a reader that wants logits anyway (it costs m n [K] V floats)."""

    ids: torch.Tensor
    vocab: int

    def logits(self) -> torch.Tensor:
        out = torch.full((*self.ids.shape, self.vocab), float("-inf"), device=self.ids.device)
        return out.scatter_(-1, self.ids.unsqueeze(-1), 0.0)

    def hits(self, target: torch.Tensor) -> torch.Tensor:
        return self.ids == _at(target, self.ids)


@dataclass(frozen=True)
class Hidden:
    """A stacked Llama group's final hidden states h (m, n, H): q = h W, projected when read; at T = 0
    the stack's screen answers `hits` from a bfloat16 copy of W, exactly (models/screen.py)."""

    h: torch.Tensor
    stack: StackedLlama

    def logits(self) -> torch.Tensor:
        return self.stack.project(self.h)

    def hits(self, target: torch.Tensor) -> torch.Tensor:
        if self.stack.screen is None:
            return argmax(self.logits()) == target
        return self.stack.screen.hits(self.h, target)
