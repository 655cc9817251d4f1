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
    """q of a group's m members at n consecutive positions."""

    def logits(self) -> torch.Tensor:
        """(m, n, V) float32 logits; (m, n, K, V) by drafting depth (EAGLE-3's exact mode)."""
        ...

    def hits(self, target: torch.Tensor) -> torch.Tensor:
        """target (n,) -> (m, n) bool, argmax q == target (the first maximum on ties): gamma at T = 0."""
        ...


class Logits:
    """q as logits already computed, in the pieces of consecutive positions (dim 1) the calls gave."""

    def __init__(self, *pieces: torch.Tensor) -> None:
        self.pieces = pieces

    def logits(self) -> torch.Tensor:
        return self.pieces[0] if len(self.pieces) == 1 else torch.cat(self.pieces, dim=1)

    def hits(self, target: torch.Tensor) -> torch.Tensor:
        if len(self.pieces) == 1:
            return argmax(self.pieces[0]) == target
        out, a = [], 0
        for q in self.pieces:
            out.append(argmax(q) == target[a : a + q.shape[1]])
            a += q.shape[1]
        return torch.cat(out, dim=1)


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
