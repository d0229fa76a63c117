#!/usr/bin/env bash
# Fine-tune the shipped weights with `--init` (docs/training.md, "Fine-tuning") on the shared
# videos and score the results on DAVIS-2016 val (480p) beside the shipped ones (docs/uvc.md and
# docs/stt.md, "Fine-tuning the shipped weights"). Resumable: a finished step is skipped.
#   WHICH="uvc stt"   uvc: uvc_r18 + uvc-cpu-t20-finetune, scored with `crw`
#                     uvc2: a second round, uvc_r18_ft + uvc-cpu-t20-finetune-bf16 (not in the
#                           default WHICH: it starts from the shipped first round), scored with `crw`
#                     uvc3: a third round, uvc_r18_ft2 + uvc-cpu-t20-finetune-round3 (the same, seed 3;
#                           not in the default WHICH either), scored with `crw`
#                     uvc4: a fourth round, uvc_r18_ft3 + uvc-cpu-t20-finetune-round4 (seed 4; not
#                           shipped, docs/uvc.md "A fourth round"), scored with `crw`
#                     stt: stt_r18 + stt-cpu-finetune (teacher: runs/moco-cpu, trained here with
#                          moco-cpu if missing, 26 min), scored with `crw` and `stt`
# CPU: each fine-tune takes ~1 hour on the 2-core machine (two side by side: ~9 s per step each),
# each DAVIS evaluation ~35 min with one thread.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
DATA="${DATA:-../shared/data}"
DEVICE="${DEVICE:-cpu}"
WHICH="${WHICH:-uvc stt}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # the recipes' data worker takes the other core
VIDEOS=(--data "$DATA/videos/davis2016-train" --data "$DATA/videos/clips")

resume_flag() { [ -f "$1/checkpoint.pt" ] && echo "--resume" || true; }

finetune_uvc() {  # recipe, starting weights, run name: train (resumable) unless runs/NAME holds the export
  if [ ! -f "runs/$3/encoder.safetensors" ]; then
    # shellcheck disable=SC2046
    vidcorr train uvc "${VIDEOS[@]}" --recipe "$1" --device "$DEVICE" \
      --autoencoder weights/lab_autoencoder.safetensors --init "$2" \
      --run-dir "runs/$3" $(resume_flag "runs/$3") --export "runs/$3/encoder.safetensors"
  fi
}

score() {  # weights, preset, out dir
  [ -f "$3/results.json" ] && return 0
  vidcorr eval davis --root "$DATA/davis2016" --preset "$2" --device "$DEVICE" --weights "$1" --out "$3" --resume
}

for which in $WHICH; do
  case "$which" in
    uvc)
      finetune_uvc uvc-cpu-t20-finetune weights/uvc_r18.safetensors uvc-ft
      score runs/uvc-ft/encoder.safetensors crw out/results-extra/uvc_r18_ft/davis-crw ;;
    uvc2)
      finetune_uvc uvc-cpu-t20-finetune-bf16 weights/uvc_r18_ft.safetensors uvc-ft2
      score runs/uvc-ft2/encoder.safetensors crw out/results-extra/uvc_r18_ft2/davis-crw ;;
    uvc3)
      finetune_uvc uvc-cpu-t20-finetune-round3 weights/uvc_r18_ft2.safetensors uvc-ft3
      score runs/uvc-ft3/encoder.safetensors crw out/results-extra/uvc_r18_ft3/davis-crw ;;
    uvc4)
      finetune_uvc uvc-cpu-t20-finetune-round4 weights/uvc_r18_ft3.safetensors uvc-ft4
      score runs/uvc-ft4/encoder.safetensors crw out/results-extra/uvc_r18_ft4/davis-crw ;;
    stt)
      if [ ! -f runs/moco-cpu/encoder.safetensors ]; then
        # shellcheck disable=SC2046
        vidcorr train moco "${VIDEOS[@]}" --recipe moco-cpu --device "$DEVICE" \
          --run-dir runs/moco-cpu $(resume_flag runs/moco-cpu) --export runs/moco-cpu/encoder.safetensors
      fi
      if [ ! -f runs/stt-ft/encoder.safetensors ]; then
        # shellcheck disable=SC2046
        vidcorr train stt "${VIDEOS[@]}" --recipe stt-cpu-finetune --device "$DEVICE" \
          --teacher runs/moco-cpu/encoder.safetensors --init weights/stt_r18.safetensors \
          --run-dir runs/stt-ft $(resume_flag runs/stt-ft) --export runs/stt-ft/encoder.safetensors
      fi
      score runs/stt-ft/encoder.safetensors crw out/results-extra/stt_r18_ft/davis-crw
      score runs/stt-ft/encoder.safetensors stt out/results-extra/stt_r18_ft/davis-stt ;;
    *) echo "unknown WHICH entry $which (uvc, uvc2, uvc3, uvc4, stt)" >&2; exit 2 ;;
  esac
done
python - <<'PY'
import glob, json
for path in sorted(glob.glob("out/results-extra/*_ft*/*/results.json")):
    r = json.load(open(path))
    print(f"{path}: J&F {r['J&F-Mean']:.3f} (J {r['J-Mean']:.3f}, F {r['F-Mean']:.3f})")
PY
