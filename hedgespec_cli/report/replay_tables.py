"""`hedgespec replay`'s tables: the payload -> rich renderables (the CLI prints them)."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from hedgespec_cli.report.cells import cell


def replay_tables(payload: dict[str, Any]) -> list[RenderableType]:
    """`replay`'s payload (selection/replay.py `replay_payload`) as what the CLI prints, in order."""
    out: list[RenderableType] = []
    t = payload["trace"]
    out.append(Text.from_markup(
        f"[bold]replay[/] {t.get('path', '')}: {t['queries']} queries, {t['tokens']} tokens, "
        f"{len(t['drafters'])} drafters, K={t['K']}, T={t['temperature']}, seed {payload['seed']}"
    ))
    main = Table(title="Methods", caption="MAT and regret in tokens/round; regret = per query, the best fixed "
                 "drafter's counterfactual tokens on the method's own rounds minus the method's (it can be > 0 "
                 "for a method that beats every fixed drafter over the whole trace)", caption_justify="left")
    refs = Table(
        title="Regret vs the hindsight references (> 0: worse than the reference)",
        caption="MAT gap in tokens/round; +rounds: extra verification rounds (% of the reference's)",
    )
    for table, cols in (
        (main, ("method", "MAT", "rounds", "accept rate", "regret/round\nvs best fixed")),
        (refs, ("method", "MAT gap\nvs oracle", "+rounds\nvs oracle", "MAT gap vs\noracle-round",
                "+rounds vs\noracle-round")),
    ):
        table.add_column(cols[0], overflow="fold", max_width=24)
        for col in cols[1:]:
            table.add_column(col, justify="right", no_wrap=True)
    for label, m in payload["methods"].items():
        o, r = m["vs_oracle"], m["vs_oracle_round"]
        name = label if m["fidelity"] == "exact" else f"{label} ({m['fidelity']})"
        main.add_row(name, cell(m["mat"]), str(m["rounds"]), cell(m["acceptance_rate"], ".3f"),
                     cell(m["regret_per_round"], "+.3f"))
        refs.add_row(
            name, cell(o["mat_gap"], "+.3f"), f"{o['extra_rounds']:+d} ({o['extra_rounds_pct']:+.0f}%)",
            cell(r["mat_gap"], "+.3f"), f"{r['extra_rounds']:+d} ({r['extra_rounds_pct']:+.0f}%)",
        )
    out += [main, refs]
    live = payload.get("live")
    if live and live["methods"]:
        draws = "" if live["draws"] == 1 else f" ({live['draws']} seeded acceptance draws per query)"
        lt = Table(title="Replay against the live run of the same methods (this run directory)",
                   caption="MAT in tokens/round; error = replay - live, mean over queries with a 95% "
                   f"bootstrap CI{draws}; differ: queries whose rounds or decisions differ (T = 0)",
                   caption_justify="left")
        lt.add_column("method", overflow="fold", max_width=24)
        for col in ("fidelity", "live\nMAT", "replay\nMAT", "error\n/query", "95% CI", "differ"):
            lt.add_column(col, justify="left" if col == "fidelity" else "right", no_wrap=True)
        for label, a in live["methods"].items():
            e = a["error_per_query"]
            diff = "-" if a["queries_differing"] is None else f"{len(a['queries_differing'])}/{a['queries']}"
            lt.add_row(label, a["fidelity"], cell(a["live_mat"], ".3f"), cell(a["replay_mat"], ".3f"),
                       cell(e["mean"], "+.3f"), f"[{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}]", diff)
        out.append(lt)
        if live["exact_claims_hold"] is False:
            out.append(Text("replay claims exactness for a method whose live run it does not reproduce",
                            style="bold red"))
    for label, m in payload["methods"].items():
        if m["kind"] == "fixed":
            continue
        freq = Table(title=f"{label}: selection frequency (% of the domain's rounds)")
        freq.add_column("domain")
        for d in t["drafters"]:
            freq.add_column(d, justify="right")
        freq.add_column("MAT", justify="right")
        for domain, row in m["selection_freq"].items():
            freq.add_row(domain, *(f"{100 * row[d]:.0f}" for d in t["drafters"]),
                         cell(m["by_domain"][domain]["mat"]))
        out.append(freq)
    out += [Text(f"note: {note}") for note in payload["notes"]]
    return out
