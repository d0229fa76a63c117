"""The "From Python" examples of README.md and docs/propagation.md run as written.

A document's blocks are executed as pasted, one after the other into one session, given only what
the text says is the user's: the files they name (a video, a first-frame mask, keypoints) and the
arrays they leave to them (frames that arrive one at a time, first-frame soft labels). A library
name used but not imported fails here (`read_mask`, whose import was only a comment).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidcorr.io.video import write_video

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 4
SIZE = (224, 128)  # (W, H): small, so the default weights run at native size in seconds; holds the box


def _python_blocks(doc: Path, section: str) -> list[str]:
    """The ```python blocks of ``section`` (a '## ' heading) of ``doc``."""
    text = doc.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, davis2016_root) -> Path:
    """clip.mp4 / my_video.mp4 (car-shadow, small), first.png / first_frame.png, first.json."""
    folder = tmp_path_factory.mktemp("user")
    jpgs = sorted((davis2016_root / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"))[:FRAMES]
    frames = [np.array(Image.open(p).convert("RGB").resize(SIZE, Image.BILINEAR)) for p in jpgs]
    mask = Image.open(davis2016_root / "Annotations" / "480p" / "car-shadow" / "00000.png").resize(SIZE, Image.NEAREST)
    for video, first in (("clip.mp4", "first.png"), ("my_video.mp4", "first_frame.png")):
        write_video(folder / video, frames, 24.0)
        mask.save(folder / first)
    (folder / "first.json").write_text('{"keypoints": [[80, 60], [140, 70]]}')
    np.save(folder / "frames.npy", np.stack(frames))
    return folder


def _run(blocks: list[str], folder: Path, monkeypatch) -> None:
    """Run ``blocks`` one after the other in one namespace, as pasted into one session."""
    monkeypatch.chdir(folder)
    frames = np.load(folder / "frames.npy")
    yy, xx = np.mgrid[:SIZE[1], :SIZE[0]]
    namespace = {"frame0": frames[0], "frame1": frames[1],
                 "first_labels": np.exp(-((xx - 112.0) ** 2 + (yy - 64.0) ** 2) / 200.0)}
    for block in blocks:
        exec(compile(block, "<doc example>", "exec"), namespace)


def test_the_readme_example_runs(user_files, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r'From Python \(docs/propagation.md, "From Python"\):\n\n```python\n(.*?)```', text, re.S)
    assert len(blocks) == 1
    _run(blocks, user_files, monkeypatch)


def test_the_propagation_docs_examples_run(user_files, monkeypatch):
    blocks = _python_blocks(ROOT / "docs" / "propagation.md", "From Python")
    assert len(blocks) == 3  # masks and the tracker; keypoints and boxes; soft labels
    _run(blocks, user_files, monkeypatch)
