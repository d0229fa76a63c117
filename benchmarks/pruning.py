"""Could an exact bound skip most of the `crw` affinity? Counts on real features (not a test).

The `crw` protocol keeps, for every target cell, the 10 best cosines among the whole first frame and
the radius-12 windows of 20 previous frames (~14,000 candidates at 480p), and computing every one
of them costs more arithmetic than the ResNet-18 features (docs/benchmarks.md). An exact shortcut
would bound each candidate's cosine from above cheaply and skip those whose bound is below the
target cell's 10th best cosine, since they cannot be selected. This script counts how many
candidates two such bounds would still have to score exactly, on real target frames:

* ``ball p``: the reference cut into p x p patches; a patch's keys k satisfy
  ``q.k <= q.c + r`` for its mean c and radius r = max |k - c| (features are unit vectors);
* ``project d``: the features split on the top-d principal directions of the first frame,
  ``q.k <= q_d.k_d + |q_r| |k_r|`` (Cauchy-Schwarz on the residuals).

The skipping threshold is the 10th best cosine itself (``ideal``: no bound can do better) and, for
the projection, the 10th best of frame t-1's window alone (what a screen could know before scoring
the rest: ``from t-1``). ``bound_violations`` counts candidates whose exact cosine exceeds its bound
(0, or the bound is wrong and the counts mean nothing).

    python benchmarks/pruning.py --json docs/benchmarks/pruning-crw-uvc_r18_ft3.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from report import machine, run_script, write_json  # benchmarks/report.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "davis2016"


def crw_features(root: Path, sequence: str, target: int, weights: Path, size: int | None = None) -> torch.Tensor:
    """Features of frame 0, the 20 frames before ``target`` and ``target``, as `crw` embeds them
    (480p, or frames resized to short side ``size``) -> (22, C, h, w), unit vectors."""
    from vidcorr.api import resolve_encoder
    from vidcorr.presets import CRW
    from vidcorr.propagate import Propagator

    paths = sorted((root / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    if target < 21 or target >= len(paths):
        from vidcorr.errors import InputError

        raise InputError(root / "JPEGImages" / "480p" / sequence, f"target frame {target} needs 20 previous frames "
                         f"and frame 0 ({len(paths)} frames)")
    propagator = Propagator(resolve_encoder(CRW, weights)[0], CRW)
    frames = [_read(paths[i], size) for i in [0, *range(target - 20, target + 1)]]
    return torch.cat([propagator.embed(frames[i : i + 4]) for i in range(0, len(frames), 4)])


def _read(path: Path, size: int | None) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    if size is not None:
        scale = size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    return np.asarray(image)


def window_allowed(h: int, w: int, radius: float = 12.0) -> torch.Tensor:
    """(N2, N1) bool: reference cell within the circle ``distance < radius`` of the target cell."""
    from vidcorr.affinity.window import window_mask

    return window_mask(h, w, radius, "circle").T


def tenth_best(query: torch.Tensor, keys: torch.Tensor, allowed: torch.Tensor, *, first_unwindowed: bool = True,
               k: int = 10) -> torch.Tensor:
    """query (N2, C), keys (F, N1, C) -> (N2,) k-th best cosine, jointly over the frames' windows
    (frame 0's whole frame with ``first_unwindowed``, as `crw`)."""
    best = []
    for f, key in enumerate(keys):
        scores = query @ key.T
        if f > 0 or not first_unwindowed:
            scores.masked_fill_(~allowed, -2.0)
        best.append(scores.topk(k, dim=1).values)
    return torch.cat(best, dim=1).topk(k, dim=1).values[:, -1]


def ball_bound(query: torch.Tensor, key: torch.Tensor, h: int, w: int, p: int) -> torch.Tensor:
    """query (N2, C), key (N1, C) -> (N2, N1) upper bound of each cosine from the ball around the
    mean of its reference cell's p x p patch."""
    hp, wp = -(-h // p), -(-w // p)
    patch_of = ((torch.arange(h) // p)[:, None] * wp + (torch.arange(w) // p)[None]).flatten()  # (N1,)
    count = torch.zeros(hp * wp).index_add_(0, patch_of, torch.ones(h * w))
    centre = torch.zeros(hp * wp, key.shape[1]).index_add_(0, patch_of, key) / count[:, None]
    radius = torch.zeros(hp * wp).scatter_reduce_(0, patch_of, (key - centre[patch_of]).norm(dim=1), "amax")
    return (query @ centre.T + radius)[:, patch_of]  # one bound per patch, shared by its cells


def projection_bound(query: torch.Tensor, key: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """query (N2, C), key (N1, C), basis (C, d) orthonormal -> (N2, N1) upper bound of each cosine:
    the product on the basis plus the residuals' norms multiplied (Cauchy-Schwarz)."""

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = x @ basis
        return low, (x.pow(2).sum(1) - low.pow(2).sum(1)).clamp(min=0).sqrt()

    (q_low, q_rest), (k_low, k_rest) = split(query), split(key)
    return q_low @ k_low.T + q_rest[:, None] * k_rest[None]


def measure(feats: torch.Tensor) -> dict:
    _, C, h, w = feats.shape
    query = feats[-1].flatten(1).T  # (N2, C)
    keys = feats[:-1].flatten(2).transpose(1, 2)  # (21, N1, C): frame 0, then t-20 .. t-1
    allowed = window_allowed(h, w)
    ideal = tenth_best(query, keys, allowed)
    from_last = tenth_best(query, keys[-1:], allowed, first_unwindowed=False)  # t-1's window alone
    principal = torch.linalg.svd(keys[0], full_matrices=False).Vh  # (C, C), first frame's directions
    bounds = {f"ball {p}": (lambda key, p=p: ball_bound(query, key, h, w, p), ideal) for p in (2, 3, 4)}
    for d in (32, 64, 96):
        bound = lambda key, d=d: projection_bound(query, key, principal[:d].T)  # noqa: E731
        bounds[f"project {d}"] = (bound, ideal)
        bounds[f"project {d} from t-1"] = (bound, from_last)
    kept = dict.fromkeys(bounds, 0)
    violations = 0
    for f, key in enumerate(keys):
        exact = query @ key.T
        candidate = allowed if f > 0 else torch.ones_like(allowed)  # frame 0 unwindowed, as crw
        for name, (bound, threshold) in bounds.items():
            reach = bound(key)
            violations += int((exact > reach + 1e-5).sum())
            kept[name] += int((candidate & (reach >= threshold[:, None] - 1e-5)).sum())
    window_cells = allowed.sum().item() / (h * w)  # mean over target cells (fewer near the border)
    return {
        "candidates_per_cell": round(h * w + window_cells * (len(keys) - 1)),
        "tenth_best_cosine_quartiles": [round(v, 4) for v in ideal.quantile(torch.tensor([0.25, 0.5, 0.75])).tolist()],
        "survivors_per_cell": {name: round(n / (h * w)) for name, n in kept.items()},
        "bound_violations": violations,
    }


def targets(text: str) -> list[tuple[str, int]]:
    """--targets "car-shadow:30,dog:40" -> [("car-shadow", 30), ("dog", 40)]."""
    pairs = [item.rpartition(":") for item in text.split(",")]
    if not all(sequence and frame.isdigit() for sequence, _, frame in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: give sequence:frame pairs, e.g. car-shadow:30,dog:40")
    return [(sequence, int(frame)) for sequence, _, frame in pairs]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "uvc_r18_ft3.safetensors")
    parser.add_argument("--targets", type=targets, default="car-shadow:30,blackswan:40,dog:40,breakdance:60",
                        help="sequence:frame pairs, comma-separated")
    parser.add_argument("--size", type=int, help="resize frames to this short side (480p by default)")
    parser.add_argument("--json", type=Path)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_grad_enabled(False)
    weights = args.weights.resolve()
    shown = weights.relative_to(REPO) if weights.is_relative_to(REPO) else weights
    report = {"machine": machine(), "weights": str(shown), "preset": "crw", "targets": {}}
    for sequence, frame in args.targets:
        item = f"{sequence}:{frame}"
        result = measure(crw_features(args.root, sequence, frame, args.weights, args.size))
        report["targets"][item] = result
        print(item, result, flush=True)
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    run_script(main)
