"""False alarms and detections of `hedgespec compare`'s regression gate, measured.

Runs `hedgespec bench` back to back (one process at a time, nothing else
should be busy): IDENTICAL runs of today's code and SLOW runs of a known
slowdown (default `--threads 1`), alternated so that the machine's drift hits
both alike. The first CALIBRATE identical runs feed `hedgespec calibrate`;
the others are the test set:

- false alarms: every ordered pair of test runs (5 runs: 20 comparisons),
  which compare identical code;
- detections: each slow run against a test run (10 comparisons).

Each comparison is judged by the README's gate, with the default drift bands,
with the bands calibrated on the first runs, and with no band:

    python benchmarks/gate_noise.py /tmp/gate              # about 15 minutes on 2 cores
    python benchmarks/gate_noise.py /tmp/gate --reuse      # re-judge the runs already there

Writes OUT/gate_noise.json and prints a table. Timing runs are only
meaningful with nothing else running on the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hedgespec_cli.report.compare import (
    DEFAULT_NOISE,
    FailRule,
    NoiseModel,
    calibrate_noise,
    compare_runs,
    find_failures,
    parse_fail_on,
)

GATE = ("mat:-2%", "speedup_vs_ar:-5%", "tokens_per_s:-10%")
BENCH = "--methods ar,fixed:generic,hedgespec --prompts 14 --max-new-tokens 128"


def bench(out: Path, name: str, args: str) -> Path:
    """One bench run into out/name/ -> its run directory."""
    dest = out / name
    cmd = [sys.executable, "-m", "hedgespec_cli", "bench", *shlex.split(args), "--out", str(dest)]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (run,) = [p for p in dest.iterdir() if p.is_dir()]
    return run


def runs_of(out: Path, prefix: str) -> list[Path]:
    return sorted(run for d in sorted(out.glob(f"{prefix}-*")) for run in d.iterdir() if run.is_dir())


def judge(base: Path, cand: Path, rules: list[FailRule], noise: NoiseModel) -> list[str]:
    """The gate's failures for one comparison (metric names), [] when it passes."""
    comparison = compare_runs(base, cand, noise=noise)
    return sorted({f"{f.delta.method}:{f.delta.metric}" for f in find_failures(comparison, rules)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--identical", type=int, default=8, help="identical runs (default 8)")
    parser.add_argument("--calibrate", type=int, default=3, help="of which for calibration (default 3)")
    parser.add_argument("--slow", type=int, default=10, help="runs of the slowdown (default 10)")
    parser.add_argument("--bench-args", default=BENCH)
    parser.add_argument("--slow-args", default="--threads 1", help="what makes the slow runs slow")
    parser.add_argument("--base-args", default="--threads 2", help="the same setting for the identical runs")
    parser.add_argument("--reuse", action="store_true", help="judge the runs already in OUT")
    a = parser.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if not a.reuse:
        # Alternate identical and slow runs so a drift of the machine hits both alike.
        order = [("same", i) for i in range(a.identical)]
        slow = [("slow", i) for i in range(a.slow)]
        for i, job in enumerate(itertools.zip_longest(order, slow)):
            for kind, k in filter(None, job):
                extra = a.slow_args if kind == "slow" else a.base_args
                bench(a.out, f"{kind}-{k:02d}", f"{a.bench_args} {extra}")
    same, slow = runs_of(a.out, "same"), runs_of(a.out, "slow")
    calib, test = same[: a.calibrate], same[a.calibrate :]
    noise_file = a.out / "noise.json"
    noise_file.write_text(json.dumps(calibrate_noise(calib), indent=2))
    from hedgespec_cli.report.compare import load_noise

    models = {
        "no band": NoiseModel({}, {}, "no drift band"),
        "default band": DEFAULT_NOISE,
        "calibrated band": load_noise(noise_file),
    }
    rules = [FailRule(*parse_fail_on(spec)) for spec in GATE]
    same_pairs = list(itertools.permutations(test, 2))
    slow_pairs = [(test[i % len(test)], s) for i, s in enumerate(slow)]
    result: dict = {"gate": list(GATE), "bench_args": a.bench_args, "slow_args": a.slow_args,
                    "calibration_runs": [str(p) for p in calib], "band": json.loads(noise_file.read_text())["band"],
                    "variants": {}}
    for label, model in models.items():
        alarms = [judge(b, c, rules, model) for b, c in same_pairs]
        caught = [judge(b, c, rules, model) for b, c in slow_pairs]
        result["variants"][label] = {
            "false_alarms": sum(bool(x) for x in alarms), "identical_comparisons": len(alarms),
            "detected": sum(bool(x) for x in caught), "slow_comparisons": len(caught),
            "false_alarm_rules": sorted({r for x in alarms for r in x}),
        }
    # The slowdown itself, as the runs measured it: ar's tokens/s, slow over identical.
    tps = {p: json.loads((p / "results.json").read_text())["methods"]["ar"]["tokens_per_s"] for p in test + slow}
    result["ar_tokens_per_s"] = {"identical": [tps[p] for p in test], "slow": [tps[p] for p in slow]}
    (a.out / "gate_noise.json").write_text(json.dumps(result, indent=2))
    print(f"gate: {' '.join('--fail-on ' + g for g in GATE)}")
    print(f"slowdown: {a.slow_args!r}; ar tokens/s identical {min(tps[p] for p in test):.1f}-"
          f"{max(tps[p] for p in test):.1f}, slow {min(tps[p] for p in slow):.1f}-{max(tps[p] for p in slow):.1f}")
    print(f"{'variant':<20} {'false alarms':>14} {'detected':>10}")
    for label, v in result["variants"].items():
        print(f"{label:<20} {v['false_alarms']:>6} of {v['identical_comparisons']:<5} "
              f"{v['detected']:>3} of {v['slow_comparisons']}")


if __name__ == "__main__":
    main()
