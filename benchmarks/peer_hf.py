"""Engine vs Hugging Face transformers on the same models, prompts and K, in one process.

Interleaves, per prompt and repeat: the engine's `ar` against `model.generate`
(greedy), and the engine's `fixed:<drafter>` against assisted generation
(`assistant_model=`, a constant K draft tokens per round). Prints tokens/s of
each and the engine/transformers ratio (min / median / max over repeats), and
checks that the outputs are identical at T = 0.

    python benchmarks/peer_hf.py --profile tiny --prompts 7 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics

import torch

from hedgespec_cli.bench.query import run_query
from hedgespec_cli.config import load_profile
from hedgespec_cli.decoding.engine import DecodeSettings, Engine
from hedgespec_cli.runner import open_pool
from hedgespec_cli.telemetry.timers import PhaseTimer
from hedgespec_cli.workloads import load_workload


def hf_generate(pool, ids: list[int], max_new: int, assistant=None, K: int = 5) -> tuple[list[int], float]:
    """transformers' own decoding: greedy generate, or assisted generation with a fixed draft length."""
    target = pool.target.model
    kwargs = dict(max_new_tokens=max_new, do_sample=False, eos_token_id=pool.tokenizer.eos_token_id,
                  pad_token_id=pool.tokenizer.eos_token_id)
    if assistant is not None:
        assistant.generation_config.num_assistant_tokens = K
        assistant.generation_config.num_assistant_tokens_schedule = "constant"
        assistant.generation_config.assistant_confidence_threshold = 0.0
        kwargs["assistant_model"] = assistant
    inp = torch.tensor([ids], device=pool.target.device)
    timer = PhaseTimer(pool.target.device)  # the engine's clock: synchronised on a GPU
    with torch.inference_mode():
        out = target.generate(inp, attention_mask=torch.ones_like(inp), **kwargs)
    return out[0, len(ids):].tolist(), timer.lap("generate") / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--workload", default="mixed-domain")
    ap.add_argument("--drafter", default=None, help="drafter for fixed/assisted (default: the generic one)")
    ap.add_argument("--prompts", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-K", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--device", default=None, help="cpu, cuda or auto (default: the profile's)")
    ap.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: the profile's)")
    args = ap.parse_args()

    profile = load_profile(args.profile)
    drafter = args.drafter or profile.generic().name
    pool = open_pool(profile, device=args.device, dtype=args.dtype)
    engine = Engine(pool, DecodeSettings(K=args.K, max_new_tokens=args.max_new_tokens))
    assistant = pool.drafters[pool.names.index(drafter)].model
    prompts = load_workload(args.workload, limit=args.prompts).prompts
    ids = [pool.tokenizer(p.text)["input_ids"] for p in prompts]
    run_query(engine, ids[0], "ar"), hf_generate(pool, ids[0], 8)  # warm-up, untimed
    run_query(engine, ids[0], f"fixed:{drafter}"), hf_generate(pool, ids[0], 8, assistant, args.K)

    rows = {"ar": [], "fixed": []}  # per repeat: (engine tokens/s, hf tokens/s)
    mismatches = 0
    for _ in range(args.repeats):
        tok = {"ar": [0, 0.0, 0.0], "fixed": [0, 0.0, 0.0]}  # tokens, engine s, hf s
        for p_ids in ids:
            for mode, method, helper in (("ar", "ar", None), ("fixed", f"fixed:{drafter}", assistant)):
                rec = run_query(engine, p_ids, method)
                hf_ids, hf_s = hf_generate(pool, p_ids, args.max_new_tokens, helper, args.K)
                mismatches += hf_ids != rec.output_ids
                tok[mode][0] += rec.new_tokens
                tok[mode][1] += rec.wall_ns / 1e9
                tok[mode][2] += hf_s
        for mode, (n, e_s, h_s) in tok.items():
            rows[mode].append((n / e_s, n / h_s))

    print(f"profile {profile.name}, drafter {drafter}, K={args.K}, {len(ids)} prompts x {args.repeats} repeats, "
          f"max_new_tokens={args.max_new_tokens}, device {pool.target.device}, torch threads {torch.get_num_threads()}")
    print(f"{'mode':<8}{'engine tok/s':>14}{'hf tok/s':>12}{'ratio min':>11}{'median':>9}{'max':>8}")
    for mode, label in (("ar", "ar vs generate"), ("fixed", "fixed vs assisted")):
        ratios = [e / h for e, h in rows[mode]]
        e_med = statistics.median(e for e, _ in rows[mode])
        h_med = statistics.median(h for _, h in rows[mode])
        print(f"{mode:<8}{e_med:>14.1f}{h_med:>12.1f}{min(ratios):>11.2f}{statistics.median(ratios):>9.2f}"
              f"{max(ratios):>8.2f}   ({label})")
    print(f"outputs identical to transformers at T=0: {'yes' if not mismatches else f'NO ({mismatches} differ)'}")


if __name__ == "__main__":
    main()
