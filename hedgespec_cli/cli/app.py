"""The `hedgespec` application: registers each command module, translates errors once."""

from __future__ import annotations

import importlib
import sys

import click
import typer

from hedgespec_cli.errors import HedgespecError

app = typer.Typer(
    name="hedgespec",
    help="Benchmark and profile online drafter selection for speculative decoding.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One module per command (or command group); each exposes register(app).
COMMAND_MODULES = ("generate", "bench", "compare", "catalog", "zoo", "replay", "simulate")

for _name in COMMAND_MODULES:
    importlib.import_module(f"hedgespec_cli.cli.{_name}").register(app)


def main() -> None:
    """Console entry point: one line on stderr and a non-zero exit for user errors."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        rc = app(prog_name="hedgespec", standalone_mode=False)
    except HedgespecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
