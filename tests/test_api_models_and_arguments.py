"""The API's model loading, import cost, and arguments, presets, devices and encoders refused at the call."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from api_helpers import _crw_small
from PIL import Image
from synthetic import PatchEncoder
from test_propagate import _texture_video
from torch import nn

import vidcorr
from vidcorr import api, encoders
from vidcorr.api import resolve_encoder
from vidcorr.cli import main
from vidcorr.errors import EncoderOutputError, InputError, VidcorrError, WeightsError
from vidcorr.evaluate.davis import run_davis, write_davis_results
from vidcorr.evaluate.jhmdb import jhmdb_preset, run_jhmdb
from vidcorr.evaluate.tracking import run_tracking
from vidcorr.evaluate.vip import run_vip, vip_preset
from vidcorr.io.jhmdb import JhmdbDataset
from vidcorr.io.vip import VipDataset
from vidcorr.metrics.davis import score_davis
from vidcorr.models import build_encoder, save_weights
from vidcorr.presets import customised_preset, get_preset, preset_knobs
from vidcorr.track import tracker_settings


def test_encoder_for_cuts_trained_weights_at_the_presets_layer():
    crw = vidcorr.encoder_for("crw")  # the shipped default weights
    assert crw.config.out_layer == get_preset("crw").feature_layer == "layer3"
    floor = vidcorr.encoder_for("crw", features="lab-pixels")  # the floor asked for, untrained
    assert (floor.stride, floor.out_channels) == (8, 3)  # Lab cell means; random-resnet18 has 256
    with pytest.raises(ValueError, match="not both"):
        vidcorr.encoder_for("crw", weights=encoders.DEFAULT_WEIGHTS, features="lab-pixels")
    with pytest.raises(ValueError, match="unknown floor"):
        vidcorr.encoder_for("crw", features="random-resnet50")


def test_a_factory_spec_given_as_weights_is_pointed_to_encoder(tmp_path, capsys):
    """It was "weights file does not exist", from Python and from --weights alike."""
    (tmp_path / "my_models.py").write_text("def build():\n    pass\n")
    spec = f"{tmp_path / 'my_models.py'}:build"
    with pytest.raises(WeightsError, match=r"my_models.py:build: no such weights file; MODULE:FACTORY names a network "
                                           r"of one's own, which --encoder takes "
                                           r"\(from Python: .*load_external_encoder"):
        vidcorr.encoder_for("crw", weights=spec)
    frames, masks = _texture_video(n_frames=2)
    (tmp_path / "frames").mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{t:05d}.png")
    Image.fromarray(masks[0]).save(tmp_path / "first.png")
    assert main(["propagate", str(tmp_path / "frames"), "--mask", str(tmp_path / "first.png"),
                 "--out", str(tmp_path / "out"), "--weights", spec]) == 2
    assert "which --encoder takes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec", [
    "{tmp}/absent_models.py:build",  # a .py file's spec, the file not (yet) there
    "vidcorr.models:random_resnet18",  # package.module:factory, as load_external_encoder takes it
    "my_local_models:build",  # a module in the current folder, which load_external_encoder searches
])
def test_every_kind_of_factory_spec_given_as_weights_is_pointed_to_encoder(tmp_path, monkeypatch, spec):
    """Only `file.py:factory` was recognised: `package.module:factory` got "weights file does not exist"."""
    (tmp_path / "my_local_models.py").write_text("def build():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="no such weights file; MODULE:FACTORY names a network of one's own"):
        vidcorr.encoder_for("crw", weights=spec.format(tmp=tmp_path))


@pytest.mark.parametrize("name", [
    "run:final",  # a weights name with a ':' (no module 'run')
    "C:\\weights\\crw.safetensors",  # a Windows path
    "C:/runs/crw:v2",  # a path whose last ':' is in its file name, not a .py file
    "no_such_package_here.models:build",  # dotted, but nothing to import
    "vidcorr.models:not an identifier",
])
def test_a_missing_weights_path_with_a_colon_is_not_read_as_a_factory_spec(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match="weights file does not exist") as caught:
        vidcorr.encoder_for("crw", weights=name)
    assert "MODULE:FACTORY" not in str(caught.value)


def test_weights_not_found_point_to_the_file_most_likely_meant(tmp_path, monkeypatch):
    """All were "weights file does not exist", a folder too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / "a").mkdir(parents=True)
    (tmp_path / "run" / "encoder.safetensors").touch()
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "checkpoint.pt").touch()
    (tmp_path / "running" / "checkpoint-warmup.pt").touch()  # a stage's: sorted by name, it came first
    (tmp_path / "staged").mkdir()
    for seconds, stage in enumerate(("warmup", "joint")):  # UVC's stages; checkpoint.pt gone: the newest
        (tmp_path / "staged" / f"checkpoint-{stage}.pt").touch()
        os.utime(tmp_path / "staged" / f"checkpoint-{stage}.pt", (1e9 + seconds, 1e9 + seconds))
    (tmp_path / "mine.v2.safetensors").touch()
    for given, problem in [
        ("run", r"run: is a folder, not a weights file: give run/encoder.safetensors$"),
        ("running", r"running: is a folder, not a weights file: export the encoder of its checkpoint first, "
                    r"`vidcorr train export --checkpoint running/checkpoint.pt --out W.safetensors`, then give W$"),
        ("staged", r"staged: is a folder, not a weights file: export the encoder of its checkpoint first, "
                   r"`vidcorr train export --checkpoint staged/checkpoint-joint.pt --out W.safetensors`, then give W$"),
        ("run/a", r"run/a: is a folder, not a weights file \(.safetensors\)$"),
        ("mine.v2", r"mine.v2: weights file does not exist; mine.v2.safetensors does: give the file's whole name$"),
        (encoders.DEFAULT_WEIGHTS.name, r"weights file does not exist here; the shipped weights are .*weights/"
                                   + encoders.DEFAULT_WEIGHTS.name.replace(".", r"\.") + "$"),
        ("other.safetensors", r"other.safetensors: weights file does not exist$"),
    ]:
        with pytest.raises(WeightsError, match=problem):
            vidcorr.encoder_for("crw", weights=given)


def test_missing_default_weights_fall_back_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(encoders, "DEFAULT_WEIGHTS", tmp_path / "none.safetensors")
    with pytest.raises(VidcorrError, match="no trained weights at .*none.safetensors"):
        api.resolve_encoder(get_preset("crw"))
    _, info = api.resolve_encoder(get_preset("crw"), fallback_to_floor=True)
    assert info["features"] == encoders.BEST_FLOOR and not info["trained"]


def test_importing_vidcorr_does_not_import_torch():
    """The API is loaded on first use: `import vidcorr` (and the CLI's --help) stays light."""
    code = ("import sys, vidcorr; assert 'torch' not in sys.modules; vidcorr.propagate_masks; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_first_call_with_the_shipped_weights_imports_only_what_it_runs():
    """Building the ResNet imported torchvision (with its ops, torch._dynamo) and, through
    ``to_empty`` on meta tensors, sympy; the mask overlay code scipy: ~4 s of a first call's ~7.
    Older torch (2.4) imports sympy for any module built on the meta device, in its own meta kernel
    for ``uniform_``: there sympy is torch's cost, not ours, and is not counted."""
    meta_init = "import sys, torch; torch.nn.Conv2d(3, 3, 3, device='meta'); print('sympy' in sys.modules)"
    torch_imports_sympy = subprocess.run([sys.executable, "-c", meta_init], check=True, capture_output=True,
                                         text=True).stdout.strip() == "True"
    watched = (("torchvision", "torch._dynamo", "scipy", "av", "cv2", "matplotlib")
               + ("sympy",) * (not torch_imports_sympy))
    code = ("import sys, numpy as np, vidcorr\n"
            "frames = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)\n"
            "mask = np.zeros((64, 96), np.uint8); mask[20:40, 30:60] = 1\n"
            "masks = [m for _, m in vidcorr.propagate_masks(frames, mask, encoder=vidcorr.encoder_for('crw'))]\n"
            "assert len(masks) == 2 and masks[1].shape == (64, 96)\n"
            f"print(sorted(m for m in {watched!r}"
            " if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert run.stdout.strip() == "[]", run.stdout


def test_the_documented_errors_are_reachable_from_import_vidcorr_without_torch():
    """docs and docstrings name `vidcorr.errors.InputError`; after `import vidcorr` alone it was an
    AttributeError (the submodule was loaded only with the API)."""
    code = ("import sys, vidcorr; assert issubclass(vidcorr.errors.InputError, vidcorr.errors.VidcorrError); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_knobs_computed_with_numpy_are_taken_as_numbers():
    """n_previous=np.int32(3) passed the check and failed at the first frame ("an integer is
    required"); a numpy knob made `preset_knobs` (what results files record) unwritable as JSON."""
    frames, masks = _texture_video(n_frames=3)
    knobs = dict(n_previous=np.int32(3), k=np.int64(5), temperature=np.float32(0.05), radius=np.float64(4),
                 window_first=np.bool_(True))
    got = [m for _, m in api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), **knobs)]
    plain = dict(n_previous=3, k=5, temperature=float(np.float32(0.05)), radius=4.0, window_first=True)
    np.testing.assert_array_equal(got, [m for _, m in api.propagate_masks(frames, masks[0], encoder=PatchEncoder(),
                                                                          **plain)])
    record = json.loads(json.dumps(preset_knobs(customised_preset("crw", size=np.int64(240), **knobs))))
    assert record["n_previous"] == 3 and record["topk"]["k"] == 5 and record["window_first"] is True


def test_arguments_are_checked_at_the_call():
    frames, masks = _texture_video(n_frames=3)
    with pytest.raises(ValueError, match="unknown preset knob.*tmperature.*known:.*temperature"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), tmperature=0.1)
    # the CLI's --features / --weights are not knobs: a user trying them is told how the API takes them
    with pytest.raises(ValueError,
                       match=r"knob\(s\) features;.*encoder=vidcorr.encoder_for\(weights=..., features=...\)"):
        api.propagate_keypoints(frames, np.array([[4.0, 4.0]]), features="lab-pixels")
    # the CLI's --context N is n_previous here: said, not only listed among the knobs
    with pytest.raises(ValueError, match=r"knob\(s\) context;.*--context is n_previous here: n_previous=3"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), context=3)
    with pytest.raises(ValueError, match="give k=5"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), topk=5)
    with pytest.raises(ValueError, match="size must be a positive whole number"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), batch_size=0)
    with pytest.raises(ValueError, match="mask_tracker embeds each frame as it is stepped.*batch_size applies"):
        api.mask_tracker(encoder=PatchEncoder(), batch_size=4)  # was "unknown preset knob(s) batch_size"
    # track="yes" was taken as the options and failed inside the first frame; labels and keypoints
    # were told "unknown preset knob(s) track"
    with pytest.raises(ValueError, match="track must be True, False or a vidcorr.track_uvc.TrackOptions, got 'yes'"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), track="yes")
    for call in (lambda: api.propagate_labels(frames, masks[0].astype(float), encoder=PatchEncoder(), track=True),
                 lambda: api.propagate_keypoints(frames, [[10.0, 10.0]], encoder=PatchEncoder(), track=True)):
        with pytest.raises(ValueError,
                           match=r"track \(UVC-track\) carries each object box to box: it applies to masks"):
            call()
    assert len(list(api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), track=np.True_))) == 3
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


@pytest.mark.parametrize(("preset", "window_first"), [("uvc", True), ("timecycle", False)])
def test_window_first_is_refused_with_a_preset_that_has_no_window(preset, window_first):
    """As the command line refuses --[no-]window-first (uvc, timecycle: a full softmax over each context
    frame): accepted silently, it changed nothing and was recorded, so a resume without it differed.
    With a radius (a window) it applies; crw has a window of its own."""
    frames, masks = _texture_video(n_frames=2)
    message = (rf"^window_first={window_first} sets whether the local window covers the first frame, but preset "
               rf"{preset} has no window \(a full softmax over each context frame\); drop it, or give radius=R")
    for call in (lambda: customised_preset(preset, window_first=window_first),
                 lambda: api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), preset=preset,
                                             window_first=window_first),
                 lambda: api.mask_tracker(encoder=PatchEncoder(), preset=preset, window_first=window_first)):
        with pytest.raises(ValueError, match=message):
            call()
    assert customised_preset(preset, radius=6, window_first=window_first).window_first is window_first
    assert customised_preset("crw", window_first=True).window_first is True


def test_cuda_without_a_gpu_is_refused_at_the_call(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    frames, masks = _texture_video(n_frames=2)
    with pytest.raises(ValueError, match="device='cuda' but CUDA is not available"):
        api.propagate_masks(frames, masks[0], encoder=PatchEncoder(), device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        api.track_box(frames, (10, 10, 20, 20), encoder=PatchEncoder(), device="cuda")


def test_a_module_of_ones_own_may_return_half_features_but_not_other_shapes_dtypes_or_meta():
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

    class FlatWhenNotSquare(PatchEncoder):  # passes the square probes, goes wrong on the real frames
        def forward(self, rgb):
            out = super().forward(rgb)
            return out if rgb.shape[-1] == rgb.shape[-2] else out.flatten(2)

    frames, masks = _texture_video(n_frames=3)
    assert len(list(api.propagate_masks(frames, masks[0], encoder=Half(), preset=_crw_small()))) == 3
    # refused at the call, by the probes `--encoder` runs (grey 224 and 448 px frames)
    with pytest.raises(ValueError, match=r"encoder Flat gave \(1, 224, 224\) torch.float32 for a 1 x 3 x 224"):
        api.propagate_masks(frames, masks[0], encoder=Flat(), preset=_crw_small())
    with pytest.raises(ValueError, match=r"encoder Integer gave \(1, 32, 28, 28\) torch.int32 \(not a floating-point "
                                         r"dtype.*expected float features \(1, C, h, w\)"):
        api.propagate_masks(frames, masks[0], encoder=Integer(), preset=_crw_small())
    with pytest.raises(ValueError, match=r"encoder NoData gave \(1, 32, 28, 28\) torch.float32 on the meta device"):
        api.propagate_masks(frames, masks[0], encoder=NoData(), preset=_crw_small())
    # and on every frame
    with pytest.raises(ValueError, match=r"encoder FlatWhenNotSquare gave \(1, 32, 96\) torch.float32 for 1 frame"):
        list(api.propagate_masks(frames, masks[0], encoder=FlatWhenNotSquare(), preset=_crw_small()))
    with pytest.raises(ValueError, match="encoder Conv2d has weights on the meta device"):
        api.propagate_masks(frames, masks[0], encoder=nn.Conv2d(3, 8, 8, stride=8, device="meta"))


def test_a_module_in_another_precision_gets_its_frames_in_that_dtype(davis2016_root):
    """`.half()` on a module of one's own or on ours: frames went in as float32 and torch raised
    "Input type (float) and bias type (c10::Half) should be the same". Real frames (dog): the masks
    are the float32 module's up to the precision's rounding; the caller's module keeps its dtype."""
    frames = [np.array(Image.open(p)) for p in sorted((davis2016_root / "JPEGImages/480p/dog").glob("*.jpg"))[:3]]
    first = davis2016_root / "Annotations/480p/dog/00000.png"
    for make in (PatchEncoder, lambda: vidcorr.encoder_for("crw")):
        want = [m for _, m in api.propagate_masks(frames, first, encoder=make(), size=120)]
        for dtype in (torch.float16, torch.bfloat16, torch.float64):
            module = make().to(dtype)
            got = [m for _, m in api.propagate_masks(frames, first, encoder=module, size=120)]
            for t in (1, 2):
                iou = ((got[t] > 0) & (want[t] > 0)).sum() / ((got[t] > 0) | (want[t] > 0)).sum()
                assert iou > 0.97, (f"{type(module).__name__} {dtype} frame {t}: the dog's IoU with float32's "
                                    f"is {iou:.3f}")
            assert {p.dtype for p in module.parameters()} == {dtype}
    points = [p for _, p, _ in api.propagate_keypoints(frames[:2], [(400.0, 200.0)], encoder=PatchEncoder().half(),
                                                       size=120)]
    assert np.isfinite(points[1]).all()
    boxes = [b for _, b in api.track_box(frames[:2], (300, 100, 200, 200), encoder=vidcorr.encoder_for("crw").half())]
    assert len(boxes) == 2 and np.isfinite(boxes[1]).all()


def test_a_module_of_ones_own_is_checked_at_the_call_as_encoder_checks_its_factory():
    """Channels-last features (1, h, w, C) were propagated from Python as (C, h, w) channels and
    cells, silently wrong masks (`--encoder` refused them); and a weights path or factory spec given
    as the encoder failed later as "'str' object has no attribute 'parameters'"."""
    class ChannelsLast(PatchEncoder):
        def forward(self, rgb):
            return super().forward(rgb).permute(0, 2, 3, 1)

    frames, masks = _texture_video(n_frames=3)
    labels = (masks[0][None] == 1).astype(np.float32)
    calls = {"propagate_masks": lambda enc: api.propagate_masks(frames, masks[0], encoder=enc, preset=_crw_small()),
             "mask_tracker": lambda enc: api.mask_tracker(encoder=enc, preset=_crw_small()),
             "propagate_labels": lambda enc: api.propagate_labels(frames, labels, encoder=enc, preset=_crw_small()),
             "propagate_keypoints": lambda enc: api.propagate_keypoints(frames, [[10.0, 10.0]], encoder=enc,
                                                                        preset=_crw_small()),
             "track_box": lambda enc: api.track_box(frames, (10, 10, 20, 20), encoder=enc, tracker="dcf")}
    for name, call in calls.items():
        with pytest.raises(EncoderOutputError, match=r"encoder ChannelsLast gave 28 channels for a 224 px grey frame "
                                                     r"but 56 for a 448 px one.*Channels-last"):
            call(ChannelsLast())
        for not_a_module in ("my_models.py:build", encoders.DEFAULT_WEIGHTS):
            with pytest.raises(TypeError, match=r"encoder must be a torch.nn.Module .* got (str|PosixPath) .*"
                                                r"vidcorr.encoder_for\(preset, weights=PATH\)"):
                call(not_a_module)
        assert call(PatchEncoder()) is not None, name  # an encoder of the right form passes
    long = "/weights/" + "a" * 80 + "/mine.safetensors"  # named whole (the repr was cut at 80 characters)
    with pytest.raises(TypeError, match=rf"got str '{long}'; for weights"):
        api.mask_tracker(encoder=long)


def test_run_davis_checks_device_and_module_before_writing_anything(short_clip, tmp_path, monkeypatch):
    """An unknown device or absent CUDA failed with a raw torch error after OUT/.run.json was written."""
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


def test_weights_of_an_unfinished_run_are_used_with_a_warning(tmp_path, caplog):
    """`train --max-steps N` exports weights before the recipe's end; they loaded without a word."""
    model = build_encoder("crw", out_layer="layer2")
    for finished in (True, False):
        path = save_weights(model, tmp_path / f"finished-{finished}.safetensors",
                            meta={"steps": 14, "finished": finished})
        caplog.clear()
        _, info = resolve_encoder(get_preset("crw"), weights=path)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if finished:
            assert not warned and "finished" not in info
        else:
            assert info["finished"] is False
            assert warned == [f"{path}: weights of an unfinished training run (exported at step 14, before its "
                              "recipe's end): expect less than the finished recipe gives"]


def test_the_recipe_of_trained_weights_reaches_the_evaluation_record_with_its_sha256(tmp_path):
    """A recipe file of one's own is recorded by path and sha256; results.json showed only the path."""
    model = build_encoder("crw", out_layer="layer2")
    own = save_weights(model, tmp_path / "own.safetensors",
                       meta={"recipe": "/home/me/uvc.toml", "recipe_sha256": "ab" * 32,
                             "recipe_chain_sha256": "cd" * 32})
    shipped = save_weights(model, tmp_path / "shipped.safetensors", meta={"recipe": "uvc"})
    _, info = resolve_encoder(get_preset("crw"), weights=own)
    assert (info["recipe"], info["recipe_sha256"], info["recipe_chain_sha256"]) == ("/home/me/uvc.toml", "ab" * 32,
                                                                                    "cd" * 32)
    _, info = resolve_encoder(get_preset("crw"), weights=shipped)
    assert info["recipe"] == "uvc" and "recipe_sha256" not in info and "recipe_chain_sha256" not in info


def test_the_eval_runners_check_a_module_of_ones_own_before_writing_anything(short_clip, data_dir, tmp_path):
    """run_davis / run_jhmdb / run_vip / run_tracking called from Python with a channels-last module
    propagated its (h, w, C) features as channels and cells and wrote results.json (the API and
    --encoder refused it): each refuses it now, before OUT is created."""
    class ChannelsLast(PatchEncoder):
        def forward(self, rgb):
            return super().forward(rgb).permute(0, 2, 3, 1)

    runners = {
        "davis": lambda enc, out: run_davis(enc, "crw", short_clip, out),
        "jhmdb": lambda enc, out: run_jhmdb(enc, jhmdb_preset(get_preset("crw"), size=64),
                                            JhmdbDataset(data_dir / "jhmdb"), out),
        "vip": lambda enc, out: run_vip(enc, vip_preset(get_preset("crw"), size=64),
                                        VipDataset(data_dir / "vipseg-snippet"), out),
        "otb": lambda enc, out: run_tracking(enc, data_dir / "tracking" / "otb", out, benchmark="otb",
                                             settings=tracker_settings("dcf", input_size=64), max_frames=2),
    }
    for name, run in runners.items():
        out = tmp_path / name
        with pytest.raises(EncoderOutputError, match="encoder ChannelsLast gave 28 channels.*Channels-last"):
            run(ChannelsLast(), out)
        assert not out.exists(), name
