"""`hedgespec simulate`: drafter selection on synthetic environments (no models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hedgespec_cli.decoding.settings import knob_defaults
from hedgespec_cli.selection.simulate import default_methods

DEFAULT_METHODS = ",".join(default_methods())  # a query over the registry (selection/simulate.py)
_D = knob_defaults()  # K and tokens per prompt as the live commands default them


def _ints(text: str, option: str) -> list[int]:
    from hedgespec_cli.errors import ConfigError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, e.g. 2,4,8 (got {text!r})") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} needs integers >= 1 (got {text!r})")
    return values


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_command(
        preset: Annotated[str, typer.Option(help="Environment: one-good or experts.")] = "one-good",
        n_drafters: Annotated[str, typer.Option("--n-drafters", "-N", help="N, or a sweep: 2,4,8,16,32.")] = "8",
        methods: Annotated[str, typer.Option("--methods", "-m", help="Methods, comma separated.")] = DEFAULT_METHODS,
        seeds: Annotated[int, typer.Option(help="Seeds to average over (0..S-1).")] = 3,
        draft_length: Annotated[int, typer.Option("-K", "--draft-length", help="Draft length K.")] = _D["K"],
        prompts: Annotated[int, typer.Option(help="Prompts per seed.")] = 24,
        tokens: Annotated[int, typer.Option(help="Generated tokens per prompt.")] = _D["max_new_tokens"],
        schedule: Annotated[str, typer.Option(help="Domain schedule: mixed or shift.")] = "mixed",
        domains: Annotated[int | None, typer.Option(help="one-good: number of domains (default 1).")] = None,
        good: Annotated[float | None, typer.Option(help="Acceptance of the good drafter / expert.")] = None,
        gap: Annotated[float | None, typer.Option(help="one-good: how much worse the others are.")] = None,
        generic: Annotated[float | None, typer.Option(help="experts: the generic drafter's acceptance.")] = None,
        off: Annotated[float | None, typer.Option(help="experts: an expert's acceptance off its domain.")] = None,
        model: Annotated[str | None, typer.Option(help="bernoulli (i.i.d.) or markov (runs).")] = None,
        stickiness: Annotated[float | None, typer.Option(help="markov: lag-1 correlation in [0, 1).")] = None,
        save_trace: Annotated[Path | None, typer.Option(help="Write seed 0's trace here (single N).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the payload as JSON to stdout.")] = False,
    ) -> None:
        """Synthetic drafter pools: MAT, regret per round vs the best fixed drafter, shift recovery."""
        from hedgespec_cli.errors import ConfigError
        from hedgespec_cli.files import output_file
        from hedgespec_cli.selection.base import split_methods
        from hedgespec_cli.selection.simulate import make_env, run_simulation, simulate_trace
        from hedgespec_cli.selection.trace import write_trace

        options = {
            "n_domains": domains, "good": good, "gap": gap, "generic": generic, "off": off,
            "model": model, "stickiness": stickiness,
        }
        options = {k: v for k, v in options.items() if v is not None}
        sizes = _ints(n_drafters, "--n-drafters")
        if save_trace is not None:
            if len(sizes) != 1:
                raise ConfigError("--save-trace needs a single --n-drafters value")
            output_file(save_trace, "trace")
            env = make_env(preset, sizes[0], options)
            write_trace(save_trace, simulate_trace(env, K=draft_length, prompts=prompts, tokens=tokens,
                                                   schedule=schedule, seed=0))
        payload = run_simulation(
            preset=preset, n_drafters=sizes, methods=split_methods(methods), seeds=seeds, K=draft_length,
            prompts=prompts, tokens=tokens, schedule=schedule, env_options=options,
        )
        if json_out:
            from hedgespec_cli.files import dumps_json

            typer.echo(dumps_json(payload, indent=2))
        else:
            from rich.console import Console

            from hedgespec_cli.report.simulate_tables import simulate_tables

            console = Console()
            for part in simulate_tables(payload):
                console.print(part)
