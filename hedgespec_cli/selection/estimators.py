"""The one-step counterfactual estimator and the HedgeSpec losses (DESIGN.md section 5).

HedgeSpec (arXiv 2510.20064), for drafter j and a round starting at position s:

    A_s[j] = 1 + sum_{k=1..K} prod_{m=0..k-1} gamma_{s+m}[j]       in [1, K+1]

It reads the K-window gamma[s : s+K]. At T = 0 gamma is the 0/1 argmax-match
indicator and A_s[j] is exactly the number of tokens a round with drafter j
would append (accepted run + the correction/bonus token).

EAGLE-3 heads draft deeper positions from their own hidden state, so their
gamma depends on the depth at which a position is drafted. Every function here
also takes gamma by depth, (L, K, N): G[t, d, j] is drafter j's gamma at
position t drafted at depth d + 1 (by a round starting at t - d), and then

    A_s[j] = 1 + sum_{k=1..K} prod_{m=0..k-1} G[s+m, m, j]

(a (L, N) gamma is the same value at every depth: plain LMs).

Losses, both in [0, 1]:
    TAP  l_s[j] = 1 - gamma_s[j]           (needs gamma_s only: window 1)
    EAL  l_s[j] = 1 - A_s[j] / (K + 1)     (needs the K-window)
"""

from __future__ import annotations

import numpy as np

from hedgespec_cli.selection.base import check_finite


def by_depth(gamma: np.ndarray, K: int) -> np.ndarray:
    """(L, N) gamma -> (L, K, N), the same at every depth; (L, K, N) is returned as float64."""
    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.ndim == 2:
        return np.repeat(gamma[:, None, :], K, axis=1)
    if gamma.ndim != 3 or gamma.shape[1] < K:
        raise ValueError(f"gamma must be (L, N) or (L, K >= {K}, N), got shape {gamma.shape}")
    return gamma[:, :K]


def acceptance_lengths(gamma: np.ndarray, K: int, *, close: bool = False) -> np.ndarray:
    """A_s for positions of a (L, N) (or by depth (L, K, N)) gamma -> (M, N) float64.

    close=False: only positions whose K-window is complete, s = 0..L-K
        (M = max(L - K + 1, 0)).
    close=True: all L positions; windows running past the end of the text are
        closed there (gamma beyond L counts as 0), which is how HedgeSpec
        flushes a query's last positions and also the exact round length at
        T = 0 before the end-of-text cap.
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.ndim not in (2, 3):
        raise ValueError(f"gamma must be (L, N) or (L, K, N), got shape {gamma.shape}")
    check_finite(gamma, "gamma")
    G = gamma if gamma.ndim == 2 else by_depth(gamma, K)  # (L, N): the same at every depth
    N = G.shape[-1]
    if close:
        G = np.concatenate([G, np.zeros((K - 1, *G.shape[1:]))])
    if G.shape[0] < K:
        return np.zeros((0, N))
    M = G.shape[0] - K + 1
    run = np.ones((M, N))  # prod_{m<k} G[s+m, m], grown one k at a time
    A = np.ones((M, N))
    for m in range(K):
        run *= G[m : m + M] if G.ndim == 2 else G[m : m + M, m]
        A += run
    return A


def tap_loss(gamma: np.ndarray) -> np.ndarray:
    """TAP loss 1 - gamma, same shape as gamma."""
    return 1.0 - np.asarray(gamma, dtype=np.float64)


def eal_loss(A: np.ndarray, K: int) -> np.ndarray:
    """EAL loss 1 - A / (K + 1), same shape as A."""
    return 1.0 - np.asarray(A, dtype=np.float64) / (K + 1)


def expected_round_lengths(gamma: np.ndarray, K: int) -> np.ndarray:
    """min(A_s[j], L - s): the tokens a round starting at s with drafter j is expected to
    append, never past the L tokens of the text -> (L, N) float64 (exact for 0/1 gamma)."""
    L = np.asarray(gamma).shape[0]  # (L, N) or by depth (L, K, N)
    return np.minimum(acceptance_lengths(gamma, K, close=True), (L - np.arange(L))[:, None])


def round_lengths(accept: np.ndarray, K: int) -> np.ndarray:
    """n[s, j]: tokens a round starting at s with drafter j appends -> (L, N) int64.

    accept: (L, N) 0/1 acceptance indicators (gamma at T = 0). A round drafts
    at most K tokens, keeps the leading accepted run, adds one target token,
    and never runs past the L tokens of the text. This equals the live
    engine's n for any max_new_tokens >= L (its draft-length cap
    min(K, max_new_tokens - s - 1) never changes n; see replay.py).
    """
    return expected_round_lengths(accept, K).astype(np.int64)  # 1 + min(run, K, L - s - 1)
