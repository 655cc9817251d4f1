"""What full information costs as the target grows: HedgeSpec's evaluation share against target step time.

The drafter pool is held fixed (a profile's drafters, the tiny zoo's eight by
default) and the target's step is made slower by a set latency added to every
target forward (by default a spin on the clock, as a host thread waiting on
an accelerator's stream does; `--wait sleep` idles the core instead, which lets
its clock drop and slows the evaluation that follows). For each latency the same prompts are decoded by
`fixed:generic`, HedgeSpec evaluating after every round (`hedgespec:every=1`,
the paper's schedule) and the default lazy HedgeSpec, and the script prints:

  - target step: mean verify time per round (ms), the x axis;
  - eval share: (evaluate + learn) / wall time, the y axis (the drafters' prompt prefill, which
    full information also pays, is the prefill phase's: not in this share, but in tokens/s);
  - tokens/s of each method and HedgeSpec's ratio to fixed:generic.

The paper's operating point is a 75.7 ms target step (Llama-3.1-8B on its
GPU; 2.5 ms of evaluation and 0.41 ms of update per round), marked on the
figure. With --plot (needs matplotlib, the `plots` extra) the figure is
written as PNG; --json writes every number.

    python benchmarks/eval_share.py --threads 1 --plot eval_share.png --json eval_share.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from hedgespec_cli.bench.query import run_query
from hedgespec_cli.config import load_profile
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.runner import checked_prompt_ids, open_pool
from hedgespec_cli.workloads import load_workload

PAPER_STEP_MS = 75.7  # HedgeSpec paper: target step of its 8B setting
METHODS = ("fixed:generic", "hedgespec:every=1", "hedgespec")


def slowed(forward, extra_s: float, spin: bool):
    """The target's forward followed by `extra_s` seconds of waiting (spinning or sleeping)."""

    def slow(*args, **kwargs):
        out = forward(*args, **kwargs)
        if spin:
            end = time.perf_counter() + extra_s
            while time.perf_counter() < end:
                pass
        elif extra_s:
            time.sleep(extra_s)
        return out

    return slow


def measure(engine: Engine, prompts: list[list[int]], method: str, domains: list) -> dict[str, float]:
    phase = dict.fromkeys(("verify", "evaluate", "learn"), 0)
    wall = tokens = rounds = 0
    for i, (ids, domain) in enumerate(zip(prompts, domains)):
        rec = run_query(engine, ids, method, domain=domain, seed=i)  # bench's query, T = 0: no reseeding needed
        for k in phase:
            phase[k] += rec.phase_ns[k]
        wall += rec.wall_ns
        tokens += rec.new_tokens
        rounds += len(rec.rounds)
    return {
        "target_step_ms": phase["verify"] / rounds / 1e6,
        "eval_share": (phase["evaluate"] + phase["learn"]) / wall,
        "eval_ms_per_round": (phase["evaluate"] + phase["learn"]) / rounds / 1e6,
        "tokens_per_s": tokens / (wall / 1e9),
        "mat": tokens / rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--device", help="cpu or cuda (default: the profile's)")
    ap.add_argument("--workload", default="mixed-domain")
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--added-ms", default="0,10,30,66,140", help="latencies added to every target step (ms)")
    ap.add_argument("--wait", choices=("spin", "sleep"), default="spin", help="how the added latency waits")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plot", help="write the figure here (PNG; needs matplotlib)")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    profile = load_profile(args.profile)
    pool = open_pool(profile, device=args.device)
    engine = Engine(pool, DecodeSettings(K=5, max_new_tokens=args.max_new_tokens))
    workload = load_workload(args.workload, limit=args.prompts)
    prompts = checked_prompt_ids(engine, workload.prompts)
    domains = [p.domain for p in workload.prompts]
    measure(engine, prompts[:1], "hedgespec", domains[:1])  # warm-up

    forward = pool.target.forward
    rows = []
    print(f"{'added ms':>9}{'method':>20}{'target ms':>11}{'eval share':>12}{'eval ms/rd':>12}"
          f"{'tok/s':>9}{'MAT':>6}{'vs fixed':>10}")
    for added in (float(a) for a in args.added_ms.split(",")):
        pool.target.forward = slowed(forward, added / 1e3, args.wait == "spin")
        base = None
        for method in METHODS:
            r = measure(engine, prompts, method, domains) | {"added_ms": added, "method": method}
            base = base or r["tokens_per_s"]
            r["vs_fixed"] = r["tokens_per_s"] / base
            rows.append(r)
            print(f"{added:9.1f}{method:>20}{r['target_step_ms']:11.2f}{100 * r['eval_share']:11.1f}%"
                  f"{r['eval_ms_per_round']:12.3f}{r['tokens_per_s']:9.1f}{r['mat']:6.2f}{r['vs_fixed']:10.3f}")
    pool.target.forward = forward
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"profile": args.profile, "threads": args.threads, "prompts": args.prompts, "wait": args.wait,
                       "max_new_tokens": args.max_new_tokens, "rows": rows}, f, indent=2)
    if args.plot:
        plot(rows, args.plot)


def plot(rows: list[dict], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        print("no figure: matplotlib is not installed (pip install -e '.[plots]'); the table and --json stand",
              file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS[1:]:
        pts = sorted((r["target_step_ms"], 100 * r["eval_share"]) for r in rows if r["method"] == method)
        ax.plot(*zip(*pts), marker="o", label=method)
    ax.axvline(PAPER_STEP_MS, color="grey", linestyle="--", label=f"paper's target step ({PAPER_STEP_MS} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("target step (ms per verify pass)")
    ax.set_ylabel("evaluation + learning (% of wall time)")
    ax.set_title("HedgeSpec's full-information cost against target size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
