"""The API closes a video it opened when a check after the first frame fails: the exception's
traceback held the frames, so the decoder and its file stayed open as long as the exception did
(in a notebook, which keeps the last exception, until the next error)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import PatchEncoder
from torch import nn

from vidcorr import api
from vidcorr.errors import VidcorrError

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="open files listed by /proc (Linux)")

H, W = 256, 456  # bear.mp4's frames


class ChannelsLast(nn.Module):
    """Features (1, h, w, C): refused by the own-module probe, after the video is opened."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 8).permute(0, 2, 3, 1)


def _open_descriptors(path: Path) -> list[str]:
    """This process's file descriptors open on ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path.resolve()):
                found.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return found


@pytest.fixture(scope="module")
def mp4(data_dir) -> Path:
    return data_dir / "videos" / "davis2016-train" / "bear.mp4"


def _mask(hw: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(hw, np.uint8)
    mask[100:150, 200:260] = 1
    return mask


CALLS = {
    "mask of another size": lambda video: api.propagate_masks(video, _mask((H // 2, W // 2)), encoder=PatchEncoder()),
    "labels of another size": lambda video: api.propagate_labels(video, np.zeros((2, H // 2, W // 2)),
                                                                 encoder=PatchEncoder()),
    "keypoint off the frame": lambda video: api.propagate_keypoints(video, np.array([[W + 10.0, 5.0]]),
                                                                    encoder=PatchEncoder()),
    "box off the frame": lambda video: api.track_box(video, (W + 10, 5, 20, 20), encoder=PatchEncoder()),
    "own module failing its probe": lambda video: api.propagate_masks(video, _mask((H, W)), encoder=ChannelsLast()),
    "unknown knob": lambda video: api.propagate_labels(video, _mask((H, W))[None].astype(float),
                                                       encoder=PatchEncoder(), tmperature=0.1),
    # a stride-1 module: one feature cell per pixel, too fine for the heatmaps (found at the first frame's embedding)
    "heatmaps too fine for the grid": lambda video: api.propagate_keypoints(
        video, np.array([[200.0, 120.0]]), encoder=nn.Conv2d(3, 4, 1)),
}


@pytest.mark.parametrize("failure", list(CALLS))
def test_a_check_failing_after_the_first_frame_closes_the_video(mp4, failure):
    assert _open_descriptors(mp4) == []
    with pytest.raises((VidcorrError, ValueError)) as caught:
        CALLS[failure](mp4)
    # the exception (and its traceback, holding the call's frames) is still alive here
    assert caught.value.__traceback__ is not None
    assert _open_descriptors(mp4) == [], f"{failure}: the video is still open"


def test_a_video_is_open_while_iterated_and_closed_when_the_caller_stops(mp4):
    """The descriptor check sees an open video (so the test above can fail), and stopping early
    (``close()`` on the returned generator) releases it."""
    masks = api.propagate_masks(mp4, _mask((H, W)), encoder=PatchEncoder())
    next(masks)
    assert len(_open_descriptors(mp4)) == 1
    masks.close()
    assert _open_descriptors(mp4) == []
