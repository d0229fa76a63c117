"""PCK for keypoint propagation on JHMDB (METHODS.md §6.2; UVC / CRW ``eval_pck.py``, STT evaluator).

A joint is correct at alpha when ``||p - g||_2 <= alpha * 0.6 * ||max_xy - min_xy||_2``: the
normaliser is 0.6 x the diagonal of the tight box around the ground-truth joints *whose prediction
is visible* in that frame, ground-truth joints outside the frame included (the references do not
look at the frame). Distances of all counted frames of all videos are pooled per joint, PCK is
computed per joint, and the reported number is the plain mean over the joints. Joints the
propagation lost (predicted not visible) are left out, as in the references. Two reference
details are kept for parity: the running box maximum starts at -1 and the minimum at 1e6 (so the
box's max corner is at least (-1, -1)), and a joint in a frame whose box has zero size (one
visible joint) is counted as a miss: its distance over 0 is inf or NaN there, never <= alpha.

UVC and CRW skip frame 0 (it is the given annotation); STT includes it. ``skip_first_frame``
chooses; our default is to skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOX_SCALE = 0.6
DEFAULT_ALPHAS = (0.1, 0.2)
# Start values of the running box min / max in UVC / CRW eval_pck.py (minx = 1e6, maxx = -1) and
# STT's fill values: a box of joints that all lie left of / above pixel -1 reaches to -1.
BOX_MIN_START, BOX_MAX_START = 1e6, -1.0


def box_normalisers(gt: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """0.6 x diagonal of the GT joint box per frame, over counted joints only.

    gt: (T, J, 2) pixels; counted: (T, J) bool -> (T,) float (0 where no joint is counted).
    """
    lo = np.minimum(np.where(counted[..., None], gt, np.inf).min(axis=1), BOX_MIN_START)
    hi = np.maximum(np.where(counted[..., None], gt, -np.inf).max(axis=1), BOX_MAX_START)
    diag = np.linalg.norm(hi - lo, axis=1)
    return np.where(counted.any(axis=1), BOX_SCALE * diag, 0.0)


def normalised_distances(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                         skip_first_frame: bool = True) -> np.ndarray:
    """Distance / normaliser per frame and joint; NaN where the joint is not counted.

    pred, gt: (T, J, 2) pixels; visible: (T, J) bool, the prediction's visibility -> (T, J).
    A counted joint in a frame with a zero-size box gets inf: a miss at every alpha, as the
    references' ``d / 0`` (inf, or NaN when d = 0) is.
    """
    counted = np.asarray(visible, bool) & np.all(np.isfinite(pred), axis=-1)
    if skip_first_frame:
        counted[0] = False
    boxes = box_normalisers(gt, counted)[:, None]
    dist = np.linalg.norm(pred - gt, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(boxes > 0, dist / boxes, np.inf)
    return np.where(counted, scaled, np.nan)


def pck_per_joint(dists: np.ndarray, alpha: float) -> np.ndarray:
    """(N, J) normalised distances (NaN = not counted) -> (J,) fraction <= alpha (NaN if none counted)."""
    counted = ~np.isnan(dists)
    n = counted.sum(axis=0)
    hits = (np.where(counted, dists, np.inf) <= alpha).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, hits / np.maximum(n, 1), np.nan)


@dataclass
class PCKAccumulator:
    """Pools normalised distances over videos; reports global, per-joint and per-video PCK."""

    joint_names: tuple[str, ...]
    skip_first_frame: bool = True
    per_video: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, video: str, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Add one video: pred, gt (T, J, 2) pixels, visible (T, J) -> its (T, J) distances."""
        if pred.shape != gt.shape or pred.shape[1] != len(self.joint_names):
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (T, {len(self.joint_names)}, 2)")
        dists = normalised_distances(pred, gt, visible, self.skip_first_frame)
        self.per_video[video] = dists
        return dists

    def results(self, alphas: tuple[float, ...] = DEFAULT_ALPHAS) -> dict:
        """{"PCK@a": mean over joints, "per_joint": {"PCK@a": {name: v}}, "per_video": {...}}.

        Joints never counted (NaN) are left out of the mean over joints.
        """
        if not self.per_video:
            raise ValueError("no videos were added")
        pooled = np.concatenate(list(self.per_video.values()))
        out: dict = {}
        per_joint: dict = {}
        for a in alphas:
            joints = pck_per_joint(pooled, a)
            out[_key(a)] = _mean(joints)
            per_joint[_key(a)] = {n: _number(v) for n, v in zip(self.joint_names, joints)}
        out["per_joint"] = per_joint
        out["per_video"] = {
            video: {**{_key(a): _mean(pck_per_joint(d, a)) for a in alphas},
                    "frames": int(d.shape[0]), "counted_joints": int((~np.isnan(d)).sum())}
            for video, d in self.per_video.items()
        }
        out["counted_joints"] = int((~np.isnan(pooled)).sum())
        return out


def _key(alpha: float) -> str:
    return f"PCK@{alpha:g}"


def _mean(values: np.ndarray) -> float | None:
    return None if np.all(np.isnan(values)) else float(np.nanmean(values))


def _number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
