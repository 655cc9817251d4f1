"""`hedgespec zoo` tables: a built zoo (`zoo info`) and its build's held-out losses (`zoo build`)."""

from __future__ import annotations

from typing import Any

from rich.console import JustifyMethod
from rich.table import Table


def zoo_table(payload: dict[str, Any]) -> Table:
    """`zoo info`'s payload (zoo/info.py `zoo_info`): one row per model."""
    table = Table(title=f"zoo {payload['zoo']} ({payload['total_size_bytes'] / 2**20:.1f} MiB)",
                  title_justify="left")
    # Fits 80 columns: one shape column, and the dtype in the caption when every model shares it.
    dtypes = sorted({row["dtype"] for row in payload["models"]})
    one_dtype = len(dtypes) == 1
    caption = [f"weights {dtypes[0]}"] if one_dtype else []
    if payload["wall_s"] is not None:
        caption.append(f"built on {payload['device']} with torch {payload['torch']} in "
                       f"{payload['wall_s'] / 60:.1f} min, seed {payload['seed']}; tokens = training "
                       "tokens (drafters: distillation)")
    table.caption, table.caption_justify = "; ".join(caption), "left"
    columns: list[tuple[str, JustifyMethod]] = [
        ("model", "left"), ("role", "left"), ("domain", "left"), ("layers x hidden", "right"),
        ("params", "right"), ("MiB", "right"), ("steps", "right"), ("tokens", "right")]
    if not one_dtype:
        columns.insert(5, ("dtype", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for row in payload["models"]:
        cells = [row["name"], row["role"], row["domain"] or "-", f"{row['layers']} x {row['hidden']}",
                 f"{row['params'] / 1e6:.2f}M", f"{row['size_bytes'] / 2**20:.1f}",
                 "-" if row["steps"] is None else str(row["steps"]),
                 "-" if row["train_tokens"] is None else f"{row['train_tokens'] / 1e6:.1f}M"]
        if not one_dtype:
            cells.insert(5, row["dtype"])
        table.add_row(*cells)
    return table


def losses_table(manifest: dict[str, Any]) -> Table:
    """`zoo build`'s manifest: each model's held-out loss per domain."""
    domains = list(manifest["sources"])
    table = Table(title=f"held-out loss (nats/token), built in {manifest['wall_s'] / 60:.1f} min",
                  title_justify="left")
    table.add_column("model")
    for d in domains:
        table.add_column(d, justify="right")
    # Bold: the best drafter on each domain (the target is expected to beat them all).
    best = {d: min(m["heldout_loss"][d] for n, m in manifest["models"].items() if n != "target")
            for d in domains}
    for name, entry in manifest["models"].items():
        cells = [f"[bold]{entry['heldout_loss'][d]:.3f}[/]" if name != "target"
                 and entry["heldout_loss"][d] == best[d] else f"{entry['heldout_loss'][d]:.3f}"
                 for d in domains]
        table.add_row(name, *cells)
    return table
