"""Point correspondences between two frames, read off the affinity: what a model has learned to
match, to look at (`vidcorr match`, `viz.draw_matches`).

For a grid of query cells of frame A, the match in frame B is the cell with the highest affinity
score (``f_a^T f_b``, `affinity.affinity_logits`); a match is *mutual* when B's best match of that
cell leads back to within one cell of the query (a forward-backward check, the cycle the methods
train for). Frames are embedded as a propagation preset says (size, feature layer, L2 norm), so a
plot shows the features the protocol propagates with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vidcorr.affinity import affinity_logits
from vidcorr.io.frames import as_rgb_frame
from vidcorr.propagate import Propagator


@dataclass(frozen=True)
class Matches:
    """M correspondences. points_a / points_b: (M, 2) x, y in pixels of frame A / B (cell
    centres); similarity: (M,) the match's score (cosine similarity for L2-normalised features);
    mutual: (M,) bool, the forward-backward check passed. grid_a: A's feature cells (h, w) and
    input_a: A's size (h, w) as fed to the encoder (how coarse the matching was)."""

    points_a: np.ndarray
    points_b: np.ndarray
    similarity: np.ndarray
    mutual: np.ndarray
    grid_a: tuple[int, int]
    input_a: tuple[int, int]

    def __len__(self) -> int:
        return len(self.points_a)

    def to_dict(self) -> dict:
        """JSON-ready: one entry per match, pixel coordinates rounded to 0.1."""
        return {"matches": [
            {"a": [round(float(x), 1) for x in a], "b": [round(float(x), 1) for x in b],
             "similarity": round(float(s), 4), "mutual": bool(m)}
            for a, b, s, m in zip(self.points_a, self.points_b, self.similarity, self.mutual)]}


def match_frames(
    propagator: Propagator,
    frame_a: np.ndarray,
    frame_b: np.ndarray,
    *,
    step: int = 2,
    mask_a: np.ndarray | None = None,
) -> Matches:
    """Match every ``step``-th feature cell of frame A (RGB uint8 (Ha, Wa, 3)) into frame B (RGB
    uint8 (Hb, Wb, 3)); frames may differ in size, and come in any form the API takes
    (`vidcorr.io.frames.as_rgb_frame`: float, gray, torch; `InputError` naming "frame A" / "frame B").
    mask_a: (Ha, Wa), only cells whose centre lies on a non-zero pixel are queried (e.g. an object's
    mask). Features come from ``propagator.embed`` (the preset's size, layer and normalisation)."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    # The engine takes uint8: a float frame in [0, 1] was divided by 255 again, a near-black frame
    # matched without a word. (as_rgb_frame's index only names the frame in its messages.)
    frame_a, frame_b = as_rgb_frame(frame_a, "A"), as_rgb_frame(frame_b, "B")  # type: ignore[arg-type]
    if mask_a is not None and mask_a.shape != frame_a.shape[:2]:
        raise ValueError(f"mask is {mask_a.shape[1]}x{mask_a.shape[0]} but frame A is "
                         f"{frame_a.shape[1]}x{frame_a.shape[0]}")
    feats_a = propagator.embed([frame_a])[0]  # (C, ha, wa)
    feats_b = propagator.embed([frame_b])[0]  # (C, hb, wb)
    (ha, wa), (hb, wb) = feats_a.shape[-2:], feats_b.shape[-2:]
    ys, xs = np.meshgrid(np.arange(0, ha, step), np.arange(0, wa, step), indexing="ij")
    cells = np.stack([xs.ravel(), ys.ravel()], axis=1)  # (M, 2) x, y in A's cells
    if mask_a is not None:
        px = _cells_to_pixels(cells, (ha, wa), frame_a.shape[:2]).round().astype(int)
        px[:, 0] = px[:, 0].clip(0, frame_a.shape[1] - 1)
        px[:, 1] = px[:, 1].clip(0, frame_a.shape[0] - 1)
        cells = cells[mask_a[px[:, 1], px[:, 0]] != 0]
    flat_a, flat_b = feats_a.flatten(1), feats_b.flatten(1)  # (C, Na), (C, Nb)
    query = torch.as_tensor(cells[:, 1] * wa + cells[:, 0], dtype=torch.long, device=flat_a.device)
    forward = affinity_logits(flat_a[:, query][None], flat_b[None])[0]  # (M, Nb)
    similarity, best_b = forward.max(dim=1)
    backward = affinity_logits(flat_b[:, best_b][None], flat_a[None])[0]  # (M, Na)
    back = backward.argmax(dim=1)
    back_cells = torch.stack([back % wa, back // wa], dim=1).cpu().numpy()
    cells_b = torch.stack([best_b % wb, best_b // wb], dim=1).cpu().numpy()
    mutual = np.abs(back_cells - cells).max(axis=1) <= 1 if len(cells) else np.zeros(0, bool)
    return Matches(
        points_a=_cells_to_pixels(cells, (ha, wa), frame_a.shape[:2]),
        points_b=_cells_to_pixels(cells_b, (hb, wb), frame_b.shape[:2]),
        similarity=_numpy(similarity),
        mutual=mutual,
        grid_a=(ha, wa),
        input_a=propagator.preset.size.input_size(*frame_a.shape[:2]),
    )


def _cells_to_pixels(cells: np.ndarray, cells_hw: tuple[int, int], pixels_hw: tuple[int, int]) -> np.ndarray:
    """(M, 2) cell x, y -> (M, 2) pixel x, y of the cell centres (pixel centres at integers)."""
    scale = np.array([pixels_hw[1] / cells_hw[1], pixels_hw[0] / cells_hw[0]])
    return (np.asarray(cells, np.float64) + 0.5) * scale - 0.5


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()
