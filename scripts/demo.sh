#!/usr/bin/env bash
# Quick start, command 1: set up the environment and run the demo (propagate the first-frame
# mask of the DAVIS sequence shipped in the repo with the project's default weights, then score it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec vidcorr demo "$@"
