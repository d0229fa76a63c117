"""Trackers on a synthetic translating texture, the crop geometry, `track_video` and `draw_box`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from synthetic import PatchEncoder
from torch import nn

from vidcorr.metrics.tracking import box_iou, centre_error
from vidcorr.models import build_encoder
from vidcorr.track import PatchSampler, draw_box, track_video, tracker_settings


def _translating_texture(n=20, h=144, w=192, step=(3, 1), seed=0):
    """A smooth random texture moving by `step` px per frame, and a 48x48 box moving with it.

    Smooth (blobs of about 8 px): stride-8 cells of untrained features only match reliably when the
    texture does not change within a cell."""
    rng = np.random.default_rng(seed)
    sx, sy = step
    big = ndimage.gaussian_filter(rng.random((h + sy * n, w + sx * n, 3)), (8, 8, 0))
    big = ((big - big.min()) / np.ptp(big) * 255).astype(np.uint8)
    frames, boxes = [], []
    for t in range(n):
        y0, x0 = sy * (n - t), sx * (n - t)  # the content shifts right / down over time
        frames.append(np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w]))
        boxes.append((40 + sx * t, 40 + sy * t, 48, 48))
    return frames, np.array(boxes, np.float64)


@pytest.mark.parametrize(("tracker", "encoder"), [("localise", "patch"), ("localise", "lab-pixels"),
                                                  ("dcf", "lab-pixels")])
def test_tracker_follows_translating_texture(tracker, encoder):
    frames, gt = _translating_texture()
    enc = PatchEncoder() if encoder == "patch" else build_encoder(encoder)
    opts = {"input_size": 128} if tracker == "dcf" else {}
    pred = np.array(list(track_video(enc, iter(frames), tuple(gt[0]), tracker, **opts)))
    assert pred.shape == gt.shape
    np.testing.assert_array_equal(pred[0], gt[0])
    error = centre_error(gt, pred)
    assert error.max() < 8.0, error  # the box moves 63 px in all; a tracker that stays put fails
    assert box_iou(gt, pred).mean() > 0.75


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_track_video_takes_frames_in_the_apis_other_forms(tracker):
    """Float frames in [0, 1] were divided by 255 again: a near-black video tracked without a word."""
    frames, gt = _translating_texture(n=4)
    want = list(track_video(PatchEncoder(), frames, tuple(gt[0]), tracker))
    for given in ([f / 255.0 for f in frames], [torch.from_numpy(f) for f in frames]):
        np.testing.assert_allclose(list(track_video(PatchEncoder(), given, tuple(gt[0]), tracker)), want)


def test_crop_geometry_is_exact_for_integer_windows():
    frame = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    sampler = PatchSampler(nn.Identity(), l2_normalise=False)
    image = sampler.image(frame)
    # A 6x4 window centred at (10, 7) covers pixels x 7..12, y 5..8; sampled 1:1 it is a plain slice.
    crop = sampler.crops(image, torch.tensor([[10.0, 7.0]]), torch.tensor([[6.0, 4.0]]), (4, 6))
    torch.testing.assert_close(crop[0], image[:, 5:9, 7:13])
    # Outside the frame the crop takes the frame's mean colour.
    outside = sampler.crops(image, torch.tensor([[-50.0, -50.0]]), torch.tensor([[4.0, 4.0]]), (2, 2))
    torch.testing.assert_close(outside[0], image.mean(dim=(1, 2))[:, None, None].expand(3, 2, 2))


def test_track_video_streams_and_validates():
    frames, gt = _translating_texture(n=4)
    consumed = []

    def stream():
        for f in frames:
            consumed.append(1)
            yield f

    boxes = track_video(PatchEncoder(), stream(), tuple(gt[0]), "localise")
    assert next(boxes) == tuple(gt[0]) and len(consumed) == 1  # lazy: one frame pulled per box
    assert len(list(boxes)) == 3
    with pytest.raises(ValueError, match="positive size"):
        next(track_video(PatchEncoder(), frames, (0, 0, 0, 5)))
    with pytest.raises(ValueError, match="outside"):
        next(track_video(PatchEncoder(), frames, (500, 0, 5, 5)))
    with pytest.raises(ValueError, match="no frames"):
        next(track_video(PatchEncoder(), [], (0, 0, 5, 5)))
    with pytest.raises(ValueError, match="unknown localise setting"):
        tracker_settings("localise", padding=2.0)
    with pytest.raises(ValueError, match="unknown tracker"):
        tracker_settings("kcf")


def test_draw_box():
    frame = np.zeros((10, 12, 3), np.uint8)
    out = draw_box(frame, (2, 3, 5, 4), colour=(255, 0, 0), thickness=1)
    assert frame.max() == 0  # the input is left alone
    red = out[..., 0] == 255
    assert red[3, 2:7].all() and red[6, 2:7].all() and red[3:7, 2].all() and red[3:7, 6].all()
    assert not red[4:6, 3:6].any() and red.sum() == 14
    clipped = draw_box(frame, (-5, -5, 8, 8), thickness=2)  # partly outside: no error, clipped
    assert clipped[:3, :3].any() and not clipped[5:, 5:].any()
    assert not draw_box(frame, (50, 50, 5, 5)).any()
