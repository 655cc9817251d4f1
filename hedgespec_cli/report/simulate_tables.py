"""`hedgespec simulate`'s tables: the payload -> rich renderables (the CLI prints them)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text


def _ms(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def simulate_tables(payload: dict[str, Any]) -> list[RenderableType]:
    """`simulate`'s payload (selection/simulate.py `run_simulation`) as what the CLI prints, in order."""
    s, sweep = payload["settings"], payload["sweep"]
    out: list[RenderableType] = [Text.from_markup(
        f"[bold]simulate[/] preset {s['preset']}, {s['schedule']} schedule, K={s['K']}, "
        f"{s['prompts']} prompts x {s['tokens']} tokens, {s['seeds']} seeds (mean ± sd)"
    )]
    labels = list(sweep[0]["methods"])
    for key, title in (
        ("regret_per_round", "Regret per round vs best fixed drafter per query (tokens/round)"),
        ("regret_per_round_block", "Regret per round vs best fixed drafter per block of one domain, a shifting "
                                   "comparator (tokens/round)"),
        ("mat", "MAT (tokens/round)"),
    ):
        table = Table(title=title)
        table.add_column("method", overflow="fold")
        for row in sweep:
            table.add_column(f"N={row['n_drafters']}", justify="right")
        for label in labels:
            table.add_row(label, *(_ms(row["methods"][label][key]) for row in sweep))
        out.append(table)
    checkpoints = list(sweep[0]["methods"][labels[0]]["curve"])
    curve = Table(title="Regret curve: mean cumulative regret (tokens) after r rounds of a query")
    curve.add_column("N", justify="right")
    curve.add_column("method", overflow="fold")
    for c in checkpoints:
        curve.add_column(f"r={c}", justify="right")
    for row in sweep:
        for label in labels:
            curve.add_row(str(row["n_drafters"]), label,
                          *(f"{row['methods'][label]['curve'][c]:.2f}" for c in checkpoints))
    out.append(curve)
    if any(row["methods"][labels[0]]["recovery"]["shifts"] for row in sweep):
        rec = Table(title="Shift recovery: rounds after a shift until 5 rounds in a row on the new best drafter")
        for col in ("N", "method", "shifts", "recovered", "mean rounds", "max rounds"):
            rec.add_column(col, justify="left" if col == "method" else "right", overflow="fold")
        for row in sweep:
            for label in labels:
                r = row["methods"][label]["recovery"]
                mean = "-" if r["mean_rounds"] is None else f"{r['mean_rounds']:.1f}"
                rec.add_row(str(row["n_drafters"]), label, str(r["shifts"]), str(r["recovered"]),
                            mean, "-" if r["max_rounds"] is None else str(r["max_rounds"]))
        out.append(rec)
    return out
