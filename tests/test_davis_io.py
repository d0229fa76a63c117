"""DAVIS layout reader on the real DAVIS-2016 data and the DAVIS-2017 fixtures."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from vidcorr.errors import InputError
from vidcorr.io.davis import DavisDataset


def test_davis2016_layout(davis2016_root):
    ds = DavisDataset(davis2016_root)
    assert ds.year == "2016" and len(ds) == 10 and ds.sequences[0] == "blackswan"
    frames, masks = ds.frames("blackswan"), ds.masks("blackswan")
    assert len(frames) == len(masks) == 50
    assert frames == sorted(frames) and frames[0].name == "00000.jpg" and masks[-1].name == "00049.png"
    first = ds.first_mask("blackswan")
    assert first.shape == (480, 854) and set(np.unique(first)) == {0, 1}  # 0/255 -> object 1


def test_subset_keeps_order_and_rejects_unknown(davis2016_root):
    assert DavisDataset(davis2016_root, sequences=["dog", "cows"]).sequences == ["dog", "cows"]
    with pytest.raises(InputError, match="unknown sequence.*tennis"):
        DavisDataset(davis2016_root, sequences=["dog", "tennis"])


def test_davis2017_fixtures_without_imagesets(davis2017_fixtures):
    with pytest.raises(InputError, match="ImageSets") as err:
        DavisDataset(davis2017_fixtures)
    assert err.value.path == davis2017_fixtures / "ImageSets"
    ds = DavisDataset(davis2017_fixtures, sequences=["tennis"])
    assert set(np.unique(ds.first_mask("tennis"))) == {0, 1, 2, 255}  # palette ids, 255 = void


@pytest.fixture
def tennis_root(tmp_path, davis2017_fixtures):
    root = tmp_path / "DAVIS"
    for kind in ("JPEGImages", "Annotations"):
        shutil.copytree(davis2017_fixtures / kind / "480p" / "tennis", root / kind / "480p" / "tennis")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("tennis\n\n")
    return root


def test_year_selection(tennis_root):
    assert DavisDataset(tennis_root).year == "2017"
    (tennis_root / "ImageSets" / "2016").mkdir()
    with pytest.raises(InputError, match=r"cannot pick the year \(2016, 2017\)"):
        DavisDataset(tennis_root)
    assert DavisDataset(tennis_root, year="2017").sequences == ["tennis"]
    with pytest.raises(InputError, match="no such year folder; found: 2016, 2017"):
        DavisDataset(tennis_root, year="2019")


def test_missing_root_split_and_sequence_folders(tmp_path, tennis_root):
    with pytest.raises(InputError, match="DAVIS root folder not found"):
        DavisDataset(tmp_path / "nowhere")
    with pytest.raises(InputError, match="split file not found; splits here: val"):
        DavisDataset(tennis_root, split="train")
    shutil.rmtree(tennis_root / "JPEGImages")
    with pytest.raises(InputError, match="frames folder of sequence 'tennis' not found"):
        DavisDataset(tennis_root).frames("tennis")
    assert len(DavisDataset(tennis_root).masks("tennis")) == 2  # annotations alone still list


def test_mask_size_must_match_frames(tennis_root):
    path = tennis_root / "Annotations" / "480p" / "tennis" / "00000.png"
    Image.open(path).resize((640, 360), Image.NEAREST).save(path)
    with pytest.raises(InputError, match="00000.png: mask is 640x360 but frames are 854x480") as err:
        DavisDataset(tennis_root).first_mask("tennis")
    assert err.value.path == path


def test_split_file_with_a_byte_order_mark(tennis_root):
    """A split file saved by a Windows editor starts with a BOM, which became part of the first name."""
    (tennis_root / "ImageSets" / "2017" / "val.txt").write_bytes("\ufefftennis\r\n".encode("utf-8"))
    assert DavisDataset(tennis_root).sequences == ["tennis"]


def test_a_stray_jpeg_among_a_sequences_frames_is_refused(tennis_root):
    """00000_copy.jpg sorts between 00000.jpg and 00001.jpg: it was propagated as the second frame."""
    frames = tennis_root / "JPEGImages" / "480p" / "tennis"
    shutil.copy(frames / "00000.jpg", frames / "00000_copy.jpg")
    with pytest.raises(InputError, match=r"1 image\(s\) not named like its 2 frames \(00000\.jpg, \.\.\.\): "
                                         r"00000_copy\.jpg\. They would be read as frames: move them out"):
        DavisDataset(tennis_root).frames("tennis")


def test_two_jpegs_of_one_frame_number_are_refused(tennis_root):
    """0.jpg beside 00000.jpg: both frame 0, in whichever order the file system listed them."""
    frames = tennis_root / "JPEGImages" / "480p" / "tennis"
    shutil.copy(frames / "00001.jpg", frames / "0.jpg")
    with pytest.raises(InputError, match=r"1 frame\(s\) named more than once \(0\.jpg and 00000\.jpg\)") as info:
        DavisDataset(tennis_root).frames("tennis")
    assert info.value.path == frames
