#!/usr/bin/env bash
# Copy what scripts/device_check.sh needs from ../shared/data into .carry/ (git-ignored), sized for
# the device machine's 64 MiB limit on what travels (the repository's tracked files count too).
#   SEQUENCES  DAVIS-2016 val sequences to carry (default: four small ones, ~10 MiB: the tracked files,
#              six shipped weights among them, are ~38 MiB of the 64 since 2026-12)
#   VIDEOS     training videos to carry (default: ../shared/data/videos/davis2016-train; "" for none)
# car-shadow is linked to the copy the repository ships (src/vidcorr/assets/demo/davis), not copied:
# a relative link into the checkout travels and resolves there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHARED_DATA="${SHARED_DATA:-$ROOT/../shared/data}"
SEQUENCES="${SEQUENCES:-blackswan car-shadow dog drift-chicane}"
VIDEOS="${VIDEOS-$SHARED_DATA/videos/davis2016-train}"
LIMIT_BYTES=$((62 * 1024 * 1024))  # 64 MiB less headroom for untracked files

[ -d "$SHARED_DATA/davis2016" ] || { echo "device_prepare: $SHARED_DATA/davis2016 not found" >&2; exit 2; }
[ -d .carry ] && chmod -R u+w .carry  # copies of read-only data
rm -rf .carry
mkdir -p .carry/davis2016/ImageSets/2016 .carry/davis2016/JPEGImages/480p .carry/davis2016/Annotations/480p
demo="src/vidcorr/assets/demo/davis"
for seq in $SEQUENCES; do
  for kind in JPEGImages Annotations; do
    if [ "$seq" = car-shadow ]; then
      ln -s "../../../../$demo/$kind/480p/car-shadow" ".carry/davis2016/$kind/480p/car-shadow"
    else
      [ -d "$SHARED_DATA/davis2016/$kind/480p/$seq" ] || { echo "device_prepare: no sequence $seq" >&2; exit 2; }
      cp -r --no-preserve=mode "$SHARED_DATA/davis2016/$kind/480p/$seq" ".carry/davis2016/$kind/480p/"
    fi
  done
  echo "$seq" >> .carry/davis2016/ImageSets/2016/val.txt
done
if [ -n "$VIDEOS" ]; then
  mkdir -p .carry/videos
  cp -r --no-preserve=mode "$VIDEOS" .carry/videos/
fi

tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -sb .carry | cut -f1)
total=$((tracked + carried))
echo "device_prepare: .carry $((carried / 1024 / 1024)) MiB + tracked files $((tracked / 1024 / 1024)) MiB" \
     "= $((total / 1024 / 1024)) MiB of 64"
if [ "$total" -gt "$LIMIT_BYTES" ]; then
  echo "device_prepare: too large to travel; carry fewer SEQUENCES or no VIDEOS" >&2
  exit 2
fi
