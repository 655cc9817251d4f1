"""The multi-drafter speculative decoding engine (DESIGN.md sections 3 and 5).

One loop serves every method. Per round: the chooser picks drafter i, i drafts
k tokens (a chain) or a tree of depth k (decoding/tree.py), the target verifies
them in one forward, the verified tokens are appended and every cache is
rolled back (for a tree: compacted) to the verified prefix. With
full-information feedback the verified tokens are then prefilled into every
drafter (each needs them to draft next anyway), which yields every drafter's
`gamma` at every verified position without another target call.

Cache invariant: between rounds every up-to-date model has seen all committed
tokens but the last, so a round feeds `x[L-1]` plus its drafts. A drafter
that fell behind (bandit methods do not evaluate the drafters they did not
choose) catches up in the same forward as its first draft step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from hedgespec_cli.decoding.drafters import Live, Prefix
from hedgespec_cli.decoding.kinds import group_drafters
from hedgespec_cli.decoding.qrows import Logits, QRows
from hedgespec_cli.decoding.settings import DecodeSettings
from hedgespec_cli.decoding.tree import (
    DraftTree,
    gamma_tree_greedy,
    gamma_tree_sampling,
    tree_attention,
    verify_tree_greedy,
    verify_tree_sampling,
)
from hedgespec_cli.decoding.verify import (
    argmax,
    gamma_sampling,
    process_logits,
    verify_greedy,
    verify_sampling,
)
from hedgespec_cli.errors import ConfigError, WorkloadError
from hedgespec_cli.models import Pool
from hedgespec_cli.models.eagle3 import feature_layers
from hedgespec_cli.selection.feedback import BanditFeedback, Decision, FullFeedback
from hedgespec_cli.telemetry.timers import PhaseTimer

PHASES = ("prefill", "draft", "verify", "evaluate", "learn", "other")
RECORD_EVERY = 16  # rounds per evaluation when a bandit's run records gamma for its trace


class Chooser(Protocol):
    """What the loop needs from a selector: a choice per round, feedback after it.

    needs_block_reward: True asks for MetaSD's block divergence in
    BanditFeedback (left None otherwise: it is not free).
    wants_feedback: with full feedback, whether to evaluate the drafters after
    this round (else the round waits for a later evaluation, and the chosen
    drafter catches up when it drafts next); always after the query's last.
    reads_prompt: with full feedback, whether `observe_prompt` can change what
    it plays (else the prompt is scored for the trace alone, off the clock).
    carries_over: with full feedback, whether what it learns after a query's
    last round can change a later decision (a learner kept across queries;
    else that evaluation is for the trace alone, off the clock). Both are
    optional: a chooser without them is taken to read and keep everything,
    and pays for it.
    """

    needs_full_feedback: bool
    needs_block_reward: bool

    def choose(self, position: int) -> Decision: ...

    def update(self, feedback: FullFeedback | BanditFeedback) -> None: ...

    def wants_feedback(self, waiting: int) -> bool: ...

    def observe_prompt(self, gamma: np.ndarray) -> None:
        """Every drafter's gamma on the prompt (P-1, N), before the first round; called on
        full-information choosers only (a bandit must not see drafters it did not run)."""
        ...


@dataclass(frozen=True)
class RoundRecord:
    """One round. drafter is None for plain decoding; accepted = a, the draft tokens kept.

    drafted: draft tokens on the longest path the target could accept (the
    chain length, or the tree depth); tree_nodes: tokens a tree sent to the
    target (0 for chains).
    decision: the chooser's Decision (arm, probs, weights); None for ar.
    """

    drafter: int | None
    n: int
    drafted: int
    accepted: int
    draft_ns: int
    verify_ns: int
    evaluate_ns: int
    learn_ns: int
    other_ns: int
    decision: Decision | None = None
    tree_nodes: int = 0

    @property
    def accept_flags(self) -> list[bool]:
        """Per drafted position: kept or not (positions after the first rejection are absent)."""
        return [True] * self.accepted + ([False] if self.accepted < self.drafted else [])


@dataclass
class QueryRecord:
    """Everything measured while decoding one prompt."""

    prompt_len: int
    output_ids: list[int]
    rounds: list[RoundRecord]
    gamma: np.ndarray | None  # (L, N) per generated token, full-information runs only
    phase_ns: dict[str, int] = field(default_factory=dict)
    wall_ns: int = 0
    stop: str = "length"
    gamma_depth: np.ndarray | None = None  # (L, K, N) by drafting depth (EAGLE-3 exact mode), else None
    prompt_gamma: np.ndarray | None = None  # (P-1, N) on the prompt, teacher-forced (Engine._prompt_gamma)

    @property
    def new_tokens(self) -> int:
        return count_new_tokens(self.rounds)

    @property
    def acceptance(self) -> np.ndarray | None:
        """What the estimators read: gamma by depth when recorded, else gamma (as TraceQuery.acceptance)."""
        return self.gamma if self.gamma_depth is None else self.gamma_depth

    @property
    def mat(self) -> float:
        """Mean accepted tokens per round, bonus included (MAT; 1.0 for plain decoding)."""
        return self.new_tokens / len(self.rounds)

    @property
    def tokens_per_s(self) -> float:
        """New tokens over the whole query's wall time, prefill included."""
        return self.new_tokens / (self.wall_ns / 1e9)


@dataclass(frozen=True)
class _Verified:
    """A round awaiting evaluation: its drafter, the committed length after it (L) and its
    n tokens, the drafter's q logits at the drafted positions and the target's p at the n."""

    arm: int
    L: int
    n: int
    q_logits: torch.Tensor | None
    p_logits: torch.Tensor


def count_new_tokens(rounds: list[RoundRecord]) -> int:
    """The one token count used for every method: tokens appended, after EOS/length cuts."""
    return sum(r.n for r in rounds)


class Engine:
    """Decodes prompts with the target and a drafter pool; one instance per loaded pool."""

    def __init__(self, pool: Pool, settings: DecodeSettings, *, seed: int = 0, stack_drafters: bool = True) -> None:
        self.pool = pool
        self.settings = settings
        if settings.tree is not None and settings.tree.top_k > pool.target.vocab_size:
            raise ConfigError(f"tree top_k {settings.tree.top_k} exceeds the vocabulary of {pool.target.vocab_size} "
                              "tokens; pass a smaller --tree-top-k")
        # Same-shape plain-Llama drafters are stacked and evaluated in one call.
        mode = settings.counterfactual if settings.tree is None else "aligned"  # trees score top-k children
        self.groups = group_drafters(pool, stack=stack_drafters, counterfactual=mode, K=settings.K,
                                     greedy=settings.greedy)
        self._by_depth = any(g.counterfactual == "exact" for g in self.groups)
        self._scores_prompt = all(g.scores_prompt for g in self.groups)  # a prompt gamma needs every drafter's q
        self._where = {j: (gi, m) for gi, g in enumerate(self.groups) for m, j in enumerate(g.members)}
        # Per drafter, how full-information feedback scores it (selection/trace.py COUNTERFACTUALS).
        self.counterfactual = tuple(self.groups[self._where[j][0]].counterfactual for j in range(len(pool.drafters)))
        # EAGLE-3 heads read the target's hidden states at three layers (DESIGN.md section 4).
        self._fused, self._feat_width = None, 0
        if any(g.needs_target_features for g in self.groups):
            config = pool.target.model.config
            self._fused = feature_layers(pool, config.num_hidden_layers)
            self._feat_width = 3 * config.hidden_size
        self.device = pool.target.device
        # Each group's rows of gamma, as a device tensor once (a list index would copy host to device every round).
        self._rows = [torch.tensor(g.members, device=self.device) for g in self.groups]
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.eos = pool.tokenizer.eos_token_id if settings.stop_at_eos else None
        # perf_counter_ns, synchronised with the device first when it is a GPU.
        self._now = PhaseTimer(self.device).now
        self._warned: set[str] = set()  # drafters already warned about running past their trained context

    @property
    def n_drafters(self) -> int:
        return len(self.pool.drafters)

    def decode(
        self, prompt_ids: list[int], chooser: Chooser | None = None, *, record_gamma: bool = False
    ) -> QueryRecord:
        """Decode one prompt. chooser None is plain autoregressive decoding (`ar`).

        record_gamma forces full-information evaluation (for traces) even when
        the chooser is a bandit; its evaluations are then part of the measured
        time (they also bring the drafter it plays up to date), its prompt's
        scoring is not. Work that only the trace reads is off the clock: the
        prompt's scores for a chooser that does not `reads_prompt`, and the
        evaluation after the last round for one that does not `carries_over`.
        """
        s, pool, now = self.settings, self.pool, self._now
        self.check_prompt(prompt_ids)
        spec = chooser is not None
        full = spec and (record_gamma or chooser.needs_full_feedback)
        P = len(prompt_ids)
        x = torch.zeros(P + s.max_new_tokens + s.K + 1, dtype=torch.long, device=self.device)
        x[:P] = torch.tensor(prompt_ids, dtype=torch.long)

        ctx = Prefix(x, x.new_empty(x.numel(), self._feat_width, dtype=torch.float32) if self._fused else None)
        t_start = now()
        t_cache = pool.target.new_cache()
        # Full-information runs score every drafter on the prompt, (P-1, V) target logits at positions
        # 1..P-1: on the clock when the chooser learns from them, else for the trace alone (below).
        scored = full and P > 1 and self._scores_prompt
        reads = scored and chooser.needs_full_feedback and getattr(chooser, "reads_prompt", True)
        p_prompt = self._target(ctx, 0, P - 1, t_cache, last=None if reads else 0) if P > 1 else None
        extra = s.tree.fed_rows(s.K) if s.tree else 0  # drafter rows a growing tree occupies
        if self._by_depth:  # the exact counterfactual's chains: at most 2K rows per depth, K depths
            extra = max(extra, 2 * s.K * s.K)
        live = [Live.start(g, x.numel() + extra) for g in self.groups]  # the groups with this query's caches
        prompt_gamma = None
        if full:  # bandit methods prefill a drafter only when they first choose it
            q_prompt = [run.group.prefill(run.state, ctx, P, rows=reads) for run in live]
            if reads:
                prompt_gamma = self._prompt_gamma(p_prompt, q_prompt)
                chooser.observe_prompt(prompt_gamma)
            elif scored:  # the trace's copy (replay of a method that reads it): its time is taken off the clock
                t_off = now()
                p_trace = pool.target.forward(ctx.x[: P - 1], pool.target.new_cache()).logits
                q_trace = [q if q is not None else g.prefill(g.new_state(P), ctx, P, rows=True)
                           for g, q in zip(self.groups, q_prompt)]  # a fresh call where the prefill kept none
                prompt_gamma = self._prompt_gamma(p_trace, q_trace)
                t_start += now() - t_off
        phase = dict.fromkeys(PHASES, 0)
        t0 = now()  # end of the previous step: `other` is the gap since then
        phase["prefill"] = t0 - t_start

        # Full information: rounds verified since the drafters were last evaluated. When the
        # chooser lets them wait, one evaluation call scores them all. A bandit's trace
        # (record_gamma) is scored every RECORD_EVERY rounds and after the last.
        asks = spec and chooser.needs_full_feedback
        pending: list[_Verified] = []
        L, rounds, gammas, depths, stop = P, [], [], [], "length"
        while L - P < s.max_new_tokens:
            k = min(s.K, s.max_new_tokens - (L - P) - 1) if spec else 0
            decision = chooser.choose(L - P) if spec else None
            arm = decision.arm if spec else None
            t1 = now()
            draft = self._draft(live, arm, ctx, L, k)
            t2 = now()
            tokens, a, p_logits, q_logits = self._check(draft, ctx, L, t_cache)
            tokens, stop = self._cut(tokens, s.max_new_tokens - (L - P))
            n = tokens.numel()
            a = min(a, n)  # drafts accepted after an EOS are not appended
            x[L : L + n] = tokens
            L += n
            t_cache.crop(L - 1)
            t3 = now()
            gamma = depth = None
            if full:
                pending.append(_Verified(arm, L, n, q_logits, p_logits[:n]))
                last = stop == "eos" or L - P >= s.max_new_tokens
                # A bandit's trace is scored every RECORD_EVERY rounds: one call for the
                # whole query would hold (N, n, V) logits at once.
                due = chooser.wants_feedback(len(pending)) if asks else len(pending) >= RECORD_EVERY
                if last or due:
                    gamma, depth = self._evaluate(pending, live, ctx, P)
                    gammas.append(gamma)
                    depths.append(depth)
                    pending = []
                else:  # the chosen drafter alone is rolled back; it catches up when it drafts
                    self._settle(live, arm, L)
            elif spec:
                self._settle(live, arm, L)
            t4 = now()
            if spec and (gamma is not None or not chooser.needs_full_feedback):
                chooser.update(self._feedback(chooser, arm, gamma, depth, n, k, q_logits, p_logits))
            t5 = now()
            evaluate_ns, learn_ns = t4 - t3, t5 - t4
            if asks and gamma is not None and last and not getattr(chooser, "carries_over", True):
                # What a chooser learns after the query's last round dies with it (a learner not kept
                # across queries): that evaluation serves the trace alone and is taken off the clock.
                t_start += evaluate_ns + learn_ns
                evaluate_ns = learn_ns = 0
            nodes = draft.size if isinstance(draft, DraftTree) else 0
            rounds.append(RoundRecord(arm, n, k, a, t2 - t1, t3 - t2, evaluate_ns, learn_ns, t1 - t0, decision, nodes))
            t0 = t5
            if stop == "eos":
                break

        wall = now() - t_start
        for r in rounds:
            phase["draft"] += r.draft_ns
            phase["verify"] += r.verify_ns
            phase["evaluate"] += r.evaluate_ns
            phase["learn"] += r.learn_ns
        phase["other"] = wall - sum(phase.values())
        gamma_all = np.concatenate(gammas) if full else None
        depth_all = np.concatenate(depths) if full and self._by_depth else None
        return QueryRecord(P, x[P:L].tolist(), rounds, gamma_all, phase, wall, stop, depth_all, prompt_gamma)

    # -- the steps of a round -------------------------------------------------

    def _draft(self, live: list[Live[Any]], arm: int | None, ctx: Prefix, L: int, k: int) -> tuple | DraftTree | None:
        """The chosen drafter proposes: (ids (k,), q logits (k, V)) for a chain, a DraftTree, or None (k = 0)."""
        if not k:
            return None
        gi, member = self._where[arm]
        run = live[gi]
        if self.settings.tree is not None:
            return run.group.draft_tree(run.state, member, ctx, L, k, self.settings.tree)
        draft, q_logits = run.group.draft(run.state, member, ctx, L, k, self._pick)
        ctx.x[L : L + k] = draft  # scratch: overwritten by the verified tokens
        return draft, q_logits

    def _check(self, draft, ctx: Prefix, L: int, cache) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]:
        """One target pass verifies the draft -> tokens to append, a, p logits and q logits at the
        verified positions (the accepted path for a tree: the target cache is compacted to it)."""
        if isinstance(draft, DraftTree):
            return self._check_tree(draft, ctx, L, cache)
        ids, q_logits = draft if draft is not None else (ctx.x.new_empty(0), None)
        p_logits = self._target(ctx, L - 1, L + ids.numel(), cache)  # (k + 1, V)
        tokens, a = self._verify(ids, q_logits, p_logits)
        return tokens, a, p_logits, q_logits

    def _check_tree(self, tree: DraftTree, ctx: Prefix, L: int, cache) -> tuple:
        """[root x[L-1], nodes...] in one masked target pass; walk the tree; keep the accepted path's KV."""
        visible, depth = tree_attention(tree, L - 1)
        ids = torch.cat([ctx.x[L - 1 : L], tree.tokens])
        out = self.pool.target.forward(ids, cache, hidden=self._fused is not None,
                                       positions=depth + (L - 1), visible=visible)
        s = self.settings
        if s.greedy:
            verdict = verify_tree_greedy(tree, out.logits)
        else:
            verdict = verify_tree_sampling(tree, process_logits(out.logits, s.temperature, s.top_p), self.generator)
        rows = [0] + [1 + i for i in verdict.path]  # the root, then the accepted nodes
        cache.keep(L - 1, [L - 1 + r for r in rows])
        if self._fused is not None:
            ctx.feats[L - 1 : L - 1 + len(rows)] = torch.cat([out.hidden[i][rows] for i in self._fused], dim=-1).float()
        return verdict.tokens, verdict.accepted, out.logits[rows], tree.path_q(verdict.path)

    def _target(self, ctx: Prefix, a: int, b: int, cache, last: int | None = None) -> torch.Tensor:
        """Target forward over x[a:b] -> logits (b - a, V) (the last `last` rows only when given);
        stores EAGLE-3 features when needed.

        The fused features come from the same pass (hidden states at the heads'
        layers, by default 2, L/2 and L-3): no extra target call.
        """
        out = self.pool.target.forward(ctx.x[a:b], cache, hidden=self._fused is not None, last=last)
        if self._fused is not None:
            ctx.feats[a:b] = torch.cat([out.hidden[i] for i in self._fused], dim=-1).float()
        return out.logits

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """(V,) drafter logits -> (1,) draft token: argmax at T = 0, else a processed sample."""
        s = self.settings
        if s.greedy:
            return argmax(logits).view(1)
        law = process_logits(logits.view(1, -1), s.temperature, s.top_p)[0]
        return torch.multinomial(law, 1, generator=self.generator)

    def _verify(
        self, draft: torch.Tensor, q_logits: torch.Tensor | None, p_logits: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        s = self.settings
        if s.greedy:
            verdict = verify_greedy(draft, p_logits)
        else:
            p = process_logits(p_logits, s.temperature, s.top_p)
            q = process_logits(q_logits, s.temperature, s.top_p) if q_logits is not None else p[:0]
            verdict = verify_sampling(draft, q, p, self.generator)
        return verdict.tokens, verdict.accepted

    def _cut(self, tokens: torch.Tensor, remaining: int) -> tuple[torch.Tensor, str]:
        """Stop at EOS (kept) and at max_new_tokens."""
        if self.eos is not None:
            hits = (tokens == self.eos).nonzero()
            if hits.numel() and int(hits[0]) < remaining:
                return tokens[: int(hits[0]) + 1], "eos"
        return tokens[:remaining], "length"

    def _settle(self, live: list[Live[Any]], arm: int, L: int) -> None:
        """Roll the drafter that drafted back to the cache invariant; the others did not move."""
        gi, member = self._where[arm]
        live[gi].group.settle(live[gi].state, member, L)

    def _evaluate(
        self, pending: list[_Verified], live: list[Live[Any]], ctx: Prefix, P: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Bring every drafter up to date with the rounds in `pending` (n tokens in all, committed
        length now L) -> gamma (n, N) and, when a group scores by depth (EAGLE-3 exact mode),
        gamma by depth (n, K, N), else None.

        A group whose q at a position depends on the committed prefix alone
        (plain LMs; EAGLE-3 heads in depth1 mode) scores all n positions in
        one call; a round-aligned one (aligned, exact) scores the rounds one
        by one, as its counterfactual starts at each round. A chosen drafter
        reuses the q rows it computed while drafting when the evaluation
        covers its round alone. By depth, entry [i, d] is position L-n+i
        drafted at depth d+1, by a round starting at L-n+i-d; entries whose
        start precedes the first new token P are 0 (no round starts there;
        the estimators never read them).
        """
        s = self.settings
        tree = s.tree
        L, n = pending[-1].L, sum(r.n for r in pending)
        # The target's side once per evaluation, where it is read (trees, T > 0; a chain at T = 0 reads
        # only the committed tokens, the argmax of p); each group's q rows are scored as they come.
        p_side = None
        if tree is not None or not s.greedy:
            p_logits = pending[0].p_logits if len(pending) == 1 else torch.cat([r.p_logits for r in pending])
            p_side = p_logits if s.greedy else process_logits(p_logits, s.temperature, s.top_p)
        K = s.K
        gamma = torch.empty(self.n_drafters, n, K, dtype=torch.float64, device=self.device)  # where the drafters are
        one = pending[0] if len(pending) == 1 else None  # a lone round: its drafter's rows can be reused
        g_chosen, m_chosen = self._where[one.arm] if one is not None else (-1, None)
        tokens = ctx.x[L - n : L]
        for gi, run in enumerate(live):
            g, state = run.group, run.state
            mine = gi == g_chosen
            if one is not None or g.by_position:
                q = g.observe(state, ctx, L, n, m_chosen if mine else None, one.q_logits if mine else None)
            else:  # round-aligned counterfactuals: one round at a time
                q = Logits(torch.cat([g.observe(state, ctx, r.L, r.n, None, None).logits() for r in pending], dim=1))
            if g.counterfactual == "exact":  # (m, n, K): every position at every drafting depth
                prim = self._chain_gamma(q, tokens, p_side)
            elif tree is not None:  # the target's mass on each drafter's top_k children (DESIGN.md section 5)
                gamma_tree = gamma_tree_greedy if s.greedy else gamma_tree_sampling
                prim = gamma_tree(p_side, q.logits(), tree.top_k).unsqueeze(-1).expand(-1, n, K)
            else:
                prim = self._chain_gamma(q, tokens, p_side).unsqueeze(-1).expand(-1, n, K)
            gamma[self._rows[gi]] = prim.to(torch.float64)
        if not self._by_depth:
            return gamma[:, :, 0].T.cpu().numpy(), None  # (n, N)
        starts = (L - n + torch.arange(n, device=self.device))[:, None] - torch.arange(K, device=self.device)
        gamma[:, starts < P] = 0.0  # no round starts before the first new token
        depth = gamma.permute(1, 2, 0).cpu().numpy()  # (n, K, N)
        return depth[:, 0].copy(), depth

    def _prompt_gamma(self, p_logits: torch.Tensor, q_prompt: list[Any]) -> np.ndarray:
        """Every drafter's gamma on the prompt's own positions 1..P-1, (P-1, N), from the rows the
        target's and the drafters' prefill computed anyway (`QRows` per group): at T = 0,
        1[argmax q_j = argmax p] (the target's own next token there, not the prompt's); at T > 0,
        sum min(p, q_j). Teacher-forced on a prefix the target read rather than wrote, chain-scored
        even with trees. Only where every group `scores_prompt` (not EAGLE-3 heads: no prefill logits).
        """
        s = self.settings
        gamma = torch.empty(self.n_drafters, p_logits.shape[0], dtype=torch.float64, device=self.device)
        p_side = p_logits if s.greedy else process_logits(p_logits, s.temperature, s.top_p)
        target = argmax(p_logits)  # (P-1,)
        for rows, q in zip(self._rows, q_prompt):
            gamma[rows] = self._chain_gamma(q, target, p_side).to(torch.float64)  # (m, P-1)
        return gamma.T.cpu().numpy()

    def _chain_gamma(self, q: QRows, target: torch.Tensor, p_side: torch.Tensor | None) -> torch.Tensor:
        """q of m drafters at T positions -> (m, T) gamma (DESIGN.md section 5): at T = 0
        1[argmax q = target] (the target's argmax there; a group may answer it without its
        logits, decoding/qrows.py), else sum min(p, q) with p_side the target's processed law (T, V)."""
        s = self.settings
        if s.greedy:
            return q.hits(target).to(torch.float64)
        if p_side is None:
            raise ValueError("gamma at T > 0 needs the target's processed law")
        logits = q.logits()  # (m, T, V), or by depth (m, T, K, V)
        p = p_side if logits.dim() == 3 else p_side.unsqueeze(1)
        return gamma_sampling(p.unsqueeze(0), process_logits(logits, s.temperature, s.top_p))

    def _feedback(
        self,
        chooser: Chooser,
        arm: int,
        gamma: np.ndarray | None,
        depth: np.ndarray | None,
        n: int,
        k: int,
        q_logits: torch.Tensor | None,
        p_logits: torch.Tensor,
    ) -> FullFeedback | BanditFeedback:
        if chooser.needs_full_feedback:
            return FullFeedback(gamma, arm, self.settings.K, depth)
        reward = self._block_reward(q_logits, p_logits, k) if chooser.needs_block_reward else None
        return BanditFeedback(arm, n, k, self.settings.K, reward)

    def _block_reward(self, q_logits: torch.Tensor | None, p_logits: torch.Tensor, k: int) -> float:
        """MetaSD's block divergence reward: the mean of 1 - TV(p, q) over the drafted positions
        (a tree: the positions of the verified path where its drafter's q is known).

        At T = 0 the distributions are the temperature-1 softmaxes (one-hot
        processing would reduce the divergence to the acceptance indicator).
        """
        if not k or q_logits is None:
            return 0.0
        m = min(len(q_logits), len(p_logits))
        t = self.settings.temperature or 1.0
        top_p = self.settings.top_p if self.settings.temperature else 1.0
        p = process_logits(p_logits[:m], t, top_p)
        q = process_logits(q_logits[:m], t, top_p)
        return float(gamma_sampling(p, q).mean())

    def check_prompt(self, prompt_ids: list[int]) -> None:
        """Raise WorkloadError unless the prompt fits: non-empty, and within every model's context."""
        if not prompt_ids:
            raise WorkloadError("empty prompt: every prompt needs at least one token")
        limits = [lm.max_positions for lm in (self.pool.target, *self.pool.drafters)]
        limit = min((m for m in limits if m is not None), default=None)
        need = len(prompt_ids) + self.settings.max_new_tokens + self.settings.K + 1
        for d in self.pool.drafters:  # a head trained shorter still runs (rotary positions extend): say so once
            trained = getattr(d, "trained_positions", None)
            if trained is not None and need > trained and d.name not in self._warned:
                self._warned.add(d.name)
                print(f"warning: drafter {d.name!r} was trained on contexts of {trained} tokens; this run reaches "
                      f"{need} (its rotary embedding extends, its acceptance may drop beyond {trained})",
                      file=sys.stderr)
        if limit is not None and need > limit:
            raise WorkloadError(
                f"prompt of {len(prompt_ids)} tokens + max_new_tokens {self.settings.max_new_tokens} "
                f"+ K {self.settings.K} + 1 exceeds the models' context of {limit} tokens; "
                "shorten the prompt or lower --max-new-tokens or -K"
            )
