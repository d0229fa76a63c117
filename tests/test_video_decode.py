"""Video reading (PyAV and the OpenCV fallback) against OpenCV, random access, threads, forks; the mp4 writer
(rotation: test_video_rotation.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vidcorr.errors import InputError, VidcorrError
from vidcorr.io import video
from vidcorr.io.video import count_frames, open_frames, read_frames_at, write_video


@pytest.fixture()
def no_pyav(monkeypatch):
    """Simulate a machine with OpenCV but without PyAV."""
    monkeypatch.setattr(video, "_import_av", lambda: None)


@pytest.fixture(scope="module")
def opencv_frames(real_video) -> np.ndarray:
    """Reference decode by OpenCV, converted BGR -> RGB: (T, H, W, 3)."""
    capture = cv2.VideoCapture(str(real_video))
    frames = []
    while (result := capture.read())[0]:
        frames.append(cv2.cvtColor(result[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_real_video_matches_opencv_decode(real_video, opencv_frames, backend):
    source = open_frames(real_video, backend=backend)
    frames = source.read_all()
    assert source.backend == backend
    assert len(source) == count_frames(real_video, backend=backend) == len(frames) == len(opencv_frames)
    assert source.size == frames.shape[1:3] == opencv_frames.shape[1:3]
    assert source.fps == pytest.approx(24.0)
    assert frames.dtype == np.uint8 and frames.shape[3] == 3
    # Same decoder underneath (FFmpeg): frames agree; a BGR mix-up would differ by far more.
    diff_rgb = np.abs(frames.astype(int) - opencv_frames).mean()
    diff_bgr = np.abs(frames.astype(int) - opencv_frames[..., ::-1]).mean()
    assert diff_rgb < 1.0 and diff_bgr > 10 * max(diff_rgb, 1.0)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_read_frames_at_equals_full_decode(real_video, opencv_frames, backend):
    last = len(opencv_frames) - 1
    indices = [10, 0, last, 10]
    frames = read_frames_at(real_video, indices, backend=backend)
    for index, frame in zip(indices, frames, strict=True):
        np.testing.assert_array_equal(frame, open_frames(real_video, backend=backend).read_at([index])[0])
        assert np.abs(frame.astype(int) - opencv_frames[index]).mean() < 1.0
    assert frames[0] is not frames[3]  # a repeated index gets its own array
    assert read_frames_at(real_video, []) == []
    with pytest.raises(InputError, match=f"frame {last + 5} requested"):
        read_frames_at(real_video, [last + 5], backend=backend)
    with pytest.raises(ValueError):
        read_frames_at(real_video, [-1])


def test_streaming_can_stop_early_and_iterate_again(real_video):
    source = open_frames(real_video)
    first = next(iter(source))
    assert np.array_equal(next(iter(source)), first)


def test_early_stops_in_threads_do_not_hang(data_dir):
    """Opening a source decodes one frame and stops; the video index does that from 4 threads.
    With FFmpeg's frame threading (PyAV ``thread_type="AUTO"``) and torchvision imported, that
    deadlocked on the first round under torch 2.4.1 / torchvision 0.19.1 (PyAV issue 1849);
    `bash scripts/test_torch.sh 2.4.1 0.19.1` runs this suite there. A fresh interpreter, so the
    import order is the reported one, and a timeout, so a deadlock fails instead of stalling."""
    code = (
        "import torchvision, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pathlib import Path\n"
        "from vidcorr.io.video import open_frames\n"
        "videos = sorted(Path(sys.argv[1]).glob('*.mp4'))[:12]\n"
        "for _ in range(3):\n"
        "    with ThreadPoolExecutor(4) as pool:\n"
        "        assert all(s[0] > 0 for s in pool.map(lambda v: open_frames(v).size, videos))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(data_dir / "videos/davis2016-train")],
                   check=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_decoding_in_a_forked_child_after_the_parent_decoded(real_video):
    """A DataLoader worker is forked after the video index has converted a frame in the parent.
    With swscale's own thread pool (PyAV's default) the child's first conversion waited forever
    under Python 3.12 and PyAV 18.1 (`PYTHON=python3.12 bash scripts/test_torch.sh 2.11.0 0.26.0`
    runs this suite there); the child gives up after 60 s so that a hang fails instead of lingering."""
    code = (
        "import faulthandler, os, sys\n"
        "from vidcorr.io.video import open_frames\n"
        "open_frames(sys.argv[1], backend='pyav')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    faulthandler.dump_traceback_later(60, exit=True)\n"
        "    frames = open_frames(sys.argv[1], backend='pyav').read_at([0, 5])\n"
        "    os._exit(0 if len(frames) == 2 else 1)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(real_video)], check=True, timeout=120)


def test_opencv_fallback_when_pyav_missing(real_video, opencv_frames, no_pyav, tmp_path):
    source = open_frames(real_video)
    assert source.backend == "opencv"
    assert np.array_equal(source.read_all(), opencv_frames)
    assert count_frames(real_video) == len(opencv_frames)
    with pytest.raises(VidcorrError, match="PyAV is not installed"):
        open_frames(real_video, backend="pyav")
    out = write_video(tmp_path / "fallback.mp4", iter(opencv_frames[:5]), fps=10)
    assert len(open_frames(out)) == 5


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_write_video_round_trip(tmp_path, opencv_frames, backend):
    frames = opencv_frames[:12, :101, :151]  # odd size: padded by one row and column
    out = write_video(tmp_path / "sub" / "overlay.mp4", (f for f in frames), fps=12.5, backend=backend)
    assert out == tmp_path / "sub" / "overlay.mp4"
    assert [p.name for p in out.parent.iterdir()] == ["overlay.mp4"]  # no temp file left
    source = open_frames(out)
    decoded = source.read_all()
    assert len(decoded) == count_frames(out) == 12
    assert source.size == (102, 152) and source.fps == pytest.approx(12.5)
    assert np.abs(decoded[:, :101, :151].astype(int) - frames).mean() < 8


@pytest.mark.parametrize(("hw", "written"), [((5, 8), (6, 8)), ((4, 7), (4, 8))])
def test_write_video_pads_only_the_odd_side(tmp_path, hw, written):
    """yuv420p needs even sides: an odd height gains a row, an odd width a column, an even side
    nothing. A frame rate of 0 is refused before anything is written."""
    frames = [np.full((*hw, 3), 100, np.uint8)] * 3
    assert open_frames(write_video(tmp_path / "clip.mp4", iter(frames), fps=5, backend="pyav")).size == written
    with pytest.raises(ValueError, match="fps must be positive, got 0"):
        write_video(tmp_path / "zero.mp4", iter(frames), fps=0)
    assert not (tmp_path / "zero.mp4").exists()


def test_write_video_failure_leaves_nothing(tmp_path, opencv_frames):
    def frames():
        yield opencv_frames[0]
        yield opencv_frames[1]
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_video(tmp_path / "out.mp4", frames(), fps=24)
    with pytest.raises(ValueError, match="frame 1 is"):
        write_video(tmp_path / "out.mp4", [opencv_frames[0], opencv_frames[1, :10]], fps=24)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], fps=24)
    assert list(tmp_path.iterdir()) == []


def test_unknown_length_raises_type_error(real_video):
    source = open_frames(real_video)
    source.num_frames = None
    with pytest.raises(TypeError, match="count_frames"):
        len(source)
