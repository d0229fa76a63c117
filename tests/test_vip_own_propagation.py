"""docs/vip.md's steps for scoring your own `vidcorr propagate` part maps with `vidcorr score vip`, run as
written on the VIPSeg snippet: the class map, the propagation, the move into RESULTS/<video>, the score."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import vidcorr.cli
from vidcorr.io.masks import read_mask
from vidcorr.io.vip import IGNORE, VipDataset

ROOT = Path(__file__).resolve().parents[1]
SECTION = "#### Part maps of your own `vidcorr propagate` run"


def _blocks(kind: str) -> list[str]:
    """The ```kind blocks of the section."""
    text = (ROOT / "docs" / "vip.md").read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.find("\n#", start + 1)
    return re.findall(rf"```{kind}\n(.*?)```", text[start:end], re.S)


def _run_shell(block: str, data: Path) -> None:
    """The snippet's shell block: its first line's variables, then `vidcorr`, `mkdir -p` and `mv`
    (the only commands it uses; anything else fails the test), the data folder swapped for ``data``."""
    first, *lines = block.strip().splitlines()
    variables = dict(part.strip().split("=", 1) for part in first.split(";"))
    variables = {k: v.replace("../shared/data", str(data)) for k, v in variables.items()}
    for line in lines:
        for command in line.split("&&"):
            for name, value in variables.items():
                command = command.replace(f"${name}", value)
            program, *args = shlex.split(command)
            if program == "vidcorr":
                assert vidcorr.cli.main(args) == 0, command
            elif program == "mkdir" and args[0] == "-p":
                Path(args[1]).mkdir(parents=True, exist_ok=True)
            elif program == "mv":
                Path(args[0]).rename(args[1])
            else:
                pytest.fail(f"docs/vip.md: a command this test does not run: {command}")


def test_propagated_part_maps_moved_as_the_docs_say_are_scored(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    (python,), shells = _blocks("python"), _blocks("bash")
    snippet = [block for block in shells if block.startswith("V=")]
    assert len(snippet) == 1, "docs/vip.md: the snippet's shell block (V=...; v=...) not found"
    exec(python.replace("../shared/data", str(data_dir)), {})
    _run_shell(snippet[0], data_dir)

    dataset = VipDataset(data_dir / "vipseg-snippet")
    (video,) = dataset.videos
    first_class_map = dataset.category_map(video.frames[0])
    # Frame 0 is the class map given, void (the ignored, unlabelled pixels) written as 0
    np.testing.assert_array_equal(read_mask(tmp_path / "results" / video.name / f"{video.frames[0].name}.png"),
                                  np.where(first_class_map == IGNORE, 0, first_class_map))
    scored = json.loads((tmp_path / "results" / "score.json").read_text())
    assert scored["protocol"]["scored_frames"] == 4 and scored["AP_part"] is None
    # Segment ids propagated as if they were classes scored 0.04 here; class maps 0.78
    assert scored["mIoU"] > 0.5
