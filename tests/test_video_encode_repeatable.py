"""`write_video` (PyAV, libx264) gives the same bytes for the same frames, whatever the heap held.

x264's AVX-512 macroblock-tree code read memory it never wrote where a row's macroblock count is not
a multiple of 8 (both sizes here), so two encodings of the same frames in one process differed
(`_X264_OPTIONS` in src/vidcorr/io/video_pyav.py). Between encodings, blocks filled with noise are
freed, so that memory the encoder later gets from malloc without clearing holds noise, and the video
is decoded, as a run does. With the macroblock tree on, both cases failed in 20 processes of 20 on
this AVX-512 CPU (a CPU without AVX-512 never ran the faulty code: there it passes either way)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidcorr.io.video import write_video


def _churn_heap(rng: np.random.Generator, video: Path) -> None:
    """Allocate blocks of 1 kB to 2 MB filled with noise and free them; decode ``video``."""
    blocks = [rng.integers(0, 256, int(size), dtype=np.uint8) for size in rng.integers(1_000, 2_000_000, 40)]
    del blocks
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")


@pytest.mark.parametrize("height, width", [(120, 214), (64, 96)])  # 14 and 6 macroblocks a row
def test_the_same_frames_encode_to_the_same_bytes(davis2016_root, tmp_path, height, width):
    paths = sorted((davis2016_root / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"))[:20]
    frames = [np.asarray(Image.open(p).convert("RGB").resize((width, height))) for p in paths]
    rng = np.random.default_rng(0)
    videos = []
    for run in range(3):
        videos.append(write_video(tmp_path / f"{run}.mp4", iter(frames), fps=25))
        _churn_heap(rng, videos[-1])
    with av.open(str(videos[0])) as container:
        assert container.streams.video[0].codec_context.name == "h264"  # x264's, not the MPEG-4 fallback
    digests = [hashlib.sha256(video.read_bytes()).hexdigest() for video in videos]
    assert digests == [digests[0]] * 3
