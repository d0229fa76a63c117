#!/usr/bin/env bash
# The test suite under another PyTorch (and Python) than the pinned pair, in its own environment
# (.venv-torch-<version>-py<X.Y>, made by scripts/env.sh): the package asks only for torch >= 2.4 and
# Python >= 3.10, and the GPU machines run torch 2.11 on Python 3.12.
#   bash scripts/test_torch.sh 2.4.1 0.19.1          # oldest supported torch (torchvision to match)
#   PYTHON=python3.12 bash scripts/test_torch.sh 2.11.0 0.26.0 -x -q   # the GPU machines' versions
#   (pytest arguments follow the two versions)
# Downloads that torch from PyPI (a CUDA build, ~3 GB with its libraries) the first time.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/test_torch.sh TORCH_VERSION TORCHVISION_VERSION [pytest args]" >&2
  exit 2
fi
export VIDCORR_TORCH="$1" VIDCORR_TORCHVISION="$2"
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHON="${PYTHON:-python3}"
VIDCORR_VENV="$ROOT/.venv-torch-$VIDCORR_TORCH-py$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
export VIDCORR_VENV
source "$ROOT/scripts/env.sh"
cd "$ROOT"
python -c "import sys, torch, torchvision; print(f'[vidcorr] Python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}')"
exec python -m pytest -n "$VIDCORR_TEST_WORKERS" --dist loadfile "$@"  # whole files per worker: module fixtures built once
