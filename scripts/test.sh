#!/usr/bin/env bash
# Quick start, command 2: set up the environment and run the test suite (CPU only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m pytest -n "$VIDCORR_TEST_WORKERS" --dist loadfile "$@"  # whole files per worker: module fixtures built once
