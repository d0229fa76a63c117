"""Shared by the JHMDB test files: the real clip's names and small JHMDB roots built from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import scipy.io

CLASS = "catch"
VIDEO = "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
NAME = f"{CLASS}/{VIDEO}"


def jhmdb_tree(tmp_path: Path, jhmdb_root: Path, n_frames: int, n_mat_frames: int | None = None,
               videos: tuple[str, ...] = (VIDEO,)) -> Path:
    """A JHMDB root with the real clip's first n_frames under each of the given video names, and the
    first n_mat_frames of its pos_img (default the same number)."""
    root = tmp_path / "jhmdb"
    pos = scipy.io.loadmat(jhmdb_root / "joint_positions" / NAME / "joint_positions.mat")["pos_img"]
    for video in videos:
        frames = root / "Rename_Images" / CLASS / video
        frames.mkdir(parents=True)
        for t in range(1, n_frames + 1):
            shutil.copy(jhmdb_root / "Rename_Images" / NAME / f"{t:05d}.png", frames / f"{t:05d}.png")
        joints = root / "joint_positions" / CLASS / video
        joints.mkdir(parents=True)
        scipy.io.savemat(joints / "joint_positions.mat", {"pos_img": pos[:, :, :n_mat_frames or n_frames]})
    return root
