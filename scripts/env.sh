#!/usr/bin/env bash
# Create (once) and activate the project's virtual environment in .venv.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only installs what is missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIDCORR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[vidcorr] creating virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.vidcorr-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  echo "[vidcorr] installing dependencies (torch 2.14.1 / torchvision 0.29.1 pinned)" >&2
  python -m pip install -q --upgrade pip >/dev/null
  # Pinned pair: these wheels lie on the project's machines; see README "Installation".
  python -m pip install -q torch==2.14.1 torchvision==0.29.1
  python -m pip install -q -e "$ROOT[test]"
  touch "$STAMP"
fi
