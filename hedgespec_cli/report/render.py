"""Rich tables drawn from report payload dicts (the same dicts that become JSON).

Nothing here computes: every number arrives in the payload, so the table and
the JSON can never disagree.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from hedgespec_cli.report.cells import cell

_GOOD, _BAD = "green", "red"


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "tokens/s":
        return f"{value:,.1f}"
    if unit == "x":
        return f"{value:.3f}x"
    return f"{value:.3f}"


def _fmt_change(metric: dict[str, Any]) -> str:
    change = metric["change"]
    if change is None:
        return "-"
    text = f"{change:+.1%}"
    if metric["significant"] and change != 0:
        better = (change > 0) == metric["bigger_is_better"]
        return f"[{_GOOD if better else _BAD}]{text}[/]"
    return text


def _fmt_ci(metric: dict[str, Any]) -> str:
    ci = metric["ci95"]
    if ci is not None:
        return f"{100 * ci[0]:+.1f}..{100 * ci[1]:+.1f}%"
    if metric["p_value"] is not None:
        return f"p={metric['p_value']:.2g}"
    return ""


def _fmt_sig(significant: bool | None) -> str:
    return {True: "yes", False: "no", None: "n/a"}[significant]


LABELS = {
    "tokens_per_s": "tokens/s",
    "mat": "MAT",
    "acceptance_rate": "acceptance",
    "eval_overhead_frac": "eval overhead",
    "speedup_vs_ar": "speedup vs ar",
}


def comparison_table(entry: dict[str, Any]) -> Table:
    """One candidate against the base: a section per method, a row per metric (fits 80 columns)."""
    base, cand = entry["base"], entry["cand"]
    table = Table(
        title=f"{cand['run_id'] or cand['path']}  vs  base {base['run_id'] or base['path']}",
        caption="change = cand/base - 1; CI: paired per-prompt bootstrap (p: Mann-Whitney, where "
                "prompts cannot be paired); MAT at T=0: exact; speedup vs ar: per prompt, within each "
                f"run; timings significant only beyond the {escape(entry.get('noise') or 'drift bands')}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    width = max([len("method")] + [len(m["method"]) for m in entry["metrics"]])
    for name, justify in (("method", "left"), ("metric", "left"), ("base", "right"), ("cand", "right"),
                          ("change", "right"), ("95% CI / p", "right"), ("signif.", "left")):
        table.add_column(name, justify=justify, no_wrap=True,  # type: ignore[arg-type]
                         min_width=width if name == "method" else None)
    failing = {(f["method"], f["metric"]) for f in entry["failures"]}
    previous = None
    for m in entry["metrics"]:
        first = m["method"] != previous
        if first and previous is not None:
            table.add_section()
        previous = m["method"]
        # A failing change is significant (or untestable) by definition: FAIL replaces yes/n/a.
        verdict = "[bold red]FAIL[/]" if (m["method"], m["metric"]) in failing else _fmt_sig(m["significant"])
        table.add_row(
            m["method"] if first else "", LABELS.get(m["metric"], m["metric"]),
            _fmt_value(m["base"], m["unit"]), _fmt_value(m["cand"], m["unit"]),
            _fmt_change(m), _fmt_ci(m), verdict,
        )
    return table


def noise_table(payload: dict[str, Any]) -> Table:
    """A calibration (`hedgespec calibrate`): each timing metric's drift band per method."""
    table = Table(
        title=f"drift of identical code over {len(payload['runs'])} runs",
        caption="band: 95% prediction bound of the change between two runs of identical code, "
                "exp(t sqrt(2) s) - 1, s the sd of the runs' log geometric means; largest: the largest "
                "change between two of these runs",
        box=box.SIMPLE_HEAD,
    )
    for name in ("metric", "method", "band", "largest"):
        table.add_column(name, justify="left" if name in ("metric", "method") else "right")
    for metric, bands in payload["band"].items():
        for i, (method, band) in enumerate(bands.items()):
            table.add_row(LABELS.get(metric, metric) if i == 0 else "", method, f"{band:.1%}",
                          f"{payload['largest_change'][metric][method]:.1%}")
    return table


def comparison_notes(entry: dict[str, Any]) -> list[str]:
    """Plain lines that go with a comparison table (for stderr)."""
    notes = [f"forced: runs differ in {d}" for d in entry["differences"]] if entry["forced"] else []
    notes += list(entry["warnings"])
    if entry["only_in_base"]:
        notes.append(f"methods only in base: {', '.join(entry['only_in_base'])}")
    if entry["only_in_cand"]:
        notes.append(f"methods only in candidate: {', '.join(entry['only_in_cand'])}")
    return notes


def telemetry_table(summary: dict[str, Any]) -> Table | str:
    """A run's telemetry summary (TelemetrySampler.summary()): a table per GPU, or the CPU line."""
    cpu = summary.get("cpu") or {}
    if not summary.get("gpu_available"):
        peak = cpu.get("peak_rss_mib")
        mean = cpu.get("cpu_mean_pct")
        return (
            f"GPU telemetry unavailable: {summary.get('reason') or 'unknown reason'}; "
            f"process CPU {'-' if mean is None else f'{mean:.0f}%'} of one core, "
            f"peak RSS {'-' if peak is None else f'{peak:,.0f} MiB'}"
        )
    table = Table(
        title="device telemetry",
        caption="util: mean / max; memory: peak; power: mean; SM clock: min",
        box=box.SIMPLE_HEAD,
    )
    for name in ("gpu", "util %", "mem MiB", "power W", "energy J", "SM MHz", "throttling"):
        table.add_column(name, justify="left" if name in ("gpu", "throttling") else "right")

    for d in summary.get("devices", []):
        reasons = [r for r in d["throttle_reasons"] if r != "gpu_idle"]
        flag = ", ".join(reasons) if reasons else "none"
        table.add_row(
            f"{d['index']}: {d['name']}",
            f"{cell(d['util_mean_pct'], '.0f')} / {cell(d['util_max_pct'], '.0f')}",
            cell(d["mem_peak_mib"], ",.0f"), cell(d["power_mean_w"], ".0f"),
            cell(d["energy_j"], ",.0f") + (" (integ.)" if d["energy_source"] == "power_integral" else ""),
            cell(d["sm_clock_min_mhz"], ".0f"),
            f"[{_BAD}]{flag}[/]" if d["throttled"] else flag,
        )
    return table
