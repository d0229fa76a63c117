#!/usr/bin/env bash
# The GPU checks of a session that is lent the device machine, as one prepared command that ends
# inside the tool's 10-minute limit (docs/benchmarks.md, "GPU"). Here, first:
#     bash scripts/device_prepare.sh            # data into .carry/ (git-ignored)
# then with the device tool:
#     run(command="bash scripts/device_check.sh", carry=[".carry"], timeout_s=600)
# Steps (each under its own timeout; a failed step is logged and the next one runs):
#   1. tests/test_cuda.py: the CUDA path gives the CPU path's answers (affinity, propagation,
#      eval davis, a training step, train stop/resume/export)
#   2. benchmarks/propagation.py, preset crw, 480p, the shipped weights: frames/s, features vs
#      affinity per frame, peak RSS and GPU memory, J&F, over the carried DAVIS sequences; then
#      peak memory at 40 and 400 frames
#   3. the same throughput with the uvc preset on car-shadow
#   4. benchmarks/training.py, recipe uvc (the paper's shapes, batch 40), bf16
#   5. cycletime (not in the default STEPS): benchmarks/training.py, recipe cycletime (the release's
#      shapes: ResNet-50, 240 px clips, batch 36), bf16
#   5b. stt (not in the default STEPS): benchmarks/training.py, recipe stt (the release's shapes:
#      ResNet-50 student and teacher, 256 px pairs, batch 64), bf16
#   6. tf32 (not in the default STEPS): step 2's throughput with cuBLAS allowed to use TF32
#      (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1), to weigh its speed against its J&F change
#   7. TRAIN_STEPS > 0: that many steps of `vidcorr train uvc --recipe uvc-device-check` (the paper
#      recipe, step-based) on the carried videos; the exported encoder comes back with the results
#      (a checkpoint, with Adam's state, is too large to)
# The machine has torch and OpenCV but no PyAV and no network: nothing is installed, the package
# runs from src/. Results: $OUT (the device tool's folder) or out/device-check.
#   STEPS (which steps: "tests crw memory uvc training"; add cycletime, stt or tf32, or name one for a
#   second call),
#   DEVICE (cuda), SIZE (480), SEQUENCES (those carried), LENGTHS (40,400), TRAIN_STEPS (0),
#   PYTHON (.venv/bin/python where there is one, as here; else python3, as on the device machine);
#   SMOKE=1 shrinks every step to try the script on a CPU.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out/device-check}"
mkdir -p "$OUT"
# python3 here has no torch; the device machine has no .venv (not carried), and torch in its python3
[ -x "$ROOT/.venv/bin/python" ] && PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
SIZE="${SIZE:-480}"
LENGTHS="${LENGTHS:-40,400}"
TRAIN_STEPS="${TRAIN_STEPS:-0}"
STEPS=" ${STEPS:-tests crw memory uvc training} "
[ "$TRAIN_STEPS" -gt 0 ] && STEPS+="train "
TRAIN_RECIPE="${TRAIN_RECIPE:-uvc-device-check}"
DAVIS="${DAVIS:-$ROOT/.carry/davis2016}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TRAIN_BENCH=(--recipe uvc --steps 5 --warmup 2)
CYCLE_BENCH=(--recipe cycletime --steps 3 --warmup 1)
STT_BENCH=(--recipe stt --steps 3 --warmup 1)
if [ "${SMOKE:-0}" = 1 ]; then
  SIZE=120 LENGTHS=12,24
  TRAIN_BENCH=(--recipe uvc-cpu --steps 1 --warmup 1 --batch-size 2)
  CYCLE_BENCH=(--recipe cycletime-cpu --steps 1 --warmup 1 --batch-size 2)
  STT_BENCH=(--recipe stt-cpu --steps 1 --warmup 1 --batch-size 2)
  TRAIN_RECIPE="$OUT/smoke.toml"
  printf 'extends = "uvc-device-check"\n[data]\ncrop = 64\nframe = 128\nbatch_size = 4\nworkers = 1\n' > "$TRAIN_RECIPE"
fi
[ "$DEVICE" = cuda ] && TRAIN_BENCH+=(--bf16) && CYCLE_BENCH+=(--bf16) && STT_BENCH+=(--bf16)
LOG="$OUT/device-check.log"
: > "$LOG"
failed=()

step() {  # step KEY NAME SECONDS COMMAND...: run under a timeout if KEY is in STEPS, log it, remember a failure
  local key="$1" name="$2" seconds="$3"
  shift 3
  [[ "$STEPS" == *" $key "* ]] || return 0
  echo "== $name ($(date -u +%H:%M:%S), limit ${seconds}s): $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - start))s" | tee -a "$LOG"
  [ "$rc" = 0 ] || failed+=("$name")
}

{
  echo "device_check: STEPS=$STEPS DEVICE=$DEVICE SIZE=$SIZE LENGTHS=$LENGTHS TRAIN_STEPS=$TRAIN_STEPS SMOKE=${SMOKE:-0}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import os, sys, torch, vidcorr; print('python', sys.version.split()[0], 'torch', torch.__version__,
      'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0), 'torch_threads', torch.get_num_threads(),
      'cpus', os.cpu_count())"
} 2>&1 | tee -a "$LOG"

if [ ! -f "$DAVIS/ImageSets/2016/val.txt" ]; then
  echo "device_check: $DAVIS/ImageSets/2016/val.txt missing: run scripts/device_prepare.sh and carry .carry" | tee -a "$LOG"
  exit 2
fi
SEQUENCES="${SEQUENCES:-$(paste -sd, "$DAVIS/ImageSets/2016/val.txt")}"
[ "${SMOKE:-0}" = 1 ] && SEQUENCES=car-shadow
PROP=(benchmarks/propagation.py --root "$DAVIS" --device "$DEVICE" --size "$SIZE")

step tests "cuda tests" 200 "$PYTHON" -m pytest -q tests/test_cuda.py  # all skipped without a GPU (SMOKE)
# Throughput and memory as separate steps: a timeout in one keeps the other's results.
step crw "propagation crw throughput" 150 "$PYTHON" "${PROP[@]}" --preset crw --sequences "$SEQUENCES" \
  --skip memory --json "$OUT/propagation-$DEVICE-crw.json"
step memory "propagation crw memory" 90 "$PYTHON" "${PROP[@]}" --preset crw --skip throughput \
  --lengths "$LENGTHS" --json "$OUT/propagation-$DEVICE-crw-memory.json"
step uvc "propagation uvc" 60 "$PYTHON" "${PROP[@]}" --preset uvc --sequences car-shadow --skip memory \
  --json "$OUT/propagation-$DEVICE-uvc.json"
step training "training benchmark" 60 "$PYTHON" benchmarks/training.py "${TRAIN_BENCH[@]}" --device "$DEVICE" \
  --json "$OUT/training-$DEVICE-uvc.json"
step cycletime "training benchmark, CycleTime" 90 "$PYTHON" benchmarks/training.py "${CYCLE_BENCH[@]}" \
  --device "$DEVICE" --json "$OUT/training-$DEVICE-cycletime.json"
step stt "training benchmark, STT" 90 "$PYTHON" benchmarks/training.py "${STT_BENCH[@]}" \
  --device "$DEVICE" --json "$OUT/training-$DEVICE-stt.json"
TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 step tf32 "propagation crw throughput, TF32 matmuls" 150 \
  "$PYTHON" "${PROP[@]}" --preset crw --sequences "$SEQUENCES" --skip memory --json "$OUT/propagation-$DEVICE-crw-tf32.json"
if [ "$TRAIN_STEPS" -gt 0 ]; then
  # The run dir and frame cache in a temporary folder, removed at exit: under the repo they left a
  # runs/ behind; under $OUT the device tool would fetch the checkpoints (too large to come back).
  # The run's record and log come back in $OUT/train-run.
  SCRATCH="$(mktemp -d)"
  trap 'rm -rf "$SCRATCH"' EXIT
  step train "train uvc $TRAIN_STEPS steps" $((60 + TRAIN_STEPS * 2)) "$PYTHON" -m vidcorr train uvc \
    --data "$ROOT/.carry/videos" --recipe "$TRAIN_RECIPE" --device "$DEVICE" --max-steps "$TRAIN_STEPS" \
    --autoencoder weights/lab_autoencoder.safetensors --run-dir "$SCRATCH/device-uvc" \
    --cache-dir "$SCRATCH/device-cache" --export "$OUT/uvc_r18_device.safetensors"
  mkdir -p "$OUT/train-run"
  cp "$SCRATCH/device-uvc/run.json" "$SCRATCH/device-uvc/train.log" "$OUT/train-run/" 2>/dev/null
  # Files come back at most 16 MiB each: split a layer4 encoder (~22 MB in fp16); rejoin with
  # cat uvc_r18_device.safetensors.part-* > uvc_r18_device.safetensors
  if [ -f "$OUT/uvc_r18_device.safetensors" ]; then
    split -b 15M "$OUT/uvc_r18_device.safetensors" "$OUT/uvc_r18_device.safetensors.part-" \
      && rm "$OUT/uvc_r18_device.safetensors"
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "device_check: FAILED: ${failed[*]} (log: $LOG)" | tee -a "$LOG"
  exit 1
fi
echo "device_check: all steps passed; results in $OUT" | tee -a "$LOG"
