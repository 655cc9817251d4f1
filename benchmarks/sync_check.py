"""Host-device synchronisations per round, and the lines that make them (issue 17, item 4).

On a CUDA device every `.item()`, `.tolist()`, `.cpu()`, `bool(tensor)` or
`nonzero()` in the decode loop stalls the host until the device has drained its
queue. This script decodes a few prompts of a workload with each method under
`torch.cuda.set_sync_debug_mode("warn")`, which makes PyTorch warn at every
synchronising call, and tallies the warnings by the Python line that made them:
all of a query's syncs (its prefill and end included) per round, then the lines,
most frequent first. Some are inherent
(the accepted length decides the next round; the learner runs on the host and
reads gamma); the table says which lines to look at.

    python benchmarks/sync_check.py --device cuda --methods ar,fixed:generic,hedgespec --json syncs.json

Needs a CUDA device: a CPU never synchronises, so there it says so and exits 0.
`benchmarks/gpu_check.sh` runs it as its `syncs` step.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SYNC = "synchroniz"  # PyTorch's warning: "called a synchronizing CUDA operation"


def where(filename: str) -> str:
    """A warning's file, short: relative to this checkout, else from the installed package's folder
    (`transformers/...`, `torch/...`)."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        for i, part in enumerate(parts):
            if part in ("site-packages", "dist-packages") and i + 1 < len(parts):
                return str(Path(*parts[i + 1 :]))
        return filename


def tally(records: Iterable[warnings.WarningMessage]) -> Counter[str]:
    """Synchronisation warnings -> count per `file:line` (other warnings are not counted)."""
    return Counter(f"{where(w.filename)}:{w.lineno}" for w in records if SYNC in str(w.message))


def count_syncs(decode, set_mode=None) -> tuple[object, Counter[str]]:
    """Run `decode()` with sync warnings on -> (its result, the tally of its synchronising lines).
    set_mode: what switches them (`torch.cuda.set_sync_debug_mode`; a test passes a fake)."""
    set_mode = set_mode or torch.cuda.set_sync_debug_mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every occurrence, not once per line
        set_mode("warn")
        try:
            out = decode()
        finally:
            set_mode("default")
    return out, tally(caught)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workload", default="mixed-domain")
    ap.add_argument("--methods", default="ar,fixed:generic,ucbspec,hedgespec:every=1,hedgespec")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--top", type=int, default=12, help="lines shown per method")
    ap.add_argument("--json", help="write every count here")
    args = ap.parse_args(argv)
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        print(f"sync check: needs a CUDA device (got --device {args.device}, CUDA available: "
              f"{torch.cuda.is_available()}); a CPU never synchronises, nothing to check")
        return 0

    from hedgespec_cli.bench.query import run_query
    from hedgespec_cli.config import load_profile
    from hedgespec_cli.decoding.engine import DecodeSettings, Engine
    from hedgespec_cli.runner import checked_prompt_ids, open_pool
    from hedgespec_cli.workloads import load_workload

    pool = open_pool(load_profile(args.profile), device=args.device)
    engine = Engine(pool, DecodeSettings(K=5, max_new_tokens=args.max_new_tokens))
    workload = load_workload(args.workload, limit=args.prompts)
    prompts = checked_prompt_ids(engine, workload.prompts)
    domains = [p.domain for p in workload.prompts]
    report = {}
    for method in args.methods.split(","):
        run_query(engine, prompts[0], method, domain=domains[0])  # warm-up: first calls allocate and compile
        rounds, lines = 0, Counter()
        for i, (ids, domain) in enumerate(zip(prompts, domains)):
            record, counts = count_syncs(partial(run_query, engine, ids, method, domain=domain, seed=i))
            rounds += len(record.rounds)
            lines += counts
        total = sum(lines.values())
        report[method] = {"rounds": rounds, "syncs": total, "per_round": total / rounds, "lines": dict(lines)}
        print(f"{method}: {total} synchronisations over {rounds} rounds, prefill and query end included: "
              f"{total / rounds:.2f} per round")
        for line, n in lines.most_common(args.top):
            print(f"  {n / rounds:6.2f} a round  {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
