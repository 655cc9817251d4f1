"""`hedgespec profiles` and `hedgespec workloads`: what can be run, one line each."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("profiles")(profiles)
    app.command("workloads")(workloads)


def profiles() -> None:
    """List the profiles (target + drafter pool) found under ./profiles and the repository."""
    _list("profiles")


def workloads() -> None:
    """List the workloads (prompt sources + schedule) found under ./workloads and the repository."""
    _list("workloads")


def _list(folder: str) -> None:
    from hedgespec_cli.config import find_named, list_named, read_yaml

    for name in list_named(folder):
        data = read_yaml(find_named(name, folder, folder[:-1]), folder[:-1])
        typer.echo(f"{name:<18} {data.get('description', '')}")
