"""Where full-information evaluation time goes, on a profile's stacked LM drafters.

Prints, for the profile's largest group of stacked plain-Llama drafters:
  1. the cost of one evaluation call (every member over T new tokens) by T,
     and of one drafting call (one member, one token), in the profile's
     drafter dtype and in bfloat16;
  2. the torch profiler's top operators of a 5-token evaluation call;
  3. the target's 6-token verify pass alone and right after an evaluation
     call (how much the drafters' weights evict the target's from the caches);
  4. HedgeSpec's `choose` + `update` per round on synthetic gamma rows.

    python benchmarks/eval_cost.py --profile tiny

CPU timings: the clock is read without device synchronisation, so use a CPU
profile (on a GPU, `hedgespec bench --sweep-drafters` gives the phase split).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from hedgespec_cli.config import load_profile
from hedgespec_cli.decoding.kinds import group_drafters
from hedgespec_cli.runner import open_pool
from hedgespec_cli.selection import make_selector
from hedgespec_cli.selection.feedback import FullFeedback, QueryContext

PREFIX = 100  # cached tokens before every timed call


def ms_per_call(fn, reps: int) -> float:
    for _ in range(10):
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def stacked_group(profile, drafter_dtype: str | None):
    pool = open_pool(profile, drafter_dtype=drafter_dtype)
    stacks = [g for g in group_drafters(pool) if hasattr(g, "stack")]
    if not stacks:
        raise SystemExit(f"profile {profile.name!r} has no stackable plain-Llama drafters")
    return pool, max(stacks, key=lambda g: len(g.members)).stack


def call_costs(stack, ids: torch.Tensor, reps: int) -> dict[str, float]:
    cache = stack.new_cache(PREFIX + 64)
    stack.forward(ids[:PREFIX], cache)

    def evaluate(T):
        cache.lengths[:] = [PREFIX] * stack.n
        stack.forward(ids[PREFIX : PREFIX + T], cache)

    def draft_step():
        cache.lengths[0] = PREFIX
        stack.forward(ids[PREFIX : PREFIX + 1], cache, 0)

    out = {f"evaluate T={T}": ms_per_call(lambda T=T: evaluate(T), reps) for T in (1, 5, 10, 20)}
    out["draft step (1 member, 1 token)"] = ms_per_call(draft_step, reps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    ids = torch.randint(0, 1000, (PREFIX + 64,))

    pool, stack = stacked_group(profile, None)
    print(f"profile {profile.name}: {stack.n} stacked drafters, torch threads {args.threads}; ms per call")
    costs = {"profile dtype": call_costs(stack, ids, args.reps)}
    costs["bfloat16"] = call_costs(stacked_group(profile, "bfloat16")[1], ids, args.reps)
    for name in costs["profile dtype"]:
        print(f"  {name:<32}" + "".join(f"{dtype} {c[name]:6.3f}   " for dtype, c in costs.items()))

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cache = stack.new_cache(PREFIX + 64)
    stack.forward(ids[:PREFIX], cache)
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(50):
            cache.lengths[:] = [PREFIX] * stack.n
            stack.forward(ids[PREFIX : PREFIX + 5], cache)
    print("top operators of a 5-token evaluation call (profile dtype):")
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=6, max_name_column_width=24, max_shapes_column_width=44))

    target = pool.target
    t_cache = target.new_cache()
    target.forward(ids[:PREFIX], t_cache)

    def verify_ms(after_eval: bool) -> float:
        times = []
        for _ in range(args.reps):
            if after_eval:
                cache.lengths[:] = [PREFIX] * stack.n
                stack.forward(ids[PREFIX : PREFIX + 5], cache)
            t = time.perf_counter()
            target.forward(ids[PREFIX : PREFIX + 6], t_cache)
            times.append(time.perf_counter() - t)
            t_cache.crop(PREFIX)
        return statistics.median(times) * 1e3

    print(f"target 6-token verify, median ms: alone {verify_ms(False):.3f}, "
          f"right after an evaluation call {verify_ms(True):.3f}")

    rng = np.random.default_rng(0)
    for n in (2, 8, 16):
        names = tuple(f"d{i}" for i in range(n))
        sel = make_selector("hedgespec", n, names)
        sel.begin_query(QueryContext(None, names, (None,) * n, 5))
        gamma = (rng.random((8000, n)) < np.linspace(0.3, 0.9, n)).astype(float)
        s, rounds, t = 0, 0, time.perf_counter()
        while s + 6 < len(gamma):
            d = sel.choose(s)
            k = 1 + int(rng.integers(0, 6))
            sel.update(FullFeedback(gamma[s : s + k], d.arm, 5))
            s, rounds = s + k, rounds + 1
        per_round = (time.perf_counter() - t) / rounds * 1e6
        print(f"hedgespec choose + update, N={n}: {per_round:.1f} us per round ({s / rounds:.2f} tokens per round)")


if __name__ == "__main__":
    main()
