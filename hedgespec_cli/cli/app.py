"""The `hedgespec` application: registers each command module, translates errors once."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from hedgespec_cli.errors import HedgespecError

app = typer.Typer(
    name="hedgespec",
    help="Benchmark and profile online drafter selection for speculative decoding.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from hedgespec_cli import __version__

        print(f"hedgespec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Benchmark and profile online drafter selection for speculative decoding."""

# One module per command (or command group); each exposes register(app).
COMMAND_MODULES = ("generate", "bench", "compare", "catalog", "zoo", "replay", "simulate")

for _name in COMMAND_MODULES:
    importlib.import_module(f"hedgespec_cli.cli.{_name}").register(app)


def _usage_error_type() -> type[Exception]:
    """The base of the parser's usage errors: typer >= 0.29 runs a bundled copy of click
    whose exceptions derive from `typer.TyperException`, older typer runs click itself."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException
    import click

    return click.ClickException


def main() -> None:
    """Console entry point: one line on stderr and a non-zero exit for user errors."""
    usage_error = _usage_error_type()
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        rc = app(prog_name="hedgespec", standalone_mode=False)
    except HedgespecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except typer.Exit as stop:
        sys.exit(stop.exit_code)
    except usage_error as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help was the answer
            err.show()
            sys.exit(0)
        ctx = getattr(err, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {err.format_message()}{where}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
