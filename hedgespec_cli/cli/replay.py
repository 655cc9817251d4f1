"""`hedgespec replay TRACE`: run selectors offline on a recorded gamma trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

METHODS_HELP = (
    "Methods to replay, comma separated; key=value items continue the method before "
    '(e.g. "hedgespec:learner=hedge,loss=tap,ucbspec,fixed:generic"). Repeatable. '
    "Default: every online method, oracle, oracle-round and fixed:NAME for each drafter."
)


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_command(
        trace: Annotated[Path, typer.Argument(
            help="Gamma trace (.jsonl, schema hedgespec.trace/1), or a bench run directory.")],
        methods: Annotated[list[str] | None, typer.Option("--methods", "-m", help=METHODS_HELP)] = None,
        seed: Annotated[int | None, typer.Option(help="Seed for the selectors (and the T > 0 acceptance draws); "
                                                 "default: the run seed the trace records (else 0), which "
                                                 "seeds each query's selector as the live bench did.")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the payload as JSON to stdout.")] = False,
    ) -> None:
        """Replay drafter selectors on a trace: MAT, regret vs the hindsight oracles, selections."""
        from hedgespec_cli.selection.base import split_methods
        from hedgespec_cli.selection.replay import default_methods, replay, replay_payload
        from hedgespec_cli.selection.trace import read_trace

        data = read_trace(trace)
        names = [m for text in methods for m in split_methods(text)] if methods else default_methods(data.drafters)
        result = replay(data, names, seed=seed)
        payload = replay_payload(result)
        payload["trace"]["path"] = str(trace)
        payload["live"] = live_audit(trace, data, result.seed)
        if json_out:
            typer.echo(json.dumps(payload, indent=2, allow_nan=False))
        else:
            render_replay(payload)


def live_audit(path: Path, data, seed: int) -> dict | None:
    """A bench run directory's own live methods against their replay (selection/audit.py); None for a bare trace."""
    from hedgespec_cli.selection.audit import audit, live_arms

    run = path if path.is_dir() else path.parent
    queries = run / "queries.jsonl"
    if not queries.is_file() or not (run / "trace.jsonl").is_file():
        return None
    from hedgespec_cli.bench.rundir import read_jsonl  # tolerates the torn last line of an interrupted run

    lines = read_jsonl(queries)
    rounds = run / "rounds.jsonl"
    arms = live_arms(read_jsonl(rounds)) if rounds.is_file() else {}
    return audit(data, lines, seed=seed, live_arms=arms)


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def render_replay(payload: dict) -> None:
    """The payload as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = payload["trace"]
    console.print(
        f"[bold]replay[/] {t.get('path', '')}: {t['queries']} queries, {t['tokens']} tokens, "
        f"{len(t['drafters'])} drafters, K={t['K']}, T={t['temperature']}, seed {payload['seed']}"
    )
    main = Table(title="Methods", caption="MAT and regret in tokens/round; regret = per query, the best fixed "
                 "drafter's counterfactual tokens on the method's own rounds minus the method's (it can be > 0 "
                 "for a method that beats every fixed drafter over the whole trace)", caption_justify="left")
    refs = Table(
        title="Regret vs the hindsight references (> 0: worse than the reference)",
        caption="MAT gap in tokens/round; +rounds: extra verification rounds (% of the reference's)",
    )
    for table, cols in (
        (main, ("method", "MAT", "rounds", "accept rate", "regret/round\nvs best fixed")),
        (refs, ("method", "MAT gap\nvs oracle", "+rounds\nvs oracle", "MAT gap vs\noracle-round",
                "+rounds vs\noracle-round")),
    ):
        table.add_column(cols[0], overflow="fold", max_width=24)
        for col in cols[1:]:
            table.add_column(col, justify="right", no_wrap=True)
    for label, m in payload["methods"].items():
        o, r = m["vs_oracle"], m["vs_oracle_round"]
        name = label if m["fidelity"] == "exact" else f"{label} ({m['fidelity']})"
        main.add_row(name, _num(m["mat"]), str(m["rounds"]), _num(m["acceptance_rate"], ".3f"),
                     _num(m["regret_per_round"], "+.3f"))
        refs.add_row(
            name, _num(o["mat_gap"], "+.3f"), f"{o['extra_rounds']:+d} ({o['extra_rounds_pct']:+.0f}%)",
            _num(r["mat_gap"], "+.3f"), f"{r['extra_rounds']:+d} ({r['extra_rounds_pct']:+.0f}%)",
        )
    console.print(main)
    console.print(refs)
    live = payload.get("live")
    if live and live["methods"]:
        draws = "" if live["draws"] == 1 else f" ({live['draws']} seeded acceptance draws per query)"
        lt = Table(title="Replay against the live run of the same methods (this run directory)",
                   caption="MAT in tokens/round; error = replay - live, mean over queries with a 95% "
                   f"bootstrap CI{draws}; differ: queries whose rounds or decisions differ (T = 0)",
                   caption_justify="left")
        lt.add_column("method", overflow="fold", max_width=24)
        for col in ("fidelity", "live\nMAT", "replay\nMAT", "error\n/query", "95% CI", "differ"):
            lt.add_column(col, justify="left" if col == "fidelity" else "right", no_wrap=True)
        for label, a in live["methods"].items():
            e = a["error_per_query"]
            diff = "-" if a["queries_differing"] is None else f"{len(a['queries_differing'])}/{a['queries']}"
            lt.add_row(label, a["fidelity"], _num(a["live_mat"], ".3f"), _num(a["replay_mat"], ".3f"),
                       _num(e["mean"], "+.3f"), f"[{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}]", diff)
        console.print(lt)
        if live["exact_claims_hold"] is False:
            console.print("[bold red]replay claims exactness for a method whose live run it does not reproduce[/]")
    for label, m in payload["methods"].items():
        if m["kind"] == "fixed":
            continue
        freq = Table(title=f"{label}: selection frequency (% of the domain's rounds)")
        freq.add_column("domain")
        for d in t["drafters"]:
            freq.add_column(d, justify="right")
        freq.add_column("MAT", justify="right")
        for domain, row in m["selection_freq"].items():
            freq.add_row(domain, *(f"{100 * row[d]:.0f}" for d in t["drafters"]),
                         _num(m["by_domain"][domain]["mat"]))
        console.print(freq)
    for note in payload["notes"]:
        console.print(f"note: {note}", highlight=False)
