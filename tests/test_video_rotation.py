"""Phone videos, stored landscape with a display matrix that turns them: both backends decode them
upright, as a player shows them; the size and count probes, training's frame reads and `propagate`
(a mask drawn on the upright view) agree with the decoded frames."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from cli_helpers import FAST
from PIL import Image

from vidcorr.cli import main
from vidcorr.data.video_probe import probe
from vidcorr.io import video_pyav
from vidcorr.io.container_size import mp4_rotation
from vidcorr.io.video import count_frames, open_frames, read_frames_at

FIXED = 1 << 16  # 16.16 fixed point: 1.0
# The first five of the track header matrix {a, b, u, c, d, v, x, y, w} that makes a player turn the stored picture
# clockwise by the key (ffprobe: "displaymatrix: rotation of -90.00 degrees" for 90).
CLOCKWISE = {0: (FIXED, 0, 0, 0, FIXED), 90: (0, FIXED, 0, -FIXED, 0),
             180: (-FIXED, 0, 0, 0, -FIXED), 270: (0, -FIXED, 0, FIXED, 0)}
STORED_HW, COUNT = (48, 64), 6


def _pattern(index: int) -> np.ndarray:
    """Stored frame ``index`` (48, 64, 3): no symmetry maps it onto itself (a bright top-left block,
    a blue bottom band, a red right column), and a grey level of its own."""
    frame = np.full((*STORED_HW, 3), 40 + 10 * index, np.uint8)
    frame[:12, :20] = 235
    frame[40:, :] = (0, 0, 220)
    frame[:, 56:] = (220, 0, 0)
    return frame


def write_phone_mp4(path: Path, clockwise: int) -> np.ndarray:
    """An H.264 MP4 of `_pattern` frames whose version-0 track header matrix says "turn ``clockwise``
    degrees to show" (PyAV does not write one: its bytes are patched); -> the stored frames (T, H, W, 3)."""
    frames = np.stack([_pattern(i) for i in range(COUNT)])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"crf": "10"})
        stream.height, stream.width = STORED_HW
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(path.read_bytes())
    tkhd = data.index(b"tkhd") + 4
    assert data[tkhd] == 0  # version 0: the matrix starts 40 bytes into the contents
    data[tkhd + 40:tkhd + 76] = struct.pack(">9i", *CLOCKWISE[clockwise], 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return frames


def _upright(stored: np.ndarray, clockwise: int) -> np.ndarray:
    """Stored frames (..., H, W, 3) as a player shows them."""
    return np.rot90(stored, -(clockwise // 90), axes=(-3, -2))


@pytest.fixture(params=[90, 180, 270])
def phone_video(request, tmp_path) -> tuple[Path, int, np.ndarray]:
    """(path, clockwise degrees, stored frames)."""
    path = tmp_path / f"phone{request.param}.mp4"
    return path, request.param, write_phone_mp4(path, request.param)


def _close(decoded: np.ndarray, expected: np.ndarray) -> bool:
    return decoded.shape == expected.shape and np.abs(decoded.astype(int) - expected).mean() < 4


def test_the_track_header_rotation_is_what_pyav_and_opencv_read(phone_video):
    """The patched file is what readers take for a turned video: PyAV's display matrix side data and
    OpenCV's orientation say the same angle as `mp4_rotation`."""
    path, clockwise, _ = phone_video
    assert mp4_rotation(path) % 360 == -clockwise % 360
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        if hasattr(frame, "rotation"):
            assert frame.rotation % 360 == -clockwise % 360
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_ORIENTATION_META) % 360 == clockwise
    capture.release()


def test_an_unturned_mp4_and_other_files_have_no_rotation(tmp_path):
    write_phone_mp4(tmp_path / "plain.mp4", 0)
    (tmp_path / "notes.txt").write_text("not a video")
    assert mp4_rotation(tmp_path / "plain.mp4") == mp4_rotation(tmp_path / "notes.txt") == 0


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_both_backends_decode_upright(phone_video, backend):
    path, clockwise, stored = phone_video
    expected = _upright(stored, clockwise)
    source = open_frames(path, backend=backend)
    assert _close(source.read_all(), expected)
    picked = read_frames_at(path, [4, 1], backend=backend)  # training's reads
    assert _close(np.stack(picked), expected[[4, 1]])


def test_a_pyav_without_frame_rotation_turns_by_the_track_header(phone_video, monkeypatch):
    """PyAV versions before ``VideoFrame.rotation`` (the project allows av >= 12) agree with OpenCV."""
    path, clockwise, stored = phone_video
    monkeypatch.setattr(video_pyav, "_frame_rotation", lambda frame: None)
    assert _close(open_frames(path, backend="pyav").read_all(), _upright(stored, clockwise))


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_size_and_count_probes_agree_with_the_frames(phone_video, backend, monkeypatch):
    path, clockwise, _ = phone_video
    height, width = STORED_HW if clockwise == 180 else STORED_HW[::-1]
    source = open_frames(path, backend=backend)
    assert source.size == (height, width) == source.read_all().shape[1:3]
    assert source.num_frames == count_frames(path, backend=backend) == COUNT
    if backend == "opencv":  # training's index probes with the backend "auto" picks: OpenCV without PyAV
        monkeypatch.setattr("vidcorr.io.video._import_av", lambda: None)
    info = probe(path)
    assert (info.height, info.width, info.num_frames) == (height, width, COUNT)


def test_propagate_takes_a_mask_drawn_on_the_upright_view(tmp_path, capsys):
    """A portrait phone clip: the mask drawn on the portrait view is accepted and every written mask
    is portrait; the stored (landscape) size is refused with the advice to draw on the upright view."""
    path = tmp_path / "phone.mp4"
    write_phone_mp4(path, 90)
    height, width = STORED_HW[::-1]
    mask = np.zeros((height, width), np.uint8)
    mask[:20, width - 12:] = 1  # the bright block, top right once turned
    Image.fromarray(mask).save(tmp_path / "portrait.png")
    out = tmp_path / "out"
    assert main(["propagate", str(path), "--mask", str(tmp_path / "portrait.png"), "--out", str(out),
                 "--no-video", *FAST]) == 0
    written = sorted((out / "masks").glob("*.png"))
    assert len(written) == COUNT
    assert all(np.array(Image.open(p)).shape == (height, width) for p in written)
    np.testing.assert_array_equal(np.array(Image.open(written[0])), mask)
    capsys.readouterr()
    Image.fromarray(np.ascontiguousarray(mask.T)).save(tmp_path / "landscape.png")
    assert main(["propagate", str(path), "--mask", str(tmp_path / "landscape.png"), "--out",
                 str(tmp_path / "refused"), "--no-video", *FAST]) == 2
    assert "turned by 90 degrees" in capsys.readouterr().err and not (tmp_path / "refused").exists()
