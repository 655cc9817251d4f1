"""Which seed each query's selector starts from: one rule for the live bench, the sweep and replay.

A method that learns across queries (`reset: never`) keeps one selector per
pass (repeat) over the prompts, seeded `seed + repeat`. Every other method
gets a fresh selector per query, seeded `query_seed(seed, repeat, index)`,
`index` being the prompt's place in the workload. So a resumed bench decides
exactly as an uninterrupted one, and `replay` of a run's trace (which records
the run seed and each query's index) breaks argmax ties exactly as the live
run did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def query_seed(seed: int, repeat: int, index: int) -> int:
    """The seed of one query of a run: its sampling generator and its selector start from it."""
    return seed * 1_000_003 + repeat * 10_007 + index


class SelectorBank:
    """The selectors of one pass (repeat) over the prompts (module docstring)."""

    def __init__(self, names: Sequence[str], seed: int, repeat: int) -> None:
        self.names, self.seed, self.repeat = list(names), seed, repeat
        self._kept: dict[str, Any] = {}

    @staticmethod
    def persistent(method: str) -> bool:
        from hedgespec_cli.selection.base import SelectorSpec

        return SelectorSpec.parse(method).params.get("reset") == "never"

    def get(self, method: str, index: int):
        """The selector for prompt `index` (None for `ar`, which builds none)."""
        from hedgespec_cli.selection.base import make_selector, registration

        if not registration(method).selects:
            return None
        if self.persistent(method):
            if method not in self._kept:
                self._kept[method] = make_selector(method, len(self.names), self.names, seed=self.seed + self.repeat)
            return self._kept[method]
        return make_selector(method, len(self.names), self.names, seed=query_seed(self.seed, self.repeat, index))
