"""`vidcorr.propagate.Propagator`, the engine docs/propagation.md names, called from Python with the
arguments a researcher would try: a preset's name, numpy labels, frames that are not RGB uint8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import PatchEncoder

from vidcorr.presets import get_preset
from vidcorr.propagate import Propagator


def _video(n: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """n RGB uint8 frames 64 x 80 of one texture moving 1 px a frame, and two-channel first labels."""
    base = np.random.default_rng(0).integers(0, 255, (64 + n, 80 + n, 3), dtype=np.uint8)
    frames = [base[i : i + 64, i : i + 80].copy() for i in range(n)]
    labels = np.zeros((2, 64, 80), np.float32)
    labels[1, 16:40, 16:48] = 1
    labels[0] = 1 - labels[1]
    return frames, labels


def test_a_preset_name_is_the_preset():
    # Propagator(enc, "crw") was accepted, then failed at the first frame: 'str' object has no attribute 'size'
    frames, labels = _video()
    by_name = list(Propagator(PatchEncoder(), "crw").run(frames, torch.from_numpy(labels)))
    by_preset = list(Propagator(PatchEncoder(), get_preset("crw")).run(frames, torch.from_numpy(labels)))
    assert all(torch.equal(a, b) for a, b in zip(by_name, by_preset))
    with pytest.raises(ValueError, match="preset"):
        Propagator(PatchEncoder(), "CRW")


def test_numpy_first_labels_are_taken_as_a_tensor():
    # numpy labels gave AttributeError: 'numpy.ndarray' object has no attribute 'to'
    frames, labels = _video()
    from_numpy = list(Propagator(PatchEncoder(), "crw").run(frames, labels))
    from_tensor = list(Propagator(PatchEncoder(), "crw").run(frames, torch.from_numpy(labels)))
    assert all(torch.equal(a, b) for a, b in zip(from_numpy, from_tensor))


@pytest.mark.parametrize("convert", [lambda f: f / 255.0, lambda f: f.astype(np.float32), lambda f: f[..., 0]],
                         ids=["float01", "float255", "gray"])
def test_frames_that_are_not_rgb_uint8_are_refused_with_the_converter(convert):
    # float frames in [0, 1] were divided by 255 again: a black video, propagated without a word
    frames, labels = _video()
    propagator = Propagator(PatchEncoder(), "crw")
    with pytest.raises(ValueError, match="as_rgb_frame"):
        list(propagator.run([convert(f) for f in frames], torch.from_numpy(labels)))
