"""DAVIS layout reader on the real DAVIS-2016 data, the DAVIS-2017 fixtures and hand-made trees."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from vidcorr.errors import InputError
from vidcorr.io.davis import DavisDataset
from vidcorr.metrics.davis import score_davis


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


def _unpadded_tree(root, numbers):
    """A hand-made DAVIS tree of one sequence "seq": frames and masks named 8.jpg / 8.png (no zero
    padding), each mask's object one pixel at column <frame number>, so a mask tells its frame."""
    frames, annotations = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    frames.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for n in numbers:
        Image.new("RGB", (16, 4), (n, n, n)).save(frames / f"{n}.jpg")
        mask = np.zeros((4, 16), np.uint8)
        mask[1, n] = 1
        Image.fromarray(mask).save(annotations / f"{n}.png")
    return DavisDataset(root, sequences=["seq"])


def test_masks_pair_with_frames_by_frame_number(tmp_path):
    """Sorted by name, 10.png came before 8.png: the first annotation was frame 10's."""
    ds = _unpadded_tree(tmp_path / "DAVIS", range(8, 13))
    assert [p.stem for p in ds.masks("seq")] == [p.stem for p in ds.frames("seq")] == ["8", "9", "10", "11", "12"]
    ds.check_sequence("seq")
    assert np.argwhere(ds.first_mask("seq")).tolist() == [[1, 8]]


def test_score_davis_leaves_out_the_last_frame_by_number(tmp_path):
    """Frames 0..11 unpadded: sorted by name the last was 9.png, so 11.png was scored and 9.png not."""
    ds = _unpadded_tree(tmp_path / "DAVIS", range(12))
    results = tmp_path / "results" / "seq"
    results.mkdir(parents=True)
    annotations = ds.root / "Annotations" / "480p" / "seq"
    for n in range(1, 11):  # exactly the scored frames' predictions
        shutil.copy(annotations / f"{n}.png", results / f"{n}.png")
    scores = score_davis(ds.root, results.parent, sequences=["seq"], per_frame=True, progress=False)
    assert scores["J-Mean"] == 1.0 and len(scores["per_object"]["seq_1"]["J_per_frame"]) == 10


def test_annotations_named_oddly_or_twice_are_refused_as_frames_are(tmp_path):
    """...and named as annotations: the errors spoke of frames in a folder of masks."""
    ds = _unpadded_tree(tmp_path / "DAVIS", range(3))
    annotations = ds.root / "Annotations" / "480p" / "seq"
    shutil.copy(annotations / "1.png", annotations / "01.png")
    with pytest.raises(InputError) as info:
        ds.masks("seq")
    assert info.value.path == annotations and info.value.problem == (
        "1 annotation(s) named more than once (01.png and 1.png): annotations are ordered by the numbers in "
        "their names, so the order of these is not known. Keep one image per annotation (move the others "
        "out of the folder)")
    (annotations / "01.png").rename(annotations / "preview.png")
    with pytest.raises(InputError) as info:
        ds.masks("seq")
    assert info.value.problem == (
        "1 image(s) not named like its 3 annotations (0.png, ...): preview.png. They would be read as "
        "annotations: move them out of the folder (or rename them like the others if they are annotations)")
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(annotations / "0.png", annotations / name)
    with pytest.raises(InputError, match="do not tell the annotations from other images. Keep one video's "
                                         "annotations in the folder"):
        ds.masks("seq")
