#!/usr/bin/env bash
# The test suite under another PyTorch than the pinned pair, in its own environment
# (.venv-torch-<version>): the package asks only for torch >= 2.4, and the GPU machines run 2.11.
#   bash scripts/test_torch.sh 2.4.1 0.19.1          # oldest supported (torchvision to match)
#   bash scripts/test_torch.sh 2.11.0 0.26.0 -x -q   # the GPU machines' pair; pytest arguments follow
# Downloads that torch from PyPI (a CUDA build, ~3 GB with its libraries) the first time.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/test_torch.sh TORCH_VERSION TORCHVISION_VERSION [pytest args]" >&2
  exit 2
fi
TORCH="$1" TORCHVISION="$2"
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-torch-$TORCH"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[vidcorr] creating $VENV" >&2
  "${PYTHON:-python3}" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if ! python -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.split('+')[0] == '$TORCH' and torchvision.__version__.split('+')[0] == '$TORCHVISION'))" 2>/dev/null; then
  echo "[vidcorr] installing torch $TORCH / torchvision $TORCHVISION and the package" >&2
  python -m pip install -q --upgrade pip >/dev/null
  python -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION"
  python -m pip install -q -e "$ROOT[test]"
fi
cd "$ROOT"
python -c "import torch, torchvision; print(f'[vidcorr] torch {torch.__version__}, torchvision {torchvision.__version__}')"
exec python -m pytest "$@"
