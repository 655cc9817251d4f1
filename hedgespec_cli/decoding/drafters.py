"""Drafters behind one interface, in groups that are evaluated together.

The engine's cache invariant (see engine.py): between rounds an up-to-date
drafter has consumed every committed token but the last. `draft` first
consumes whatever committed tokens the drafter has not seen (one batched
catch-up), `observe` brings every member of a group up to date after a round
and returns its distribution at each newly verified position
(full-information feedback), `settle` only rolls one member back (bandit
methods do not evaluate the drafters they did not choose).

Plain-LM groups' `observe` also feeds the last committed token, so its call
leaves every member's q at the next position (`_LMState.ahead`): the next
round's chosen drafter starts its draft from that row instead of a call of
its own, and the next `observe` starts from it too. Their caches then hold
every committed token.

A group is one drafter on the transformers path (`LMGroup`), or several
plain-Llama drafters of one shape whose weights are stacked so the whole
group is evaluated in one forward (`StackedGroup`); likewise for EAGLE-3
heads (`Eagle3Group`, `StackedEagle3Group`). Which group serves which kind of
drafter is decoding/kinds.py; tests/test_drafter_groups.py holds every group
to this contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import torch

from hedgespec_cli.decoding.qrows import Hidden, Logits, Picks, QRows
from hedgespec_cli.decoding.tree import DraftTree, TreeShape, grow_tree
from hedgespec_cli.errors import WorkloadError
from hedgespec_cli.models import CausalLM, KVCache
from hedgespec_cli.models.eagle3 import Eagle3Cache, Eagle3Head
from hedgespec_cli.models.stacked import StackedCache, StackedEagle3, StackedLlama

Pick = Callable[[torch.Tensor], torch.Tensor]  # (V,) logits -> (1,) token id


@dataclass
class Prefix:
    """The query as drafters may read it.

    x: (capacity,) ids; x[:L] are committed, the rest is scratch.
    feats: (capacity, 3 * H_t) the target's hidden states at the three layers
        EAGLE-3 fuses, per input position, where the target has consumed it;
        None when no drafter needs them.
    """

    x: torch.Tensor
    feats: torch.Tensor | None = None

    @property
    def fused(self) -> torch.Tensor:
        """feats, for the groups that read them (the engine keeps them when one needs_target_features)."""
        if self.feats is None:
            raise RuntimeError("an EAGLE-3 group reads target features that the engine did not keep")
        return self.feats


S = TypeVar("S")  # a group's per-query state: its caches and where they stand
C = TypeVar("C", KVCache, StackedCache)  # a plain-LM group's cache: one model's, or a stack's


class DrafterGroup(Protocol[S]):
    """Drafters evaluated together; their caches live in a state of type S, one per query.

    The registry of drafter kinds (decoding/kinds.py) says which group serves which kind.
    """

    members: tuple[int, ...]  # pool indices of the group's drafters, in order
    needs_target_features: bool  # True: drafts from the target's hidden states (EAGLE-3), so the engine keeps them
    counterfactual: str  # how full-information feedback scores its members (selection/trace.py COUNTERFACTUALS)
    # True: q at a position depends on the committed prefix alone, so one `observe` scores positions of several
    # rounds; False (round-aligned counterfactuals: aligned, exact): the engine observes one round at a time
    by_position: bool
    scores_prompt: bool  # True: `prefill` returns q on the prompt, so the engine scores it (prompt gamma)

    def new_state(self, capacity: int) -> S: ...

    def prefill(self, state: S, ctx: Prefix, L: int, *, rows: bool = False) -> QRows | None:
        """Every member consumes the committed prefix x[:L-1] (full-information runs) -> q at
        positions 1..L-1 from that call (members, L-1; the engine's prompt gamma) when `rows` is
        asked and the group `scores_prompt`, else None (EAGLE-3 heads never). A group whose rows
        cost nothing beyond the call (a stack's hidden states) may return them unasked."""

    def draft(
        self, state: S, member: int, ctx: Prefix, L: int, k: int, pick: Pick
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Member `member` (index into members) chain-drafts k tokens at L.. -> ids (k,), q logits (k, V)."""

    def draft_tree(self, state: S, member: int, ctx: Prefix, L: int, depth: int, shape: TreeShape) -> DraftTree:
        """Member `member` grows a dynamic tree under x[L-1]; its cache then holds x[:L] and nothing of the tree."""

    def observe(
        self, state: S, ctx: Prefix, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None
    ) -> QRows:
        """n tokens were verified (committed length now L) -> q at them (members, n).

        chosen/drafted: the member that drafted this round and its draft-time
        q rows, which a group may reuse instead of recomputing.
        """

    def settle(self, state: S, member: int, L: int) -> None:
        """Roll one member back to the cache invariant for committed length L."""


@dataclass
class Live(Generic[S]):
    """A group and its state for the query being decoded (the state's type is the group's)."""

    group: DrafterGroup[S]
    state: S

    @staticmethod
    def start(group: DrafterGroup[S], capacity: int) -> Live[S]:
        return Live(group, group.new_state(capacity))


def _chain(
    step: Callable[[torch.Tensor], torch.Tensor], first: torch.Tensor, k: int, pick: Pick
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain drafting: pick from q, feed the pick back, k times -> ids (k,), q logits (k, V)."""
    logits, tokens, rows = first, [], []
    for i in range(k):
        tok = pick(logits)
        tokens.append(tok)
        rows.append(logits)
        if i < k - 1:
            logits = step(tok)
    return torch.cat(tokens), torch.stack(rows)


def _tree_mask(visible: torch.Tensor, base: int) -> torch.Tensor:
    """A tree feed's (m, F + m) visibility among tree rows -> (m, base + F + m) over the whole cache."""
    return torch.cat([visible.new_ones(visible.shape[0], base), visible], dim=1)


@dataclass
class _LMState(Generic[C]):
    """A plain-LM group's cache and the q rows `observe` computed one position ahead.

    ahead: every member's q at position `ahead_at` (the committed length when
    `observe` ran), i.e. computed on x[:ahead_at]: logits (members, V), or a
    stacked group's final hidden states (members, H), projected when drafted from.
    """

    cache: C
    ahead: torch.Tensor | None = None
    ahead_at: int = -1

    def first_row(self, member: int, L: int, length: int) -> torch.Tensor | None:
        """The member's q at position L if `observe` left it and its cache holds x[:L] exactly."""
        return self.ahead[member] if self.ahead is not None and self.ahead_at == L and length == L else None

    def evaluation_start(self, length: int, L: int, n: int) -> int:
        """Where a call must start to give q at the n positions L-n..L-1 from a cache of `length`:
        the cache's end, unless the cache (a member chosen since the last evaluation, which
        caught up while drafting) has passed L-n; then L-n when `ahead` holds q there, else L-n-1."""
        c = min(length, L - 1)
        if c >= L - n:
            c = L - n if self.ahead_at == L - n else L - n - 1
        return c

    def evaluated(self, rows: torch.Tensor, start: int, L: int, n: int) -> tuple[torch.Tensor, ...]:
        """rows (members, T, ...): q at the last T of the positions start+1..L, from a call over
        x[start:L] -> q at the n positions L-n..L-1, in one or two pieces along dim 1 (`ahead`
        supplies the first position when the call started there, T = n; logits are not copied
        to join them); keeps q at L as `ahead`."""
        if rows.shape[1] > n:
            pieces: tuple[torch.Tensor, ...] = (rows[:, -n - 1 : -1],)
        elif self.ahead is None or self.ahead_at != start or rows.shape[1] < n:
            raise RuntimeError(f"q at {n} positions needs the row ahead at {start}; it is at {self.ahead_at}")
        else:
            pieces = (self.ahead.unsqueeze(1), rows[:, :-1])
        self.ahead, self.ahead_at = rows[:, -1], L
        return pieces


class LMGroup:
    """One independent causal LM on the transformers path (any architecture)."""

    counterfactual = "positional"  # q at a position depends on the committed prefix alone
    by_position = True
    needs_target_features = False
    scores_prompt = True

    def __init__(self, index: int, lm: CausalLM) -> None:
        self.members: tuple[int, ...] = (index,)
        self.lm = lm

    def new_state(self, capacity: int) -> _LMState[KVCache]:
        return _LMState(self.lm.new_cache())

    def prefill(self, state: _LMState[KVCache], ctx: Prefix, L: int, *, rows: bool = False) -> QRows | None:
        if L < 2:
            return None
        out = self.lm.forward(ctx.x[: L - 1], state.cache, last=None if rows else 0)  # rows: the prompt's projection
        return Logits(out.logits.unsqueeze(0)) if rows else None

    def _root(self, state: _LMState[KVCache], ctx: Prefix, L: int) -> torch.Tensor:
        """(V,) q at position L: the row `observe` left, or one catch-up call."""
        cache = state.cache
        first = state.first_row(0, L, cache.length)
        return first if first is not None else self.lm.forward(ctx.x[cache.length : L], cache, last=1).logits[-1]

    def draft(self, state: _LMState[KVCache], member: int, ctx: Prefix, L: int, k: int, pick: Pick):
        cache = state.cache
        return _chain(lambda tok: self.lm.forward(tok, cache).logits[-1], self._root(state, ctx, L), k, pick)

    def draft_tree(
        self, state: _LMState[KVCache], member: int, ctx: Prefix, L: int, depth: int, shape: TreeShape
    ) -> DraftTree:
        root = self._root(state, ctx, L)
        cache = state.cache

        def feed(tokens, d, parent_slots, visible):
            pos = torch.full((tokens.numel(),), L - 1 + d, device=tokens.device)
            return self.lm.forward(tokens, cache, positions=pos, visible=_tree_mask(visible, L)).logits

        tree = grow_tree(root, feed, depth, shape)
        cache.crop(L)
        return tree

    def observe(
        self, state: _LMState[KVCache], ctx: Prefix, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None
    ) -> QRows:
        # A chosen drafter's draft rows (positions L-n onwards) were computed on
        # exactly the verified prefix up to what its cache still holds after
        # the roll-back; the positions after that are recomputed in one call,
        # which also feeds x[L-1] and so leaves q at L for the next round.
        cache = state.cache
        self.settle(state, 0, L)
        if chosen is not None and drafted is not None:  # its draft rows: positions L-n..c
            c = cache.length
            fresh = self.lm.forward(ctx.x[c:L], cache).logits.unsqueeze(0)  # (1, L - c, V): positions c+1..L
            rows = torch.cat([drafted[: c - (L - n) + 1].unsqueeze(0), fresh], dim=1)
            state.ahead, state.ahead_at = rows[:, -1], L
            return Logits(rows[:, :-1])  # (1, n, V)
        c = state.evaluation_start(cache.length, L, n)
        cache.crop(c)
        rows = self.lm.forward(ctx.x[c:L], cache, last=n + 1).logits.unsqueeze(0)  # q at the last n + 1 positions
        return Logits(*state.evaluated(rows, c, L, n))  # (1, n, V)

    def settle(self, state: _LMState[KVCache], member: int, L: int) -> None:
        state.cache.crop(min(state.cache.length, L - 1))


class StackedGroup:
    """Plain-Llama drafters of one shape: one batched forward evaluates them all."""

    counterfactual = "positional"
    by_position = True
    needs_target_features = False
    scores_prompt = True

    def __init__(self, indices: list[int], lms: list[CausalLM], greedy: bool = True) -> None:
        self.members: tuple[int, ...] = tuple(indices)
        self.stack = StackedLlama([lm.model for lm in lms], screen=greedy)  # the screen serves T = 0 only

    def new_state(self, capacity: int) -> _LMState[StackedCache]:
        return _LMState(self.stack.new_cache(capacity))

    def prefill(self, state: _LMState[StackedCache], ctx: Prefix, L: int, *, rows: bool = False) -> QRows | None:
        # Unasked too: the rows are the hidden states the call computes anyway (projected only when read).
        return Hidden(self.stack.hidden(ctx.x[: L - 1], state.cache), self.stack) if L > 1 else None

    def _root(self, state: _LMState[StackedCache], member: int, ctx: Prefix, L: int) -> torch.Tensor:
        """(V,) the member's q at L: its hidden row `observe` left, projected, or one catch-up call."""
        cache = state.cache
        first = state.first_row(member, L, cache.lengths[member])
        if first is not None:
            return self.stack.project(first.view(1, 1, -1), member)[0, -1]
        return self.stack.forward(ctx.x[cache.lengths[member] : L], cache, member, last=1)[0, -1]

    def draft(self, state: _LMState[StackedCache], member: int, ctx: Prefix, L: int, k: int, pick: Pick):
        cache = state.cache
        root = self._root(state, member, ctx, L)
        return _chain(lambda tok: self.stack.forward(tok, cache, member)[0, -1], root, k, pick)

    def draft_tree(
        self, state: _LMState[StackedCache], member: int, ctx: Prefix, L: int, depth: int, shape: TreeShape
    ) -> DraftTree:
        root = self._root(state, member, ctx, L)
        cache = state.cache

        def feed(tokens, d, parent_slots, visible):
            pos = torch.full((tokens.numel(),), L - 1 + d, device=tokens.device)
            return self.stack.forward(tokens, cache, member, positions=pos, visible=_tree_mask(visible, L))[0]

        tree = grow_tree(root, feed, depth, shape)
        cache.lengths[member] = L
        return tree

    def observe(
        self, state: _LMState[StackedCache], ctx: Prefix, L: int, n: int, chosen: int | None,
        drafted: torch.Tensor | None,
    ) -> QRows:
        # Align every member at the shortest cache (the chosen one is rolled
        # back and recomputed with the others: one call instead of two). The
        # rows stay hidden states: at T = 0 the screen scores them without
        # the float32 projection onto the vocabulary.
        cache = state.cache
        m = state.evaluation_start(min(cache.lengths), L, n)
        cache.lengths[:] = [m] * len(cache.lengths)
        rows = self.stack.hidden(ctx.x[m:L], cache, last=n + 1)  # at the last n + 1 positions
        return Hidden(torch.cat(state.evaluated(rows, m, L, n), dim=1), self.stack)  # (members, n, H)

    def settle(self, state: _LMState[StackedCache], member: int, L: int) -> None:
        state.cache.lengths[member] = min(state.cache.lengths[member], L - 1)


@dataclass
class _EagleState:
    """An EAGLE-3 head's cache and how many of its rows came from target features.

    Row t pairs the feature at position t with token x[t+1]. Between rounds
    the head holds rows 0..target_rows-1, all fed with target features, with
    target_rows <= L-2; its next call first catches up the rest in the same
    forward. Drafting appends rows fed with the head's own hidden, dropped by
    `settle`.
    """

    cache: Eagle3Cache
    target_rows: int = 0


class Eagle3Group:
    """One EAGLE-3 head (DESIGN.md section 4): drafts from the target's fused hidden states.

    Counterfactual modes depth1 and aligned; a head that cannot be stacked
    (its own embeddings) is scored `aligned` when `exact` is asked for, and
    the trace says so per drafter.
    """

    needs_target_features = True
    scores_prompt = False  # a head's prefill computes no logits

    def __init__(self, index: int, head: Eagle3Head, counterfactual: str = "aligned") -> None:
        self.members: tuple[int, ...] = (index,)
        self.head = head
        self.counterfactual = "aligned" if counterfactual == "exact" else counterfactual
        self.by_position = self.counterfactual == "depth1"  # every position scored as a round's first draft

    def new_state(self, capacity: int) -> _EagleState:
        return _EagleState(self.head.new_cache())

    def _fc(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, 3 * H_t) target features -> (T, H) the head's fused input."""
        return self.head.fc(feats.to(self.head.fc.weight.dtype))

    def _feed_target(self, state: _EagleState, ctx: Prefix, upto: int) -> None:
        """Consume rows target_rows..upto-1, fed with target features."""
        state.cache.crop(state.target_rows)
        a = state.target_rows
        if upto > a:
            self.head.forward(ctx.x[a + 1 : upto + 1], self._fc(ctx.fused[a:upto]), state.cache)
            state.target_rows = upto

    def prefill(self, state: _EagleState, ctx: Prefix, L: int, *, rows: bool = False) -> None:
        self._feed_target(state, ctx, L - 2)

    def _depth_one(self, state: _EagleState, ctx: Prefix, L: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Catch-up and depth 1 in one call: rows up to L-2 on target features -> logits, hidden;
        the last row predicts x[L]."""
        if L < 2:
            raise WorkloadError("EAGLE-3 drafters need prompts of at least 2 tokens (a feature and a token)")
        self.settle(state, 0, L)
        a = state.target_rows
        out = self.head.forward(ctx.x[a + 1 : L], self._fc(ctx.fused[a : L - 1]), state.cache)
        state.target_rows = L - 1
        return out

    def _chain(
        self, state: _EagleState, ctx: Prefix, L: int, k: int, pick: Pick | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth 1 from the target feature at L-2, deeper from the head's own hidden.

        pick None follows the committed tokens x[L..] instead of drafting: the
        counterfactual of full-information feedback, "as it would have drafted".
        """
        logits, hidden = self._depth_one(state, ctx, L)
        tokens, rows = [], []
        for depth in range(k):
            q = self.head.target_logits(logits[-1])  # (V,) -inf outside the draft vocabulary
            tok = pick(q) if pick is not None else ctx.x[L + depth : L + depth + 1]
            tokens.append(tok)
            rows.append(q)
            if depth < k - 1:
                logits, hidden = self.head.forward(tok, hidden[-1:], state.cache)
        return torch.cat(tokens), torch.stack(rows)

    def draft(self, state: _EagleState, member: int, ctx: Prefix, L: int, k: int, pick: Pick):
        return self._chain(state, ctx, L, k, pick)

    def draft_tree(
        self, state: _EagleState, member: int, ctx: Prefix, L: int, depth: int, shape: TreeShape
    ) -> DraftTree:
        # Depth 1 as in a chain; a node at depth d is fed with the hidden of the
        # row that proposed it (its parent's), at head position L-2+d.
        logits, hidden = self._depth_one(state, ctx, L)
        base = state.cache.length
        fed = [hidden[-1:]]  # fed[0]: the root's row; fed[1 + f]: tree row f

        @torch.inference_mode()
        def feed(tokens, d, parent_slots, visible):
            m = tokens.numel()
            features = torch.cat(fed)[parent_slots + 1]  # (m, H)
            pos = torch.full((m,), L - 2 + d, device=tokens.device)
            h = self.head.run_layer(tokens.view(1, m), features.view(1, m, -1), pos, state.cache,
                                    _tree_mask(visible, base))[0]
            fed.append(h)
            return self.head.target_logits(self.head.logits(h))

        tree = grow_tree(self.head.target_logits(logits[-1]), feed, depth, shape)
        state.cache.crop(base)
        return tree

    def observe(
        self, state: _EagleState, ctx: Prefix, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None
    ) -> QRows:
        if self.counterfactual == "depth1":  # rows L-n-2..L-3 on target features, one call
            state.target_rows = min(state.target_rows, L - n - 2)
            logits, _ = self._depth_one(state, ctx, L)
            self.settle(state, 0, L)
            return Logits(self.head.target_logits(logits[-(n + 1) : -1]).unsqueeze(0))  # (1, n, V)
        # aligned: depth m of the counterfactual runs on the head's own hidden from depth
        # m-1, so the n rows are computed one after another (DESIGN.md section 5).
        start = L - n
        _, rows = self._chain(state, ctx, start, n, None)
        # Drop the rows fed with the head's own hidden; the next draft or
        # counterfactual re-feeds the verified tokens with target features in
        # the call it makes anyway (one call fewer per head per round).
        self.settle(state, 0, L)
        return Logits(rows.unsqueeze(0))  # (1, n, V)

    def settle(self, state: _EagleState, member: int, L: int) -> None:
        # Rows fed with the head's own hidden are dropped; the next draft
        # re-feeds the verified tokens with target features, as EAGLE does.
        state.target_rows = min(state.target_rows, L - 2)
        state.cache.crop(state.target_rows)


@dataclass
class _StackedEagleState:
    """`_EagleState` per head of a stack: target_rows[m] for head m, one cache for all."""

    cache: StackedCache
    target_rows: list[int]
    h1: torch.Tensor | None = None  # exact mode: (N, ring, H) depth-1 hidden of recent target rows
    h1_row: torch.Tensor | None = None  # (N, ring) the row each slot holds, -1: none


class StackedEagle3Group:
    """EAGLE-3 heads of one shape: the counterfactual runs every head in one call per depth.

    Same protocol and invariants as `Eagle3Group`, per member: `target_rows[m]`
    rows of head m hold target features; `cache.lengths[m]` may be larger
    while it drafts on its own hidden.
    """

    needs_target_features = True
    scores_prompt = False  # a head's prefill computes no logits

    def __init__(
        self, indices: list[int], heads: list[Eagle3Head], counterfactual: str = "aligned", K: int = 5,
        greedy: bool = False,
    ) -> None:
        self.members: tuple[int, ...] = tuple(indices)
        self.stack = StackedEagle3(heads)
        self.counterfactual, self.K = counterfactual, K  # K: the exact mode's chain depth
        self.by_position = counterfactual == "depth1"  # every position scored as a round's first draft
        self.greedy = greedy  # T = 0: the exact mode prunes chains that missed

    def new_state(self, capacity: int) -> _StackedEagleState:
        return _StackedEagleState(self.stack.new_cache(capacity), [0] * self.stack.n)

    def prefill(self, state: _StackedEagleState, ctx: Prefix, L: int, *, rows: bool = False) -> None:
        if L > 2:  # rows 0..L-3 for every head
            hidden = self.stack.layer(ctx.x[1 : L - 1], self.stack.fuse(ctx.fused[: L - 2]), state.cache)
            state.target_rows[:] = [L - 2] * self.stack.n
            self._keep(state, hidden, 0, None)

    def _keep(self, state: _StackedEagleState, hidden: torch.Tensor, a: int, member: int | None) -> None:
        """Exact mode: remember the depth-1 hidden of target rows a.. (ring of the last `ring` rows), so
        a chain from an earlier start needs no recomputation of its first step."""
        if self.counterfactual != "exact":
            return
        ring = 2 * self.K + 8  # chains start at most K before a round: rows back to L-2K-2 are read
        if state.h1 is None or state.h1_row is None:
            state.h1 = hidden.new_zeros(self.stack.n, ring, hidden.shape[-1])
            state.h1_row = torch.full((self.stack.n, ring), -1, dtype=torch.long, device=hidden.device)
        h1, h1_row = state.h1, state.h1_row
        T = hidden.shape[1]
        if T > ring:  # only the last `ring` rows can be read
            hidden, a = hidden[:, T - ring :], a + T - ring
        rows = torch.arange(a, a + hidden.shape[1], device=hidden.device)
        sel = slice(None) if member is None else slice(member, member + 1)
        h1[sel, rows % ring] = hidden
        h1_row[sel, rows % ring] = rows

    def _depth_one(self, state: _StackedEagleState, ctx: Prefix, L: int, member: int | None):
        """Catch-up and depth 1 for one head or all (aligned first) -> hidden (B, T, H); the last row predicts x[L]."""
        if L < 2:
            raise WorkloadError("EAGLE-3 drafters need prompts of at least 2 tokens (a feature and a token)")
        fed = range(self.stack.n) if member is None else (member,)
        a = min(min(state.target_rows[m] for m in fed), L - 2)
        for m in fed:
            state.target_rows[m] = state.cache.lengths[m] = a
        hidden = self.stack.layer(ctx.x[a + 1 : L], self.stack.fuse(ctx.fused[a : L - 1], member), state.cache, member)
        for m in fed:
            state.target_rows[m] = L - 1
        self._keep(state, hidden, a, member)
        return hidden

    def draft(self, state: _StackedEagleState, member: int, ctx: Prefix, L: int, k: int, pick: Pick):
        hidden = self._depth_one(state, ctx, L, member)[:, -1:]  # (1, 1, H)
        tokens, rows = [], []
        for depth in range(k):
            q = self.stack.target_logits(hidden, member)[0, -1]
            tok = pick(q)
            tokens.append(tok)
            rows.append(q)
            if depth < k - 1:
                hidden = self.stack.layer(tok, hidden, state.cache, member)
        return torch.cat(tokens), torch.stack(rows)

    def draft_tree(
        self, state: _StackedEagleState, member: int, ctx: Prefix, L: int, depth: int, shape: TreeShape
    ) -> DraftTree:
        hidden = self._depth_one(state, ctx, L, member)[0, -1:]  # (1, H)
        base = state.cache.lengths[member]
        fed = [hidden]

        def feed(tokens, d, parent_slots, visible):
            m = tokens.numel()
            features = torch.cat(fed)[parent_slots + 1]  # (m, H): the proposing row's hidden
            pos = torch.full((m,), L - 2 + d, device=tokens.device)
            h = self.stack.layer(tokens, features.unsqueeze(0), state.cache, member, positions=pos,
                                 visible=_tree_mask(visible, base))[0]
            fed.append(h)
            return self.stack.target_logits(h.unsqueeze(0), member)[0]

        tree = grow_tree(self.stack.target_logits(hidden.unsqueeze(0), member)[0, -1], feed, depth, shape)
        state.cache.lengths[member] = base
        return tree

    def observe(
        self, state: _StackedEagleState, ctx: Prefix, L: int, n: int, chosen: int | None, drafted: torch.Tensor | None
    ) -> QRows:
        if self.counterfactual == "exact":
            return self._observe_exact(state, ctx, L, n)
        if self.counterfactual == "depth1":  # every position as a round's first draft: one call
            for m in range(self.stack.n):
                state.target_rows[m] = min(state.target_rows[m], L - n - 2)
            hidden = self._depth_one(state, ctx, L, None)  # (N, T, H): rows a..L-2
            for m in range(self.stack.n):
                self.settle(state, m, L)
            return Logits(self.stack.target_logits(hidden[:, -(n + 1) : -1]))  # rows L-n-2..L-3: (N, n, V)
        # aligned: every head's counterfactual along the n verified tokens from the round's start,
        # depth by depth, all heads per call.
        start = L - n
        hidden = self._depth_one(state, ctx, start, None)[:, -1:]  # (N, 1, H)
        rows = []
        for depth in range(n):
            rows.append(self.stack.target_logits(hidden)[:, -1])  # (N, V)
            if depth < n - 1:
                hidden = self.stack.layer(ctx.x[start + depth : start + depth + 1], hidden, state.cache)
        for m in range(self.stack.n):
            self.settle(state, m, L)
        return Logits(torch.stack(rows, dim=1))  # (N, n, V)

    def _observe_exact(self, state: _StackedEagleState, ctx: Prefix, L: int, n: int) -> QRows:
        """The exact counterfactual (DESIGN.md section 5) -> q by depth (N, n, K): logits (N, n, K, V),
        or at T = 0 only the picks (N, n, K) token ids.

        Entry [:, i, d] is the head's q at position t = L-n+i when a round
        starting at S = t-d drafts it at depth d+1: depth 1 from the target's
        feature at S-2 (row S-2), deeper on its own hidden, fed the verified
        tokens (what it drafted, wherever the round had accepted so far). Every
        start whose chain reaches a new position, S in [L-n-K+1, L), is
        re-run from depth 1, all starts and heads of a depth in one call: K
        calls a round. Each chain's rows see the target rows before S-1 and
        its own rows only (a mask), and are dropped afterwards.

        Greedy (T = 0): a chain whose draft missed cannot go deeper in any
        round, so a start is dropped once every head's chain from it has
        missed, and the depths stop when no start is left (fewer and smaller
        calls). The entries it never scores read as misses (gamma 0): the
        estimators stop at a chain's first miss and never read past it.
        """
        K, N = self.K, self.stack.n
        lo = max(2, L - n - K + 1)  # the earliest start whose chain reaches position L-n
        self._depth_one(state, ctx, L, None)  # catch-up: target rows up to L-2, kept in the ring
        h1, h1_row = state.h1, state.h1_row
        if h1 is None or h1_row is None:
            raise RuntimeError("the exact counterfactual reads depth-1 hiddens that _keep did not keep")
        dev = h1.device
        starts = torch.arange(lo, L, device=dev)  # (S,)
        rows = starts - 2  # row r = depth 1 of start r+2
        slot = rows % h1.shape[1]
        if not bool((h1_row[:, slot] == rows).all()):  # rows no feed kept (e.g. a head that lagged)
            for m in range(N):
                state.target_rows[m] = min(state.target_rows[m], lo - 2)
            self._depth_one(state, ctx, L, None)
        hidden = h1[:, slot]  # (N, S, H)
        base = state.cache.lengths[0]  # = L-1 target rows
        V = self.stack.vocab_size
        # Unscored entries (pruned chains, starts before position 2) put q on a token other than the verified one.
        miss = ((ctx.x[L - n : L] + 1) % V).view(1, n, 1).expand(N, n, K)
        if self.greedy:
            picks = miss.clone()
        else:
            out = torch.full((N, n, K, V), float("-inf"), device=dev)
            out.scatter_(-1, miss.unsqueeze(-1), 0.0)
        owner = torch.empty(0, dtype=torch.long, device=dev)  # the start of each chain row appended so far
        alive = None  # greedy: (N, S) every head's chain from each start accepted so far
        for d in range(K):  # depth d+1 scores position S+d
            if d:
                keep = starts + d <= L - 1
                if alive is not None:
                    keep &= alive.any(dim=0)
                starts, hidden = starts[keep], hidden[:, keep]
                if not starts.numel():
                    break
                m = starts.numel()
                cols = torch.arange(base, device=dev)
                visible = torch.cat([cols[None, :] <= (starts[:, None] - 2),  # target rows 0..S-2
                                     owner[None, :] == starts[:, None],  # the chain's own earlier rows
                                     torch.eye(m, dtype=torch.bool, device=dev)], dim=1)
                hidden = self.stack.layer(ctx.x[starts + d - 1], hidden, state.cache,
                                          positions=starts + d - 2, visible=visible)
                owner = torch.cat([owner, starts])
            t = starts + d  # positions scored
            new = t >= L - n
            if self.greedy:  # only argmaxes matter: each head's pick
                pick = self.stack.target_argmax(hidden)  # (N, S): every chain, to know which go on
                picks[:, t[new] - (L - n), d] = pick[:, new]
                hit = pick == ctx.x[t]  # (N, S)
                alive = hit if alive is None else alive[:, keep] & hit
            elif new.any():
                out[:, t[new] - (L - n), d] = self.stack.target_logits(hidden[:, new])
        for m in range(N):
            state.cache.lengths[m] = base
            self.settle(state, m, L)
        return Picks(picks, V) if self.greedy else Logits(out)

    def settle(self, state: _StackedEagleState, member: int, L: int) -> None:
        state.target_rows[member] = min(state.target_rows[member], L - 2)
        state.cache.lengths[member] = state.target_rows[member]
