"""One contract for every drafter group: prefill, draft, observe and settle keep the cache invariant.

The invariant (decoding/drafters.py, decoding/engine.py): with committed
length L, a member that is up to date has consumed every committed token but
the last (L - 1), and nothing that was not committed; a plain-LM group's
`observe` also feeds the last one and keeps q at L (`ahead`), so its members
then hold all L. Plain-LM q depends on the committed prefix alone
(`positional`), so every row a group returns must equal the model run on that
prefix from scratch. EAGLE-3 groups are held to their invariant, and the
stacked group to the heads one by one.

The script follows the engine: a lone round evaluated at once (the chosen
member's draft rows reused), then two rounds left to wait and scored by one
evaluation (lazy evaluation: the chosen member caught up while drafting, so
its cache is past the first position to score), then a draft from the row
the evaluation left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from hedgespec_cli.decoding.drafters import (
    Eagle3Group,
    LMGroup,
    Live,
    Prefix,
    StackedEagle3Group,
    StackedGroup,
    _EagleState,
    _LMState,
    _StackedEagleState,
)
from hedgespec_cli.decoding.kinds import KINDS, group_drafters
from hedgespec_cli.models.eagle3 import feature_layers

K = 4
TEXT = "the cat sat on the mat and the dog ran off"


def _argmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax().view(1)


def consumed(state: Any, m: int) -> int:
    """Tokens of x that member m's cache has consumed (an EAGLE-3 row t pairs feature t with x[t+1],
    so rows 0..r-1 hold x[:r+1]); an EAGLE-3 cache must hold target-fed rows only."""
    if isinstance(state, _LMState):
        return state.cache.lengths[m] if hasattr(state.cache, "lengths") else state.cache.length
    if isinstance(state, _EagleState):
        assert state.cache.length == state.target_rows, "rows fed with the head's own hidden were kept"
        return state.target_rows + 1
    assert isinstance(state, _StackedEagleState)
    assert state.cache.lengths[m] == state.target_rows[m], "rows fed with the head's own hidden were kept"
    return state.target_rows[m] + 1


@dataclass
class Script:
    """The query as the engine holds it: x, the target's features, the committed length."""

    pool: Any
    ids: list[int]
    capacity: int = 96
    ctx: Prefix = field(init=False)
    L: int = field(init=False)

    def __post_init__(self) -> None:
        x = torch.zeros(self.capacity, dtype=torch.long)
        self.ctx = Prefix(x, None)
        self.L = len(self.ids)
        x[: self.L] = torch.tensor(self.ids)
        self.eagle = any(s.kind == "eagle3" for s in self.pool.specs)
        if self.eagle:
            self.ctx.feats = torch.zeros(self.capacity, 3 * self.pool.target.model.config.hidden_size)
            self._features()

    def _features(self) -> None:
        """The target's fused features at every committed position (causal: as the engine stores them)."""
        target = self.pool.target
        layers = feature_layers(self.pool, target.model.config.num_hidden_layers)
        out = target.forward(self.ctx.x[: self.L], target.new_cache(), hidden=True)
        self.ctx.feats[: self.L] = torch.cat([out.hidden[i] for i in layers], dim=-1).float()

    def commit(self, draft: torch.Tensor, accepted: int) -> int:
        """Verification as the engine does it: the first `accepted` drafts, then a token the draft did
        not propose (a correction, or the bonus token) -> n."""
        V = self.pool.target.vocab_size
        extra = (int(draft[accepted]) + 1) % V if accepted < len(draft) else int(draft[-1])
        tokens = torch.cat([draft[:accepted], torch.tensor([extra])])
        self.ctx.x[self.L : self.L + len(tokens)] = tokens
        self.L += len(tokens)
        if self.eagle:
            self._features()
        return len(tokens)


def scratch_q(pool, j: int, x: torch.Tensor) -> torch.Tensor:
    """Plain LM j run on x from scratch through transformers -> q (T, V) at positions 1..T."""
    with torch.inference_mode():
        return pool.drafters[j].model(x.view(1, -1)).logits[0].float()


def observe(live: Live, script: Script, rounds: list[tuple[int, int]], chosen=None, drafted=None) -> torch.Tensor:
    """The engine's evaluation of the rounds (L, n) waiting: one call for a group scored by position,
    one per round for a round-aligned one -> q (members, n, V) or by depth (members, n, K, V)."""
    g, L = live.group, rounds[-1][0]
    n = sum(r[1] for r in rounds)
    if len(rounds) == 1 or g.counterfactual in ("positional", "depth1"):
        return g.observe(live.state, script.ctx, L, n, chosen, drafted).logits()
    return torch.cat([g.observe(live.state, script.ctx, Lr, nr, None, None).logits() for Lr, nr in rounds], dim=1)


def check_up_to_date(live: Live, L: int) -> None:
    """After an evaluation: LM members hold all L tokens and q at L; EAGLE-3 heads at most L - 1,
    exactly L - 1 where the evaluation fed them the whole committed prefix (depth1, exact)."""
    for m in range(len(live.group.members)):
        c = consumed(live.state, m)
        if isinstance(live.state, _LMState):
            assert c == L and live.state.ahead_at == L, (m, c, L)
        elif live.group.counterfactual in ("depth1", "exact"):
            assert c == L - 1, (m, c, L)
        else:
            assert c <= L - 1, (m, c, L)


def run_script(pool, groups, member_of: dict[int, int]) -> dict[str, Any]:
    """Drive every group through prefill, draft, observe and settle; check the invariant at each
    step -> what each drafter drafted and observed, by pool index, to compare across groupings."""
    script = Script(pool, pool.tokenizer(TEXT)["input_ids"][:10])
    P = script.L
    lives = [Live.start(g, script.capacity + 2 * K * K) for g in groups]
    seen: dict[str, Any] = {"draft": {}, "observe": {}, "lazy": {}, "next": {}}
    for live in lives:
        live.group.prefill(live.state, script.ctx, P)
        assert [consumed(live.state, m) for m in range(len(live.group.members))] == [P - 1] * len(live.group.members)

    def draft(live: Live, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids, q = live.group.draft(live.state, m, script.ctx, script.L, K, _argmax)
        assert ids.shape == (K,) and q.shape == (K, pool.target.vocab_size)
        assert not q.isnan().any() and q.max(-1).values.isfinite().all()  # EAGLE-3: -inf off its draft vocabulary
        return ids, q

    def score(q: torch.Tensor, n: int, members: int) -> torch.Tensor:
        assert q.shape[:2] == (members, n) and q.shape[-1] == pool.target.vocab_size
        return q if q.dim() == 3 else q[:, :, 0]  # by depth: depth 1 for the comparisons

    # Round 1, evaluated at once: drafter 0's group reuses its draft rows.
    g0 = lives[member_of[0]]
    m0 = g0.group.members.index(0)
    ids, q = draft(g0, m0)
    seen["draft"][0] = (ids, q)
    n = script.commit(ids, 2)
    seen["round1"] = (script.L, n)
    for live in lives:
        mine = live is g0
        rows = observe(live, script, [(script.L, n)], m0 if mine else None, q if mine else None)
        for m, j in enumerate(live.group.members):
            seen["observe"][j] = score(rows, n, len(live.group.members))[m]
        check_up_to_date(live, script.L)

    # Rounds 2 and 3 wait: the chosen member alone is settled, and catches up when it drafts next.
    pending = []
    last = max(member_of)
    for j, accepted in ((last, 1), (last, K)):  # the second round accepts every draft: n = K + 1
        live = lives[member_of[j]]
        m = live.group.members.index(j)
        ids, _ = draft(live, m)
        n = script.commit(ids, accepted)
        pending.append((script.L, n))
        live.group.settle(live.state, m, script.L)
        assert consumed(live.state, m) <= script.L - 1
    n = sum(r[1] for r in pending)
    for live in lives:
        rows = observe(live, script, pending)
        for m, j in enumerate(live.group.members):
            seen["lazy"][j] = score(rows, n, len(live.group.members))[m]
        check_up_to_date(live, script.L)

    # Round 4: every drafter drafts from where the evaluation left it (an LM from the row kept ahead).
    for live in lives:
        for m, j in enumerate(live.group.members):
            seen["next"][j] = draft(live, m)
            live.group.settle(live.state, m, script.L)
            assert consumed(live.state, m) <= script.L - 1
    seen["x"], seen["L"], seen["n"] = script.ctx.x.clone(), script.L, n
    return seen


def where(groups) -> dict[int, int]:
    return {j: gi for gi, g in enumerate(groups) for j in g.members}


def test_every_kind_is_covered_here():
    """A new kind needs its pool in this contract: the groups below are all the registry makes."""
    assert set(KINDS) == {"lm", "eagle3"}


@pytest.mark.parametrize("stack", [True, False])
def test_lm_groups_keep_the_invariant_and_score_as_from_scratch(tiny_pool, stack):
    groups = group_drafters(tiny_pool, stack=stack)
    assert {type(g) for g in groups} == ({StackedGroup, LMGroup} if stack else {LMGroup})
    seen = run_script(tiny_pool, groups, where(groups))
    x, L, n = seen["x"], seen["L"], seen["n"]
    L1, n1 = seen["round1"]
    ids, q = seen["draft"][0]  # drafted at the prompt's end, after the prefill
    want = scratch_q(tiny_pool, 0, torch.cat([x[: L1 - n1], ids[:-1]]))[L1 - n1 - 1 :]
    assert torch.allclose(q, want, atol=1e-4)
    for j in range(len(tiny_pool.drafters)):
        want = scratch_q(tiny_pool, j, x[:L])  # q at positions 1..L
        # Round 1's evaluation (drafter 0's own draft rows reused), then the two waiting rounds'.
        assert torch.allclose(seen["observe"][j], want[L1 - n1 - 1 : L1 - 1], atol=1e-4), j
        assert torch.allclose(seen["lazy"][j], want[L - n - 1 : L - 1], atol=1e-4), j
        # The next draft starts from the row the evaluation left: q at L, then its own drafts.
        ids, q = seen["next"][j]
        want = scratch_q(tiny_pool, j, torch.cat([x[:L], ids[:-1]]))[L - 1 :]
        assert torch.allclose(q, want, atol=1e-4), j


@pytest.mark.parametrize("counterfactual", ["aligned", "depth1", "exact"])
def test_eagle3_groups_keep_the_invariant_and_stacking_changes_no_row(zoo_eagle_pool, counterfactual):
    pool = zoo_eagle_pool
    stacked = group_drafters(pool, counterfactual=counterfactual, K=K)
    single = group_drafters(pool, stack=False, counterfactual=counterfactual, K=K)
    assert [type(g) for g in stacked] == [StackedEagle3Group]
    if counterfactual == "exact":  # runs on stacks: each head a stack of one
        assert [type(g) for g in single] == [StackedEagle3Group] and stacked[0].members == (0, 1, 2)
        single = [StackedEagle3Group([j], [pool.drafters[j]], "exact", K) for j in range(3)]
    else:
        assert {type(g) for g in single} == {Eagle3Group}
    a = run_script(pool, stacked, where(stacked))
    b = run_script(pool, single, where(single))
    assert torch.equal(a["x"], b["x"])  # the same drafts were committed
    for j in range(3):
        for step in ("observe", "lazy"):
            assert torch.allclose(a[step][j], b[step][j], atol=1e-4), (step, j)
        assert torch.equal(a["next"][j][0], b["next"][j][0])
        assert torch.allclose(a["next"][j][1], b["next"][j][1], atol=1e-4)
