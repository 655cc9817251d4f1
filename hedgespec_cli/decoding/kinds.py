"""Drafter kinds: a profile's `kind:` -> how it loads, which group drafts for it, which drafters share a stack.

One entry per kind (KINDS). Adding a kind: its loader in models/loading.py
LOADERS (the models layer cannot see this one), its group classes in
decoding/drafters.py, and one `DrafterKind` here; `group_drafters` and the
engine need no change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from hedgespec_cli.decoding.drafters import DrafterGroup, Eagle3Group, LMGroup, StackedEagle3Group, StackedGroup
from hedgespec_cli.models import Pool
from hedgespec_cli.models.loading import LOADERS, DrafterLoader
from hedgespec_cli.models.stacked import eagle3_shape_key, shape_key, stackable


@dataclass(frozen=True)
class Scoring:
    """What groups are told about the run: how full-information feedback scores EAGLE-3 heads
    (DESIGN.md section 5), K (the exact mode's chain depth), and whether T = 0."""

    counterfactual: str = "aligned"
    K: int = 5
    greedy: bool = False


@dataclass(frozen=True)
class DrafterKind:
    """One kind of drafter.

    group(j, drafter, scoring): the group of drafter j on its own.
    stack_key(drafter): drafters of this kind with equal keys share one stacked
        group (evaluated in one forward); None: this one is never stacked.
    stacked(indices, drafters, scoring): that group; None when the kind never stacks.
    exact_needs_stack: the exact counterfactual runs on stacks only, so a drafter
        that can be stacked is, even alone and under --no-stack.
    """

    loader: DrafterLoader
    group: Callable[[int, Any, Scoring], DrafterGroup[Any]]
    stack_key: Callable[[Any], Hashable | None] | None = None
    stacked: Callable[[list[int], list[Any], Scoring], DrafterGroup[Any]] | None = None
    exact_needs_stack: bool = False

    def __post_init__(self) -> None:
        if (self.stack_key is None) != (self.stacked is None):
            raise RuntimeError(f"drafter kind {self.name!r}: give both stack_key and stacked, or neither")

    @property
    def name(self) -> str:
        return self.loader.name


def _lm_stack_key(lm: Any) -> Hashable | None:
    """Plain-Llama transformers models of one shape stack; anything else runs on its own."""
    config = getattr(getattr(lm, "model", None), "config", None)  # None: not a transformers model
    return shape_key(config) if config is not None and stackable(config) else None


KINDS: dict[str, DrafterKind] = {k.name: k for k in (
    DrafterKind(LOADERS["lm"], lambda j, lm, s: LMGroup(j, lm),
                _lm_stack_key, lambda js, lms, s: StackedGroup(js, lms, s.greedy)),
    # Heads with their own embeddings have no key (eagle3_shape_key): never stacked.
    DrafterKind(LOADERS["eagle3"], lambda j, head, s: Eagle3Group(j, head, s.counterfactual),
                eagle3_shape_key, lambda js, heads, s: StackedEagle3Group(js, heads, s.counterfactual, s.K, s.greedy),
                exact_needs_stack=True),
)}
if set(KINDS) != set(LOADERS):  # a kind that loads but cannot draft, or the reverse: a registration is missing
    raise RuntimeError(f"drafter kinds {sorted(set(KINDS) ^ set(LOADERS))}: register each in both "
                       "models/loading.py LOADERS and decoding/kinds.py KINDS")


def group_drafters(
    pool: Pool, *, stack: bool = True, counterfactual: str = "aligned", K: int = 5, greedy: bool = False
) -> list[DrafterGroup[Any]]:
    """Split the pool into groups: drafters of one kind with equal stacking keys stacked, the rest
    one by one. Order: the lone drafters in pool order, then the stacks, kind by kind.

    counterfactual: how EAGLE-3 heads are scored (DESIGN.md section 5); `exact`
    runs on stacks, so a lone stackable head becomes a stack of one.
    """
    scoring = Scoring(counterfactual, K, greedy)
    exact = counterfactual == "exact"
    groups: list[DrafterGroup[Any]] = []
    stacks: dict[str, dict[Hashable, list[int]]] = {name: {} for name in KINDS}
    for j, (spec, drafter) in enumerate(zip(pool.specs, pool.drafters)):
        kind = KINDS[spec.kind]
        wanted = stack or (exact and kind.exact_needs_stack)
        key = kind.stack_key(drafter) if wanted and kind.stack_key is not None else None
        if key is None:
            groups.append(kind.group(j, drafter, scoring))
        else:
            stacks[kind.name].setdefault(key, []).append(j)
    for name, by_key in stacks.items():
        kind = KINDS[name]
        for indices in by_key.values():
            drafters = [pool.drafters[j] for j in indices]
            assert kind.stacked is not None  # a key came from stack_key: __post_init__
            if len(indices) == 1 and not (exact and kind.exact_needs_stack):
                groups.append(kind.group(indices[0], drafters[0], scoring))
            else:
                groups.append(kind.stacked(indices, drafters, scoring))
    return groups
