"""DAVIS overlay frames (`vidcorr.evaluate.davis_overlays.overlay_frames`): captioned with their frame
number; scripts/overlay_still.py draws one of them for the docs, scripts/uvc_track_still.py one
frame without and with UVC-track."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from vidcorr.cli import main
from vidcorr.evaluate.davis_overlays import overlay_frames
from vidcorr.io.masks import read_mask
from vidcorr.viz import overlay_mask

ROOT = Path(__file__).resolve().parents[1]


def test_overlay_frames_are_captioned_with_their_frame_number(tmp_path):
    """The eval and demo overlay videos did not say which frame was shown: the propagated side reads
    "propagated · frame t", and an overlay without annotations "frame t", in the top-left corner."""
    frame = np.full((120, 160, 3), 100, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[40:80, 60:100] = 1
    annotation = tmp_path / "00001.png"
    Image.fromarray(labels).save(annotation)
    names = ["00000", "00001", "00002"]
    for truth, width in (([annotation], 2 * 160 + 8), ([], 160)):
        drawn = list(overlay_frames([(frame, labels)] * 3, names, truth))
        assert drawn[0].shape == (120, width, 3)
        changed = (drawn[0] != drawn[2]).any(axis=2)  # same frame and masks, frames 0 and 2
        rows, cols = np.nonzero(changed)
        assert changed.any() and rows.max() < 25 and cols.max() < 160


def test_the_docs_still_is_the_overlay_videos_frame(tmp_path, capsys):
    """scripts/overlay_still.py (docs/img/overlay-*.jpg): frame N of the overlay, captioned with N, at
    half size; a frame the sequence lacks exits 2 naming it, nothing written."""
    spec = importlib.util.spec_from_file_location("overlay_still", ROOT / "scripts" / "overlay_still.py")
    overlay_still = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overlay_still)
    results = tmp_path / "car-shadow"  # the demo's sequence, masks of our own
    results.mkdir()
    for t in range(3):
        mask = np.zeros((480, 854), np.uint8)
        mask[200:300, 100 + 50 * t:300 + 50 * t] = 1
        Image.fromarray(mask).save(results / f"{t:05d}.png")
    out = tmp_path / "still.jpg"
    assert overlay_still.main([str(results), "2", str(out)]) == 0
    still = Image.open(out)
    assert still.size == (854 + 4, 240)
    dataset = overlay_still.DavisDataset(overlay_still.DEMO_ROOT, sequences=["car-shadow"])
    frames = dataset.frames("car-shadow")[:3]
    pairs = [(np.asarray(Image.open(f).convert("RGB")), np.array(Image.open(results / f"{f.stem}.png")))
             for f in frames]
    video = list(overlay_frames(pairs, [f.stem for f in frames], dataset.masks("car-shadow")))
    drawn = np.asarray(still.convert("RGB").resize((854 * 2 + 8, 480)), np.float32)
    error = [np.abs(drawn - frame).mean() for frame in video]  # 22, 18, 5 grey levels
    assert error[2] < 8 and error[1] > 2 * error[2]  # the video's frame 2, JPEG and resizing aside
    assert overlay_still.main([str(results), "40", str(tmp_path / "x.jpg")]) == 2
    assert "frame 40 asked for, but the sequence has frames 0..39" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists()


def test_the_docs_still_refuses_a_scale_that_draws_nothing(tmp_path, capsys):
    """scripts/overlay_still.py --scale 0 or less is a usage error (exit 2, nothing written), not PIL's
    "height and width must be > 0" traceback; a tiny one still draws a pixel."""
    spec = importlib.util.spec_from_file_location("overlay_still", ROOT / "scripts" / "overlay_still.py")
    overlay_still = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overlay_still)
    results = tmp_path / "car-shadow"
    results.mkdir()
    Image.fromarray(np.zeros((480, 854), np.uint8)).save(results / "00000.png")
    out = tmp_path / "still.jpg"
    for scale in ("0", "-1", "nan"):
        try:
            overlay_still.main([str(results), "0", str(out), "--scale", scale])
        except SystemExit as exit_:
            assert exit_.code == 2
        else:
            raise AssertionError(f"--scale {scale} was taken")
        assert "--scale: expected a positive number" in capsys.readouterr().err
        assert not out.exists()
    assert overlay_still.main([str(results), "0", str(out), "--scale", "0.0001"]) == 0
    assert Image.open(out).size == (1, 1)


def test_the_uvc_track_still_shows_propagates_masks_and_box(tmp_path, capsys):
    """scripts/uvc_track_still.py (docs/img/uvc-track-*.jpg): left, the masks `vidcorr propagate
    --preset uvc` writes; middle, those of `--track` with a box drawn around them; right, the
    annotation, each drawn as the overlay video draws it; frame 0 (nothing propagated) exits 2."""
    spec = importlib.util.spec_from_file_location("uvc_track_still", ROOT / "scripts" / "uvc_track_still.py")
    still_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(still_script)
    out = tmp_path / "still.jpg"
    assert still_script.main(["1", str(out), "--features", "lab-pixels", "--scale", "1"]) == 0
    still = np.asarray(Image.open(out).convert("RGB"), np.float32)
    assert still.shape == (480, 3 * 854 + 2 * 8, 3)
    panels = [still[:, i * (854 + 8):i * (854 + 8) + 854] for i in range(3)]
    sequence = still_script.DEMO_ROOT / "JPEGImages" / "480p" / "car-shadow"
    annotations = still_script.DEMO_ROOT / "Annotations" / "480p" / "car-shadow"
    frame = np.asarray(Image.open(sequence / "00001.jpg").convert("RGB"))
    drawn = []
    for name, track in (("plain", []), ("track", ["--track"])):
        assert main(["propagate", str(sequence), "--mask", str(annotations / "00000.png"), "--preset", "uvc",
                     "--features", "lab-pixels", "--max-frames", "2", "--no-video", *track,
                     "--out", str(tmp_path / name)]) == 0
        drawn.append(overlay_mask(frame, np.array(Image.open(tmp_path / name / "masks" / "00001.png"))))
    drawn.append(overlay_mask(frame, read_mask(annotations / "00001.png")))  # 0/255: object 1
    below_caption = slice(40, None)  # the captions differ from a bare overlay
    errors = [np.abs(panel[below_caption] - d[below_caption]).mean() for panel, d in zip(panels, drawn)]
    assert errors[0] < 3 and errors[2] < 3, errors  # JPEG aside, the same picture
    # the middle panel is its masks' overlay plus a box: what differs (JPEG speckles at the mask
    # outline aside) are four straight lines, each running most of a side of the box
    differs = np.abs(panels[1] - drawn[1]).max(axis=2) > 100
    differs[:40] = False
    rows, cols = np.nonzero(differs)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert bottom - top > 20 and right - left > 20
    across = differs[:, left:right + 1].sum(axis=1) / (right - left)  # share of each row's span
    down = differs[top:bottom + 1].sum(axis=0) / (bottom - top)
    assert across[top:top + 4].max() > 0.6 and across[bottom - 3:bottom + 1].max() > 0.6
    assert down[left:left + 4].max() > 0.6 and down[right - 3:right + 1].max() > 0.6
    assert across[top + 6:bottom - 5].max() < 0.5  # inside the box no such line
    assert still_script.main(["0", str(tmp_path / "x.jpg"), "--features", "lab-pixels"]) == 2
    assert "frame 0 asked for, but car-shadow has frames 1..39 to propagate to" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists()
