"""Rich tables for a bench run, drawn from its results payload (nothing is computed here)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from hedgespec_cli.report.cells import cell


def _speedup(s: dict | None) -> str:
    if not s:
        return "-"
    lo, hi = s["ci95"]
    return f"{s['geomean']:.2f}x [{lo:.2f}, {hi:.2f}]"


def _tree_label(cfg: dict[str, Any]) -> str:
    tree = cfg.get("tree")
    return f", tree top_k={tree['top_k']} tokens={tree['total_tokens']} (depth K)" if tree else ""


def main_table(payload: dict[str, Any]) -> Table:
    cfg = payload["config"]
    t = Table(
        title=(
            f"{cfg['profile']['name']} / {cfg['workload']['name']}: K={cfg['K']}, T={cfg['temperature']}, "
            f"max_new_tokens={cfg['max_new_tokens']}{_tree_label(cfg)}"
            + ("" if payload["complete"] else "  [INCOMPLETE]")
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,  # no rules, one gap: fits 80 columns
    )
    rows = [
        (
            name,
            cell(m["tokens_per_s"], ",.1f"),
            _speedup(m["speedup_vs_ar"]),
            cell(m["mat"], ".2f"),
            cell(m["acceptance_rate"], ".1%"),
            cell(m["eval_overhead_frac"] * 100 if m["eval_overhead_frac"] is not None else None, ".1f"),
            cell(m["regret_vs_oracle"], "+.2f"),
        )
        for name, m in payload["methods"].items()
    ]
    # The numbers keep their full width in a narrow terminal (a CI log is 80
    # columns); what each method is goes to `method_legend`, which wraps.
    for i, col in enumerate(("method", "tokens/s", "speedup vs ar", "MAT", "accept", "eval %", "regret")):
        width = max([len(col)] + [len(r[i]) for r in rows])
        t.add_column(col, justify="left" if col == "method" else "right", min_width=width, no_wrap=True)
    for row in rows:
        t.add_row(*row)
    return t


MAIN_CAPTION = (
    "tokens/s = new tokens / wall time (prefill included); speedup = paired per-prompt geomean vs ar "
    "[bootstrap 95% CI]; MAT = tokens per round (bonus included); accept = accepted / drafted draft "
    "tokens; eval = (evaluate + learn) / wall time; regret = MAT(oracle) - MAT (tokens/round)"
)


def method_legend(payload: dict[str, Any]) -> Table:
    """What each method of the run is, one wrapped line each."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(style="dim", overflow="fold")
    for name, label in payload.get("method_labels", {}).items():
        t.add_row(name, label)
    return t


def domain_table(payload: dict[str, Any]) -> Table:
    """Rows: methods (names never cut); columns: prompt domains."""
    methods = payload["methods"]
    domains = sorted({d for m in methods.values() for d in m["by_domain"]})
    t = Table(title="MAT by domain (tokens per round)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              collapse_padding=True)
    t.add_column("method", no_wrap=True, min_width=max(len(name) for name in methods))
    for d in domains:
        t.add_column(d, justify="right", min_width=4)
    for name, m in methods.items():
        t.add_row(name, *(cell(m["by_domain"].get(d, {}).get("mat"), ".2f") for d in domains))
    return t


def selection_table(method: str, freq: dict[str, dict[str, float]]) -> Table:
    return domain_by_drafter(f"{method}: share of rounds per drafter, by prompt domain", freq, "{:.0%}")


TREE_GAMMA_CAVEAT = (
    "draft trees: gamma is an UPPER BOUND, the target's mass on each drafter's top_k children as if no "
    "node had been pruned (the paper's Theorem 2 sums over the children its pruned tree keeps)"
)


def acceptance_matrix_table(matrix: dict[str, dict[str, float]], *, tree: bool = False) -> Table:
    title = "Acceptance matrix: mean gamma per domain and drafter (full-information, from the trace)"
    table = domain_by_drafter(title, matrix, "{:.2f}")
    if tree:
        table.caption, table.caption_justify = TREE_GAMMA_CAVEAT, "left"
    return table


def domain_by_drafter(title: str, rows: dict[str, dict[str, float]], fmt: str) -> Table:
    """Rows: domains; columns: drafters; each row's largest value in bold."""
    drafters = list(next(iter(rows.values())))
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("domain", no_wrap=True)
    for d in drafters:
        t.add_column(d, justify="right")
    for domain, row in rows.items():
        best = max(row, key=row.get)
        t.add_row(domain, *(Text(fmt.format(row[d]), style="bold" if d == best else "") for d in drafters))
    return t


def position_table(payload: dict[str, Any]) -> Table:
    K = payload["config"]["K"]
    t = Table(title="Acceptance by draft position (P\\[kept | reached])", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("method", no_wrap=True)
    for k in range(1, K + 1):
        t.add_column(f"k={k}", justify="right")
    for name, m in payload["methods"].items():
        if m["acceptance_rate"] is not None:
            t.add_row(name, *(cell(v, ".2f") for v in m["per_position_acceptance"]))
    return t


def estimator_lines(payload: dict[str, Any]) -> Text | None:
    """The one-step estimator against the rounds each full-information method played."""
    rows = [(name, m["estimator"]) for name, m in payload["methods"].items() if m.get("estimator")]
    if not rows:
        return None
    out = Text()
    out.append("one-step estimator vs the rounds played (tokens/round; the chosen drafter at its own round "
               "starts: equal by construction at T = 0 where gamma is exact, i.e. LM drafters and EAGLE-3 heads "
               "in --counterfactual exact; depth1/aligned heads show their bias here; the audit below checks "
               "drafters that did not play):", style="bold")
    for name, e in rows:
        out.append(f"\n  {name}: predicted {e['estimated_per_round']:.3f}, actual {e['actual_per_round']:.3f}, "
                   f"bias {e['bias_per_round']:+.3f} over {e['rounds']} rounds")
    return out


def block_oracle_lines(payload: dict[str, Any]) -> Text | None:
    """The per-block oracle of a `shift` workload: each method's MAT against it."""
    ob = payload.get("oracle_block")
    if not ob:
        return None
    out = Text()
    out.append(
        f"per-block oracle (best fixed drafter per block of one domain, in hindsight; "
        f"{'exact' if ob.get('exact') else 'APPROXIMATE: gamma is not the exact counterfactual for every drafter'}): "
        f"MAT {ob['mat']:.2f} over {ob['rounds']} rounds (per-query oracle {ob['mat_per_query_oracle']:.2f})",
        style="bold",
    )
    for i, b in enumerate(ob["blocks"], 1):
        out.append(f"\n  block {i} {b['domain'] or '-'} ({b['queries']} prompts): {b['drafter']}, {b['rounds']} "
                   f"rounds (per-query oracle {b['rounds_per_query_oracle']})")
    ratios = ", ".join(f"{name} {m['mat'] / ob['mat']:.3f}" for name, m in payload["methods"].items()
                       if m["queries"] % ob["queries"] == 0)
    if ratios:
        out.append(f"\n  MAT / MAT(per-block oracle): {ratios}")
    return out


def audit_lines(payload: dict[str, Any]) -> Text | None:
    """Each live method against its replay on the run's own trace (selection/audit.py)."""
    a = payload.get("replay_audit") or {}
    if not a.get("methods"):
        return None
    out = Text()
    draws = "" if a["draws"] == 1 else f", {a['draws']} seeded acceptance draws per query"
    out.append("replay audit: each method replayed on this run's trace vs its live run (MAT in tokens/round; "
               f"error = replay - live, mean over queries [95% bootstrap CI]{draws}):", style="bold")
    for name, m in a["methods"].items():
        e = m["error_per_query"]
        differing = m["queries_differing"]
        differ = "" if differing is None else f", {len(differing)}/{m['queries']} queries differ"
        out.append(f"\n  {name} ({m['fidelity']}): live {m['live_mat']:.3f}, replay {m['replay_mat']:.3f}, "
                   f"error {e['mean']:+.3f} [{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}]{differ}")
    reasons = sorted({m["fidelity_reason"] for m in a["methods"].values() if m["fidelity"] != "exact"})
    for r in reasons:
        out.append(f"\n  approximate: {r}", style="dim")
    return out


def verdict_lines(payload: dict[str, Any]) -> Text:
    v = payload["validity"]
    out = Text()
    out.append("validity: ", style="bold")
    out.append("VALID" if v["valid"] else "INVALID", style="bold green" if v["valid"] else "bold red")
    for key, ok in v["constraints"].items():
        mark, style = ("ok", "green") if ok else ("--", "yellow") if ok is None else ("FAIL", "red")
        out.append(f"\n  {mark:>4} ", style=style)
        out.append(f"{key}: {v['notes'][key]}")
    return out


def telemetry_lines(payload: dict[str, Any]) -> Text:
    tel = payload.get("telemetry") or {}
    out = Text()
    out.append("telemetry: ", style="bold")
    if tel.get("gpu_available"):
        for d in tel["devices"]:
            out.append(
                f"\n  {d.get('name', 'gpu')}: util mean {cell(d.get('util_mean_pct'), '.0f', '%')}, "
                f"memory peak {cell(d.get('mem_peak_mib'), ',.0f', ' MiB')}, "
                f"power mean {cell(d.get('power_mean_w'), '.0f', ' W')}, "
                f"energy {cell(d.get('energy_j'), ',.0f', ' J')}, "
                f"SM clock mean {cell(d.get('sm_clock_mean_mhz'), ',.0f', ' MHz')}, "
                f"throttled: {d.get('throttled')} {d.get('throttle_reasons') or ''}"
            )
    else:
        out.append(f"GPU telemetry unavailable: {tel.get('reason') or 'unknown'}")
    mem = payload.get("memory") or {}
    if mem.get("drafters"):
        d = list(mem["drafters"].values())
        out.append(
            f"\n  memory: target weights {mem['target']['weights_mib']:.1f} MiB; per drafter "
            f"{d[0]['weights_mib']:.1f} MiB weights + {d[0]['kv_kib_per_token']:.1f} KiB KV per cached token "
            f"(x{len(d)} drafters)"
            + (f"; stacked LM-head copies (tied heads transposed; T = 0 screen: bf16, untied float32 rows) "
               f"{mem['stacked_extra_mib']:.1f} MiB" if mem.get("stacked_extra_mib") else "")
            + (f"; CUDA allocator peak {mem['peak_cuda_allocated_mib']:,.0f} MiB"
               if mem.get("peak_cuda_allocated_mib") else "")
        )
    cpu = tel.get("cpu") or {}
    out.append(
        f"\n  CPU: mean {cell(cpu.get('cpu_mean_pct'), '.0f', '%')} of one core ({cpu.get('cpu_count')} cores), "
        f"peak RSS {cell(cpu.get('peak_rss_mib'), ',.0f', ' MiB')}; {tel.get('samples', 0)} samples every "
        f"{tel.get('interval_s', 0) * 1000:.0f} ms"
    )
    return out


def render_run(payload: dict[str, Any], console: Console | None = None, *, adaptive: tuple[str, ...] = ()) -> None:
    """Print every table of a run; `adaptive` names methods whose selection table is shown."""
    console = console or Console()
    # The caption as plain text under the table: it wraps at the terminal's width, not the table's.
    parts: list[Any] = [main_table(payload), Text(MAIN_CAPTION, style="dim"), method_legend(payload), Text(""),
                        domain_table(payload)]
    for name in adaptive:
        freq = payload["methods"].get(name, {}).get("selection_freq")
        if freq:
            parts.append(selection_table(name, freq))
    if payload.get("acceptance_matrix"):
        parts.append(acceptance_matrix_table(payload["acceptance_matrix"], tree=bool(payload["config"].get("tree"))))
    parts += [position_table(payload)]
    for lines in (estimator_lines(payload), block_oracle_lines(payload), audit_lines(payload)):
        if lines is not None:
            parts += [lines, Text("")]
    parts += [verdict_lines(payload), telemetry_lines(payload)]
    console.print(Group(*parts))
    if payload.get("run_dir"):
        console.print(f"results: {payload['run_dir']}/results.json ({payload['elapsed_s']:.0f} s)")


def sweep_table(payload: dict[str, Any]) -> Table:
    """Rows: pool size N; per method MAT and tokens/s; HedgeSpec's evaluation + learning share."""
    first = next(iter(payload["by_n"].values()))["methods"]
    t = Table(
        title="Drafter-count sweep: MAT (tokens/round) | tokens/s per method, by pool size N",
        title_justify="left",
        caption="pools beyond the profile's drafters are padded with noisy (weaker) copies of its experts; "
        "eval % = (evaluate + learn) / wall time of hedgespec",
        caption_justify="left",
    )
    t.add_column("N", justify="right")
    for m in first:
        t.add_column(m, justify="right")
    t.add_column("hedgespec eval %", justify="right")
    for n, block in payload["by_n"].items():
        ms = block["methods"]
        cells = [f"{ms[m]['mat']:.2f} | {ms[m]['tokens_per_s']:,.0f}" if m in ms else "-" for m in first]
        hs = ms.get("hedgespec")
        t.add_row(n, *cells, cell(hs["eval_overhead_frac"] * 100, ".1f") if hs else "-")
    return t


def sweep_phase_table(payload: dict[str, Any], method: str = "hedgespec") -> Table | None:
    """Rows: pool size N; the method's wall time per round split by phase (ms)."""
    rows = [(n, b["methods"][method]) for n, b in payload["by_n"].items() if method in b["methods"]]
    if not rows or "phase_ms_per_round" not in rows[0][1]:
        return None
    phases = [p for p in rows[0][1]["phase_ms_per_round"] if p != "prefill"]
    t = Table(
        title=f"{method}: wall time per round by phase (ms), by pool size N",
        title_justify="left",
        caption="per round = phase time summed over queries / rounds; prefill (once per query) is left out",
        caption_justify="left",
    )
    for col in ("N", "round", *phases):
        t.add_column(col, justify="right")
    for n, m in rows:
        ms = m["phase_ms_per_round"]
        t.add_row(n, f"{sum(ms[p] for p in phases):.2f}", *(f"{ms[p]:.2f}" for p in phases))
    return t
