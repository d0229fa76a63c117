#!/usr/bin/env bash
# UVC ablation table (UVC Table 2: full, -L, -O, -C) at one equal budget: recipe uvc-cpu-ablation
# (100 + 100 steps) unless RECIPE says otherwise, each model evaluated the same way: DAVIS-2016
# (10 sequences), preset crw at short side SIZE (240). Resumable. Writes docs/ablations-table.md via
# scripts/ablation_table.py. Another budget: RECIPE=uvc DEVICE=cuda RUNS=runs/ablation-uvc OUT=out/ablations-uvc.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
DATA="${DATA:-../shared/data/videos}"
DEVICE="${DEVICE:-cpu}"
SIZE="${SIZE:-240}"
RECIPE="${RECIPE:-uvc-cpu-ablation}"
RUNS="${RUNS:-runs/ablation}"     # runs are RUNS-<variant>
OUT="${OUT:-out/ablations}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
[ -f weights/lab_autoencoder.safetensors ] || { echo "needs weights/lab_autoencoder.safetensors (scripts/train_release.sh)"; exit 1; }

for variant in full L O C; do
  run="$RUNS-$variant"
  weights="$run/encoder.safetensors"
  ablate=(); [ "$variant" = full ] || ablate=(--ablate "$variant")
  if [ ! -f "$weights" ]; then
    resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
    vidcorr train uvc --data "$DATA/davis2016-train" --data "$DATA/clips" --recipe "$RECIPE" \
      --device "$DEVICE" --autoencoder weights/lab_autoencoder.safetensors --run-dir "$run" \
      --export "$weights" "${ablate[@]}" "${resume[@]}"
  fi
  out="$OUT/$variant"
  if [ ! -f "$out/results.json" ]; then
    rm -rf "$out"
    vidcorr eval davis --root ../shared/data/davis2016 --preset crw --size "$SIZE" --device "$DEVICE" \
      --weights "$weights" --out "$out"
  fi
done
for floor in random-resnet18 lab-pixels; do
  out="$OUT/floor-$floor"
  [ -f "$out/results.json" ] && continue
  rm -rf "$out"
  vidcorr eval davis --root ../shared/data/davis2016 --preset crw --size "$SIZE" --device "$DEVICE" \
    --features "$floor" --out "$out"
done
table=docs/ablations-table.md; [ "$OUT" = out/ablations ] || table="$OUT/table.md"
# through a temporary file: a failing ablation_table.py left the committed table empty
python scripts/ablation_table.py "$OUT" > "$table.tmp" || { rm -f "$table.tmp"; exit 1; }
mv "$table.tmp" "$table"
cat "$table"
