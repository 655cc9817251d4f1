"""`hedgespec compare BASE CAND [CAND ...]`: did the candidate runs get slower?
`hedgespec calibrate RUN RUN [RUN ...]`: how far does identical code drift here?

Exit codes: 0 no failing regression, 1 a `--fail-on` rule failed, 2 unusable
input (raised as HedgespecError and printed as one line by the app).
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hedgespec_cli.report.compare import DEFAULT_DRIFT


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    github = "github"


FAIL_ON_HELP = (
    "Fail (exit 1) when METRIC changes beyond THRESHOLD and the change is significant, e.g. "
    "speedup_vs_ar:-5% or eval_overhead_frac:+10%. Repeatable. Metrics: tokens_per_s, mat, "
    "acceptance_rate, eval_overhead_frac, speedup_vs_ar. A change that cannot be tested "
    "(e.g. no queries.jsonl) fails on the threshold alone."
)
NOISE_HELP = (
    "Noise file from `hedgespec calibrate`: timing changes (tokens/s, speedup vs ar, eval overhead) are "
    "significant only beyond the drift that identical runs showed on this machine [default: bands of {bands}]."
)


def _write(output: Path, data: Any) -> None:
    from hedgespec_cli.files import write_output

    write_output(output, data)
    print(f"wrote {output}", file=sys.stderr)


def compare(
    base: Annotated[
        Path,
        typer.Argument(metavar="BASE", help="Base run directory (or its results.json).", show_default=False),
    ],
    cands: Annotated[
        list[Path],
        typer.Argument(metavar="CAND...", help="Candidate run directories.", show_default=False),
    ],
    fail_on: Annotated[
        list[str] | None, typer.Option("--fail-on", metavar="METRIC:THRESHOLD", help=FAIL_ON_HELP)
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Compare even if profile, workload or environment differ.")
    ] = False,
    noise: Annotated[
        Path | None,
        typer.Option("--noise", metavar="FILE", help=NOISE_HELP.format(
            bands=", ".join(f"{v:.0%} ({k})" for k, v in DEFAULT_DRIFT.items())), show_default=False),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format", help="Output format; github: github-action-benchmark customBiggerIsBetter JSON."
        ),
    ] = Format.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE",
            help="Write the --format data (table: the JSON payload) to FILE and print the table.",
        ),
    ] = None,
) -> None:
    """Compare benchmark runs against a base run, with paired per-prompt significance tests."""
    from hedgespec_cli.errors import RegressionError
    from hedgespec_cli.files import dumps_json
    from hedgespec_cli.report.compare import (
        DEFAULT_NOISE,
        FailRule,
        build_payload,
        compare_runs,
        gate_notes,
        load_noise,
        parse_fail_on,
        to_github_benchmark,
    )
    from hedgespec_cli.report.render import comparison_notes, comparison_table

    rules = [FailRule(*parse_fail_on(spec)) for spec in fail_on or ()]
    model = load_noise(noise) if noise is not None else DEFAULT_NOISE
    comparisons = [compare_runs(base, cand, force=force, noise=model) for cand in cands]
    payload = build_payload(comparisons, rules)
    for note in gate_notes(rules, model):  # after the inputs proved usable: an error stays one line
        print(f"warning: {note}", file=sys.stderr)

    data: Any = payload
    if fmt is Format.github:
        several = len(comparisons) > 1
        # Several candidates share one file: their run ids keep the names apart.
        data = [
            entry
            for c in comparisons
            for entry in to_github_benchmark(c, label=c.cand.run_id if several else None)
        ]

    for entry in payload["comparisons"]:
        for note in comparison_notes(entry):
            print(f"warning: {note}", file=sys.stderr)
    if output is not None:
        _write(output, data)
    if fmt is Format.table or output is not None:
        from rich.console import Console

        console = Console()
        for entry in payload["comparisons"]:
            console.print(comparison_table(entry))
    else:
        sys.stdout.write(dumps_json(data, indent=2) + "\n")

    failures = [f["message"] for e in payload["comparisons"] for f in e["failures"]]
    if failures:
        raise RegressionError(
            f"{len(failures)} regression(s) beyond --fail-on: {'; '.join(failures)}; "
            "investigate the candidate, or loosen --fail-on if the change is intended"
        )


def calibrate(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN...", help="Two or more run directories of the same code and settings.",
                       show_default=False),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the noise file to FILE.")
    ] = None,
) -> None:
    """Measure how far identical runs' tokens/s drift on this machine: a noise file for `compare --noise`."""
    from hedgespec_cli.files import dumps_json
    from hedgespec_cli.report.compare import calibrate_noise
    from hedgespec_cli.report.render import noise_table

    payload = calibrate_noise(list(runs))
    if output is not None:
        _write(output, payload)
        from rich.console import Console

        Console().print(noise_table(payload))
    else:
        sys.stdout.write(dumps_json(payload, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("calibrate")(calibrate)
