"""Draft trees (EAGLE-2/3 dynamic trees), pure tensor code: growth, masks, verification, gamma.

Notation follows DESIGN.md sections 3-5. A tree hangs under the *root*, the
last committed token x[L-1]; a node at depth d proposes the token at position
L-1+d. Growth (EAGLE-2): the root's `top_k` children form depth 1; at each
further depth the `top_k` best nodes of the previous depth by cumulative
log-probability are *expanded* (fed to the drafter in one call) and each
contributes its `top_k` children; finally the best `total_tokens` nodes by
cumulative log-probability are kept. A child never scores above its parent,
so ordering by (score desc, depth asc) keeps the selection closed under
ancestors.

Verification walks the tree from the root in one pass over the target's
logits at every node. Greedy: follow the child equal to argmax p. Sampling:
the children are deterministic proposals, so each is tried in order with
acceptance probability equal to the target's residual mass on it, the
residual losing that token on a rejection (the multi-draft recursive
rejection sampling EAGLE uses); the output law is exactly p. The
per-position acceptance probability of a node is therefore the target mass
on its children, which is DESIGN.md's tree primitive `gamma_tree`.

`gamma_tree_*` below score a drafter's top_k children at every verified
position, as if no node had been pruned: HedgeSpec (arXiv 2510.20064,
Theorem 2) sums over the children that the drafter's pruned tree keeps,
which needs each drafter's own tree per round. Ours is an UPPER BOUND on
that quantity (every pruned tree's children are among the top_k), and every
report that uses it (acceptance matrix, legend of the methods deciding on
it, replay) says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hedgespec_cli.decoding.settings import TreeShape
from hedgespec_cli.decoding.verify import argmax


@dataclass(frozen=True)
class DraftTree:
    """The nodes kept for verification, parents before children.

    tokens, depths, parents: (T,); parents index into the nodes, -1 for the root.
    scores: (T,) cumulative drafter log-probability.
    q_rows: (1 + F, V) the drafter's logits at the root (row 0) and at each of
        the F expanded nodes; slots: (T,) each node's row there minus one, -1
        for nodes that were not expanded.
    """

    tokens: torch.Tensor
    depths: torch.Tensor
    parents: torch.Tensor
    scores: torch.Tensor
    q_rows: torch.Tensor
    slots: torch.Tensor

    @property
    def size(self) -> int:
        return self.tokens.numel()

    def path_q(self, path: list[int]) -> torch.Tensor:
        """(r, V) drafter logits at the positions the accepted path covers, while known: the root's row,
        then the rows of the path's nodes up to the first one that was not expanded."""
        rows = [0]
        slots = self.slots.tolist()
        for node in path:
            if slots[node] < 0:
                break
            rows.append(1 + slots[node])
        return self.q_rows[rows]

    def ancestry(self) -> torch.Tensor:
        """(T, T) bool: [i, j] = node j is node i or one of its ancestors."""
        return ancestry(self.parents.tolist(), self.tokens.device)

    def children(self) -> list[list[int]]:
        """Per node and for the root (last entry): child indices, best score first."""
        kids: list[list[int]] = [[] for _ in range(self.size + 1)]
        for i, parent in enumerate(self.parents.tolist()):
            kids[parent].append(i)  # parent -1 lands in the root's slot; order is by score already
        return kids


def ancestry(parents: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(T, T) bool self-or-ancestor matrix from parent indices (parents before children, -1 root)."""
    n = len(parents)
    anc = torch.eye(n, dtype=torch.bool, device=device)
    for i, parent in enumerate(parents):
        if parent >= 0:
            anc[i] |= anc[parent]
    return anc


# feed(tokens (m,), depth, parent_slots (m,), visible (m, F + m)) -> logits (m, V).
# The m nodes all sit at `depth`; parent_slots index the F rows fed before
# (-1: the root); visible[i, f] says whether node i attends to fed row f
# (its fed ancestors and itself); the prefix before the tree is always visible.
Feed = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]


def grow_tree(root_logits: torch.Tensor, feed: Feed, depth: int, shape: TreeShape) -> DraftTree:
    """Grow an EAGLE-2 dynamic tree of `depth` levels from the drafter's logits at the root.

    Makes depth - 1 calls to `feed`, each with at most top_k nodes.
    """
    k = shape.top_k
    logp, tok = torch.log_softmax(root_logits.float(), -1).topk(k)
    # Every node grown so far, in creation order.
    tokens, scores = [tok], [logp]
    depths = [torch.ones_like(tok)]
    parents = [torch.full_like(tok, -1)]
    frontier = torch.arange(tok.numel(), device=tok.device)  # node ids expanded next
    fed_nodes: list[int] = []  # node id of each fed row, in feed order
    fed_anc: torch.Tensor | None = None  # (F, F) self-or-ancestor among fed rows
    n_nodes = tok.numel()
    q_rows = [root_logits.view(1, -1)]
    for d in range(2, depth + 1):
        all_tokens, all_scores, all_parents = torch.cat(tokens), torch.cat(scores), torch.cat(parents)
        m, F = frontier.numel(), len(fed_nodes)
        slot_of = {node: f for f, node in enumerate(fed_nodes)}
        front, parent_of = frontier.tolist(), all_parents.tolist()
        parent_slots = torch.tensor([slot_of.get(parent_of[n], -1) for n in front], device=tok.device)
        visible = torch.zeros(m, F + m, dtype=torch.bool, device=tok.device)
        if F:
            has = parent_slots >= 0
            visible[has, :F] = fed_anc[parent_slots[has]]
        visible[:, F:] = torch.eye(m, dtype=torch.bool, device=tok.device)
        logits = feed(all_tokens[frontier], d - 1, parent_slots, visible)  # (m, V)
        q_rows.append(logits)
        fed_nodes.extend(front)
        grown = torch.zeros(F + m, F + m, dtype=torch.bool, device=tok.device)
        if F:
            grown[:F, :F] = fed_anc
        grown[F:] = visible
        fed_anc = grown
        child_logp, child_tok = torch.log_softmax(logits.float(), -1).topk(k)  # (m, k)
        child_scores = (all_scores[frontier][:, None] + child_logp).flatten()
        tokens.append(child_tok.flatten())
        scores.append(child_scores)
        depths.append(torch.full_like(child_tok.flatten(), d))
        parents.append(frontier.repeat_interleave(k))
        frontier = n_nodes + child_scores.topk(min(k, child_scores.numel())).indices
        n_nodes += child_scores.numel()
    slot = dict(zip(fed_nodes, range(len(fed_nodes))))
    return _select(torch.cat(tokens), torch.cat(scores), torch.cat(depths), torch.cat(parents),
                   shape.total_tokens, torch.cat(q_rows), slot)


def _select(tokens, scores, depths, parents, total: int, q_rows: torch.Tensor, slot: dict[int, int]) -> DraftTree:
    """Keep the best `total` nodes (score desc, then depth asc), ordered parents first."""
    s, d, par = scores.tolist(), depths.tolist(), parents.tolist()
    # Lexicographic (score desc, depth asc, id asc): a parent always precedes its children.
    order = sorted(range(len(s)), key=lambda i: (-s[i], d[i], i))[:total]
    # Order the kept nodes by depth (stable in rank) so parents come before children.
    kept = sorted(order, key=lambda i: d[i])
    new_id = {old: new for new, old in enumerate(kept)}
    idx = torch.tensor(kept, device=tokens.device)
    remap = [new_id[par[i]] if par[i] >= 0 else -1 for i in kept]
    slots = [slot.get(i, -1) for i in kept]
    dev = tokens.device
    return DraftTree(tokens[idx], depths[idx], torch.tensor(remap, device=dev), scores[idx], q_rows,
                     torch.tensor(slots, device=dev))


def tree_attention(tree: DraftTree, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask and relative depths for the target pass over [root, nodes...] after `prefix` cached tokens.

    Returns visible (T + 1, prefix + T + 1) bool and depth (T + 1,) with the
    root at depth 0 (positions are root position + depth).
    """
    T = tree.size
    visible = torch.zeros(T + 1, prefix + T + 1, dtype=torch.bool, device=tree.tokens.device)
    visible[:, : prefix + 1] = True  # everything sees the prefix and the root
    visible[1:, prefix + 1 :] = tree.ancestry()
    depth = torch.cat([tree.depths.new_zeros(1), tree.depths])
    return visible, depth


@dataclass(frozen=True)
class TreeVerdict:
    """path: accepted node indices, root to leaf; tokens: (len(path) + 1,) to append."""

    path: list[int]
    tokens: torch.Tensor

    @property
    def accepted(self) -> int:
        return len(self.path)


def verify_tree_greedy(tree: DraftTree, p_logits: torch.Tensor) -> TreeVerdict:
    """T = 0: from the root, follow the child whose token is argmax p; append argmax p where none is.

    p_logits: (T + 1, V) target logits, row 0 the root, row 1 + i node i.
    """
    best = argmax(p_logits).tolist()
    tokens, kids = tree.tokens.tolist(), tree.children()
    path, row, node = [], 0, -1
    while True:
        nxt = next((c for c in kids[node] if tokens[c] == best[row]), None)
        if nxt is None:
            path_tokens = [tokens[i] for i in path] + [best[row]]
            return TreeVerdict(path, torch.tensor(path_tokens, device=p_logits.device))
        path.append(nxt)
        node, row = nxt, nxt + 1


def verify_tree_sampling(tree: DraftTree, p: torch.Tensor, generator: torch.Generator) -> TreeVerdict:
    """T > 0: recursive rejection sampling over deterministic children; the output law is p.

    p: (T + 1, V) processed target probabilities, row 0 the root.
    At a node, child c (best first) is accepted with probability r(c), r the
    residual law (initially p at the node); a rejection sets r(c) = 0 and
    renormalises. When no child is accepted the token is drawn from r.
    """
    tokens, kids = tree.tokens.tolist(), tree.children()
    path, row, node = [], 0, -1
    while True:
        residual = p[row]
        chosen = None
        u = torch.rand(len(kids[node]), generator=generator, device=p.device).tolist()
        for c, ui in zip(kids[node], u):
            if ui < float(residual[tokens[c]]):
                chosen = c
                break
            residual = residual.clone()
            residual[tokens[c]] = 0.0
            mass = residual.sum()
            if mass <= 0:  # the children held all of p's mass; nothing else can be drawn
                break
            residual = residual / mass
        if chosen is None:
            fix = int(torch.multinomial(residual, 1, generator=generator)) if residual.sum() > 0 else tokens[c]
            path_tokens = [tokens[i] for i in path] + [fix]
            return TreeVerdict(path, torch.tensor(path_tokens, device=p.device))
        path.append(chosen)
        node, row = chosen, chosen + 1


def gamma_tree_greedy(p_logits: torch.Tensor, q_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """(n, V), (N, n, V) -> (N, n): 1[argmax p is among drafter j's top_k tokens]."""
    best = argmax(p_logits)  # (n,)
    top = q_logits.topk(top_k, dim=-1).indices  # (N, n, k)
    return (top == best[None, :, None]).any(-1).to(torch.float64)


def gamma_tree_sampling(p: torch.Tensor, q_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """(n, V) probabilities, (N, n, V) drafter logits -> (N, n): p's mass on drafter j's top_k tokens."""
    top = q_logits.topk(top_k, dim=-1).indices  # (N, n, k)
    mass = p.unsqueeze(0).expand(top.shape[0], -1, -1).gather(-1, top)  # (N, n, k)
    return mass.sum(-1).to(torch.float64)
