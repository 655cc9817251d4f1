"""PNG figures of a saved run (matplotlib, the optional `plots` extra).

Everything is read back from the run directory, so figures can be drawn for
any saved run: `hedgespec report RUN --plots DIR`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.report.summary import regret_curves
from hedgespec_cli.rundir import load_results, read_jsonl


def write_plots(run_dir: Path, out: Path, *, method: str = "hedgespec") -> list[Path]:
    """Write the figures that the run's data supports; returns their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'hedgespec-cli[plots]'") from None
    results = load_results(run_dir / "results.json")
    queries = [q for q in read_jsonl(run_dir / "queries.jsonl") if not q["warmup"] and q["repeat"] == 0]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        ("regret.png", lambda ax: _regret(ax, queries)),
        ("weights.png", lambda ax: _weights(ax, run_dir, queries, results, method)),
        ("acceptance.png", lambda ax: _heatmap(ax, results.get("acceptance_matrix"))),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        if draw(ax):
            fig.tight_layout()
            fig.savefig(out / name, dpi=120)
            written.append(out / name)
        plt.close(fig)
    return written


def _regret(ax, queries: list[dict]) -> bool:
    """Cumulative extra rounds (target forwards) against the per-query oracle, over the workload."""
    curves = regret_curves(queries)
    if not curves:
        return False
    for m, extra in curves.items():
        ax.plot(np.arange(1, len(extra) + 1), extra, label=m)
    ax.set_xlabel("queries served (workload order)")
    ax.set_ylabel("cumulative extra rounds vs oracle")
    ax.set_title("Regret against the best fixed drafter per query (in target forward passes)")
    ax.legend(fontsize=8)
    return True


def _weights(ax, run_dir: Path, queries: list[dict], results: dict, method: str) -> bool:
    """The selector's distribution over drafters, round by round, with query domains marked."""
    rows = [r for r in read_jsonl(run_dir / "rounds.jsonl") if r["method"] == method and r["repeat"] == 0]
    key = "weights" if rows and rows[0].get("weights") is not None else "probs"
    if not rows or rows[0][key] is None:
        return False
    domain = {q["query_id"]: q["domain"] for q in queries}
    probs = np.array([r[key] for r in rows])  # (rounds, N)
    names = [d["name"] for d in results["config"]["profile"]["drafters"]]
    ax.stackplot(np.arange(len(rows)), probs.T, labels=names)
    last = None
    for i, r in enumerate(rows):
        d = domain.get(r["query_id"])
        if d != last:
            ax.axvline(i, color="black", lw=0.6)
            ax.text(i, 1.01, str(d), fontsize=7, rotation=45)
            last = d
    ax.set_xlim(0, len(rows))
    ax.set_ylim(0, 1)
    ax.set_xlabel("round")
    ax.set_ylabel("probability")
    what = "learner weights" if key == "weights" else "choice distribution"
    ax.set_title(f"{method}: {what} over drafters per round (lines: domain changes)", pad=28)
    ax.legend(fontsize=7, loc="lower right", ncol=3)
    return True


def _heatmap(ax, matrix: dict | None) -> bool:
    if not matrix:
        return False
    domains = list(matrix)
    drafters = list(next(iter(matrix.values())))
    values = np.array([[matrix[d][j] for j in drafters] for d in domains])
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(drafters)), drafters, rotation=45, ha="right")
    ax.set_yticks(range(len(domains)), domains)
    for i in range(len(domains)):
        for j in range(len(drafters)):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.figure.colorbar(im, ax=ax, label="mean gamma")
    ax.set_title("Acceptance matrix: mean gamma (domain x drafter)")
    return True
