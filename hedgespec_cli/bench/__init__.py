"""`hedgespec bench`: a benchmark run and a drafter-count sweep.

settings.py  what a run depends on (BenchSettings), resolved and checked before any model loads
query.py     one query of any method (run_query) and a run's per-query step (QueryStep)
loop.py      the loop bench and the sweep share: warm-up, one pass over prompts x methods, interrupts
run.py       a bench run: its run directory, repeats, resume, results.json (run_bench)
sweep.py     --sweep-drafters: one pass per pool size (run_sweep)
generate.py  `hedgespec generate`: one prompt, one method (generate_once)

The run directory on disk, and reading it back, is hedgespec_cli/rundir.py: report/ reads it too.
"""
