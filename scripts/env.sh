#!/usr/bin/env bash
# Create (once) and activate the project's virtual environment in .venv.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only installs what is missing).
# VIDCORR_VENV, PYTHON, VIDCORR_TORCH and VIDCORR_TORCHVISION choose another environment, interpreter
# and torch pair (scripts/test_torch.sh); the defaults are the pinned pair.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIDCORR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
# Pinned pair: these wheels lie on the project's machines; see README "Quick start".
TORCH_PAIR="torch==${VIDCORR_TORCH:-2.14.1} torchvision==${VIDCORR_TORCHVISION:-0.29.1}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[vidcorr] creating virtual environment in $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.vidcorr-installed"  # holds the torch pair it installed
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$(cat "$STAMP")" != "$TORCH_PAIR" ]; then
  echo "[vidcorr] installing dependencies ($TORCH_PAIR)" >&2
  python -m pip install -q --upgrade pip >/dev/null
  # shellcheck disable=SC2086
  python -m pip install -q $TORCH_PAIR
  python -m pip install -q -e "$ROOT[test]"
  echo "$TORCH_PAIR" > "$STAMP"
fi
# Test processes for scripts/test.sh and test_torch.sh (pytest-xdist): one per core this process may
# use, at most 4 (each holds 1-2 GB at peak). VIDCORR_TEST_WORKERS=0 runs the tests in one process
# (for --pdb, or to read a test's output in order).
VIDCORR_TEST_WORKERS="${VIDCORR_TEST_WORKERS:-$(python -c 'import os; n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1; print(min(4, n))')}"
