#!/usr/bin/env bash
# One pass over everything that needs a CUDA device, for a lent GPU machine:
#   tests   the CUDA tests (lossless chains, trees and EAGLE-3 heads on cuda, NVML sampler)
#   bench   the default bench on cuda (validity, NVML telemetry, CUDA allocator peak)
#   peer    the peer table against transformers' generate / assisted generation
#   sweep   the drafter-count sweep with its per-round phase split
#   trees   EAGLE-3 heads with dynamic trees on cuda (validity)
#   evalshare  HedgeSpec's evaluation share against target step time on cuda
#           (benchmarks/eval_share.py; OUT/eval_share.json and .png)
#   syncs   host-device synchronisations per round and the lines that make them
#           (benchmarks/sync_check.py under torch.cuda.set_sync_debug_mode("warn");
#           OUT/syncs.json)
#   zoo     (not in the default set) a candidate next zoo: the shipped recipe with
#           the `chat` domain for `dialogue`, built on cuda, and its acceptance
#           matrix (OUT/zoo/matrix.json). Needs data/corpora, or data/corpora.tgz to
#           unpack (the device machine has no network); ZOO_ARGS overrides the
#           recipe (e.g. a miniature dry run on a CPU), ZOO_DOMAINS the domains
#           (e.g. multistep for math).
# Logs and a tarball of the run directories land in OUT (default gpu-check/);
# the exit status is non-zero if any step failed.
#
#   bash benchmarks/gpu_check.sh /tmp/gpu-check            # the default steps
#   bash benchmarks/gpu_check.sh /tmp/gpu-check tests trees  # some steps
#   bash benchmarks/gpu_check.sh /tmp/gpu-check zoo          # the next zoo (~3 device-minutes)
#
# Runs from a checkout without installing (PYTHONPATH); needs torch with CUDA,
# transformers, typer, rich, pyyaml, nvidia-ml-py and pytest.
set -uo pipefail
all="tests bench peer sweep trees evalshare syncs"
known="$all zoo"
out=$(realpath -m "${1:-gpu-check}")
shift || true
steps=${*:-$all}
for s in $steps; do
  [[ " $known " == *" $s "* ]] || { echo "error: unknown step '$s'; choose from: $known" >&2; exit 2; }
done
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-160}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
hs() { $py -m hedgespec_cli "$@"; }

tests() { $py -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py; }
bench() { hs bench --device cuda --out "$out/runs"; }
peer() { $py benchmarks/peer_hf.py --device cuda --prompts 7 --repeats 3; }
sweep() {
  hs bench --device cuda --sweep-drafters 2,4,8,16 --methods ar,fixed:generic,hedgespec:every=1,hedgespec --prompts 7 \
    --out "$out/runs"
}
trees() {
  hs bench --device cuda --profile tiny-eagle3 --tree-top-k 4 --methods ar,fixed:generic,hedgespec,oracle \
    --prompts 14 --out "$out/runs"
}
evalshare() {
  $py benchmarks/eval_share.py --device cuda --json "$out/eval_share.json" --plot "$out/eval_share.png"
}
syncs() { $py benchmarks/sync_check.py --device cuda --json "$out/syncs.json"; }
zoo() {
  local z="$out/zoo" domains=${ZOO_DOMAINS:-code,math,biology,legal,scripture,chat,manuals} d
  [ -f data/corpora/chat.jsonl ] || tar -xzf data/corpora.tgz -C data || return 1
  # shellcheck disable=SC2086  # ZOO_ARGS is a list of flags
  hs zoo build ${ZOO_ARGS:---device cuda --target-steps 1500 --batch-size 64 --max-steps 320 --time-budget 4.2} \
    --domains "$domains" --out "$z/tiny" --prompts-dir "$z/prompts" || return 1
  {
    echo "name: next-domain-shift"; echo "schedule: shift"; echo "seed: 0"; echo "sources:"
    for d in ${domains//,/ }; do echo "  - {domain: $d, path: prompts/$d.jsonl}"; done
  } > "$z/domain-shift.yaml"
  hs zoo matrix --profile "$z/tiny.yaml" --workload "$z/domain-shift.yaml" --json > "$z/matrix.json"
}

rm -f "$out/failed"
{
  echo "== env ($(date +%T))"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
  for s in $steps; do
    echo "== $s ($(date +%T))"
    $s || echo "$s" >> "$out/failed"  # this block runs in a subshell: failures go through a file
  done
  echo "== done ($(date +%T))"
} 2>&1 | tee "$out/log.txt"
if [ -d "$out/runs" ]; then tar -czf "$out/runs.tar.gz" -C "$out" runs && rm -rf "$out/runs"; fi
if [ -d "$out/zoo" ]; then  # about 50 MB: in parts that a device call can bring back (cat them to untar)
  tar -czf - -C "$out" zoo | split -b 15M - "$out/zoo.tar.gz.part-" && rm -rf "$out/zoo"
fi
if [ -s "$out/failed" ]; then echo "failed steps: $(tr '\n' ' ' < "$out/failed")" >&2; exit 1; fi
