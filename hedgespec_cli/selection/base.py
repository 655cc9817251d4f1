"""The selector interface, its validated spec and the public registry (DESIGN.md section 6).

A selector chooses a drafter before each round and learns from feedback. The
engine (and `replay`) drive every selector the same way, per query:

    selector.begin_query(ctx)                 # QueryContext
    selector.observe_prompt(prompt_gamma)     # full information only, where the prompt was scored
    while not done:
        decision = selector.choose(position)  # position: new tokens so far
        ... draft with decision.arm, verify, append n tokens ...
        if not selector.needs_full_feedback:
            selector.update(BanditFeedback(...))
        elif last round or selector.wants_feedback(rounds waiting):
            selector.update(FullFeedback(...))  # every drafter scored on the rounds waiting
    selector.end_query()                      # flush delayed feedback

A full-information selector may also declare `reads_prompt` (observe_prompt
can change its play) and `carries_over` (what it learns after a query's last
round can change a later decision); where either is False the engine does
that work for the trace alone, off the clock. Without them it pays for both.

Methods are chosen by name through `REGISTRY`, never an if/elif chain. Each
selector module registers its classes with `@register(...)`; importing the
`hedgespec_cli.selection` package imports them all. `ar` (plain decoding) is
registered here too, as the one method that builds no selector. A method
declares its traits in its registration, and every list of methods is a
query over REGISTRY (`default_bench`, `adaptive_methods`, replay's and
simulate's defaults): adding a selector touches its module and its test.

Method strings: `NAME[:ITEM,ITEM...]`, an ITEM being `key=value` or, for a
method with a positional parameter (`fixed`), a bare value:
`hedgespec`, `hedgespec:learner=hedge,loss=tap`, `fixed:generic`,
`ucbspec:delta=0.1`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from hedgespec_cli.errors import ConfigError, HedgespecError
from hedgespec_cli.selection.feedback import BanditFeedback, Decision, Feedback, QueryContext


@runtime_checkable
class Selector(Protocol):
    """A drafter-selection policy. Capabilities are attributes, not subclasses.

    name: the method label, e.g. "hedgespec" or "fixed:generic".
    needs_full_feedback: True -> `update` takes `FullFeedback` (every drafter's
        gamma); False -> it takes `BanditFeedback` and raises
        `FeedbackTypeError` on `FullFeedback`.
    needs_block_reward: True -> the engine fills `BanditFeedback.block_reward`
        (MetaSD's block divergence; not free, so computed only when declared).

    Both are declared on every selector class (the engine drives an instance);
    the registry reads them from the class, so they are written once.
    """

    name: str
    needs_full_feedback: bool
    needs_block_reward: bool

    def begin_query(self, ctx: QueryContext) -> None:
        """Start a query (reset per-query state)."""
        ...

    def choose(self, position: int) -> Decision:
        """The drafter for the round whose first new token is at `position` (0-based)."""
        ...

    def update(self, feedback: Feedback) -> None:
        """Learn from the round just verified (full information: the rounds since the last evaluation)."""
        ...

    def wants_feedback(self, waiting: int) -> bool:
        """Full-information selectors: evaluate every drafter now, `waiting` rounds after the
        last evaluation? The engine (and `replay`, at the same rounds) asks after each round
        and evaluates anyway after a query's last one; one FullFeedback then covers the
        waiting rounds. True every time is the paper's schedule; bandits are never asked."""
        ...

    def end_query(self) -> None:
        """End the query: flush feedback still held back (HedgeSpec's open windows)."""
        ...


class FeedbackTypeError(TypeError):
    """A selector was handed the wrong feedback type (a programming error in the caller)."""


class NonFiniteError(HedgespecError, FloatingPointError):
    """A loss, gamma or weight is NaN or infinite."""


def check_finite(values: np.ndarray, what: str) -> None:
    """Raise NonFiniteError unless every value is finite."""
    if not np.all(np.isfinite(values)):
        raise NonFiniteError(
            f"non-finite {what}: {np.asarray(values).tolist()}; the target or a drafter produced "
            "NaN/inf logits (try dtype float32) or the trace is corrupt (regenerate it)"
        )


# -- parameters and registry --------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default and allowed values."""

    kind: type  # str, int or float
    default: Any = _REQUIRED
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # human words for `check`, shown in errors
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def coerce(self, key: str, method: str, value: Any) -> Any:
        try:
            out = self.kind(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{method}: {key}={value!r} is not a valid {self.kind.__name__}"
            ) from None
        if self.choices is not None and out not in self.choices:
            raise ConfigError(f"{method}: {key}={value!r}; choose one of {', '.join(self.choices)}")
        if self.kind is float and not np.isfinite(out):
            raise ConfigError(f"{method}: {key}={value!r} must be finite")
        if self.check is not None and not self.check(out):
            raise ConfigError(f"{method}: {key}={value!r}; it must be {self.rule}")
        return out


RESET = Param(str, "query", ("query", "never"), help="forget the learned state at each query, or never")


@dataclass(frozen=True)
class SelectorSetup:
    """What every factory receives besides its hyperparameters."""

    name: str  # the method label
    n_drafters: int
    drafter_names: tuple[str, ...]
    rng: np.random.Generator


KINDS = ("plain", "fixed", "online", "reference")  # also the default bench's column order


@dataclass(frozen=True, kw_only=True)
class Registration:
    """A registered method: what it is and what it needs, declared once. Calling it builds a selector.

    Every list of methods (the default bench, the adaptive ones shown with their
    selection table, replay's and simulate's defaults) is a query over these
    fields; nothing asks a selector what it can do.

    kind: "plain" (`ar`: the target alone, no selector), "fixed" (one drafter
        throughout), "online" (a serving policy) or "reference" (reads the
        query's hindsight gamma: the oracles).
    factory: the selector class; None for plain decoding, which builds none.
    adaptive: learns from its feedback (the bench shows where it went).
    in_default_bench: run by `hedgespec bench` when --methods is not given.
    reads_true_domain: reads the prompt's true domain label (a closed-world
        peek: in `simulate` the label names the best drafter by construction).
    not_replayable: None when `replay` (and `simulate`) can run the method on a
        gamma trace; otherwise why not (what the method reads that a trace lacks).
    needs_prompt_classifier: reads `QueryContext.routed_domain`, which needs
        the profile's prompt classifier (`router:`).
    needs_full_feedback, needs_block_reward: the feedback its selector takes,
        read from the class that declares them (see `Selector`).
    describe: params -> what runs under these hyperparameters (the report's
        legend), where the summary alone would name the wrong thing; None: the summary.
    """

    name: str
    factory: Callable[..., Selector] | None
    kind: str
    summary: str
    params: Mapping[str, Param] = field(default_factory=lambda: MappingProxyType({}))
    positional: str | None = None  # parameter a bare ITEM sets (fixed:NAME -> drafter)
    adaptive: bool = False
    in_default_bench: bool = False
    reads_true_domain: bool = False
    not_replayable: str | None = None
    needs_prompt_classifier: bool = False
    needs_full_feedback: bool = False
    needs_block_reward: bool = False
    describe: Callable[[Mapping[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RuntimeError(f"method {self.name!r}: kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if (self.kind == "plain") != (self.factory is None):
            raise RuntimeError(f"method {self.name!r}: a selector factory is required unless kind is plain")

    @property
    def selects(self) -> bool:
        """True when the method chooses drafters (everything but plain decoding)."""
        return self.factory is not None

    @property
    def hindsight(self) -> bool:
        """True for the references, which need the query's gamma before it is decoded."""
        return self.kind == "reference"

    def __call__(self, setup: SelectorSetup, **params: Any) -> Selector:
        if self.factory is None:
            raise ConfigError(f"{self.name} decodes with the target alone and chooses no drafter; "
                              "it runs in bench and generate, not as a selector")
        return self.factory(setup, **params)


REGISTRY: dict[str, Registration] = {}
AR = "ar"
REGISTRY[AR] = Registration(
    name=AR,
    factory=None,
    kind="plain",
    summary="target only (plain autoregressive decoding)",
    in_default_bench=True,
    not_replayable="it drafts nothing, so a trace of drafter acceptance holds nothing for it; "
    "measure it live with `hedgespec bench`",
)

SelectorClass = TypeVar("SelectorClass", bound=type[Selector])


def register(
    name: str,
    *,
    kind: str,
    summary: str,
    params: Mapping[str, Param] | None = None,
    positional: str | None = None,
    adaptive: bool = False,
    in_default_bench: bool = False,
    reads_true_domain: bool = False,
    not_replayable: str | None = None,
    needs_prompt_classifier: bool = False,
    describe: Callable[[Mapping[str, Any]], str] | None = None,
) -> Callable[[SelectorClass], SelectorClass]:
    """Class decorator adding a selector class to REGISTRY under `name` (see `Registration`).

    Adding a method touches one file and its test: write the class in a module
    of this package (or a new one imported in `selection/__init__.py`), declare
    `needs_full_feedback` / `needs_block_reward` on it, and decorate it with
    `@register(name, kind=..., summary=..., params=..., <traits>)`. The bench,
    replay, simulate, the report's legend and `--help` read it from here.
    """

    def add(cls: SelectorClass) -> SelectorClass:
        if name in REGISTRY:
            raise RuntimeError(f"selector {name!r} registered twice")
        REGISTRY[name] = Registration(
            name=name, factory=cls, kind=kind, summary=summary, params=MappingProxyType(dict(params or {})),
            positional=positional, adaptive=adaptive, in_default_bench=in_default_bench,
            reads_true_domain=reads_true_domain, not_replayable=not_replayable,
            needs_prompt_classifier=needs_prompt_classifier, needs_full_feedback=cls.needs_full_feedback,
            needs_block_reward=cls.needs_block_reward, describe=describe,
        )
        return cls

    return add


def _registered(name: str) -> Registration:
    if name not in REGISTRY:
        known = ", ".join("fixed:NAME" if n == "fixed" else n for n in sorted(REGISTRY))
        raise ConfigError(f"unknown method {name!r}; valid methods: {known}")
    return REGISTRY[name]


def registration(method: str) -> Registration:
    """The registration of a method string (`hedgespec:loss=tap` -> hedgespec's)."""
    return _registered(method.strip().partition(":")[0].strip())


# -- queries over the registry: every list of methods ------------------------------


def default_bench(generic: str, *, classifier: bool = True) -> tuple[str, ...]:
    """`hedgespec bench` without --methods: every method registered `in_default_bench`.

    Columns go by kind (plain, fixed, online, reference), bandit and static
    policies before full-information learners (the methods under study next to
    the reference they are measured against); `fixed` runs the profile's generic
    drafter; a method that reads a prompt classifier only where there is one.
    """
    regs = [r for r in REGISTRY.values() if r.in_default_bench and (classifier or not r.needs_prompt_classifier)]
    regs.sort(key=lambda r: (KINDS.index(r.kind), r.needs_full_feedback))  # stable: registry order within
    return tuple(f"{r.name}:{generic}" if r.kind == "fixed" else r.name for r in regs)


def adaptive_methods() -> tuple[str, ...]:
    """The methods that learn from feedback, in registry order."""
    return tuple(n for n, r in REGISTRY.items() if r.adaptive)


# -- the spec -------------------------------------------------------------------


@dataclass(frozen=True)
class SelectorSpec:
    """An immutable, validated method choice: name + hyperparameters + seed.

    `params` holds every hyperparameter of the method, defaults filled in,
    coerced to its type; unknown keys and bad values raise ConfigError.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    seed: int = 0

    def __post_init__(self) -> None:
        reg = _registered(self.name)
        unknown = sorted(set(self.params) - set(reg.params))
        if unknown:
            valid = ", ".join(reg.params) or "none"
            raise ConfigError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}"
            )
        resolved = {}
        for key, p in reg.params.items():
            if key in self.params:
                resolved[key] = p.coerce(key, self.name, self.params[key])
            elif p.required:
                hint = f"{self.name}:VALUE" if reg.positional == key else f"{self.name}:{key}=VALUE"
                raise ConfigError(f"{self.name} needs {key} ({p.help}); write {hint}")
            else:
                resolved[key] = p.default
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer (got {self.seed!r})")
        object.__setattr__(self, "params", MappingProxyType(resolved))

    @property
    def label(self) -> str:
        """The method's display name: the name plus non-default parameters, positional bare."""
        reg = REGISTRY[self.name]
        items = []
        for key, p in reg.params.items():
            value = self.params[key]
            if p.required or value != p.default:
                items.append(str(value) if key == reg.positional else f"{key}={value}")
        return self.name + (":" + ",".join(items) if items else "")

    @property
    def description(self) -> str:
        """What runs: the registration's `describe(params)`, else its summary."""
        reg = REGISTRY[self.name]
        return reg.describe(self.params) if reg.describe else reg.summary

    @classmethod
    def parse(cls, text: str, *, seed: int = 0) -> SelectorSpec:
        """`NAME[:ITEM,...]` -> spec (see the module docstring)."""
        name, _, rest = text.strip().partition(":")
        reg = _registered(name.strip())
        params: dict[str, str] = {}
        for item in filter(None, (i.strip() for i in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                if reg.positional is None:
                    raise ConfigError(
                        f"{reg.name}: {item!r} is not key=value; valid parameters: "
                        f"{', '.join(reg.params) or 'none'}"
                    )
                key, value = reg.positional, item
            key = key.strip()
            if key in params:
                raise ConfigError(f"{reg.name}: parameter {key} given twice in {text!r}")
            params[key] = value.strip()
        return cls(reg.name, params, seed)


def split_methods(text: str) -> list[str]:
    """Split a comma list of method strings; `key=value` items continue the method before.

    "hedgespec:learner=hedge,loss=tap,ucbspec" -> ["hedgespec:learner=hedge,loss=tap", "ucbspec"]
    """
    methods: list[str] = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        if "=" in item and ":" not in item:
            if not methods or ":" not in methods[-1]:
                raise ConfigError(
                    f"{item!r} in --methods belongs to no method; write NAME:{item}"
                )
            methods[-1] += "," + item
        else:
            methods.append(item)
    if not methods:
        raise ConfigError(f"no method in {text!r}; name at least one, e.g. ar,hedgespec")
    return methods


def make_selector(
    spec: SelectorSpec | str,
    n_drafters: int,
    drafter_names: Sequence[str] | None = None,
    *,
    seed: int | None = None,
) -> Selector:
    """Build a selector from a spec or a method string.

    drafter_names defaults to d0..d{N-1}; `fixed:NAME` resolves NAME against it.
    seed, when given, overrides the spec's seed. The selector gets its own
    `np.random.default_rng(seed)`: same seed, same decisions.
    """
    if isinstance(spec, str):
        spec = SelectorSpec.parse(spec, seed=seed or 0)
    elif seed is not None:
        spec = replace(spec, seed=seed)
    if isinstance(n_drafters, bool) or not isinstance(n_drafters, (int, np.integer)) or n_drafters < 1:
        raise ConfigError(f"a selector needs at least one drafter (got n_drafters={n_drafters!r})")
    names = tuple(drafter_names) if drafter_names is not None else tuple(f"d{j}" for j in range(n_drafters))
    if len(names) != n_drafters:
        raise ConfigError(f"{len(names)} drafter names for {n_drafters} drafters; give one name per drafter")
    setup = SelectorSetup(spec.label, int(n_drafters), names, np.random.default_rng(spec.seed))
    return REGISTRY[spec.name](setup, **spec.params)


# -- helpers shared by the selectors --------------------------------------------------


def one_hot(arm: int, n: int) -> np.ndarray:
    probs = np.zeros(n)
    probs[arm] = 1.0
    return probs


def argmax_decision(scores: np.ndarray, rng: np.random.Generator) -> Decision:
    """Play the best score; ties broken uniformly at random (probs spread over the tie)."""
    best = np.flatnonzero(scores >= scores.max())
    probs = np.zeros(scores.shape[0])
    probs[best] = 1.0 / best.size
    arm = int(best[0]) if best.size == 1 else int(rng.choice(best))
    return Decision(arm, probs)


@dataclass(frozen=True)
class Law:
    """A distribution over arms, ready to draw from: probs renormalised against rounding and their
    CDF. A selector whose distribution changes only when it learns (HedgeSpec) builds it then, not
    every round."""

    probs: np.ndarray
    cdf: np.ndarray

    @staticmethod
    def of(probs: np.ndarray) -> Law:
        probs = probs / probs.sum()
        cdf = probs.cumsum()
        cdf /= cdf[-1]
        probs.setflags(write=False)  # every Decision drawn from the law holds it
        return Law(probs, cdf)

    def draw(self, rng: np.random.Generator, weights: np.ndarray | None = None) -> Decision:
        """One arm by inverse CDF with one uniform: the draw `rng.choice(N, p=probs)` makes (so runs and
        traces from before replay alike), at a fraction of its cost (choice validates probs each time)."""
        return Decision(int(self.cdf.searchsorted(rng.random(), side="right")), self.probs, weights)


def sample_decision(probs: np.ndarray, rng: np.random.Generator) -> Decision:
    """Draw an arm from probs (`Law.draw`)."""
    return Law.of(probs).draw(rng)


def require_bandit(name: str, feedback: Feedback, n_drafters: int) -> None:
    """Bandit selectors call this first: they may never see other drafters' gamma."""
    if not isinstance(feedback, BanditFeedback):
        raise FeedbackTypeError(
            f"{name} is a bandit selector (needs_full_feedback=False) and takes BanditFeedback, "
            f"not {type(feedback).__name__}: it must never see the drafters it did not run"
        )
    if not 0 <= feedback.arm < n_drafters:
        raise ValueError(f"{name}: feedback for arm {feedback.arm} outside 0..{n_drafters - 1}")


def check_context(name: str, ctx: QueryContext, n_drafters: int) -> None:
    if len(ctx.drafter_names) != n_drafters:
        raise ConfigError(
            f"{name} was built for {n_drafters} drafters but the query has "
            f"{len(ctx.drafter_names)}; build the selector with the run's drafter pool"
        )
