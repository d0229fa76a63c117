"""VOT's supervised experiment: failure, re-initialisation and burn-in with a scripted tracker, EAO, real trackers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from vot_helpers import DIAMOND, T, _square

from vidcorr.dcf import DCFTracker
from vidcorr.evaluate.tracking import run_supervised
from vidcorr.io.vot_trajectory import VOT_FAILED, VOT_INITIALISED, VOT_SKIPPED, VOT_TRACKED
from vidcorr.metrics.vot import (
    EAO_INTERVALS,
    average_supervised,
    burnin_mask,
    eao_curve,
    eao_fragments,
    eao_interval,
    eao_score,
    frame_overlaps,
    score_supervised,
)
from vidcorr.models import build_encoder
from vidcorr.track import LocaliseTracker, PatchSampler, tracker_settings


GT_SIDE, GT_X, GT_Y, FRAME_WH = 20.0, 40.0, 40.0, (100, 100)


class ScriptedTracker:
    """Returns the ground-truth square shifted right by ``shifts[t]`` px, or ``FAR`` where shifts[t] is
    None (zero overlap). Reads the frame index from pixel (0, 0); records every init."""

    FAR = (0.0, 0.0, 5.0, 5.0)

    def __init__(self, shifts):
        self.shifts, self.inits = shifts, []

    def init(self, frame, box):
        self.inits.append((int(frame[0, 0, 0]), box))

    def update(self, frame):
        shift = self.shifts[int(frame[0, 0, 0])]
        return self.FAR if shift is None else (GT_X + shift, GT_Y, GT_SIDE, GT_SIDE)


def _frames(n):
    for t in range(n):
        frame = np.zeros((FRAME_WH[1], FRAME_WH[0], 3), np.uint8)
        frame[0, 0, 0] = t
        yield frame


def _run(shifts):
    n = len(shifts)
    boxes = np.tile([GT_X, GT_Y, GT_SIDE, GT_SIDE], (n, 1))
    polygons = np.tile(_square(GT_X, GT_Y, GT_SIDE), (n, 1))
    tracker = ScriptedTracker(shifts)
    status, pred, frame_wh = run_supervised(tracker, _frames(n), boxes, polygons)
    return tracker, status, pred, polygons, frame_wh


def test_failure_reinitialisation_and_burnin_by_hand():
    """40 frames. Frames 1-9 are in frame 0's burn-in (shift 10 px: IoU 10/30), 10-14 are scored
    (shift 5: IoU 15/25 = 0.6), frame 15 fails, 16-19 are skipped, 20 re-initialises, 21-29 are
    burn-in again (IoU 1/3), 30-39 are scored (shift 0: IoU 1). Accuracy = (5 x 0.6 + 10 x 1) / 15."""
    shifts = [10] * 10 + [5] * 5 + [None] + [10] * 14 + [0] * 10
    tracker, status, pred, polygons, frame_wh = _run(shifts)
    expected = ([VOT_INITIALISED] + [VOT_TRACKED] * 14 + [VOT_FAILED] + [VOT_SKIPPED] * 4 + [VOT_INITIALISED]
                + [VOT_TRACKED] * 19)
    assert status.tolist() == expected
    assert [t for t, _ in tracker.inits] == [0, 20]  # re-initialised 5 frames after the failure
    assert tracker.inits[1][1] == (GT_X, GT_Y, GT_SIDE, GT_SIDE)  # on the ground truth of that frame
    assert np.isnan(pred[status != VOT_TRACKED]).all() and np.isfinite(pred[status == VOT_TRACKED]).all()
    assert frame_wh == FRAME_WH
    scores = score_supervised(status, pred, polygons, frame_wh)
    assert scores == {"accuracy": pytest.approx(13 / 15), "failures": 1, "frames": 40, "scored_frames": 15,
                      "initialisations": 2}
    # Without the burn-in the 18 frames at IoU 1/3 would count: (18/3 + 3 + 10) / 33.
    assert score_supervised(status, pred, polygons, frame_wh, burnin=1)["accuracy"] == pytest.approx(19 / 33)


def test_failure_near_the_end_and_twice():
    """A failure on frame 12 restarts on 17; the next on 28 would restart on 33, past the end."""
    shifts = [0] * 12 + [None] + [0] * 15 + [None] + [0] * 2
    tracker, status, _, _, _ = _run(shifts)
    assert [t for t, _ in tracker.inits] == [0, 17]
    assert status[12] == status[28] == VOT_FAILED
    assert (status[13:17] == VOT_SKIPPED).all() and (status[29:] == VOT_SKIPPED).all()
    assert burnin_mask(status).nonzero()[0].tolist() == list(range(10)) + list(range(17, 27))


def test_failure_is_judged_on_the_polygon_not_its_bounding_box():
    """A prediction in the corner of the diamond's bounding box overlaps the box (16/400) but not the
    diamond: a failure. A frame without ground truth (NaN) cannot fail and is not scored."""

    class Corner:
        def init(self, frame, box):
            pass

        def update(self, frame):
            return (0.0, 0.0, 4.0, 4.0)

    polygons = np.tile(DIAMOND, (4, 1))
    polygons[1] = np.nan
    boxes = np.tile([0.0, 0.0, 20.0, 20.0], (4, 1))
    status, pred, frame_wh = run_supervised(Corner(), _frames(4), boxes, polygons)
    assert status.tolist() == [VOT_INITIALISED, VOT_TRACKED, VOT_FAILED, VOT_SKIPPED]
    assert score_supervised(status, pred, polygons, frame_wh, burnin=1)["scored_frames"] == 0


def test_averages_over_sequences():
    per_sequence = {"a": {"accuracy": 0.5, "failures": 3, "scored_frames": 10},
                    "b": {"accuracy": 0.8, "failures": 0, "scored_frames": 30}}
    # accuracy (0.5 + 0.8) / 2; pooled (0.5 x 10 + 0.8 x 30) / 40; robustness 3 failures / 2 sequences.
    assert average_supervised(per_sequence) == {"accuracy": pytest.approx(0.65),
                                                "accuracy_pooled": pytest.approx(0.725),
                                                "robustness": 1.5, "failures": 3}


def test_eao_fragments_by_hand():
    """One fragment per initialisation: up to (not including) its failure, the last to the end; a
    trajectory that never failed is one fragment, its code-1 first frame included."""
    status = np.array([1, T, T, 2, 0, 0, 0, 0, 1, T, T])
    overlaps = np.array([0, .6, .4, 0, 0, 0, 0, 0, 0, .8, .9])
    (first, failed), (last, ended) = eao_fragments(status, overlaps)
    np.testing.assert_array_equal(first, [0, .6, .4])
    np.testing.assert_array_equal(last, [0, .8, .9])
    assert failed and not ended
    failing_at_the_end = eao_fragments(status[:4], overlaps[:4])
    assert len(failing_at_the_end) == 1 and failing_at_the_end[0][1]
    (whole, failed), = eao_fragments(np.array([1, T, T]), np.array([0, .5, .7]))
    np.testing.assert_array_equal(whole, [0, .5, .7])
    assert not failed
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float64)
    polygons = np.array([_square(0, 0, 10), _square(0, 0, 10), _square(5, 0, 10), [np.nan] * 8])
    np.testing.assert_allclose(frame_overlaps(np.array([1, T, T, T]), boxes, polygons, (100, 100)),
                               [0, 1, 50 / 150, 0])  # a code line and unknown ground truth: 0


def test_eao_curve_and_score_by_hand():
    """A failed fragment counts with zeros after its failure at every length; one that reached the
    end only where it has frames; the first frame (initialisation) is left out of each mean."""
    curve = eao_curve([(np.array([0, .5, .5]), True), (np.array([0, 1.0]), False)])
    np.testing.assert_allclose(curve, [0, .75, .5])
    assert eao_score(curve, (1, 2)) == pytest.approx(.625)
    assert eao_score(curve, (1, 10)) == pytest.approx(.625)  # cut at the curve's end, as the toolkit's slice
    assert eao_score(curve, (5, 9)) is None
    failed_short = eao_curve([(np.array([0, 1.0]), True), (np.array([0, 1, 1, 1.0]), False)])
    np.testing.assert_allclose(failed_short, [0, 1, .75, 2 / 3])  # mean(1, 0) with 1; mean(1, 0, 0) with 1
    assert eao_interval("VOT2018") == ("vot2018", (100, 356)) and eao_interval((3, 9)) == (None, (3, 9))
    assert EAO_INTERVALS["vot2015"] == (108, 371)
    for bad in ("vot2014", (9, 3), (-1, 4)):
        with pytest.raises(ValueError):
            eao_interval(bad)


def test_vot2015_eao_of_the_shared_sequences_without_failure_is_car1s_alone():
    """docs/tracking.md's reading of the shared data's EAO: without a failure ball1 (105 frames) and
    car1 (252) are one fragment each, and an unfailed fragment counts only at the lengths it has, so
    over VOT2015's interval (108-371, cut at 251) the EAO is car1's alone, whatever ball1's overlaps;
    a failure on ball1 makes it count there (zeros after the failure) and lowers it."""
    rng = np.random.default_rng(1)
    car1 = (np.concatenate([[0.0], rng.uniform(.3, .9, 251)]), False)
    _, interval = eao_interval("vot2015")
    alone = eao_score(eao_curve([car1]), interval)
    for ball1_overlap in (0.1, 0.9):
        ball1 = (np.concatenate([[0.0], np.full(104, ball1_overlap)]), False)
        assert eao_score(eao_curve([ball1, car1]), interval) == pytest.approx(alone, abs=1e-12)
    ball1_failed = (np.concatenate([[0.0], np.full(50, 0.9)]), True)
    assert eao_score(eao_curve([ball1_failed, car1]), interval) < alone


def _toolkit_eao_curve(fragments):
    """The toolkit's curve, column by column (vot/analysis/supervised.py compute_eao_curve, restated):
    a running mean over frames 1..j of the zero-padded rows, averaged over the rows that count at j."""
    length = max(len(o) for o, _ in fragments)
    curve = []
    for j in range(length):
        values, weights = [], []
        for overlaps, failed in fragments:
            row = np.zeros(length)
            row[:len(overlaps)] = overlaps
            if failed or j < len(overlaps):
                values.append(row[j] if j == 0 else row[1:j + 1].mean())
                weights.append(1.0)
        curve.append(np.dot(values, weights) / sum(weights))
    return np.array(curve)


def test_eao_curve_equals_the_toolkit_loop_on_random_trajectories():
    rng = np.random.default_rng(0)
    fragments = []
    for _ in range(12):
        n = int(rng.integers(20, 200))
        status = np.full(n, T)
        status[0] = VOT_INITIALISED
        for failure in sorted(rng.choice(np.arange(2, n - 6), size=int(rng.integers(0, 4)), replace=False)):
            if status[failure] == T and status[failure - 1] in (T, VOT_INITIALISED):
                status[failure] = VOT_FAILED
                status[failure + 1:failure + 5] = VOT_SKIPPED
                status[failure + 5] = VOT_INITIALISED
        overlaps = np.where(status == T, rng.random(n), 0.0)
        fragments += eao_fragments(status, overlaps)
    np.testing.assert_allclose(eao_curve(fragments), _toolkit_eao_curve(fragments), rtol=0, atol=1e-12)


def _texture_frames(n=9, h=96, w=128, step=3, seed=0):
    rng = np.random.default_rng(seed)
    big = ndimage.gaussian_filter(rng.random((h, w + step * n, 3)), (6, 6, 0))
    big = ((big - big.min()) / np.ptp(big) * 255).astype(np.uint8)
    return [np.ascontiguousarray(big[:, step * (n - t): step * (n - t) + w]) for t in range(n)]


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_reinitialised_tracker_equals_a_fresh_one(tracker):
    """The baseline re-uses one tracker object: `init` must forget everything from before."""
    frames = _texture_frames()
    settings = tracker_settings(tracker, **({"input_size": 64} if tracker == "dcf" else {}))
    sampler = PatchSampler(build_encoder("lab-pixels"), settings.l2_normalise)
    cls = LocaliseTracker if tracker == "localise" else DCFTracker
    used, fresh = cls(sampler, settings), cls(sampler, settings)
    used.init(frames[0], (30.0, 30.0, 32.0, 24.0))
    for frame in frames[1:5]:
        used.update(frame)
    restart = (50.0, 40.0, 28.0, 28.0)
    used.init(frames[5], restart)
    fresh.init(frames[5], restart)
    assert [used.update(f) for f in frames[6:]] == [fresh.update(f) for f in frames[6:]]
