"""Decoding settings: the knobs, their defaults (written once, here) and the one precedence rule.

A knob comes from the first layer that sets it: a flag, then the `--config`
file, then the workload (`max_new_tokens` only), then the profile's
`decoding:`; otherwise the default on `DecodeSettings` (or `TreeShape` for
the tree's node budget). `resolve_knobs` is that rule; `bench`, the sweep
and `generate` all call it, and the CLI's help texts read the defaults from
these dataclasses. No torch here: the CLI imports this module to draw its help.

Adding a setting: a field on `DecodeSettings` (validated in `__post_init__`),
its entry in `KNOBS` (type, for profile YAML), a flag in `cli/` whose help
reads the default from here, and, for `bench`, a field on `BenchSettings`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from hedgespec_cli.errors import ConfigError

# Sampling below this temperature is refused (0 means greedy). Probabilities are computed in
# float32: at T < 0.01 every token whose logit trails the top one by more than ~1.04 gets
# exp(-gap / T) < 2**-149, exactly zero, so sampling is greedy in all but name; and once
# |logit| / T passes float32's 3.4e38 (T ~ 1e-37 for realistic logits, or T itself below
# float32's smallest positive value) the probabilities are NaN and sampling crashes.
MIN_TEMPERATURE = 0.01
# How full-information feedback scores an EAGLE-3 head (DESIGN.md section 5); plain LMs are exact in any.
COUNTERFACTUAL_MODES = ("exact", "depth1", "aligned")
# The default (DESIGN.md section 5): the most faithful mode whose evaluation costs at most twice `aligned`'s.
DEFAULT_COUNTERFACTUAL = "depth1"


@dataclass(frozen=True)
class TreeShape:
    """EAGLE's dynamic-tree knobs; the depth is the round's K."""

    top_k: int = 10
    total_tokens: int = 60

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"tree top_k must be at least 1 (got {self.top_k}); pass --tree-top-k 1 or more")
        if self.total_tokens < 1:
            raise ConfigError(f"tree total tokens must be at least 1 (got {self.total_tokens}); "
                              "pass --tree-tokens 1 or more")

    @classmethod
    def from_options(cls, top_k: int | None, total_tokens: int | None) -> TreeShape | None:
        """CLI/profile knobs -> a shape, or None for chain drafting (top_k unset or 0)."""
        if not top_k:
            return None
        return cls(top_k=top_k, total_tokens=total_tokens if total_tokens is not None else cls.total_tokens)

    def to_dict(self) -> dict[str, int]:
        return {"top_k": self.top_k, "total_tokens": self.total_tokens}

    def fed_rows(self, depth: int) -> int:
        """Drafter cache rows a tree of this depth appends while growing (for buffer sizing)."""
        return self.top_k * max(depth - 1, 0)


@dataclass(frozen=True)
class DecodeSettings:
    """Decoding knobs, validated once. tree None drafts chains of K tokens, else trees of depth K."""

    K: int = 5
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop_at_eos: bool = True
    tree: TreeShape | None = None
    counterfactual: str = DEFAULT_COUNTERFACTUAL  # EAGLE-3 heads' full-information scoring (COUNTERFACTUAL_MODES)

    def __post_init__(self) -> None:
        if self.counterfactual not in COUNTERFACTUAL_MODES:
            raise ConfigError(f"counterfactual must be one of {', '.join(COUNTERFACTUAL_MODES)} "
                              f"(got {self.counterfactual!r})")
        if self.K < 1:
            raise ConfigError(f"K must be at least 1 (got {self.K}); pass -K 1 or more")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):  # NaN fails both
            raise ConfigError(f"temperature must be a finite number >= 0 (got {self.temperature}); 0 means greedy")
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise ConfigError(
                f"temperature {self.temperature:g} is too small to sample at (below {MIN_TEMPERATURE:g} float32 "
                "probabilities are one-hot or overflow); use --temperature 0 for greedy decoding, "
                f"or {MIN_TEMPERATURE:g} or more"
            )
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def of(cls, knobs: Mapping[str, Any]) -> DecodeSettings:
        """Settings from resolved knobs (`resolve_knobs`); the tree from tree_top_k and tree_tokens."""
        return cls(
            K=knobs["K"],
            temperature=knobs["temperature"],
            top_p=knobs["top_p"],
            max_new_tokens=int(knobs["max_new_tokens"]),
            tree=TreeShape.from_options(knobs["tree_top_k"], knobs["tree_tokens"]),
            counterfactual=knobs["counterfactual"],
        )


# The knobs a flag, a config file or a profile's `decoding:` may set, with their types.
KNOBS: dict[str, type] = {"K": int, "temperature": float, "top_p": float, "max_new_tokens": int,
                          "tree_top_k": int, "tree_tokens": int, "counterfactual": str}


def knob_defaults() -> dict[str, Any]:
    """Each knob's default, read from the dataclasses (tree_top_k 0: chains, DecodeSettings.tree None)."""
    decode = {f.name: f.default for f in fields(DecodeSettings)}
    return {**{k: decode[k] for k in KNOBS if k in decode}, "tree_top_k": 0, "tree_tokens": TreeShape.total_tokens}


def resolve_knobs(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Every knob from the first layer that sets it (not None), else its default.

    Layers go from the strongest: flags (merged with `--config` in `BenchSettings`),
    the workload's `max_new_tokens`, the profile's `decoding:`.
    """
    defaults = knob_defaults()
    return {key: next((layer[key] for layer in layers if layer.get(key) is not None), defaults[key]) for key in KNOBS}
