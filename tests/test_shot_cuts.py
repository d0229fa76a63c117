"""Shot cuts: `best_match_cosine`, `ShotCutDetector`, and the cut in a real clip flagged at its frame."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from video_helpers import CUT_CLIP, write_cut_folder

from vidcorr.affinity import sparse_affinity
from vidcorr.api import resolve_encoder
from vidcorr.cli import main
from vidcorr.io.video import open_frames
from vidcorr.labels import one_hot_labels
from vidcorr.presets import customised_preset, get_preset
from vidcorr.propagate import ContextFrame, Propagator, ShotCutDetector, best_match_cosines, match_score

CUT_AT = 80  # the trailer cuts to a new shot (people, red cars) at frame 80 (docs/propagation.md)
FIRST = 74  # the test's frames: 74..85, the cut their 7th


@pytest.fixture(scope="module")
def cut_frames(data_dir) -> list[np.ndarray]:
    return list(itertools.islice(iter(open_frames(data_dir / CUT_CLIP).head(FIRST + 12)), FIRST, None))


def _flagged(frames: list[np.ndarray], features: str | None, size: int = 120) -> list[int]:
    preset = customised_preset("crw", size=size)
    encoder, _ = resolve_encoder(preset, None, features)  # None: the default trained weights
    prop = Propagator(encoder, preset)
    mask = np.zeros(frames[0].shape[:2], np.int64)
    mask[40:120, 200:400] = 1  # the cut does not depend on the labels: the affinity is the frames'
    scores = [prop.match_score for _ in prop.run(frames, one_hot_labels(torch.from_numpy(mask), 2))]
    assert len(scores) == len(frames) - 1 and all(-1 <= s <= 1 for s in scores)
    return prop.cuts.flagged


@pytest.mark.parametrize("features", [None, "lab-pixels"], ids=["trained", "lab-pixels"])
def test_the_real_clips_cut_is_flagged_at_its_frame(cut_frames, features):
    assert _flagged(cut_frames, features) == [CUT_AT - FIRST]


@pytest.mark.parametrize("features", [None, "lab-pixels"], ids=["trained", "lab-pixels"])
def test_fast_motion_in_davis_is_no_cut(davis2016_root, features):
    """bmx-trees frames 24-35 (a BMX rider among trees): they hold the largest ratio to the recent
    frames in the 10 sequences with the trained model, at frame 34 (docs/propagation.md, "Shot cuts")."""
    paths = sorted((davis2016_root / "JPEGImages" / "480p" / "bmx-trees").glob("*.jpg"))[24:36]
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    assert _flagged(frames, features) == []


def test_the_cli_warns_once_naming_the_frame(cut_frames, tmp_path, caplog):
    folder, mask = write_cut_folder(cut_frames, FIRST, tmp_path)
    with caplog.at_level("WARNING"):
        assert main(["propagate", str(folder), "--mask", str(mask), "--out", str(tmp_path / "o"),
                     "--features", "lab-pixels", "--size", "120", "--no-video"]) == 0
    cuts = [r.getMessage() for r in caplog.records if "shot cut" in r.getMessage()]
    assert cuts == [f"{folder}: frame {CUT_AT - FIRST} ({CUT_AT:05d}.png) looks like a shot cut (its best matches to "
                    "the frames before it are far weaker than before): the labels after it may follow other objects"]


# --------------------------------------------------------------------------- the signal


def _features(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=0)


def test_best_match_cosines_are_the_heaviest_candidates_cosines():
    """Against the whole score matrix (one matmul, which the signal avoids): the cosine of each
    cell with the context cell of its largest weight; a context padded with one tensor (crw's
    ``fill``) looked up once."""
    first = _features(16, 6, 7, seed=0)
    memories = [ContextFrame(first, None)] * 3 + [ContextFrame(_features(16, 6, 7, seed=s), None) for s in (1, 2)]
    query = _features(16, 6, 7, seed=3)
    aff = sparse_affinity(query, [m.feats for m in memories], [False, True, True, True, True], get_preset("crw").topk)
    scores = query.flatten(1).T @ torch.cat([m.feats.flatten(1) for m in memories], dim=1)  # (42, 5 * 42)
    best = aff.index[torch.arange(42), aff.weights.argmax(dim=1)]
    torch.testing.assert_close(best_match_cosines(query, memories, aff), scores[torch.arange(42), best])


def test_best_match_cosines_are_cosines_for_features_of_any_length():
    """Not L2-normalised (uvc): a frame (features of length 3) matched against a copy of itself
    (length 7) scores 1, as each cell's best match is itself."""
    key = _features(8, 5, 5, seed=4)
    aff = sparse_affinity(key * 3, [key * 7], [False], get_preset("uvc").topk)
    torch.testing.assert_close(best_match_cosines(key * 3, [ContextFrame(key * 7, None)], aff), torch.ones(25))


def test_the_match_score_is_what_the_best_quarter_reaches():
    assert match_score(torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.3, 0.7, 0.4])) == pytest.approx(0.8)  # 2 of 8 >= 0.8
    assert match_score(torch.tensor([0.5, -0.2, 0.1])) == pytest.approx(0.5)  # fewer than 4 cells: the best


# --------------------------------------------------------------------------- the rule


def _run(detector: ShotCutDetector, mismatches: list[float]) -> list[int]:
    for m in mismatches:
        detector.update(1.0 - m)
    return detector.flagged


def test_a_jump_over_the_recent_frames_is_a_cut_flagged_once():
    """The new shot's own level (10x the old one, as the trained model's on the real clip's cut)
    starts a new history: its first frames are not flagged again against the old shot's."""
    level = [0.003, 0.0035, 0.0028, 0.0, 0.0031]  # a repeated frame among them (mismatch 0)
    assert _run(ShotCutDetector(), level + [0.3] + [0.04, 0.03, 0.035, 0.03, 0.04]) == [6]


def test_a_ratio_at_the_threshold_is_no_cut():
    assert _run(ShotCutDetector(ratio=2.0), [0.01, 0.005, 0.01, 0.01, 0.008, 0.02]) == []  # 2x the largest
    assert _run(ShotCutDetector(ratio=2.0), [0.01, 0.005, 0.01, 0.01, 0.008, 0.0201]) == [6]


def test_the_window_forgets_old_frames():
    """Against the last 10 frames: a spike 11 frames back no longer raises the bar."""
    assert _run(ShotCutDetector(window=10), [0.01, 0.5] + [0.01] * 10 + [0.03]) == [13]
    assert _run(ShotCutDetector(window=10), [0.01, 0.5] + [0.01] * 9 + [0.03]) == []


def test_no_cut_before_the_warmup():
    assert _run(ShotCutDetector(warmup=3), [0.001, 0.001, 0.5, 0.001]) == []
    assert _run(ShotCutDetector(warmup=3), [0.001, 0.001, 0.001, 0.5]) == [4]


def test_a_still_shot_makes_no_tiny_change_a_cut():
    """Repeated frames give mismatch 0 (or float32 rounding's 1e-7): the bar is floored at 1e-6."""
    assert _run(ShotCutDetector(ratio=2.1), [0.0, 1.2e-7, 0.0] * 4 + [2.0e-6]) == []
    assert _run(ShotCutDetector(ratio=2.1), [0.0, 1.2e-7, 0.0] * 4 + [2.2e-6]) == [13]


def test_a_gradual_drift_is_no_cut():
    """Motion speeding up over frames (the level doubling every 3 frames) raises the bar with it."""
    assert _run(ShotCutDetector(), [0.002 * 2 ** (t / 3) for t in range(30)]) == []


def test_a_new_video_starts_a_new_watch():
    prop = Propagator(torch.nn.Identity(), "crw")
    prop.cuts.flagged.append(3)
    prop.start(np.zeros((8, 8, 3), np.uint8), torch.ones(1, 8, 8))
    assert prop.cuts.flagged == [] and prop.match_score is None
