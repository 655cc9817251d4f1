"""Drafter selection: feedback types, estimators, learners, selectors and their registry.

Importing this package registers every selector in `base.REGISTRY`; build one
with `make_selector("hedgespec", n_drafters, drafter_names, seed=0)`.
"""

from hedgespec_cli.selection import hedgespec, baselines, oracles  # noqa: F401, I001  (they register, in this order)
from hedgespec_cli.selection.base import REGISTRY, Selector, SelectorSpec, make_selector

__all__ = ["REGISTRY", "Selector", "SelectorSpec", "make_selector"]
