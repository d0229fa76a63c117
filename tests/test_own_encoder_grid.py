"""An encoder of one's own: its feature grid and stride come from what it produces, not a guess.

A plain module has no `stride` (or one that is not a number: ``nn.Conv2d.stride`` is a tuple), and
its grid need not be ceil(input / stride): a patch model that resizes to a multiple of its patch,
or unpadded convolutions, give fewer cells. Keypoint propagation draws its heatmaps on the grid the
first frame gets; the localisation tracker rounds its crops to the measured stride; a grid that
changes between frames of one size is a one-line error naming the module and the grids.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import vidcorr
from vidcorr.cli import main
from vidcorr.errors import EncoderOutputError
from vidcorr.keypoints import CODECS, propagate_keypoints
from vidcorr.labels import downsample_labels
from vidcorr.models import build_encoder
from vidcorr.models.external import load_external_encoder, measure_stride
from vidcorr.presets import get_preset
from vidcorr.propagate import Propagator
from vidcorr.track import LocaliseTracker, PatchSampler

FRAME_HW = (119, 213)  # not a multiple of 16: a floor grid (7, 13) differs from ceil (8, 14)


class ResizeToPatch(nn.Module):
    """A patch model that resizes its input down to a multiple of its patch, as docs/propagation.md
    allows: floor(H / patch) x floor(W / patch) cells, one fixed random code per cell position
    when ``codes`` (every cell then matches only itself), else a random patch embedding."""

    def __init__(self, patch: int = 16, codes: bool = False):
        super().__init__()
        self.patch, self.codes = patch, codes
        self.embed = nn.Conv2d(3, 16, patch, patch)

    def forward(self, rgb):
        h, w = (max(self.patch, s // self.patch * self.patch) for s in rgb.shape[-2:])
        rgb = F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False)
        if not self.codes:
            return self.embed(rgb)
        cells = torch.randn(64, h // self.patch, w // self.patch, generator=torch.Generator().manual_seed(0))
        return cells.expand(rgb.shape[0], -1, -1, -1)


class FixedSize(nn.Module):
    """Resizes every input to 64 x 64: an 8 x 8 grid whatever the frame."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, 8)

    def forward(self, rgb):
        return self.embed(F.interpolate(rgb, size=(64, 64), mode="bilinear", align_corners=False))


def _is_probe(rgb: torch.Tensor) -> bool:
    """Whether ``rgb`` is one of the uniformly grey frames a module of one's own is probed with before
    propagating (`vidcorr.models.external.measure_stride`), which the call-counting modules below
    leave uncounted: they go wrong on a given real frame or crop."""
    return bool((rgb == 0.5).all())


class Shrinking(nn.Module):
    """Stride 16, but one cell fewer per axis after the first call: no grid to propagate on."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.embed = nn.Conv2d(3, 8, 16, 16, padding=8)

    def forward(self, rgb):
        feats = self.embed(rgb)
        if _is_probe(rgb):
            return feats
        self.calls += 1
        return feats if self.calls == 1 else feats[..., 1:, 1:]


class GoodThenFaulty(nn.Module):
    """Stride-8 features for the first ``good`` calls, then `fault` of them: an encoder of one's own
    that passes its probes and goes wrong on some later frame or crop."""

    def __init__(self, good: int):
        super().__init__()
        self.patch, self.calls, self.good = nn.Conv2d(3, 8, 8, 8), 0, good

    def forward(self, rgb):
        feats = self.patch(rgb)
        if _is_probe(rgb):
            return feats
        self.calls += 1
        return feats if self.calls <= self.good else self.fault(feats)

    def fault(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8) for _ in range(n)]


def _seeded(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.1)
    return module


def _unpadded() -> nn.Module:
    return nn.Sequential(*(nn.Conv2d(c, 8, 3, 2) for c in (3, 8, 8)))


@pytest.mark.parametrize(("make", "stride"), [
    (lambda: nn.Sequential(*(nn.Conv2d(c, 8, 3, 2, 1) for c in (3, 8, 8))), 8),  # padded: ceil(H / 8)
    (_unpadded, 8),  # floor((H - 1) / 2) per layer
    (lambda: nn.Conv2d(3, 8, 3, 32, 1), 32),  # ceil(H / 32): a single probe size divisible by 16 misreads it
    (lambda: nn.Conv2d(3, 8, 16, 16), 16),  # its `stride` attribute is the tuple (16, 16)
    (lambda: ResizeToPatch(14), 14),
    (FixedSize, None),  # no stride: the grid does not follow the frame
])
def test_measure_stride_follows_what_the_module_does(make, stride):
    assert measure_stride(_seeded(make())) == stride


@pytest.mark.parametrize(("make", "stride"), [
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 16, 16)), 16),  # no `stride`: 8 was assumed
    (lambda: nn.Conv2d(3, 8, 16, 16), 16),  # `stride` (16, 16): int() of it raised a TypeError
    (lambda: ResizeToPatch(14), 14),
    (_unpadded, 8),
])
def test_localise_tracker_tiles_its_crops_with_the_measured_cells(make, stride):
    """The template and search crops are rounded to whole cells of the module's own stride (it used
    to assume 8: a stride-16 module lost part of its template and its box ran off the frame)."""
    frames = _frames(4)
    module = _seeded(make())
    tracker = LocaliseTracker(PatchSampler(module, l2_normalise=True))
    assert tracker.stride == stride
    box = (90.0, 40.0, 60.0, 40.0)
    tracker.init(frames[0], box)
    (th, tw), (sh, sw) = tracker.template_hw, tracker.search_hw
    assert th % stride == tw % stride == sh % stride == sw % stride == 0
    if make is not _unpadded:  # every cell a whole `stride` of the crop
        assert tracker.template.shape[-1] == (th // stride) * (tw // stride)
    boxes = [b for _, b in vidcorr.track_box(frames, box, encoder=module)]
    assert len(boxes) == 4 and np.isfinite(boxes).all()


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_a_tracked_encoder_that_goes_wrong_mid_video_is_named(tracker):
    """The box trackers took any output (`.float()` made integer features pass, other shapes failed
    deep inside); they check it as propagation does."""
    class IntegerLater(GoodThenFaulty):
        def fault(self, feats):
            return feats.long()

    with pytest.raises(EncoderOutputError, match=r"encoder IntegerLater gave .* torch.int64 \(not a floating-point"):
        list(vidcorr.track_box(_frames(6), (90.0, 40.0, 60.0, 40.0), tracker=tracker, encoder=IntegerLater(good=4)))


def test_our_encoders_keep_their_own_stride_unmeasured(monkeypatch):
    """A `FrameEncoder` knows its stride: no probe frames, the tracker exactly as before."""
    def refuse(*args, **kwargs):
        raise AssertionError("a FrameEncoder's stride was measured")

    monkeypatch.setattr("vidcorr.models.external.measure_stride", refuse)
    assert LocaliseTracker(PatchSampler(build_encoder("lab-pixels"), l2_normalise=True)).stride == 8


@pytest.mark.parametrize("with_stride_attribute", [False, True])
def test_keypoints_stay_in_place_on_a_floor_grid(with_stride_attribute):
    """A still video through a module whose grid is floor(input / 16) (7 x 13 for 213 x 119 frames,
    not ceil's 8 x 14): every frame decodes to the first frame's joints, up to the codec's round trip
    on that grid. Used to be a ValueError (no `stride`) or a RuntimeError after the first frame."""
    module = ResizeToPatch(16, codes=True)
    if with_stride_attribute:
        module.stride = 16  # read no more: the grid is what the module gives
    frames = [_frames(1)[0]] * 4
    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(10, 200, 6), rng.uniform(10, 110, 6)], axis=1)
    codec, preset = CODECS["crw"], get_preset("crw")
    out = list(propagate_keypoints(Propagator(module, preset), frames, points, codec))
    np.testing.assert_array_equal(out[0][1], points)
    grid = (7, 13)
    labels = downsample_labels(codec.encode(points, FRAME_HW, grid), grid, preset.label_downsample)
    reference, _ = codec.decode(labels, FRAME_HW)
    for _, coords, visible in out[1:]:
        assert visible.all()
        np.testing.assert_allclose(coords, reference, atol=0.05)
    again = list(vidcorr.propagate_keypoints(frames, points, encoder=module))  # the API takes any module
    np.testing.assert_allclose(again[-1][1], out[-1][1])


@pytest.mark.parametrize("annotation", ["mask", "labels", "keypoints"])
def test_a_grid_that_changes_between_frames_is_an_input_error(annotation):
    frames = _frames(3)
    first = np.zeros(FRAME_HW, np.uint8)
    first[30:80, 50:150] = 1
    with pytest.raises(EncoderOutputError, match=r"encoder Shrinking gave a 13x7 feature grid for a 213x119 input "
                                         r"but 14x8 for the first frame"):
        if annotation == "mask":
            list(vidcorr.propagate_masks(frames, first, encoder=Shrinking()))
        elif annotation == "labels":
            list(vidcorr.propagate_labels(frames, first.astype(np.float32), encoder=Shrinking()))
        else:
            list(vidcorr.propagate_keypoints(frames, np.array([[100.0, 50.0]]), encoder=Shrinking()))


FACTORY = '''
import torch
from torch import nn
from torch.nn import functional as F


class ResizeToPatch(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 8, 16, 16)

    def forward(self, rgb):
        h, w = (max(16, s // 16 * 16) for s in rgb.shape[-2:])
        return self.patch(F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False))


def vitlike():
    return ResizeToPatch()


class GoesWrong(nn.Module):
    """Well-behaved for its checks at load time (3 calls) and the first frame, not after."""

    def __init__(self, wrong):
        super().__init__()
        self.patch, self.wrong, self.calls = nn.Conv2d(3, 8, 8, 8), wrong, 0

    def forward(self, rgb):
        self.calls += 1
        feats = self.patch(rgb)
        if self.calls <= 4:
            return feats
        if self.wrong == "raises":
            raise RuntimeError(f"expects a square input, got {tuple(rgb.shape)}")
        return feats[..., 1:, 1:] if self.wrong == "grid" else feats.long()


def shrinking():
    return GoesWrong("grid")


def integer():
    return GoesWrong("dtype")


def raising():
    return GoesWrong("raises")
'''


def test_keypoints_on_real_frames_with_a_resizing_encoder_from_the_command_line(short_clip, tmp_path, capsys):
    """car-shadow at --size 120 (214 x 120 input): the module resizes to 208 x 112, a 13 x 7 grid
    (ceil's would be 14 x 8). The run used to end in a RuntimeError traceback after frame 0."""
    factory = tmp_path / "my_models.py"
    factory.write_text(FACTORY)
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    first = np.array(Image.open(sorted(frames.glob("*.jpg"))[0]))
    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"keypoints": [[300, 250], [500, 300]]}))
    out = tmp_path / "out"
    assert main(["propagate", str(frames), "--keypoints", str(kp), "--out", str(out), "--no-video",
                 "--size", "120", "--encoder", f"{factory}:vitlike"]) == 0, capsys.readouterr().err
    saved = json.loads((out / "keypoints.json").read_text())["frames"]
    assert len(saved) == 6 and all(p is not None for f in saved for p in f["keypoints"])
    assert all(0 <= x < first.shape[1] and 0 <= y < first.shape[0] for f in saved for x, y in f["keypoints"])
    module, info = load_external_encoder(f"{factory}:vitlike")
    assert info["stride"] == 16 and not hasattr(module, "stride")  # measured, the module left as it was


@pytest.mark.parametrize(("factory", "message"), [
    ("shrinking", "encoder GoesWrong gave a 13x7 feature grid for a 114x64 input but 14x8 for the first frame"),
    ("integer", "encoder GoesWrong gave (1, 8, 8, 14) torch.int64 (not a floating-point dtype"),
    ("raising", "encoder GoesWrong failed on 1 frame(s) of 114x64 px: RuntimeError: expects a square input, "
                "got (1, 3, 64, 114) (my_models.py:"),
])
def test_an_encoder_that_goes_wrong_mid_video_is_one_line_and_exit_2(short_clip, tmp_path, capsys, factory, message):
    """Its ValueError used to reach the command line as a traceback (exit 1), and so did an error it
    raised itself on a frame its probes had not shown it (a non-square one)."""
    module = tmp_path / "my_models.py"
    module.write_text(FACTORY)
    frames = short_clip / "JPEGImages" / "480p" / "car-shadow"
    mask = short_clip / "Annotations" / "480p" / "car-shadow" / "00000.png"
    out = tmp_path / "out"
    code = main(["propagate", str(frames), "--mask", str(mask), "--out", str(out), "--no-video", "--size", "64",
                 "--batch-size", "1", "--encoder", f"{module}:{factory}"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and not out.exists(), err


class TurnsNaN(GoodThenFaulty):
    """Finite features for the first ``good`` calls, then NaN (or +inf) ones: a division by zero
    that only some frames hit."""

    def __init__(self, good: int, value: float = float("nan")):
        super().__init__(good)
        self.value = value

    def fault(self, feats):
        return feats * self.value


@pytest.mark.parametrize("use", ["mask", "keypoints", "dcf", "localise"])
def test_non_finite_features_are_named_not_propagated(use):
    """NaN features gave NaN affinities: `eval jhmdb` ended with exit 0 and PCK null, masks came out
    empty. They are an `EncoderOutputError` naming the module, on the frame they appear."""
    frames = _frames(4)
    first = np.zeros(FRAME_HW, np.uint8)
    first[30:80, 50:150] = 1
    with pytest.raises(EncoderOutputError, match=r"encoder TurnsNaN gave features holding NaN values for 1 frame"):
        if use == "mask":
            list(vidcorr.propagate_masks(frames, first, encoder=TurnsNaN(good=2), batch_size=1))
        elif use == "keypoints":
            list(vidcorr.propagate_keypoints(frames, np.array([[100.0, 50.0]]), encoder=TurnsNaN(good=0)))
        else:
            list(vidcorr.track_box(frames, (90.0, 40.0, 60.0, 40.0), tracker=use, encoder=TurnsNaN(good=4)))
    with pytest.raises(EncoderOutputError, match=r"holding infinite values"):
        list(vidcorr.propagate_masks(frames, first, encoder=TurnsNaN(good=1, value=float("inf"))))


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_a_tracked_encoder_that_raises_is_named_with_its_line(tracker):
    class RaisesLater(GoodThenFaulty):
        def fault(self, feats):
            raise ValueError("out of memory in my attention")

    with pytest.raises(EncoderOutputError, match=r"encoder RaisesLater failed on \d+ crop\(s\) of \d+x\d+ px: "
                                                 r"ValueError: out of memory in my attention \(test_own_encoder_grid"):
        list(vidcorr.track_box(_frames(6), (90.0, 40.0, 60.0, 40.0), tracker=tracker, encoder=RaisesLater(good=4)))
