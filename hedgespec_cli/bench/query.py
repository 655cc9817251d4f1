"""One query of any method on a loaded pool: the step `bench`, `--sweep-drafters` and `generate` share.

`run_query` decodes one prompt with `ar` or a registered selector; `QueryStep`
wraps it for a run: the query's sampling seed, the references' hindsight and
the trace a run keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hedgespec_cli.decoding.engine import Engine, QueryRecord
from hedgespec_cli.errors import ConfigError
from hedgespec_cli.models import Pool
from hedgespec_cli.selection.base import SelectorSpec, make_selector, registration
from hedgespec_cli.selection.feedback import QueryContext
from hedgespec_cli.selection.seeding import query_seed
from hedgespec_cli.selection.trace import TraceQuery
from hedgespec_cli.workloads import Prompt


def context_for(
    pool: Pool, K: int, domain: str | None, hindsight: np.ndarray | None = None, prompt_ids: list[int] | None = None
) -> QueryContext:
    """What a selector may know before a query; the classifier's guess only where the pool has one."""
    routed = pool.router.predict(prompt_ids) if pool.router is not None and prompt_ids is not None else None
    return QueryContext(domain, pool.names, pool.domains, K, hindsight, routed)


def needs_hindsight(method: str) -> bool:
    """True for the hindsight references (`oracle`, `oracle-round`), which need the query's gamma."""
    return registration(method).hindsight


def hindsight_pass(engine: Engine, prompt_ids: list[int], domain: str | None) -> QueryRecord:
    """An untimed full-information pass (first drafter chosen): its gamma is the query's hindsight."""
    return run_query(engine, prompt_ids, "fixed:" + engine.pool.names[0], domain=domain, record_gamma=True)


def run_query(
    engine: Engine,
    prompt_ids: list[int],
    method: str,
    *,
    domain: str | None = None,
    seed: int = 0,
    selector=None,
    hindsight: np.ndarray | None = None,
    record_gamma: bool = False,
) -> QueryRecord:
    """Decode one prompt with one method: `ar` or any registered selector.

    A persistent selector (reset: never) is passed in by the caller so it
    keeps its state across queries; otherwise one is built here. Hindsight
    references (`oracle`, `oracle-round`) need the query's gamma: when the
    caller has none, an untimed full-information pass produces it first.
    """
    reg = registration(method)
    if not reg.selects:
        return engine.decode(prompt_ids, record_gamma=False)
    spec = SelectorSpec.parse(method, seed=seed)
    pool = engine.pool
    if selector is None:
        selector = make_selector(spec, len(pool.drafters), pool.names)
    if hindsight is None and reg.hindsight:
        probe = hindsight_pass(engine, prompt_ids, domain)
        hindsight = probe.acceptance
    if pool.router is None and reg.needs_prompt_classifier:  # callers check first (check_router)
        raise ConfigError(f"{method} needs a prompt classifier and this pool has none")
    selector.begin_query(context_for(pool, engine.settings.K, domain, hindsight, prompt_ids))
    record = engine.decode(prompt_ids, selector, record_gamma=record_gamma)
    selector.end_query()
    return record


class QueryStep:
    """One query of a run: reseed, hindsight for the references, decode.

    Common random numbers: every method (and a hindsight probe) starts a prompt
    from the same sampling seed. `trace` maps (query_id, repeat) to the query's
    gamma, recorded by the first full-information method that ran it (or by an
    untimed probe): the hindsight of `oracle` and `oracle-round`, and the run's trace.
    """

    def __init__(self, engine: Engine, seed: int, *, trace: dict[tuple[str, int], TraceQuery] | None = None,
                 energy_mj: Callable[[], float | None] = lambda: None) -> None:
        self.engine, self.seed = engine, seed
        self.trace = trace if trace is not None else {}
        self.energy_mj = energy_mj  # a cumulative energy counter (mJ), None without one

    def __call__(self, method: str, ids: list[int], prompt: Prompt, repeat: int, index: int, selector: Any,
                 keep_trace: bool = True) -> tuple[QueryRecord, float | None]:
        """(QueryRecord, J the GPUs drew during the query or None without an energy counter)."""
        def reseed() -> None:
            self.engine.generator.manual_seed(query_seed(self.seed, repeat, index))

        key = (prompt.id, repeat)
        hindsight = self.trace[key].acceptance if key in self.trace else None
        if hindsight is None and needs_hindsight(method):
            reseed()
            probe = hindsight_pass(self.engine, ids, prompt.domain)
            hindsight = probe.acceptance
            if keep_trace:
                self._keep(key, prompt, index, probe, f"probe:fixed:{self.engine.pool.names[0]}")
        reseed()
        e0 = self.energy_mj()  # around the measured query only, not the hindsight probe
        record = run_query(self.engine, ids, method, domain=prompt.domain, seed=self.seed,
                           selector=selector, hindsight=hindsight)
        e1 = self.energy_mj()
        energy_j = (e1 - e0) / 1e3 if e0 is not None and e1 is not None and e1 >= e0 else None
        if keep_trace:
            self._keep(key, prompt, index, record, method)
        return record, energy_j

    def _keep(self, key: tuple[str, int], prompt: Prompt, index: int, record: QueryRecord, source: str) -> None:
        """The first gamma recorded for a query is its trace, and every later reference's hindsight."""
        if record.gamma is not None and key not in self.trace:
            self.trace[key] = TraceQuery.of_record(prompt.id, prompt.domain, record, index, source)
