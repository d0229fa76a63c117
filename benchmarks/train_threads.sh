#!/usr/bin/env bash
# End-to-end UVC training throughput (real decoding, one loader worker) with one and with two torch
# threads: the table of docs/training.md "CPU budget". Each run is `uvc-cpu-t20` cut to a few steps
# per stage; what is printed is the mean samples/s (pairs/s) of each stage's log lines, the first
# line of each stage left out (it holds the loader's start).
#   bash benchmarks/train_threads.sh                 # STEPS=12 per stage, the shared videos
#   STEPS=30 THREADS="1 2" DATA=my_videos/ bash benchmarks/train_threads.sh
#   (VIDCORR and PYTHON: another environment's vidcorr and python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STEPS="${STEPS:-12}"
THREADS="${THREADS:-1 2}"
DATA="${DATA:-../shared/data/videos/davis2016-train}"
VIDCORR="${VIDCORR:-.venv/bin/vidcorr}"
PYTHON="${PYTHON:-.venv/bin/python}"  # only to say which torch ran
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
     "torch $("$PYTHON" -c 'import torch; print(torch.__version__)'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for threads in $THREADS; do
  cat > "$WORK/t$threads.toml" <<EOF
extends = "uvc-cpu-t20"
[cpu]
threads = $threads
[stages.warmup]
steps = $STEPS
[stages.joint]
steps = $STEPS
[log]
every = 2
EOF
  "$VIDCORR" train uvc --data "$DATA" --recipe "$WORK/t$threads.toml" --workers 1 \
      --autoencoder weights/lab_autoencoder.safetensors --run-dir "$WORK/run$threads" \
      --export "$WORK/run$threads/encoder.safetensors" > "$WORK/out$threads.txt" 2>&1 \
    || { cat "$WORK/out$threads.txt" >&2; exit 1; }
  # train.log lines: "step N | <stage> epoch E | ... | X samples/s | ..."
  awk -v threads="$threads" '
    / samples\/s / {
      split($0, f, " \\| "); split(f[2], s, " "); stage = s[1]
      for (i = 1; i in f; i++) if (f[i] ~ / samples\/s$/) { split(f[i], v, " "); rate = v[1] }
      if (seen[stage]++) { sum[stage] += rate; n[stage]++ }
    }
    END { printf "torch threads %s:", threads
          for (st in sum) printf "  %s %.2f pairs/s (%d lines)", st, sum[st] / n[st], n[st]
          print "" }' "$WORK/run$threads/train.log"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
