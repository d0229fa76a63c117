"""What the project ships and picks when a user names nothing: the default weights and the better
untrained floor. No torch here, so the command line can name them in its --help cheaply."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The best shipped weights on DAVIS-2016 val with the crw preset and on the demo sequence
# (weights/MODEL_CARD.md): UVC, uvc_r18 fine-tuned in three rounds of 500 joint steps (-> uvc_r18_ft -> ft2 -> ft3).
DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "uvc_r18_ft3.safetensors"
FLOOR_NAMES = ("lab-pixels", "random-resnet18")
# The better untrained floor on ../shared/data/davis2016 at 480p with the crw preset
# (docs/results.md); `vidcorr demo` falls back to it when the default weights are missing.
BEST_FLOOR = "random-resnet18"
