"""Per-phase wall time for the decoding loop (DESIGN.md section 7).

The timer sits on the hot path, a handful of calls per SD round, so a lap is
one clock read and one dict update: no context-manager objects, no lists.
On a CUDA device the clock is read after `torch.cuda.synchronize(device)`,
otherwise a phase would be charged for kernels that an earlier phase queued.

    timer = PhaseTimer(device)
    timer.mark()                 # start of the round
    ...draft...;  timer.lap("draft")
    ...verify...; timer.lap("verify")
    timer.totals_ns              # {"draft": 1234567, "verify": 7654321}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _sync_for(device: Any) -> Callable[[], None] | None:
    """`torch.cuda.synchronize(device)` bound once, or None for a CPU device."""
    if device is None:
        return None
    kind = device if isinstance(device, str) else getattr(device, "type", None)
    if isinstance(device, int) or (isinstance(kind, str) and kind.startswith("cuda")):
        import torch  # only GPU runs pay for importing torch here

        def sync() -> None:
            torch.cuda.synchronize(device)

        return sync
    return None


class PhaseTimer:
    """Accumulates nanoseconds per phase name between successive clock marks.

    device: None or a CPU device -> plain `perf_counter_ns`; a CUDA device
    (`torch.device`, "cuda:0" or an index) -> synchronize it before each read.
    """

    __slots__ = ("totals_ns", "_last", "_sync")

    def __init__(self, device: Any = None) -> None:
        self.totals_ns: dict[str, int] = {}
        self._sync = _sync_for(device)
        self._last = self.now()

    def now(self) -> int:
        """The (synchronised) clock in ns; usable alone as the engine's clock."""
        if self._sync is not None:
            self._sync()
        return time.perf_counter_ns()

    def mark(self) -> int:
        """Start timing from here (time since the last mark/lap is discarded)."""
        self._last = self.now()
        return self._last

    def lap(self, phase: str) -> int:
        """Charge the time since the last mark/lap to phase; return those ns."""
        t = self.now()
        dt = t - self._last
        self._last = t
        totals = self.totals_ns
        totals[phase] = totals.get(phase, 0) + dt
        return dt

    def add(self, phase: str, ns: int) -> None:
        """Charge ns measured elsewhere (e.g. CUDA events) to phase."""
        self.totals_ns[phase] = self.totals_ns.get(phase, 0) + ns

    def seconds(self) -> dict[str, float]:
        return {k: v / 1e9 for k, v in self.totals_ns.items()}

    def total_ns(self) -> int:
        return sum(self.totals_ns.values())

    def reset(self) -> None:
        self.totals_ns.clear()
        self.mark()
