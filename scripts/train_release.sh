#!/usr/bin/env bash
# How the released weights in weights/ were made (see weights/MODEL_CARD.md; scripts/results.sh
# scores them). Resumable: run it again after an interruption and each step continues where it stopped.
#   1. UVC's Lab auto-encoder on frames of the training videos  -> weights/lab_autoencoder.safetensors
#   2. UVC (recipe uvc-cpu-t20: warm-up then joint) with it frozen -> weights/uvc_r18.safetensors
# Needs ../shared/data beside the repository. CPU by default; pass DEVICE=cuda to use a GPU
# (then prefer RECIPE=uvc, the paper's recipe).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
DATA="${DATA:-../shared/data/videos}"
RECIPE="${RECIPE:-uvc-cpu-t20}"
DEVICE="${DEVICE:-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # the recipe's data worker takes the other core

resume_flag() { [ -f "$1/checkpoint.pt" ] && echo "--resume" || true; }

if [ ! -f weights/lab_autoencoder.safetensors ]; then
  vidcorr train autoencoder --data "$DATA" --recipe autoencoder --device "$DEVICE" \
    --out weights/lab_autoencoder.safetensors --run-dir runs/ae $(resume_flag runs/ae)
fi
if [ ! -f weights/uvc_r18.safetensors ]; then
  vidcorr train uvc --data "$DATA/davis2016-train" --data "$DATA/clips" --recipe "$RECIPE" --device "$DEVICE" \
    --autoencoder weights/lab_autoencoder.safetensors --run-dir "runs/$RECIPE" $(resume_flag "runs/$RECIPE") \
    --export weights/uvc_r18.safetensors
fi
echo "trained: weights/uvc_r18.safetensors; evaluate it (and the floors) with: bash scripts/results.sh"
