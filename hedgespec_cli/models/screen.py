"""The T = 0 question "is argmax_v (h W)_v the token t?" answered from a bfloat16 copy of W.

Full-information feedback at T = 0 needs, for every drafter j and verified
position s, gamma = 1[argmax q_j = t_s]: one bit, but computed from a
projection onto the whole vocabulary. On a CPU that projection is bound by
memory, not arithmetic: a pool of eight 4096 x 128 float32 heads is 16 MiB
read per evaluation call, about two thirds of a tiny-zoo evaluation. The
screen reads a bfloat16 copy instead (half the bytes, and bf16 dot-product
instructions where the CPU has them) and keeps the answer exact:

    l~ = fl_bf16(bf16(h) @ bf16(W))         every logit, approximately
    l_t = h . W[:, t]                        the target token's, in float32
    |l~_v - r_v| <= alpha S + beta |l~_v|    r = h W in exact arithmetic,
    |fl32(h W)_v - r_v| <= delta            S = ||h|| max_v ||W_v|| >= sum_i |h_i W_iv|

with u = 2^-8 (bf16 rounding), alpha = 2u + u^2 + gamma_H (1 + u)^2 (both
operands rounded, float32 accumulation of H exact products), beta =
u / (1 - u) (the output rounded to bf16), gamma_H = H 2^-24 / (1 - H 2^-24)
and delta = gamma_H S (any float32 summation order, the reference matmul's
or ours). With U = max_{v != t} l~_v, and x + beta |x| increasing in x:

    hit   if l_t - 3 delta > U + beta |U| + alpha S   every other token's float32 logit is below t's
    miss  if U - beta |U| - alpha S - delta > l_t + 2 delta   some token's is above

Rows neither decides (about 3% of the tiny zoo's: near ties) are projected in
float32 and their argmax taken, as without the screen. So the answer is the
argmax of float32 logits; where two logits are within float32 rounding of
each other the float32 argmax itself depends on the summation order, with or
without the screen (the reference's batch shape alone changes it).

The bound assumes float32 accumulation, as CPU bf16 matmuls do; `Screen`
checks it on a probe when it is built and stays off where it fails, and the
screen is only built for float32 heads on the CPU (a GPU's bf16 GEMMs may
reduce in lower precision, and its float32 projection is not the bottleneck).
"""

from __future__ import annotations

import platform

import torch

U = 2.0**-8  # bfloat16 unit roundoff (8 significant bits, round to nearest)
TINY = 1e-30  # flush-to-zero of subnormal bf16 inputs, far below any bound here


class Screen:
    """A stack of heads given as rows Wt (N, V, H) float32 (Wt[j, v] = W_j[:, v]) and their bfloat16
    copy; `hits` answers the T = 0 question. Built only where it pays and its bound holds (`build`).
    """

    def __init__(self, Wt: torch.Tensor) -> None:
        self.Wt = Wt  # one token's weights a contiguous row: the exact logits gather rows
        self.W16 = Wt.to(torch.bfloat16)  # (N, V, H): also the layout bf16 GEMMs read fastest
        self.col_max = Wt.norm(dim=-1).amax(dim=-1)  # (N,) max_v ||W[:, v]||
        H = Wt.shape[2]
        self.gamma = H * 2.0**-24 / (1.0 - H * 2.0**-24)
        # 2^-10 of margin for the float32 arithmetic of the tests themselves (S, l_t - U, the bound)
        self.alpha = (2 * U + U * U + self.gamma * (1 + U) ** 2) * (1 + 2.0**-10)
        self.beta = U / (1 - U)
        self.spread = self.alpha + 3 * self.gamma  # alpha S + 3 delta = spread S (+ 3 TINY)

    def extra_bytes(self, *, shared: bool) -> int:
        """Memory the screen adds: its bf16 copy, and the float32 rows unless they are `shared` (a tied head)."""
        rows = 0 if shared else self.Wt.numel() * self.Wt.element_size()
        return rows + self.W16.numel() * self.W16.element_size()

    @staticmethod
    def build(Wt: torch.Tensor) -> Screen | None:
        """A screen for float32 heads (rows Wt (N, V, H)) on the CPU whose bound holds on a probe, else None."""
        # x86 CPUs' bf16 GEMMs accumulate in float32 with round-to-nearest; elsewhere (aarch64 BFDOT may
        # round to odd) the bound is not established, and a GPU's float32 projection is not the bottleneck.
        if Wt.dtype != torch.float32 or Wt.device.type != "cpu" or platform.machine() not in ("x86_64", "AMD64"):
            return None
        screen = Screen(Wt)
        probe = torch.randn(Wt.shape[0], 16, Wt.shape[2], generator=torch.Generator().manual_seed(0))
        return screen if screen.bound_holds(probe) and float32_accumulation(Wt.shape[2]) else None

    def bound_holds(self, h: torch.Tensor) -> bool:
        """Does |l~ - fl32(h W)| stay within alpha S + beta |l~| + delta on h (N, T, H)?"""
        exact = h @ self.Wt.mT
        approx = (h.to(torch.bfloat16) @ self.W16.mT).float()
        S = (h.norm(dim=-1) * self.col_max[:, None]).unsqueeze(-1)
        return bool(((approx - exact).abs() <= self.alpha * S + self.beta * approx.abs() + self.gamma * S + TINY).all())

    @torch.inference_mode()
    def hits(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """h (N, T, H) float32, each member's final hidden states at T positions; target (T,) ->
        (N, T) bool, argmax of the float32 logits h W == target (the first maximum on ties)."""
        N, T, _ = h.shape
        approx = h.to(torch.bfloat16) @ self.W16.mT  # (N, T, V) bf16
        approx.scatter_(-1, target.view(1, T, 1).expand(N, T, 1), float("-inf"))  # t's own entry out
        top = approx.amax(dim=-1).float()  # U: the largest other logit, approximately
        l_t = (h * self.Wt[:, target]).sum(-1)  # (N, T) float32, exact to delta
        S = h.norm(dim=-1) * self.col_max[:, None]
        bound = self._bound(top, S)
        lead = l_t - top  # hit: lead > bound; miss: -lead > bound (module docstring)
        odd = ~torch.isfinite(lead)  # NaN / inf in l_t or U: no bound holds; argmax decides
        hit = lead > bound
        unsure = (lead.abs() <= bound) & ~odd
        if unsure.any():
            hit[unsure] = self._near_ties(h, target, approx, l_t, S, unsure)
        if odd.any():
            for j, s in odd.nonzero().tolist():
                hit[j, s] = (h[j, s] @ self.Wt[j].mT).argmax() == target[s]
        return hit

    def _bound(self, x: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
        """beta |x| + alpha S + 3 delta: the hit and miss tests of the module docstring with their terms
        gathered on one side. A logit whose approximation is x is below l_t if l_t - x exceeds it, above
        if x - l_t does; in between, float32 decides."""
        return self.beta * x.abs() + self.spread * S + 3 * TINY

    def _near_ties(self, h, target, approx, l_t, S, unsure) -> torch.Tensor:
        """The rows the bound leaves open, in float32: t against every token that could beat it (its
        bf16 logit within the bound of l_t, a handful), each token's logit h . W[:, v] summed as l_t's."""
        j, s = unsure.nonzero(as_tuple=True)  # (u,) rows
        rows = approx[j, s].float()  # (u, V), t's own entry -inf
        reach = rows + self._bound(rows, S[j, s][:, None])
        i, v = (reach >= l_t[j, s][:, None]).nonzero(as_tuple=True)  # candidate v of row i
        logit = (h[j[i], s[i]] * self.Wt[j[i], v]).sum(-1)  # (c,) float32
        mine = l_t[j[i], s[i]]
        beats = (logit > mine) | ((logit == mine) & (v < target[s[i]]))  # argmax takes the first maximum
        lost = torch.zeros(j.numel(), dtype=torch.bool, device=h.device)
        lost[i[beats]] = True
        return ~lost


def float32_accumulation(H: int) -> bool:
    """Does this CPU's bf16 matmul add up in float32? Planted cancellation: 1 + (H - 2) c - 1 with
    c = 0.875 2^-8 is (H - 2) c exactly; a bf16 accumulator loses every c against the 1 and gives 0.
    Checked at 1, 16 and 64 rows (the kernel may change with the shape)."""
    c = 0.875 * 2.0**-8
    row = torch.full((H,), c)
    row[0], row[-1] = 1.0, -1.0
    want = (H - 2) * c
    for T in (1, 16, 64):
        got = torch.ones(1, T, H, dtype=torch.bfloat16) @ row.to(torch.bfloat16).view(1, H, 1)
        if not torch.allclose(got.float(), torch.full_like(got.float(), want), rtol=2.0**-7):
            return False
    return True
