"""`inner_bar_options`: a bar that may open under another is shown alone anywhere, nested only on
a terminal (tqdm's cursor-up after each refresh: a stray ESC[A in a log file, a new line per
refresh in Jupyter)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tqdm import tqdm

from vidcorr.evaluate.ranks import Ranks
from vidcorr.evaluate.tracking import _first_frames
from vidcorr.io.tracking import TrackingSequence
from vidcorr.progress import inner_bar_options


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_bar_left_open():
    assert not tqdm._instances, "a bar of another test is still open"
    yield


def test_a_bar_alone_is_shown_on_any_stream():
    assert inner_bar_options(io.StringIO()) == {} and inner_bar_options(_Terminal()) == {}


def test_a_nested_bar_is_shown_on_a_terminal_only():
    with tqdm(total=3, file=io.StringIO()):  # the sequences' bar
        assert inner_bar_options(io.StringIO()) == {"disable": True}
        assert inner_bar_options(_Terminal()) == {}
    assert inner_bar_options(io.StringIO()) == {}  # closed: alone again


def test_a_disabled_outer_bar_leaves_the_inner_one_alone():
    with tqdm(total=3, file=io.StringIO(), disable=True):
        assert inner_bar_options(io.StringIO()) == {}


def test_the_default_stream_is_stderr_as_tqdm_s(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    with tqdm(total=3, file=io.StringIO()):
        assert inner_bar_options() == {}


def test_tqdm_disable_in_the_environment_still_hides_a_shown_bar():
    """Shown is tqdm's default, not disable=False, which overrode TQDM_DISABLE=1. tqdm reads the
    variable as it is imported: a fresh interpreter."""
    code = ("import io, sys\n"
            "from tqdm import tqdm\n"
            "from vidcorr.progress import inner_bar_options\n"
            "class Terminal(io.StringIO):\n"
            "    def isatty(self): return True\n"
            "options = inner_bar_options(Terminal())\n"
            "shown = tqdm(total=3, file=Terminal(), **options)\n"
            "print(options, shown.disable)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TQDM_DISABLE": "1"})
    assert run.stdout.split() == ["{}", "True"], run.stderr


def test_the_per_frame_bar_of_a_sequence_tracked_alone_shows_in_a_log(tmp_path, capsys):
    """track_sequence from a notebook or a script of one's own (stderr not a terminal): the frames'
    bar showed on a terminal only (tqdm's disable=None), so Jupyter never had it."""
    frames = []
    for i in range(3):
        frames.append(tmp_path / f"{i:04d}.jpg")
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(frames[-1])
    seq = TrackingSequence("Clip", tmp_path, tmp_path / "groundtruth_rect.txt", np.tile([2.0, 2.0, 8.0, 8.0], (3, 1)),
                           tuple(frames))
    n, read = _first_frames(seq, None, Ranks())
    assert n == 3 and len(list(read)) == 3
    assert "Clip" in capsys.readouterr().err
