#!/usr/bin/env bash
# What a CPU user gives up for speed: the crw protocol with fewer context frames and/or the local
# window on the first frame too, with the shipped weights on the whole DAVIS-2016 split at 480p,
# one torch thread (docs/benchmarks.md, "Faster than the protocol"). Each variant is one
# benchmarks/propagation.py throughput run (frames/s, features vs affinity per frame, J&F);
# resumable: a variant whose JSON exists is skipped. VARIANTS picks some; FEATURES=random-resnet18
# (or lab-pixels) runs an untrained floor instead of the shipped weights, WEIGHTS other weights than
# the default (the kept JSONs are weights/uvc_r18.safetensors; the default is now uvc_r18_ft3); OUT
# (default docs/benchmarks) is where the JSON goes. A variant whose model differs from the records
# already there is refused, naming them: one table, one model. ~15-35 min per variant on a 2-core CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
OUT="${OUT:-docs/benchmarks}"
ALL="protocol context10 context5 window-first context10-window-first context5-window-first"
VARIANTS="${VARIANTS:-$ALL}"
mkdir -p "$OUT"
record() { echo "$OUT/propagation-cpu-crw-$1${FEATURES:+-$FEATURES}.json"; }
for variant in $VARIANTS; do
  json="$(record "$variant")"
  [ -f "$json" ] && continue
  kept=()  # this table's records so far: the run must measure their model
  for other in $ALL; do [ -f "$(record "$other")" ] && kept+=("$(record "$other")"); done
  case "$variant" in
    protocol) flags=() ;;  # crw as the paper runs it, measured beside the variants
    context10) flags=(--context 10) ;;
    context5) flags=(--context 5) ;;
    context10-window-first) flags=(--context 10 --window-first) ;;
    context5-window-first) flags=(--context 5 --window-first) ;;
    window-first) flags=(--window-first) ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
  esac
  echo "== $variant: ${flags[*]-}" >&2
  python benchmarks/propagation.py --preset crw ${flags[@]+"${flags[@]}"} ${FEATURES:+--features "$FEATURES"} \
    ${WEIGHTS:+--weights "$WEIGHTS"} --same-model-as ${kept[@]+"${kept[@]}"} --skip memory --threads 1 --json "$json"
done
