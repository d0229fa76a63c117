"""Float frames at the API's door (`vidcorr.io.frames`): which range a float video is taken in."""

import numpy as np
import pytest

from vidcorr.errors import InputError
from vidcorr.io.frames import as_rgb_frame, as_rgb_frames


def _ramp(top: float) -> np.ndarray:
    return np.broadcast_to(np.linspace(0, top, 16, dtype=np.float32)[None, :, None], (8, 16, 3))


def test_bicubic_overshoot_of_a_unit_float_frame_is_still_unit_range():
    """Resizing [0, 1] frames bicubically overshoots 1 at edges; such a frame was taken as 0-255
    (max just over 1.0) and the whole video came out black."""
    frame = _ramp(1.0).copy()
    frame[0, 0] = 1.08
    rgb = as_rgb_frame(frame)
    assert rgb.max() == 255 and rgb[0, -1, 0] == 255 and rgb[0, 8, 0] == round(8 / 15 * 255)


def test_a_float_video_taken_as_unit_range_refuses_a_later_0_255_frame():
    """A 0-255 float video that starts black (a fade-in) is taken as [0, 1] on its first frame;
    its later frames were multiplied by 255 and saturated white without a word."""
    video = [np.zeros((8, 16, 3), np.float32), _ramp(0.9), _ramp(200.0)]
    stream = as_rgb_frames(video)
    assert next(stream).max() == 0 and next(stream).max() == round(0.9 * 255)
    with pytest.raises(InputError, match=r"frame 2 holds values up to 200.*taken as float in \[0, 1\].*uint8"):
        next(stream)
    # the per-frame path (mask_tracker) takes the scale it was given
    with pytest.raises(InputError, match="frame 5 holds values up to 200"):
        as_rgb_frame(_ramp(200.0), 5, scale=255.0)


def test_a_dark_later_frame_of_a_0_255_float_video_is_not_stretched():
    video = [_ramp(255.0), _ramp(0.5)]
    frames = list(as_rgb_frames(video))
    assert frames[0].max() == 255 and frames[1].max() == 0  # 0.5 of 255 rounds to 0, not to 128
