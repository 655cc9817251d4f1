"""Pure speculative-decoding math on tensors: no models, no I/O, no globals.

Names follow DESIGN.md section 3 and the speculative sampling papers
(Leviathan et al. 2023, Chen et al. 2023): `p` is the target, `q` the
drafter, `k` the number of draft tokens of this round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one draft block.

    accepted: a, the number of leading draft tokens kept (0..k).
    tokens: (a + 1,) the tokens to append: d_1..d_a then the target's
        correction (on a rejection) or bonus token (when all k were kept).
    """

    accepted: int
    tokens: torch.Tensor


def process_logits(logits: torch.Tensor, temperature: float, top_p: float = 1.0) -> torch.Tensor:
    """(T, V) logits -> (T, V) probabilities after temperature and top-p.

    Applied identically to `p` and `q`, so the sampled distribution is the
    processed target distribution, as in transformers' assisted generation.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
    drop = (sorted_p.cumsum(dim=-1) - sorted_p) >= top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return kept / kept.sum(dim=-1, keepdim=True)


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the last dim, the first maximum on ties, like `Tensor.argmax(-1)`.

    Float CPU tensors go through numpy, whose vectorised argmax is faster than
    torch's for rows of a few thousand logits (4096-logit rows here: 3.3 vs
    5.1 us for one row, 4.5 vs 22.5 us for six); it runs for every drafted
    token at T = 0.
    """
    if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.asarray(logits.detach().numpy().argmax(axis=-1)))
    return logits.argmax(dim=-1)


def verify_greedy(draft: torch.Tensor, p_logits: torch.Tensor) -> Verdict:
    """T = 0: accept while d_k == argmax p_k, then append argmax p at the stop.

    draft: (k,) ids; p_logits: (k + 1, V) target logits at the k + 1 positions.
    """
    target = argmax(p_logits)  # (k + 1,)
    k = draft.numel()
    mismatch = (draft != target[:k]).nonzero()
    a = int(mismatch[0]) if mismatch.numel() else k
    return Verdict(a, torch.cat([draft[:a], target[a : a + 1]]))


def verify_sampling(
    draft: torch.Tensor, q: torch.Tensor, p: torch.Tensor, generator: torch.Generator
) -> Verdict:
    """T > 0: speculative sampling with residual resampling.

    draft: (k,) ids drawn from q; q: (k, V) and p: (k + 1, V) processed probabilities.
    Accept d_k with probability min(1, p_k(d_k) / q_k(d_k)); on the first
    rejection sample from norm(max(0, p_k - q_k)); if all are kept, sample the
    bonus from p_{k+1}.
    """
    k = draft.numel()
    idx = torch.arange(k, device=draft.device)
    ratio = p[idx, draft] / q[idx, draft]  # (k,); q(d) > 0 because d was drawn from q
    u = torch.rand(k, generator=generator, device=p.device)
    rejected = (u > ratio).nonzero()
    if not rejected.numel():
        bonus = torch.multinomial(p[k], 1, generator=generator)
        return Verdict(k, torch.cat([draft, bonus]))
    a = int(rejected[0])
    residual = (p[a] - q[a]).clamp_min(0.0)
    mass = residual.sum()
    # p == q at this position leaves no residual mass; then p itself is the law.
    law = residual / mass if mass > 0 else p[a]
    fix = torch.multinomial(law, 1, generator=generator)
    return Verdict(a, torch.cat([draft[:a], fix]))


def gamma_greedy(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """(n, V), (n, V) -> (n,) indicator argmax q == argmax p (DESIGN.md section 5)."""
    return gamma_greedy_at(argmax(p_logits), q_logits)


def gamma_greedy_at(target_tokens: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """`gamma_greedy` given the target's argmax tokens (n,): at T = 0 those are the committed
    tokens themselves, so the engine needs no argmax of p."""
    return (argmax(q_logits) == target_tokens).to(torch.float64)


def gamma_sampling(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(n, V), (n, V) probabilities -> (n,) sum_x min(p, q) = 1 - TV(p, q), in [0, 1].

    The float32 sum of a drafter almost equal to the target overshoots 1 by
    rounding (1.0000001 at V = 4096), which later checks rightly reject.
    """
    return torch.minimum(p, q).sum(dim=-1).to(torch.float64).clamp_(0.0, 1.0)
