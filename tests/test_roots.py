"""A --root one level above a benchmark's root, or inside it, is refused with the --root to give.

Every reader answered such a root with a layout error alone ("no sequence folders with
groundtruth_rect.txt", "ROOT/Rename_Images: missing", "frames folder of sequence 'cows' not found"),
the most common slip when a benchmark sits beside others in a data folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vidcorr.errors import InputError
from vidcorr.io.davis import DavisDataset
from vidcorr.io.jhmdb import JhmdbDataset
from vidcorr.io.roots import misplaced_root_hint
from vidcorr.io.tracking import discover_sequences
from vidcorr.io.vip import VipDataset


def _tree(base: Path, *folders: str, files: tuple[str, ...] = ()) -> Path:
    for folder in folders:
        (base / folder).mkdir(parents=True, exist_ok=True)
    for file in files:
        (base / file).parent.mkdir(parents=True, exist_ok=True)
        (base / file).write_text("1,2,3,4\n")
    return base


def _refused(read, root: Path) -> str:
    with pytest.raises(InputError) as error:
        read(root)
    return str(error.value)


def test_the_hint_looks_one_level_down_and_a_few_up(tmp_path):
    data = _tree(tmp_path / "data", "a/ROOT/x/y/z", "b")
    is_root = lambda folder: folder.name == "ROOT"  # noqa: E731
    assert misplaced_root_hint(data / "a", is_root) == f"; {data / 'a' / 'ROOT'} is one: --root {data / 'a' / 'ROOT'}"
    assert misplaced_root_hint(data / "a/ROOT/x/y/z", is_root) == f"; it lies inside the root {data / 'a/ROOT'}: " \
                                                                  f"--root {data / 'a/ROOT'}"
    assert misplaced_root_hint(data, is_root) == ""  # two levels down: not looked for
    assert misplaced_root_hint(data / "b", is_root) == ""


def test_a_relative_root_gets_a_relative_hint(tmp_path, monkeypatch):
    _tree(tmp_path, "data/jhmdb/Rename_Images/catch", "data/jhmdb/joint_positions")
    monkeypatch.chdir(tmp_path)
    message = _refused(JhmdbDataset, Path("data/jhmdb/Rename_Images/catch"))
    assert message == ("data/jhmdb/Rename_Images/catch: not a JHMDB root (Rename_Images/, joint_positions/); "
                       "it lies inside the root data/jhmdb: --root data/jhmdb")


@pytest.mark.parametrize(("root", "hint"), [
    ("data", "; {d}/jhmdb is one: --root {d}/jhmdb"),
    ("data/jhmdb/Rename_Images", "; it lies inside the root {d}/jhmdb: --root {d}/jhmdb"),
])
def test_jhmdb(tmp_path, root, hint):
    d = _tree(tmp_path / "data", "jhmdb/Rename_Images/catch/clip", "jhmdb/joint_positions/catch/clip")
    assert _refused(JhmdbDataset, tmp_path / root).endswith(hint.format(d=d))


@pytest.mark.parametrize(("root", "hint"), [
    ("data", "; {d}/vip is one: --root {d}/vip"),  # its VIP_Fine inside, which the reader takes
    ("data/vip/VIP_Fine/Images/video1", "; it lies inside the root {d}/vip/VIP_Fine: --root {d}/vip/VIP_Fine"),
])
def test_vip(tmp_path, root, hint):
    d = _tree(tmp_path / "data", "vip/VIP_Fine/Images/video1", "vip/VIP_Fine/Annotations/Category_ids/video1")
    assert _refused(VipDataset, tmp_path / root).endswith(hint.format(d=d))


@pytest.mark.parametrize(("root", "hint"), [
    ("data", "; {d}/davis is one: --root {d}/davis"),
    ("data/davis/JPEGImages/480p/cows", "; it lies inside the root {d}/davis: --root {d}/davis"),
])
def test_davis(tmp_path, root, hint):
    d = _tree(tmp_path / "data", "davis/JPEGImages/480p/cows", "davis/Annotations/480p/cows", "davis/ImageSets/2016")
    message = _refused(lambda r: DavisDataset(r, sequences=["cows"]), tmp_path / root)
    assert "not a DAVIS root" in message and message.endswith(hint.format(d=d))


@pytest.mark.parametrize(("benchmark", "root", "hint"), [
    ("otb", "data/tracking", "; {d}/otb is one: --root {d}/otb"),
    ("otb", "data/otb/Soccer", "; it is one sequence folder: --root {d}/otb --sequences Soccer"),
    ("otb", "data/otb/Jogging", "; it is one sequence folder: --root {d}/otb --sequences Jogging.1,Jogging.2"),
    ("otb", "data/otb/Soccer/img", "; it lies inside the root {d}/otb: --root {d}/otb"),
    ("otb", "data/vot", "; it holds VOT sequences (groundtruth.txt): `vidcorr eval vot` (or `score vot`) reads them"),
    ("vot", "data/otb",
     "; it holds OTB sequences (groundtruth_rect.txt): `vidcorr eval otb` (or `score otb`) reads them"),
    ("vot", "data/vot/ball1", "; it is one sequence folder: --root {d}/vot --sequences ball1"),
])
def test_tracking(tmp_path, benchmark, root, hint):
    d = _tree(tmp_path / "data", "otb/Soccer/img", "tracking/otb/Soccer", "otb/Jogging/img",
              files=("otb/Soccer/groundtruth_rect.txt", "tracking/otb/Soccer/groundtruth_rect.txt",
                     "otb/Jogging/groundtruth_rect.1.txt", "otb/Jogging/groundtruth_rect.2.txt",
                     "vot/ball1/groundtruth.txt"))
    if root == "data/tracking":
        d = d / "tracking"
    message = _refused(lambda r: discover_sequences(r, benchmark), tmp_path / root)
    assert message.endswith(hint.format(d=d)), message
