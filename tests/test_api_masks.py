"""The API's masks and soft labels: the CLI's and the stream's results, frame-at-a-time tracking, any input form."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from api_helpers import _crw_small
from PIL import Image
from synthetic import PatchEncoder
from test_propagate import _texture_video

import vidcorr
import vidcorr.track_uvc
from vidcorr import api
from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.io.masks import DAVIS_PALETTE, read_mask
from vidcorr.io.video import open_frames
from vidcorr.labels import one_hot_labels
from vidcorr.masks import MaskTracker, check_first_mask, mask_overlay, propagate_mask
from vidcorr.presets import customised_preset
from vidcorr.propagate import Propagator
from vidcorr.soft_labels import check_first_labels, read_labels_file
from vidcorr.viz import full_brightness


@pytest.mark.parametrize("name", ["crw", "uvc", "stt"])
def test_tracker_steps_give_the_streaming_loops_masks(name):
    """One frame at a time (one encoder call each) == the batched stream, frame for frame."""
    frames, masks = _texture_video(n_frames=6)
    preset = customised_preset(name, n_previous=2, radius=3)
    want = [m for _, m in propagate_mask(Propagator(PatchEncoder(), preset, batch_size=3), frames, masks[0])]
    tracker = MaskTracker(Propagator(PatchEncoder(), preset))
    got = [tracker.step(frames[0], masks[0])] + [tracker.step(f) for f in frames[1:]]
    assert len(got) == len(want) == 6
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"frame {t}")
    assert (got[3] == 1).sum() > 0.5 * (masks[3] == 1).sum()  # not empty: the square is followed


def test_a_new_mask_restarts_the_tracker():
    frames, masks = _texture_video(n_frames=5)
    preset = customised_preset("crw", n_previous=2, radius=3)
    tracker = MaskTracker(Propagator(PatchEncoder(), preset))
    for frame in frames[:3]:
        tracker.step(frame, masks[0] if frame is frames[0] else None)
    restarted = [tracker.step(frames[2], masks[2]), tracker.step(frames[3]), tracker.step(frames[4])]
    fresh = MaskTracker(Propagator(PatchEncoder(), preset))
    expected = [fresh.step(frames[2], masks[2]), fresh.step(frames[3]), fresh.step(frames[4])]
    for r, e in zip(restarted, expected):
        np.testing.assert_array_equal(r, e)
    assert tracker.propagator.context_size == 1 + 2


def test_tracker_needs_a_first_mask_and_keeps_the_frame_size():
    frames, masks = _texture_video(n_frames=3)
    tracker = MaskTracker(Propagator(PatchEncoder(), customised_preset("crw", radius=3)))
    with pytest.raises(InputError, match="first frame's mask") as err:  # was a bare RuntimeError
        tracker.step(frames[0])
    assert isinstance(err.value, RuntimeError)  # as before, for code that caught that
    with pytest.raises(InputError, match="empty"):
        tracker.step(frames[0], np.zeros_like(masks[0]))
    with pytest.raises(InputError, match="0/255 binary mask read as raw values.*read_mask"):
        tracker.step(frames[0], masks[0] * 255)  # np.array(Image.open(davis2016_png))
    tracker.step(frames[0], masks[0])
    tracker.step(frames[1])
    with pytest.raises(InputError, match=r"^frame 2 is 96x32 but the first frame was 96x64"):  # which frame
        tracker.step(frames[2][:32])
    fresh = MaskTracker(Propagator(PatchEncoder(), customised_preset("crw", radius=3)))
    want = [fresh.step(frames[0], masks[0]), fresh.step(frames[1]), fresh.step(frames[2])][-1]
    np.testing.assert_array_equal(tracker.step(frames[2]), want)  # the refused frame left no trace


def test_propagate_masks_from_paths_equals_the_command_line(davis2016_root, tmp_path):
    """Real frames: a frame folder and a PNG mask through the API give the CLI's PNGs, pixel for pixel."""
    seq = "blackswan"
    folder = tmp_path / "frames"
    folder.mkdir()
    for path in sorted((davis2016_root / "JPEGImages" / "480p" / seq).glob("*.jpg"))[:5]:
        (folder / path.name).write_bytes(path.read_bytes())
    mask = davis2016_root / "Annotations" / "480p" / seq / "00000.png"
    out = tmp_path / "cli"
    assert main(["propagate", str(folder), "--mask", str(mask), "--out", str(out), "--no-video",
                 "--features", "random-resnet18", "--size", "160", "--context", "3"]) == 0
    encoder = vidcorr.encoder_for("crw", features="random-resnet18")
    results = list(vidcorr.propagate_masks(folder, mask, encoder=encoder, size=160, n_previous=3))
    assert len(results) == 5
    for t, (frame, labels) in enumerate(results):
        assert frame.shape == (480, 854, 3) and labels.shape == (480, 854)
        written = np.array(Image.open(out / "masks" / f"{t:05d}.png"))
        np.testing.assert_array_equal(labels, written, err_msg=f"frame {t}")
    assert 0.5 < (results[-1][1] == 1).sum() / (results[0][1] == 1).sum() < 2  # the swan is still there


def test_a_mask_png_as_a_path_or_a_pil_image_is_read_by_read_masks_rules_everywhere(tmp_path):
    """tracker.step(frame, "first.png") was "dtype <U.. with values that are not object ids" (only
    propagate_masks read paths), and Image.open of a DAVIS-2016 0/255 mask was all void ("empty")."""
    frames, masks = _texture_video(n_frames=3)
    binary = tmp_path / "first.png"
    Image.fromarray(masks[0] * 255).save(binary)  # 'L', 0/255: 255 is object 1
    want = _masks_of(frames, masks[0])
    for given in (binary, str(binary), Image.open(binary), Image.open(binary).convert("1")):
        np.testing.assert_array_equal(_masks_of(frames, given)[-1], want[-1])
        tracker = api.mask_tracker(encoder=PatchEncoder(), preset=_crw_small())
        np.testing.assert_array_equal(tracker.step(frames[0], given), masks[0])
        np.testing.assert_array_equal([tracker.step(f) for f in frames[1:]][-1], want[-1])
    with pytest.raises(InputError, match="missing.png: mask file not found"):
        api.mask_tracker(encoder=PatchEncoder()).step(frames[0], tmp_path / "missing.png")
    with pytest.raises(InputError, match=r"the first-frame mask \(a PIL image\) is an RGB image of grey levels"):
        api.propagate_masks(frames, Image.fromarray(masks[0] * 255).convert("RGB"), encoder=PatchEncoder())
    with pytest.raises(InputError, match=r"first.png: mask is 96x64 but frames are 48x32"):  # named by its file
        api.mask_tracker(encoder=PatchEncoder()).step(frames[0][:32, :48], Image.open(binary))


class _FsPath(os.PathLike):
    """An os.PathLike that is no pathlib.Path (py.path, fsspec / upath objects, a project's own)."""

    def __init__(self, path):
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


def test_any_os_pathlike_is_read_as_a_path(tmp_path):
    """Only str and pathlib.Path were: a video as another os.PathLike was "'_FsPath' object is not
    iterable" (read as frames), a mask "dtype object with values that are not object ids"."""
    frames, masks = _texture_video(n_frames=3)
    (tmp_path / "frames").mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{t:05d}.png")
    Image.fromarray(masks[0]).save(tmp_path / "first.png")
    np.save(tmp_path / "first.npy", masks[0][None].astype(np.float32))
    (tmp_path / "first.json").write_text('{"keypoints": [[40.0, 30.0]]}')
    video, kw = _FsPath(tmp_path / "frames"), dict(encoder=PatchEncoder(), preset=_crw_small())
    want = [m for _, m in api.propagate_masks(tmp_path / "frames", tmp_path / "first.png", **kw)]
    got = [m for _, m in api.propagate_masks(video, _FsPath(tmp_path / "first.png"), **kw)]
    np.testing.assert_array_equal(got, want)
    assert len(list(api.propagate_labels(video, _FsPath(tmp_path / "first.npy"), **kw))) == 3
    assert len(list(api.propagate_keypoints(video, _FsPath(tmp_path / "first.json"), **kw))) == 3
    assert len(list(api.track_box(video, (30, 20, 24, 16), encoder=PatchEncoder()))) == 3
    tracker = api.mask_tracker(**kw)
    np.testing.assert_array_equal(tracker.step(frames[0], _FsPath(tmp_path / "first.png")), masks[0])
    with pytest.raises(InputError, match="missing.mp4: no such video file"):  # named by its path
        api.propagate_masks(_FsPath(tmp_path / "missing.mp4"), masks[0], **kw)


def test_object_ids_far_apart_are_carried_as_one_channel_each(davis2017_fixtures, monkeypatch):
    """A mask of ids 0, 7 and 200 was carried as 201 channels (several times the time and memory),
    and under UVC-track an empty channel made every frame fall back to full-frame propagation.
    Real frames (bmx-trees, 2 objects): the masks are those of ids 1 and 2, renumbered, with and
    without track, whole-video and frame by frame; the overlay draws each box in its object's colour."""
    root = davis2017_fixtures / "deva-vos"
    frames = list(open_frames(root / "JPEGImages" / "bmx-trees"))[:3]
    mask = read_mask(root / "Annotations" / "bmx-trees" / "00000.png")
    assert set(np.unique(mask)) == {0, 1, 2}
    renumber = np.arange(256, dtype=np.uint8)
    renumber[[1, 2]] = [7, 200]
    fell_back = []  # UVC-track's fallback test, per context frame: empty channels made it always True
    falls_back = vidcorr.track_uvc.context_falls_back
    monkeypatch.setattr(vidcorr.track_uvc, "context_falls_back",
                        lambda *args, **kw: fell_back.append(falls_back(*args, **kw)) or fell_back[-1])
    encoder = vidcorr.encoder_for("crw")  # PatchEncoder loses object 1 by frame 2 (no box to check)
    for track in (False, True):
        kw = dict(encoder=encoder, preset=_crw_small(), track=track, size=240)
        want = [renumber[m] for _, m in api.propagate_masks(frames, mask, **kw)]
        stream = api.propagate_masks(frames, renumber[mask], **kw)
        got = [m for _, m in stream]
        np.testing.assert_array_equal(got, want)
        assert not track or (fell_back and not any(fell_back)), fell_back
        tracker = api.mask_tracker(**kw)
        stepped = [tracker.step(frames[0], renumber[mask])] + [tracker.step(f) for f in frames[1:]]
        np.testing.assert_array_equal(stepped, want)
        assert tracker.propagator.channel_ids.tolist() == [0, 7, 200]
        assert tracker.propagator._first.labels.shape[1] == 3  # background and two objects, not 201
        if track:
            boxes = tracker.propagator.pixel_boxes()
            drawn = mask_overlay(frames[-1], stepped[-1], tracker.propagator)
            for k, obj in ((1, 7), (2, 200)):
                x, y, _, _ = (int(round(v)) for v in boxes[k])
                colour = full_brightness(DAVIS_PALETTE[obj : obj + 1].astype(np.float32))[0]
                np.testing.assert_array_equal(drawn[max(y, 0) + 1, max(x, 0) + 1], colour)  # inside its outline


def test_a_mask_saved_with_np_save_is_named_as_such(tmp_path, capsys):
    """It was "cannot read mask: cannot identify image file", from Python and --mask alike."""
    frames, masks = _texture_video(n_frames=2)
    np.save(tmp_path / "first.npy", masks[0])
    problem = r"first.npy: is a NumPy array \(.npy\), not a mask image: save the ids as a PNG .*np.load\(path\)"
    with pytest.raises(InputError, match=problem):
        api.propagate_masks(frames, tmp_path / "first.npy", encoder=PatchEncoder())
    (tmp_path / "frames").mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{t:05d}.png")
    assert main(["propagate", str(tmp_path / "frames"), "--mask", str(tmp_path / "first.npy"), "--out",
                 str(tmp_path / "out"), "--features", "lab-pixels"]) == 2
    assert "is a NumPy array (.npy), not a mask image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_propagate_masks_checks_its_input_at_the_call(tmp_path):
    frames, masks = _texture_video(n_frames=3)
    small = tmp_path / "small.png"
    Image.fromarray(np.ones((10, 20), np.uint8)).save(small)
    encoder = PatchEncoder()
    with pytest.raises(InputError, match="small.png: mask is 20x10 but frames are 96x64") as err:
        api.propagate_masks(frames, small, encoder=encoder)  # raised before iterating
    assert "turned" not in str(err.value)
    with pytest.raises(InputError, match="^the first-frame mask is 64x96 .* turned by 90 degrees"):  # drawn
        api.propagate_masks(frames, masks[0].T.copy(), encoder=encoder)                         # on a rotated view
    with pytest.raises(InputError, match="empty"):
        api.propagate_masks(frames, np.zeros_like(masks[0]), encoder=encoder)
    with pytest.raises(InputError, match="^the video has no frames$"):  # docs: bad input is an InputError
        api.propagate_masks(np.zeros((0, 64, 96, 3), np.uint8), masks[0], encoder=encoder)
    with pytest.raises(InputError, match="no such video"):
        api.propagate_masks(tmp_path / "missing.mp4", masks[0], encoder=encoder)
    Image.fromarray(frames[0]).save(tmp_path / "frame.png")  # was a video of one frame
    with pytest.raises(InputError, match="frame.png: is one image: give the folder of frames"):
        api.propagate_masks(tmp_path / "frame.png", masks[0], encoder=encoder)


def _masks_of(frames, first_mask, **kw):
    return [m for _, m in api.propagate_masks(frames, first_mask, encoder=PatchEncoder(), preset=_crw_small(), **kw)]


def test_frames_as_users_pass_them_give_the_uint8_masks():
    """Float frames in [0, 1] were read as near-black uint8 and uint16 as near-white, silently;
    grayscale, RGBA and torch tensors failed deep inside torch. All are converted at the call."""
    frames, masks = _texture_video(n_frames=4)
    want = _masks_of(frames, masks[0])
    variants = {
        "float [0, 1]": [f.astype(np.float32) / 255 for f in frames],
        "float [0, 255]": [f.astype(np.float64) for f in frames],
        "uint16": [f.astype(np.uint16) * 257 for f in frames],
        "RGBA": [np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]) for f in frames],
        "torch": [torch.from_numpy(f) for f in frames],
        "generator": (f for f in frames),
        "(T, H, W, 3) array": np.stack(frames),
    }
    assert len(want) == 4
    for name, video in variants.items():
        got = list(api.propagate_masks(video, masks[0], encoder=PatchEncoder(), preset=_crw_small()))
        assert len(got) == len(want), name  # every frame, whatever container holds them
        for (frame, mask), w, f in zip(got, want, frames, strict=True):
            assert frame.dtype == np.uint8 and frame.shape == f.shape, name
            np.testing.assert_array_equal(mask, w, err_msg=name)
    gray = [f.mean(axis=2).astype(np.uint8) for f in frames]
    shapes = [frame.shape for frame, _ in api.propagate_masks(gray, masks[0], encoder=PatchEncoder(),
                                                              preset=_crw_small())]
    assert shapes == [(64, 96, 3)] * 4
    tracker = api.mask_tracker(encoder=PatchEncoder(), preset=_crw_small())
    stepped = [tracker.step(frames[0] / 255.0, masks[0])] + [tracker.step(f / 255.0) for f in frames[1:]]
    for s, w in zip(stepped, want, strict=True):
        np.testing.assert_array_equal(s, w)


def test_bad_frames_are_refused_naming_the_frame():
    frames, masks = _texture_video(n_frames=3)
    chw = [torch.from_numpy(f).permute(2, 0, 1) for f in frames]
    with pytest.raises(InputError, match=r"frame 0 has shape \(3, 64, 96\).*permute\(1, 2, 0\)"):
        api.propagate_masks(chw, masks[0], encoder=PatchEncoder())
    resized = frames[:2] + [frames[2][:60]]  # within one encoder batch: np.stack used to fail
    with pytest.raises(InputError, match="frame 2 is 96x60 but the first frame was 96x64"):
        _masks_of(resized, masks[0])
    nan = [frames[0], np.full(frames[1].shape, np.nan)]
    with pytest.raises(InputError, match="frame 1 holds NaN"):
        _masks_of(nan, masks[0])
    # a list of image paths as the video, a path or None stepped: was "has shape ()"
    with pytest.raises(InputError, match=r"^frame 0 is str '00000.jpg', not an image array: give a video file or "
                                         r"frame folder"):
        api.propagate_masks(["00000.jpg", "00001.jpg"], masks[0], encoder=PatchEncoder())
    tracker = api.mask_tracker(encoder=PatchEncoder())
    tracker.step(frames[0], masks[0])
    with pytest.raises(InputError, match=r"^frame 1 is NoneType None, not an image array"):
        tracker.step(None)
    long = "/data/" + "a" * 80 + "/00001.jpg"  # named whole: a repr cut at 60 characters lost its end
    with pytest.raises(InputError, match=rf"^frame 1 is str '{long}', not an image array"):
        tracker.step(long)


def test_masks_of_any_array_type_and_out_of_range_ids():
    """ids > 255 wrapped modulo 256 (300 -> 44) and negative ids failed inside one_hot."""
    frames, masks = _texture_video(n_frames=3)
    want = _masks_of(frames, masks[0])
    assert len(want) == 3
    for first in (masks[0].tolist(), masks[0].astype(np.int64), masks[0] > 0, torch.from_numpy(masks[0])):
        for g, w in zip(_masks_of(frames, first), want, strict=True):
            np.testing.assert_array_equal(g, w)
    for bad, ids in ((np.where(masks[0] > 0, 300, 0), "0..300"), (np.where(masks[0] > 0, -1, 0), "-1..0")):
        with pytest.raises(InputError, match=f"holds ids {ids}; object ids must lie in 0..254"):
            api.propagate_masks(frames, bad, encoder=PatchEncoder())
        with pytest.raises(InputError, match="0..254"):
            api.mask_tracker(encoder=PatchEncoder()).step(frames[0], bad)
    with pytest.raises(InputError, match="not object ids"):
        api.propagate_masks(frames, masks[0] * 0.5, encoder=PatchEncoder())


def test_propagate_labels_carries_any_soft_labels_and_its_argmax_is_the_mask(davis2016_root):
    """Real frames (blackswan, random ResNet, crw): the one-hot first mask's propagated soft labels
    have propagate_masks' mask as their argmax, pixel for pixel; a continuous label (each pixel's x
    coordinate) stays a weighted average of the first frame's values; one channel may be (H, W)."""
    frames = [np.array(Image.open(p)) for p in sorted(
        (davis2016_root / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[:4]]
    mask = np.array(Image.open(davis2016_root / "Annotations" / "480p" / "blackswan" / "00000.png")) // 255
    encoder = vidcorr.encoder_for("crw", features="random-resnet18")
    kw = dict(encoder=encoder, size=160, n_previous=2)
    masks = [m for _, m in vidcorr.propagate_masks(frames, mask, **kw)]
    onehot = one_hot_labels(mask).numpy()
    ramp = np.broadcast_to(np.arange(854, dtype=np.float32), (480, 854))
    soft = list(vidcorr.propagate_labels(frames, np.concatenate([onehot, ramp[None]]), **kw))
    assert len(soft) == 4 and soft[0][1].shape == (3, 480, 854) and soft[0][1].dtype == np.float32
    for t, ((frame, labels), want) in enumerate(zip(soft, masks)):
        np.testing.assert_array_equal(frame, frames[t])
        np.testing.assert_array_equal(labels[:2].argmax(axis=0), want, err_msg=f"frame {t}")
        assert labels[2].min() >= -1e-3 and labels[2].max() <= 853 + 1e-3  # a convex combination of 0..853
    swan_x = soft[-1][1][2][masks[-1] == 1].mean()
    assert abs(swan_x - ramp[mask == 1].mean()) < 60  # the swan's pixels still carry about its x
    single = list(vidcorr.propagate_labels(frames[:2], ramp, **kw))
    assert single[1][1].shape == (1, 480, 854)
    np.testing.assert_allclose(single[1][1][0], soft[1][1][2], atol=1e-3)  # channels travel independently


def test_propagate_labels_checks_its_labels_at_the_call():
    frames, _ = _texture_video(n_frames=2)  # 96x64
    for labels, message in [
        (np.zeros((2, 64, 90)), r"first-frame labels are 90x64 but frames are 96x64"),
        (np.zeros((1, 1, 64, 96)), r"shape \(1, 1, 64, 96\); expected \(K, H, W\) or \(H, W\)"),
        (np.zeros((0, 64, 96)), r"shape \(0, 64, 96\)"),
        (np.full((64, 96), np.nan), "NaN or infinite"),
        (np.full((64, 96), "a"), "dtype <U1; expected numbers"),
    ]:
        with pytest.raises(InputError, match=message):
            vidcorr.propagate_labels(frames, labels, encoder=PatchEncoder(), preset=_crw_small())


def test_propagate_labels_reads_a_npy_path_as_the_command_line_does(tmp_path):
    """A path was "first-frame labels have dtype <U..; expected numbers", though propagate_masks and
    propagate_keypoints read theirs and `propagate --labels` takes a .npy."""
    frames, masks = _texture_video(n_frames=3)
    labels = np.stack([masks[0], 1 - masks[0]]).astype(np.float32)
    np.save(tmp_path / "first.npy", labels)
    want = [out for _, out in vidcorr.propagate_labels(frames, labels, encoder=PatchEncoder(), preset=_crw_small())]
    for given in (tmp_path / "first.npy", str(tmp_path / "first.npy")):
        got = [out for _, out in vidcorr.propagate_labels(frames, given, encoder=PatchEncoder(), preset=_crw_small())]
        np.testing.assert_array_equal(np.stack(got), np.stack(want))
    with pytest.raises(InputError, match="missing.npy: labels file not found"):
        vidcorr.propagate_labels(frames, tmp_path / "missing.npy", encoder=PatchEncoder())
    np.save(tmp_path / "small.npy", labels[:, :32])
    with pytest.raises(InputError, match="small.npy: labels are 96x32 but frames are 96x64"):  # named by its file
        vidcorr.propagate_labels(frames, tmp_path / "small.npy", encoder=PatchEncoder())


def test_a_size_that_leaves_a_few_feature_cells_is_warned_of_as_on_the_command_line(caplog):
    """size=16 (2 cells high at stride 8) gave coarse, mostly wrong masks without a word from Python;
    `vidcorr propagate --size 16` warned."""
    frames, masks = _texture_video(n_frames=3)  # 96x64
    for call in (lambda **kw: api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), **kw),
                 lambda **kw: api.propagate_labels(frames, masks[0][None].astype(np.float32), encoder=PatchEncoder(),
                                                   **kw)):
        for size, warned in ((16, True), (None, False)):
            caplog.clear()
            assert len(list(call(size=size))) == 3
            said = [r.getMessage() for r in caplog.records if "feature grid" in r.getMessage()]
            assert said == (["the video: the feature grid is only 3x2 cells (the input 24x16): each cell covers a "
                             "large part of the frame, so the results are coarse and mostly wrong. size=64 or "
                             "more gives at least 8 cells on the short side."] if warned else [])


def test_the_coarse_grid_warning_counts_with_the_encoders_own_stride(caplog):
    """A 17 x 9 frame on a padded stride-8 network is a ceil-rounded 3 x 2 grid: 9 / 2 = 4.5 px a cell
    suggested size=36, which gives 5 cells and the same warning again; at stride 8, 8 cells need 64."""

    class PaddedStride8(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1)  # ceil(H / 4), then ceil(. / 2)
            self.b = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)

        def forward(self, rgb: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(rgb)))

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (9, 17, 3), dtype=np.uint8) for _ in range(2)]
    mask = np.zeros((9, 17), np.uint8)
    mask[2:6, 3:9] = 1
    with caplog.at_level("WARNING"):
        assert len(list(vidcorr.propagate_masks(frames, mask, encoder=PaddedStride8()))) == 2
    said = [r.getMessage() for r in caplog.records if "feature grid" in r.getMessage()]
    assert len(said) == 1 and "only 3x2 cells (the input 17x9)" in said[0] and "size=64 or more" in said[0]


def test_propagate_labels_warns_where_the_preset_rescales_context_labels(caplog):
    """timecycle min-max normalises the stored context labels: values outside [0, 1] lose their scale."""
    frames, masks = _texture_video(n_frames=3)
    ramp = np.broadcast_to(np.arange(96, dtype=np.float32), (64, 96))
    with caplog.at_level("WARNING", logger="vidcorr.soft_labels"):
        list(vidcorr.propagate_labels(frames, ramp, encoder=PatchEncoder(), preset="timecycle"))
        assert "preset 'timecycle' min-max normalises" in caplog.text and "0..95" in caplog.text
        caplog.clear()
        list(vidcorr.propagate_labels(frames, ramp / 95, encoder=PatchEncoder(), preset="timecycle"))
        list(vidcorr.propagate_labels(frames, ramp, encoder=PatchEncoder(), preset=_crw_small()))
    assert "min-max" not in caplog.text


def test_timecycle_rescales_negative_labels_to_0_1_as_its_test_code():
    """TimeCycle min-max normalises every channel, an all-negative one too (UVC's rule left it alone)."""
    frames, _ = _texture_video(n_frames=3)
    below_zero = -1 - np.broadcast_to(np.arange(96, dtype=np.float32), (64, 96)) / 95
    out = [labels for _, labels in vidcorr.propagate_labels(frames, below_zero, encoder=PatchEncoder(),
                                                            preset="timecycle")]
    for labels in out[1:]:
        assert labels.min() >= -1e-6 and labels.max() <= 1 + 1e-6 and labels.max() - labels.min() > 0.5


@pytest.mark.parametrize("preset", ["crw", "stt", "uvc", "timecycle"])
def test_propagated_labels_stay_within_the_presets_range_exactly(davis2016_root, preset):
    """Real frames (car-shadow, Lab features): crw and stt average context values (weights summing
    to 1), so a constant channel stays constant and probabilities stay in [0, 1], exactly: float
    rounding gave 1.0000002 (NaN in a log(1 - p)). uvc's weights sum to less (0 joins the range),
    timecycle's context frames are rescaled to [0, 1] (docs/propagation.md)."""
    frames = [np.array(Image.open(p)) for p in sorted(
        (davis2016_root / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"))[:3]]
    yy, xx = np.mgrid[:480, :854]
    heat = np.exp(-((yy - 260.0) ** 2 + (xx - 420.0) ** 2) / (2 * 40.0 ** 2))
    first = np.stack([np.ones((480, 854)), heat, 1 - heat, -2 + 0.5 * heat]).astype(np.float32)
    low, high = first.min(axis=(1, 2)), first.max(axis=(1, 2))
    if preset in ("uvc", "timecycle"):
        low, high = np.minimum(low, 0), np.maximum(high, 1 if preset == "timecycle" else 0)
    out = [labels for _, labels in vidcorr.propagate_labels(
        frames, first, encoder=vidcorr.encoder_for(preset, features="lab-pixels"), preset=preset, size=120)]
    for t, labels in enumerate(out[1:], 1):
        for k in range(4):
            assert low[k] <= labels[k].min() and labels[k].max() <= high[k], (t, k, labels[k].min(), labels[k].max())
        if preset in ("crw", "stt"):
            assert (labels[0] == 1).all(), f"frame {t}: the constant channel is not constant"
            assert labels[1:3].max() > 0.5  # the heat map went somewhere: not a range held by emptiness


def test_a_joint_top_k_of_per_frame_probabilities_is_not_clipped(davis2016_root):
    """With the knobs scope="joint", normalisation="softmax_topk" (crw's joint top-k of each context
    frame's own softmax) the weights sum to more than 1: a constant 1 grows frame after frame. The
    clipping meant for float rounding cut it back to 1, changing the propagation; only the sign holds."""
    frames = [np.array(Image.open(p)) for p in sorted(
        (davis2016_root / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"))[:3]]
    first = np.stack([np.ones((480, 854)), -np.ones((480, 854))]).astype(np.float32)
    out = [labels for _, labels in vidcorr.propagate_labels(
        frames, first, encoder=vidcorr.encoder_for("crw", features="lab-pixels"), preset="crw", size=120,
        normalisation="softmax_topk")]
    assert all(labels.dtype == np.float32 for labels in out)
    assert out[-1][0].max() > 1.5 and out[-1][1].min() < -1.5  # not cut back to the first frame's range
    assert out[-1][0].min() >= 0 and out[-1][1].max() <= 0  # non-negative weights keep the sign


def test_propagate_masks_leaves_a_mask_kept_among_the_frames_out(tmp_path):
    """A folder of frames that also holds the first-frame mask: the mask is not a frame."""
    frames, masks = _texture_video(n_frames=3)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{t:05d}.png")
    mask = tmp_path / "mask.png"
    Image.fromarray(masks[0]).save(mask)
    results = list(api.propagate_masks(tmp_path, mask, encoder=PatchEncoder(), preset=_crw_small()))
    assert len(results) == 3
    np.testing.assert_array_equal(results[0][0], frames[0])


def test_a_mask_of_the_frames_shape_at_another_size_is_told_how_to_resize(tmp_path):
    """A mask drawn on the full-resolution original of a downscaled video (1920x1080 for 456x256
    frames) was told only the two sizes; it is told the scale and the nearest-neighbour resize that
    fits it, and a mask of another shape gets no such advice."""
    big = tmp_path / "big.png"
    Image.fromarray(np.ones((1080, 1920), np.uint8)).save(big)
    with pytest.raises(InputError, match=r"big.png: mask is 1920x1080 but frames are 456x256; it has the frames' "
                                         r"shape at 4.21x their size: .*resize\(\(456, 256\), Image.NEAREST\)"):
        check_first_mask(np.ones((1080, 1920), np.uint8), (256, 456), big)
    Image.open(big).resize((456, 256), Image.NEAREST).save(big)  # the advice, followed
    assert check_first_mask(np.array(Image.open(big)), (256, 456), big).shape == (256, 456)
    with pytest.raises(InputError, match="nearest-neighbour resizing"):  # an array has no file to open
        check_first_mask(np.ones((128, 228), np.uint8), (256, 456))
    with pytest.raises(InputError, match=r"mask is 400x256 but frames are 456x256$"):
        check_first_mask(np.ones((256, 400), np.uint8), (256, 456), big)


def test_soft_labels_of_the_frames_shape_at_another_size_are_told_how_to_resize(tmp_path):
    """Labels (K, H, W) made on the full-resolution original of a downscaled video (912x512 for
    456x256 frames) were told only the two sizes, unlike a mask; they are told the scale and a line
    that resizes the .npy (bilinear: values, not ids), which works for (K, H, W) and (H, W) files; an
    array gets the words, labels turned by 90 degrees say so, and another shape gets no advice."""
    big = tmp_path / "big.npy"
    for shape in [(2, 512, 912), (512, 912)]:
        np.save(big, np.random.default_rng(0).random(shape))
        with pytest.raises(InputError, match=r"big.npy: labels are 912x512 but frames are 456x256; they have the "
                                             r"frames' shape at 2x their size: resize them, "
                                             r"(np.save\(path, .*\))$") as caught:
            check_first_labels(read_labels_file(big), (256, 456), big)
        exec(caught.value.problem.split("resize them, ")[1], {"np": np, "torch": torch, "path": big})  # followed
        channels = shape[0] if len(shape) == 3 else 1
        assert check_first_labels(read_labels_file(big), (256, 456), big).shape == (channels, 256, 456)
    with pytest.raises(InputError, match=r"first-frame labels are 912x512 .* at 2x their size: resize them, "
                                         r"bilinearly to \(256, 456\), e.g. torch.nn.functional.interpolate"):
        check_first_labels(np.zeros((2, 512, 912)), (256, 456))
    with pytest.raises(InputError, match="labels are 256x456 but frames are 456x256; they are the frames' size "
                                         "turned by 90 degrees"):
        check_first_labels(np.zeros((2, 456, 256)), (256, 456), big)
    with pytest.raises(InputError, match=r"labels are 400x256 but frames are 456x256$"):
        check_first_labels(np.zeros((2, 256, 400)), (256, 456), big)
