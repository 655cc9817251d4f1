"""`hedgespec generate`: decode one prompt with one method and show the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hedgespec_cli.decoding.settings import knob_defaults

_D = knob_defaults()  # help texts read the defaults from the dataclasses (decoding/settings.py)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)


def generate(
    prompt: Annotated[str, typer.Argument(help="Prompt text.")],
    profile: Annotated[str, typer.Option(help="Profile name or YAML path (ignored with --target).")] = "tiny",
    target: Annotated[str | None, typer.Option(
        help="Target checkpoint: a directory, or a Hub id org/name\\[@revision]\\[/subfolder].")] = None,
    drafter: Annotated[list[str] | None, typer.Option(
        help="Drafter as \\[NAME=]PATH or \\[NAME=]org/name\\[@revision]\\[/subfolder]; repeat for a pool.")] = None,
    method: Annotated[str | None, typer.Option(
        help="ar, fixed:NAME, hedgespec, ucbspec, ... \\[default: fixed:<generic drafter>].")] = None,
    K: Annotated[int | None, typer.Option(
        "-K", "--K", help=f"Draft length per round \\[default: profile, else {_D['K']}].")] = None,
    temperature: Annotated[float | None, typer.Option(
        help=f"0 = greedy \\[default: profile, else {_D['temperature']}].")] = None,
    top_p: Annotated[float | None, typer.Option(
        help=f"Nucleus sampling mass (T > 0) \\[default: profile, else {_D['top_p']}].")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        help=f"Tokens to generate at most \\[default: profile, else {_D['max_new_tokens']}].")] = None,
    tree_top_k: Annotated[int | None, typer.Option(
        help="Draft trees: children per node, depth K; 0 = chains"
        f" \\[default: profile, else {_D['tree_top_k']}].")] = None,
    tree_tokens: Annotated[int | None, typer.Option(
        help=f"Draft trees: nodes kept per tree \\[default: profile, else {_D['tree_tokens']}].")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and randomised selectors.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, float16 or bfloat16.")] = None,
    domain: Annotated[str | None, typer.Option(help="Domain label of the prompt (for router-label).")] = None,
    trace: Annotated[Path | None, typer.Option(help="Write a replay trace (every drafter's gamma) here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout instead of text.")] = False,
) -> None:
    """Decode PROMPT and print the text, MAT and tokens/s."""
    from hedgespec_cli.bench.generate import generate_once
    from hedgespec_cli.files import dumps_json, output_file

    if trace is not None:
        output_file(trace, "trace")  # a bad path fails now, not after decoding
    payload = generate_once(
        prompt=prompt, profile=profile, target=target, drafters=drafter or [], method=method,
        K=K, temperature=temperature, top_p=top_p, tree_top_k=tree_top_k, tree_tokens=tree_tokens,
        max_new_tokens=max_new_tokens, seed=seed,
        device=device, dtype=dtype, domain=domain, trace=trace,
    )
    if json_out:
        typer.echo(dumps_json(payload, indent=2))
        return
    _render(payload)


def _render(payload: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    typer.echo(payload["text"])
    table = Table(title=f"{payload['method']} on {payload['profile']}", title_justify="left")
    for col in ("new tokens", "rounds", "MAT (tokens/round)", "tokens/s", "wall (ms)", "stop"):
        table.add_column(col, justify="right")
    table.add_row(
        str(payload["new_tokens"]), str(payload["rounds"]), f"{payload['mat']:.2f}",
        f"{payload['tokens_per_s']:.1f}", f"{payload['wall_ms']:.1f}", payload["stop"],
    )
    phases = "  ".join(f"{k} {v:.1f} ms" for k, v in payload["phase_ms"].items())
    err = Console(stderr=True)
    err.print(table)
    err.print(f"time by phase: {phases}")
    if payload.get("trace"):
        err.print(f"trace written to {payload['trace']}")
