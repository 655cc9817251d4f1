"""`hedgespec replay TRACE`: run selectors offline on a recorded gamma trace."""

from __future__ import annotations

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
        from hedgespec_cli.files import dumps_json
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
            typer.echo(dumps_json(payload, indent=2))
        else:
            from rich.console import Console

            from hedgespec_cli.report.replay_tables import replay_tables

            console = Console()
            for part in replay_tables(payload):
                console.print(part)


def live_audit(path: Path, data, seed: int) -> dict | None:
    """A bench run directory's own live methods against their replay (selection/audit.py); None for a bare trace."""
    from hedgespec_cli.selection.audit import audit, live_arms

    run = path if path.is_dir() else path.parent
    queries = run / "queries.jsonl"
    if not queries.is_file() or not (run / "trace.jsonl").is_file():
        return None
    from hedgespec_cli.rundir import read_jsonl  # tolerates the torn last line of an interrupted run

    lines = read_jsonl(queries)
    rounds = run / "rounds.jsonl"
    arms = live_arms(read_jsonl(rounds)) if rounds.is_file() else {}
    return audit(data, lines, seed=seed, live_arms=arms)
