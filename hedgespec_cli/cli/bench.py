"""`hedgespec bench` and `hedgespec report`: run a benchmark, or re-render a saved one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hedgespec_cli.bench.settings import BENCH_DEFAULTS
from hedgespec_cli.decoding.settings import knob_defaults

FORMAT_HELP = ("table, json (results.json), vllm (`vllm bench serve` result keys) or aiperf (AIPerf metric "
               "records) \\[default: table].")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("report")(report)


_B, _D = BENCH_DEFAULTS, knob_defaults()  # help texts read the defaults from the dataclasses


def _default(text: object) -> str:
    return f" \\[default: {text}]."


def bench(
    profile: Annotated[str | None, typer.Option(
        help="Profile name or YAML path" + _default(_B["profile"]))] = None,
    target: Annotated[str | None, typer.Option(
        help="Replace the profile's target: a directory or a Hub id org/name\\[@revision]\\[/subfolder].")] = None,
    drafter: Annotated[list[str] | None, typer.Option(
        help="Replace the profile's pool: \\[NAME=]directory-or-Hub-id; repeat per drafter.")] = None,
    workload: Annotated[str | None, typer.Option(
        help="Workload name or YAML path" + _default(_B["workload"]))] = None,
    methods: Annotated[str | None, typer.Option(
        help="Comma list, e.g. ar,fixed:generic,hedgespec,oracle" + _default("every method but oracle-round"))] = None,
    temperature: Annotated[float | None, typer.Option(
        help="0 = greedy" + _default(f"profile, else {_D['temperature']}"))] = None,
    top_p: Annotated[float | None, typer.Option(
        help="Nucleus mass at T > 0" + _default(f"profile, else {_D['top_p']}"))] = None,
    K: Annotated[int | None, typer.Option(
        "-K", "--K", help="Draft length" + _default(f"profile, else {_D['K']}"))] = None,
    max_new_tokens: Annotated[int | None, typer.Option(
        help="Tokens per prompt" + _default(f"workload, else profile, else {_D['max_new_tokens']}"))] = None,
    tree_top_k: Annotated[int | None, typer.Option(
        help="Draft trees: children per node (EAGLE-2 dynamic tree of depth K); 0 = chains"
        + _default(f"profile, else {_D['tree_top_k']}"))] = None,
    tree_tokens: Annotated[int | None, typer.Option(
        help="Draft trees: nodes kept per tree" + _default(f"profile, else {_D['tree_tokens']}"))] = None,
    counterfactual: Annotated[str | None, typer.Option(
        help="How full-information feedback scores EAGLE-3 heads: exact (the chain each verified position would "
        "have started), depth1 (every position from target features, optimistic) or aligned (along the actual "
        "round)" + _default(f"profile, else {_D['counterfactual']}"))] = None,
    prompts: Annotated[int | None, typer.Option(help="Use the first N prompts of the workload.")] = None,
    repeats: Annotated[int | None, typer.Option(
        help="Timed passes over the prompts" + _default(_B["repeats"]))] = None,
    warmup: Annotated[int | None, typer.Option(
        help="Untimed warm-up prompts per method" + _default(_B["warmup"]))] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed" + _default(_B["seed"]))] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto" + _default("profile"))] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, float16 or bfloat16" + _default("profile"))] = None,
    drafter_dtype: Annotated[str | None, typer.Option(
        help="Drafters' dtype, e.g. bfloat16 to halve evaluation reads" + _default("profile, else --dtype"))] = None,
    out: Annotated[str | None, typer.Option(help="Folder for run directories" + _default(_B["out"]))] = None,
    sample_interval: Annotated[float | None, typer.Option(
        help="Telemetry interval in seconds" + _default(_B["sample_interval"]))] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads" + _default("torch's"))] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file with any of these keys (flags win).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory.")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the results JSON on stdout (= --format json).")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    output: Annotated[Path | None, typer.Option(help="Write the --format payload to this file, not stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars or tables.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Also write PNG figures here (needs matplotlib).")] = None,
    sweep_drafters: Annotated[str | None, typer.Option(
        help="Pool sizes, e.g. 2,4,8,16: MAT and tokens/s per method per N.")] = None,
) -> None:
    """Run every method on the same prompts and report tokens/s, MAT, overhead and validity."""
    from hedgespec_cli.bench.run import run_bench
    from hedgespec_cli.bench.settings import resolve_settings
    from hedgespec_cli.errors import ConfigError

    flags = dict(
        profile=profile, target=target, drafters=drafter, workload=workload, methods=methods,
        temperature=temperature, top_p=top_p, K=K,
        tree_top_k=tree_top_k, tree_tokens=tree_tokens, counterfactual=counterfactual,
        max_new_tokens=max_new_tokens, prompts=prompts, repeats=repeats, warmup=warmup, seed=seed,
        device=device, dtype=dtype, drafter_dtype=drafter_dtype, out=out, sample_interval=sample_interval,
        threads=threads,
    )
    if resume is not None:  # a resumed run keeps the settings it was started with
        given = [f"--{'drafter' if k == 'drafters' else k.replace('_', '-')}"
                 for k, v in flags.items() if v is not None]
        given += ["--config"] * (config is not None) + ["--sweep-drafters"] * (sweep_drafters is not None)
        if given:
            raise ConfigError(f"--resume continues a run with the settings in its config.yaml; "
                              f"drop {', '.join(given)} (or start a new run without --resume)")
    settings = resolve_settings(flags, config)
    fmt = _checked_format(fmt, json_out, output, sweep=sweep_drafters is not None)
    json_out = fmt == "json"
    if plots is not None:
        from hedgespec_cli.files import output_dir

        output_dir(plots, "plots")  # a bad path fails now, not after the run
    progress = None if quiet or fmt != "table" else _RichProgress()
    if sweep_drafters is not None:
        _sweep(settings, sweep_drafters, progress, json_out=json_out, quiet=quiet)
        return
    try:
        payload = run_bench(settings, progress=progress, resume=resume)
    finally:
        if progress is not None:
            progress.close()
    _emit(payload, fmt=fmt, output=output, quiet=quiet, plots=plots)


def _sweep(settings, sizes_text: str, progress, *, json_out: bool, quiet: bool) -> None:
    from hedgespec_cli.bench.sweep import run_sweep
    from hedgespec_cli.errors import ConfigError

    try:
        sizes = [int(s) for s in sizes_text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(
            f"--sweep-drafters takes comma-separated integers, e.g. 2,4,8,16 (got {sizes_text!r})"
        ) from None
    try:
        payload = run_sweep(settings, sizes, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    _emit_sweep(payload, json_out=json_out, quiet=quiet)


def _emit_sweep(payload: dict, *, json_out: bool, quiet: bool) -> None:
    from rich.console import Console

    from hedgespec_cli.files import dumps_json
    from hedgespec_cli.report.bench_tables import sweep_phase_table, sweep_table

    if json_out:
        typer.echo(dumps_json(payload, indent=2))
    elif not quiet:
        Console().print(sweep_table(payload))
        phases = sweep_phase_table(payload)
        if phases is not None:
            Console().print(phases)
        done = "" if payload.get("complete", True) else "  [INCOMPLETE: interrupted]"
        Console().print(f"results: {payload['run_dir']}/sweep.json ({payload['elapsed_s']:.0f} s){done}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by bench.")],
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the results JSON on stdout (= --format json)."
    )] = False,
    fmt: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    output: Annotated[Path | None, typer.Option(help="Write the --format payload to this file, not stdout.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG figures here (needs matplotlib).")] = None,
) -> None:
    """Re-render a saved run from its results.json (or a --sweep-drafters run from its sweep.json)."""
    from hedgespec_cli.errors import ConfigError
    from hedgespec_cli.files import output_dir
    from hedgespec_cli.rundir import check_report_fields, load_results, load_sweep

    folder = run_dir.parent if run_dir.is_file() else run_dir  # the folder or a file in it
    sweep = (folder / "sweep.json").is_file() and not (folder / "results.json").exists()
    fmt = _checked_format(fmt, json_out, output, sweep=sweep)
    if sweep:
        if plots is not None:
            raise ConfigError("--plots draws a bench run; a --sweep-drafters run has only its tables")
        _emit_sweep(load_sweep(folder), json_out=fmt == "json", quiet=False)
        return
    if plots is not None:
        output_dir(plots, "plots")
    payload = load_results(folder)
    check_report_fields(payload, folder / "results.json")
    payload["run_dir"] = str(folder)
    _emit(payload, fmt=fmt, output=output, quiet=False, plots=plots)


def _checked_format(fmt: str | None, json_out: bool, output: Path | None, *, sweep: bool) -> str:
    """The output format, checked before anything runs: --json is --format json."""
    from hedgespec_cli.errors import ConfigError
    from hedgespec_cli.report.export import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if json_out and fmt not in (None, "json"):
        raise ConfigError(f"--json is --format json; drop one of --json and --format {fmt}")
    fmt = "json" if json_out else fmt or "table"
    if sweep and fmt in ("vllm", "aiperf"):
        raise ConfigError(f"--format {fmt} exports a bench run; a --sweep-drafters run has table or json")
    if output is not None:
        if fmt == "table" or sweep:
            raise ConfigError("--output writes an export: add --format json, vllm or aiperf (a bench run's)")
        if not output.parent.is_dir() or output.is_dir():
            raise ConfigError(f"cannot write --output {output}: give a file path in an existing folder")
    return fmt


def _emit(payload: dict, *, fmt: str, output: Path | None, quiet: bool, plots: Path | None) -> None:
    from rich.console import Console

    from hedgespec_cli.files import dumps_json
    from hedgespec_cli.report.bench_tables import render_run
    from hedgespec_cli.report.export import export
    from hedgespec_cli.rundir import read_jsonl
    from hedgespec_cli.selection.base import adaptive_methods

    if fmt != "table":
        queries = Path(payload["run_dir"]) / payload.get("artifacts", {}).get("queries", "queries.jsonl")
        lines = read_jsonl(queries) if fmt != "json" and queries.is_file() else None  # json: results.json as is
        data = export(payload, fmt, lines)
        if output is None:
            typer.echo(dumps_json(data, indent=2))
        else:
            from hedgespec_cli.files import write_output

            write_output(output, data)
            Console(stderr=True).print(f"{fmt}: {output}")
    elif not quiet:
        render_run(payload, Console(), adaptive=adaptive_methods())
    if plots is not None:
        from hedgespec_cli.report.plots import write_plots

        written = write_plots(Path(payload["run_dir"]), plots)
        Console(stderr=True).print(f"plots: {', '.join(str(p) for p in written)}")


class _RichProgress:
    """One bar per method: prompts done, tokens/s and MAT so far (on stderr)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[tps]:>9} tok/s  MAT {task.fields[mat]}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._sums: dict[str, list[float]] = {}
        self._started = False

    def start(self, methods: list[str], total: int) -> None:
        self._started = True
        self._bar.start()
        for m in methods:
            self._tasks[m] = self._bar.add_task(m, total=total, tps="-", mat="-")
            self._sums[m] = [0.0, 0.0, 0.0]  # tokens, seconds, rounds

    def advance(self, method: str, query: dict) -> None:
        s = self._sums[method]
        s[0] += query["new_tokens"]
        s[1] += query["wall_s"]
        s[2] += query["rounds"]
        self._bar.update(self._tasks[method], advance=1, tps=f"{s[0] / s[1]:,.0f}", mat=f"{s[0] / s[2]:.2f}")

    def close(self) -> None:
        if self._started:  # a run that failed before its first query drew nothing to close
            self._bar.stop()
