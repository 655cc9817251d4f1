"""`hedgespec profiles` and `hedgespec workloads`: what can be run, one line each."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("profiles")(profiles)
    app.command("workloads")(workloads)


def profiles(
    check: Annotated[str | None, typer.Option(
        help="Dry check of one profile: resolve every checkpoint from disk or the Hugging Face cache "
             "(never downloads) and name what is missing.")] = None,
) -> None:
    """List the profiles (target + drafter pool) found under ./profiles and the repository."""
    if check is None:
        _list("profiles")
        return
    from hedgespec_cli.config import load_profile
    from hedgespec_cli.errors import CheckpointError
    from hedgespec_cli.models.hub import locate_profile

    profile = load_profile(check)
    rows = locate_profile(profile)
    for row in rows:
        located = f"  {row.path}" if str(row.path) != row.ref else ""
        status = f"MISSING: {row.problem}" if row.problem else "ok" + located
        typer.echo(f"{row.role:<12} {row.ref:<58} {status}")
    missing = [r.role for r in rows if r.problem]
    if missing:
        raise CheckpointError(f"profile {profile.name!r}: {len(missing)} of {len(rows)} checkpoints missing "
                              f"({', '.join(missing)}); see the lines above")


def workloads() -> None:
    """List the workloads (prompt sources + schedule) found under ./workloads and the repository."""
    _list("workloads")


def _list(folder: str) -> None:
    from hedgespec_cli.config import find_named, list_named, read_yaml

    for name in list_named(folder):
        data = read_yaml(find_named(name, folder, folder[:-1]), folder[:-1])
        typer.echo(f"{name:<18} {data.get('description', '')}")
