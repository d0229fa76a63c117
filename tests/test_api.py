"""The scripting API (`vidcorr.api`): the same masks as the command line and the streaming loop,
frame-at-a-time tracking, model loading, and bad input caught at the call."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import PatchEncoder
from test_propagate import _texture_video

import vidcorr
from vidcorr import api
from vidcorr.cli import main
from vidcorr.errors import InputError, VidcorrError
from vidcorr.masks import MaskTracker, propagate_mask
from vidcorr.presets import customised_preset, get_preset
from vidcorr.propagate import Propagator


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
    with pytest.raises(RuntimeError, match="first frame's mask"):
        tracker.step(frames[0])
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
        np.testing.assert_array_equal(labels, np.array(Image.open(out / "masks" / f"{t:05d}.png")), err_msg=f"frame {t}")
    assert 0.5 < (results[-1][1] == 1).sum() / (results[0][1] == 1).sum() < 2  # the swan is still there


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
    with pytest.raises(VidcorrError, match="no frames"):
        api.propagate_masks([], masks[0], encoder=encoder)
    with pytest.raises(InputError, match="no such video"):
        api.propagate_masks(tmp_path / "missing.mp4", masks[0], encoder=encoder)


def test_encoder_for_cuts_trained_weights_at_the_presets_layer():
    crw = vidcorr.encoder_for("crw")  # the shipped default weights
    assert crw.config.out_layer == get_preset("crw").feature_layer == "layer3"
    floor = vidcorr.encoder_for("crw", features="lab-pixels")  # the floor asked for, untrained
    assert (floor.stride, floor.out_channels) == (8, 3)  # Lab cell means; random-resnet18 has 256
    with pytest.raises(ValueError, match="not both"):
        vidcorr.encoder_for("crw", weights=api.DEFAULT_WEIGHTS, features="lab-pixels")
    with pytest.raises(ValueError, match="unknown floor"):
        vidcorr.encoder_for("crw", features="random-resnet50")


def test_missing_default_weights_fall_back_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "DEFAULT_WEIGHTS", tmp_path / "none.safetensors")
    with pytest.raises(VidcorrError, match="no trained weights at .*none.safetensors"):
        api.resolve_encoder(get_preset("crw"))
    _, info = api.resolve_encoder(get_preset("crw"), fallback_to_floor=True)
    assert info["features"] == api.BEST_FLOOR and not info["trained"]


def test_importing_vidcorr_does_not_import_torch():
    """The API is loaded on first use: `import vidcorr` (and the CLI's --help) stays light."""
    code = "import sys, vidcorr; assert 'torch' not in sys.modules; vidcorr.propagate_masks; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_propagate_keypoints_equals_the_command_line(data_dir, tmp_path):
    """Real JHMDB frames and joints: the API's points are the CLI's keypoints.json (3 decimals)."""
    from vidcorr.io.jhmdb import JOINT_NAMES, read_joints

    clip = data_dir / "jhmdb" / "Rename_Images" / "catch" / "Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(1, 6):
        (frames / f"{t:05d}.png").write_bytes((clip / f"{t:05d}.png").read_bytes())
    joints = read_joints(data_dir / "jhmdb" / "joint_positions" / "catch" / clip.name / "joint_positions.mat")[0]
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": joints.tolist(), "names": list(JOINT_NAMES),
                                 "visible": [True] * 14 + [False]}))
    out = tmp_path / "cli"
    assert main(["propagate", str(frames), "--keypoints", str(first), "--out", str(out), "--no-video",
                 "--features", "lab-pixels"]) == 0
    saved = json.loads((out / "keypoints.json").read_text())["frames"]
    encoder = vidcorr.encoder_for(features="lab-pixels")
    got = list(vidcorr.propagate_keypoints(frames, first, encoder=encoder))
    assert len(got) == len(saved) == 5
    for (frame, points, visible), row in zip(got, saved):
        assert frame.shape == (240, 320, 3) and not visible[14] and np.isnan(points[14]).all()
        want = np.array([p if p is not None else [np.nan, np.nan] for p in row["keypoints"]], np.float64)
        np.testing.assert_allclose(points, want, atol=6e-4)
    # an array gives the same as the file (all visible but the last, as the file says)
    again = list(vidcorr.propagate_keypoints(frames, joints, visible=[True] * 14 + [False], encoder=encoder))
    np.testing.assert_array_equal(again[-1][1], got[-1][1])
    with pytest.raises(InputError, match=r"keypoint 1 \(1\) at \(400, 10\) lies outside the 320x240"):
        vidcorr.propagate_keypoints(frames, np.array([[10.0, 10.0], [400.0, 10.0]]), encoder=encoder)


def test_track_box_equals_the_command_line(data_dir, tmp_path):
    video = sorted((data_dir / "videos" / "davis2016-train").glob("*.mp4"))[0]
    out = tmp_path / "cli"
    assert main(["propagate", str(video), "--box", "100,60,80,60", "--tracker", "dcf", "--out", str(out),
                 "--no-video", "--features", "lab-pixels"]) == 0
    saved = [row["box"] for row in json.loads((out / "boxes.json").read_text())["frames"]]
    got = list(vidcorr.track_box(video, (100, 60, 80, 60), tracker="dcf",
                                 encoder=vidcorr.encoder_for(features="lab-pixels")))
    assert len(got) == len(saved) > 10
    assert got[0][1] == (100, 60, 80, 60)
    np.testing.assert_allclose([box for _, box in got], saved, atol=6e-3)
    assert all(frame.ndim == 3 for frame, _ in got[:3])
    with pytest.raises(ValueError, match="first box 5000,60,80,60 lies outside the 456x256 first frame"):
        vidcorr.track_box(video, (5000, 60, 80, 60))  # raised at the call, before iterating


@pytest.mark.parametrize("tracker", ["localise", "dcf"])
def test_a_first_box_may_leave_the_frame_but_must_overlap_it(tracker):
    """OTB / VOT objects leave the frame edges: a box partly outside (or larger than the frame) is
    tracked; one that shares no pixel with the frame, or has no size, is refused naming the box."""
    frames, _ = _texture_video(n_frames=3)  # 96x64
    for box in [(-10, -8, 30, 24), (80.5, 50, 40, 40), (-20, -20, 140, 110)]:
        got = list(api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder()))
        assert len(got) == 3 and got[0][1] == box and np.isfinite([b for _, b in got]).all()
    for box in [(-30, 10, 30, 30), (96, 10, 20, 20), (10, 64, 20, 20)]:  # ends at / starts on an edge
        with pytest.raises(ValueError, match=rf"first box {box[0]},{box[1]},{box[2]},{box[3]} lies outside "
                                             r"the 96x64 first frame \(a box partly outside is fine"):
            api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder())
    for box in [(10, 10, 0, 20), (10, 10, 20, -5)]:
        with pytest.raises(ValueError, match=rf"first box 10,10,{box[2]},{box[3]} must have .* positive size"):
            api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder())
    for box in [("a", 0, 5, 5), None, (10, 10, True, 20), (np.bool_(True), 10, 20, 20), "1234",
                torch.tensor([10, 10, 1, 20]).bool()]:  # float(True) is 1
        with pytest.raises(ValueError, match=r"first box must be \(x, y, w, h\), 4 numbers, got"):
            api.track_box(frames, box, tracker=tracker, encoder=PatchEncoder())


def _crw_small():
    return customised_preset("crw", n_previous=2, radius=3)


def _masks_of(frames, first_mask, **kw):
    return [m for _, m in api.propagate_masks(frames, first_mask, encoder=PatchEncoder(), preset=_crw_small(), **kw)]


def test_frames_as_users_pass_them_give_the_uint8_masks():
    """Float frames in [0, 1] were read as near-black uint8 and uint16 as near-white, silently;
    grayscale, RGBA and torch tensors failed deep inside torch. All are converted at the call."""
    import torch

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
    import torch

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


def test_masks_of_any_array_type_and_out_of_range_ids():
    """ids > 255 wrapped modulo 256 (300 -> 44) and negative ids failed inside one_hot."""
    import torch

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


def test_arguments_are_checked_at_the_call():
    frames, masks = _texture_video(n_frames=3)
    with pytest.raises(ValueError, match="unknown preset knob.*tmperature.*known:.*temperature"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), tmperature=0.1)
    with pytest.raises(ValueError, match="give k=5"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), topk=5)
    with pytest.raises(ValueError, match="size must be a positive whole number"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), batch_size=0)
    with pytest.raises(ValueError, match="unknown tracker 'kcf'"):
        api.track_box(frames, (10, 10, 20, 20), encoder=PatchEncoder(), tracker="kcf")  # not when iterated
    with pytest.raises(ValueError, match="unknown localise setting"):
        api.track_box(frames, (10, 10, 20, 20), encoder=PatchEncoder(), bogus=1)
    with pytest.raises(ValueError, match=r"\(x, y, w, h\), 4 numbers"):
        api.track_box(frames, (10, 10, 20), encoder=PatchEncoder())
    with pytest.raises(ValueError, match=r"keypoints has shape \(2, 3\); expected \(J, 2\)"):
        api.propagate_keypoints(frames, [[10, 10, 1], [20, 20, 1]], encoder=PatchEncoder())
    with pytest.raises(ValueError, match=r"visible has shape \(1,\); expected \(2,\)"):
        api.propagate_keypoints(frames, [[10, 10], [20, 20]], visible=[True], encoder=PatchEncoder())


def test_a_nan_first_keypoint_is_absent_or_an_error_if_marked_visible(tmp_path):
    """NaN (None, JSON null) = no position: not visible unless marked so, which is refused at the call
    naming the keypoint (it used to be propagated as an empty channel and yielded as visible)."""
    frames, _ = _texture_video(n_frames=3)
    points = [[10.0, 12.0], [np.nan, np.nan], [50.0, 40.0]]
    got = list(api.propagate_keypoints(frames, points, encoder=PatchEncoder(), preset=_crw_small()))
    want = list(api.propagate_keypoints(frames, [[10.0, 12.0], [30.0, 30.0], [50.0, 40.0]], visible=[1, 0, 1],
                                        encoder=PatchEncoder(), preset=_crw_small()))
    assert len(got) == 3
    for (_, p, v), (_, wp, wv) in zip(got, want):
        assert v.tolist() == wv.tolist() == [True, False, True]
        np.testing.assert_array_equal(p, wp)
    with pytest.raises(InputError, match=r"keypoint 1 at \(nan, nan\) has no position \(NaN\) but is marked visible"):
        api.propagate_keypoints(frames, points, visible=[True, True, True], encoder=PatchEncoder())
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"keypoints": [[10, 12], None, [50, 40]], "names": ["neck", "belly", "face"]}))
    assert [v.tolist() for _, _, v in api.propagate_keypoints(frames, first, encoder=PatchEncoder(),
                                                              preset=_crw_small())][0] == [True, False, True]
    with pytest.raises(InputError, match=r"first.json: keypoint 1 \(belly\) .* marked visible"):
        api.propagate_keypoints(frames, first, visible=[True, True, True], encoder=PatchEncoder())


def test_a_first_frame_without_any_visible_keypoint_is_refused_at_the_call(tmp_path):
    """Every keypoint absent (NaN / null) or marked not visible: nothing to propagate. It was accepted
    and yielded NaN for every keypoint on every frame without a word."""
    frames, _ = _texture_video(n_frames=2)
    nothing = r"no keypoint is visible in the first frame \(all 2 have no position or are marked not visible\): " \
              r"there is nothing to propagate"
    with pytest.raises(InputError, match="^" + nothing):
        api.propagate_keypoints(frames, [[np.nan, np.nan], [np.nan, np.nan]], encoder=PatchEncoder())
    with pytest.raises(InputError, match="^" + nothing):
        api.propagate_keypoints(frames, [[10.0, 12.0], [50.0, 40.0]], visible=[False, False], encoder=PatchEncoder())
    absent, hidden, shown = tmp_path / "absent.json", tmp_path / "hidden.json", tmp_path / "shown.json"
    absent.write_text(json.dumps({"keypoints": [None, None]}))
    hidden.write_text(json.dumps({"keypoints": [[10, 12], [50, 40]], "visible": [False, False]}))
    shown.write_text(json.dumps({"keypoints": [[10, 12], [50, 40]]}))
    for path in (absent, hidden):
        with pytest.raises(InputError, match=f"{path.name}: {nothing}"):
            api.propagate_keypoints(frames, path, encoder=PatchEncoder())
    with pytest.raises(InputError, match=f"{shown.name}: {nothing}"):  # the file's list replaced from Python
        api.propagate_keypoints(frames, shown, visible=[False, False], encoder=PatchEncoder())
    assert len(list(api.propagate_keypoints(frames, shown, visible=[False, True], encoder=PatchEncoder(),
                                            preset=_crw_small()))) == 2  # one visible keypoint is enough


def test_a_preset_name_in_another_case_is_refused_with_the_name_to_use(capsys):
    """Exact lower-case names, as the command line's --preset choices: the API says which one was meant."""
    frames, masks = _texture_video(n_frames=2)
    with pytest.raises(ValueError, match=r"unknown preset 'CRW'; choose one of crw, uvc, timecycle, stt: "
                                         r"names are lower case, did you mean 'crw'\?"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), preset="CRW")
    with pytest.raises(ValueError, match=r"unknown preset 'crw2'; choose one of crw, uvc, timecycle, stt$"):
        get_preset("crw2")
    with pytest.raises(SystemExit):
        main(["propagate", "clip.mp4", "--mask", "m.png", "--out", "o", "--preset", "CRW"])
    assert "invalid choice: 'CRW'" in capsys.readouterr().err


@pytest.mark.parametrize("preset", [None, 3])
def test_a_preset_that_is_neither_a_name_nor_a_preset_is_refused_at_the_call(preset):
    """preset=None is not the default (the signatures' default is "crw"): it was passed on and failed
    later as "'NoneType' object has no attribute 'size'" (or 'with_overrides', 'feature_layer')."""
    frames, masks = _texture_video(n_frames=2)
    message = rf"preset must be a name \(crw, uvc, timecycle, stt\) or a PropagationPreset, got {preset}; " \
              r"leave it out for the default, 'crw'"
    calls = [lambda: api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), preset=preset),
             lambda: api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), preset=preset, k=3),
             lambda: api.mask_tracker(encoder=PatchEncoder(), preset=preset),
             lambda: api.propagate_keypoints(frames, [[10.0, 10.0]], encoder=PatchEncoder(), preset=preset),
             lambda: api.encoder_for(preset, features="lab-pixels"),
             lambda: customised_preset(preset)]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_cuda_without_a_gpu_is_refused_at_the_call(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    frames, masks = _texture_video(n_frames=2)
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        api.track_box(frames, (10, 10, 20, 20), encoder=PatchEncoder(), device="cuda")


def test_a_module_of_ones_own_may_return_half_features_but_not_other_shapes_dtypes_or_meta():
    import torch
    from torch import nn

    class Half(PatchEncoder):
        def forward(self, rgb):
            return super().forward(rgb).to(torch.bfloat16)

    class Flat(nn.Module):
        def forward(self, rgb):
            return rgb.mean(1)  # (B, H, W): no channel axis

    class Integer(PatchEncoder):
        def forward(self, rgb):
            return (super().forward(rgb) * 100).to(torch.int32)  # quantised codes: no dot products

    class NoData(PatchEncoder):
        def forward(self, rgb):
            return torch.empty(super().forward(rgb).shape, device="meta")

    frames, masks = _texture_video(n_frames=3)
    assert len(list(api.propagate_masks(frames, masks[0], encoder=Half(), preset=_crw_small()))) == 3
    with pytest.raises(ValueError, match=r"encoder Flat gave \(1, 64, 96\) torch.float32 for 1 frame"):
        list(api.propagate_masks(frames, masks[0], encoder=Flat(), preset=_crw_small()))
    with pytest.raises(ValueError, match=r"encoder Integer gave \(1, 32, 8, 12\) torch.int32 \(not a floating-point "
                                         r"dtype.*expected float features \(1, C, h, w\)"):
        list(api.propagate_masks(frames, masks[0], encoder=Integer(), preset=_crw_small()))
    with pytest.raises(ValueError, match=r"encoder NoData gave \(1, 32, 8, 12\) torch.float32 on the meta device"):
        list(api.propagate_masks(frames, masks[0], encoder=NoData(), preset=_crw_small()))
    with pytest.raises(ValueError, match="encoder Conv2d has weights on the meta device"):
        api.propagate_masks(frames, masks[0], encoder=nn.Conv2d(3, 8, 8, stride=8, device="meta"))


def test_run_davis_checks_device_and_module_before_writing_anything(short_clip, tmp_path, monkeypatch):
    """An unknown device or absent CUDA failed with a raw torch error after OUT/.run.json was written."""
    import torch

    from vidcorr.evaluate.davis import run_davis

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    for device, message in (("cuda", "device='cuda' but CUDA is not available"), ("tpu", "unknown device 'tpu'")):
        with pytest.raises(ValueError, match=message):
            run_davis(PatchEncoder(), "crw", short_clip, out, device=device)
        assert not out.exists()
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):  # any propagator problem
        run_davis(PatchEncoder(), "crw", short_clip, out, batch_size=0)
    assert not out.exists()
    taken = tmp_path / "taken"
    taken.write_text("mine")  # a file where OUT's parent goes: was a FileExistsError traceback
    with pytest.raises(InputError, match=f"cannot be created: {taken} is a file, not a folder"):
        run_davis(PatchEncoder(), "crw", short_clip, taken / "out")
    assert taken.read_text() == "mine"


def test_write_davis_results_with_or_without_per_frame_data(short_clip, tmp_path):
    """Without per-frame J only the JSON is written; with it the plot too, and the caller's results are
    not changed (popping the lists made a second write, or run_davis's results, fail)."""
    import copy
    import shutil

    from vidcorr.evaluate.davis import write_davis_results
    from vidcorr.metrics.davis import score_davis

    shutil.copytree(short_clip / "Annotations" / "480p" / "car-shadow", tmp_path / "pred" / "car-shadow")
    plain = score_davis(short_clip, tmp_path / "pred", "2016", "val", progress=False)
    assert write_davis_results(plain, tmp_path / "plain.json") is None
    assert json.loads((tmp_path / "plain.json").read_text()) == json.loads(json.dumps(plain))
    assert not list(tmp_path.glob("*.png"))
    scored = score_davis(short_clip, tmp_path / "pred", "2016", "val", progress=False, per_frame=True)
    kept = copy.deepcopy(scored)
    assert write_davis_results(scored, tmp_path / "results.json") == tmp_path / "j_per_frame.png"
    assert scored == kept
    assert write_davis_results(scored, tmp_path / "again.json") == tmp_path / "again.j_per_frame.png"
    assert (tmp_path / "j_per_frame.png").is_file() and (tmp_path / "again.j_per_frame.png").is_file()
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads((tmp_path / "plain.json").read_text())
    mixed = copy.deepcopy(scored)
    mixed["per_object"]["other_1"] = plain["per_object"]["car-shadow_1"]
    with pytest.raises(ValueError, match="per-frame J for some objects but not other_1.*per_frame=True"):
        write_davis_results(mixed, tmp_path / "mixed.json")
    assert not (tmp_path / "mixed.json").exists()


def test_propagate_labels_carries_any_soft_labels_and_its_argmax_is_the_mask(davis2016_root):
    """Real frames (blackswan, random ResNet, crw): the one-hot first mask's propagated soft labels
    have propagate_masks' mask as their argmax, pixel for pixel; a continuous label (each pixel's x
    coordinate) stays a weighted average of the first frame's values; one channel may be (H, W)."""
    from vidcorr.labels import one_hot_labels

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


def test_weights_of_an_unfinished_run_are_used_with_a_warning(tmp_path, caplog):
    """`train --max-steps N` exports weights before the recipe's end; they loaded without a word."""
    from vidcorr.api import resolve_encoder
    from vidcorr.models import build_encoder, save_weights

    model = build_encoder("crw", out_layer="layer2")
    for finished in (True, False):
        path = save_weights(model, tmp_path / f"finished-{finished}.safetensors", meta={"steps": 14, "finished": finished})
        caplog.clear()
        _, info = resolve_encoder(get_preset("crw"), weights=path)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if finished:
            assert not warned and "finished" not in info
        else:
            assert info["finished"] is False
            assert warned == [f"{path}: weights of an unfinished training run (exported at step 14, before its "
                              "recipe's end): expect less than the finished recipe gives"]
