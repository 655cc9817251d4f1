"""The loop `bench` and `--sweep-drafters` share: warm-up, one pass over prompts x methods, interrupts.

A bench run is `repeats` passes over one pool; a sweep is one pass per pool
size. Both decode every query through `QueryStep` (query.py).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from hedgespec_cli.bench.query import QueryStep, needs_hindsight
from hedgespec_cli.decoding.engine import QueryRecord
from hedgespec_cli.errors import BenchInterrupted
from hedgespec_cli.report import summary as S
from hedgespec_cli.selection.seeding import SelectorBank
from hedgespec_cli.workloads import Prompt


class Progress(Protocol):
    """Where the run reports progress (the CLI draws rich bars; tests pass nothing)."""

    def start(self, methods: list[str], total: int) -> None: ...

    def advance(self, method: str, query: dict) -> None:
        """One query finished; `query` is its queries.jsonl record."""


class SilentProgress:
    """No progress shown (tests, --quiet)."""

    def start(self, methods: list[str], total: int) -> None:
        pass

    def advance(self, method: str, query: dict) -> None:
        pass


def _in_order(methods: Sequence[str]) -> list[str]:
    """References need the query's gamma, which a full-information method produces first."""
    return sorted(methods, key=needs_hindsight)


def warm_up(step: QueryStep, methods: Sequence[str], prompts: Sequence[Prompt], ids: list[list[int]],
            n: int) -> None:
    """Untimed queries (first-call costs, allocator, caches) on the first n prompts; nothing is kept."""
    order = _in_order(methods)
    for i, p in enumerate(prompts[:n]):
        for m in order:
            step(m, ids[i], p, 0, i, selector=None, keep_trace=False)


def run_pass(step: QueryStep, methods: Sequence[str], prompts: Sequence[Prompt], ids: list[list[int]], repeat: int,
             *, on_query: Callable[[str, dict, QueryRecord], None], on_prompt: Callable[[], None] | None = None,
             done: Container[tuple[str, str, int]] = frozenset()) -> None:
    """One pass (repeat) over the prompts in the workload's order, every method on a prompt before the
    next prompt starts (slow drift of the machine hits all methods alike). `on_query(method, line,
    record)` gets each query's queries.jsonl line as soon as it is measured; `done` are
    (method, query_id, repeat) already measured (a resumed run)."""
    selectors = SelectorBank(step.engine.pool.names, step.seed, repeat)  # `reset: never` methods learn across prompts
    K = step.engine.settings.K
    order = _in_order(methods)
    for i, p in enumerate(prompts):
        for m in order:
            if (m, p.id, repeat) in done:
                continue
            record, energy_j = step(m, ids[i], p, repeat, i, selectors.get(m, i))
            on_query(m, S.query_line(m, p.id, p.domain, repeat, False, record, K, energy_j=energy_j), record)
        if on_prompt is not None:
            on_prompt()


@contextmanager
def saved_on_interrupt(save: Callable[[], object], interrupted: Callable[[], str]) -> Iterator[None]:
    """SIGTERM counts as Ctrl-C; on either, or on any failure, `save()` keeps what was measured on disk.
    An interruption becomes BenchInterrupted(interrupted()), one line and exit 130."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        save()
        raise BenchInterrupted(interrupted()) from None
    except Exception:  # what was measured before the failure stays on disk
        save()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
