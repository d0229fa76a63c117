"""OTB / VOT readers on the real data in ../shared/data/tracking and on malformed files."""

from __future__ import annotations

import numpy as np
import pytest
from tracking_helpers import blank_otb_sequence

from vidcorr.errors import InputError
from vidcorr.io.tracking import (
    OTB_ANNOTATED_RANGES,
    discover_sequences,
    load_sequence,
    polygon_to_box,
    read_otb_boxes,
    read_vot_boxes,
    read_vot_polygons,
    region_corners,
    write_otb_boxes,
)


@pytest.fixture(scope="session")
def tracking_dir(data_dir):
    return data_dir / "tracking"


def test_real_otb(tracking_dir):
    seqs = discover_sequences(tracking_dir / "otb", "otb")
    assert [s.name for s in seqs] == ["Crossing", "Soccer"]
    crossing, soccer = seqs
    assert (len(crossing), len(soccer)) == (120, 392)
    # Crossing is tab separated, Soccer comma separated; both 1-based in the file.
    np.testing.assert_array_equal(crossing.boxes[0], [204, 150, 17, 50])
    np.testing.assert_array_equal(soccer.boxes[0], [301, 134, 67, 81])
    assert crossing.frames_dir.name == "img"


def test_real_vot(tracking_dir):
    seqs = discover_sequences(tracking_dir / "vot2015", "vot", ["car1", "ball1"])
    assert [s.name for s in seqs] == ["car1", "ball1"] and [len(s) for s in seqs] == [252, 105]
    np.testing.assert_allclose(seqs[1].boxes[0], [492, 417, 47, 46])  # axis-aligned corners of line 1
    np.testing.assert_allclose(seqs[0].boxes[1], [239.32, 166.72, 124.36, 115.56])  # rotated polygon


def test_vot_toolkit_layout_with_color_folder(tracking_dir, tmp_path, caplog):
    """VOT2017 on: frames in <seq>/color/ beside groundtruth.txt (and the toolkit's `sequence` file)."""
    src = tracking_dir / "vot2015" / "ball1"
    (tmp_path / "ball1" / "color").mkdir(parents=True)
    for frame in sorted(src.glob("*.jpg"))[:3]:
        (tmp_path / "ball1" / "color" / frame.name).symlink_to(frame)
    lines = (src / "groundtruth.txt").read_text().splitlines()[:3]
    _write(tmp_path / "ball1" / "groundtruth.txt", "\n".join(lines) + "\n")
    _write(tmp_path / "ball1" / "sequence", "channels.color=color/%08d.jpg\n")
    (seq,) = discover_sequences(tmp_path, "vot")
    assert seq.frames_dir.name == "color" and len(seq) == 3
    assert next(iter(seq.open_frames())).shape == (720, 1280, 3)
    assert "frames both in color/" not in caplog.text
    for frame in sorted(src.glob("*.jpg"))[:3]:  # a second extraction beside groundtruth.txt
        (tmp_path / "ball1" / frame.name).symlink_to(frame)
    (seq,) = discover_sequences(tmp_path, "vot")
    assert seq.frames_dir.name == "color"
    said = "ball1: frames both in color/ and beside groundtruth.txt (3, e.g. 00000001.jpg); reading color/"
    assert said in caplog.text


def test_polygon_to_box():
    np.testing.assert_allclose(polygon_to_box(np.array([3, 1, 7, 2, 6, 9, 2, 8.0])), [2, 1, 5, 8])


def test_region_corners_go_round_the_box(tmp_path):
    """An x, y, w, h region (1, 2, 3, 4) is the outline (1, 2) -> (4, 2) -> (4, 6) -> (1, 6), clockwise
    in image coordinates, not a bow tie crossing itself; a polygon line is kept as written."""
    np.testing.assert_array_equal(region_corners(np.array([1.0, 2, 3, 4])), [1, 2, 4, 2, 4, 6, 1, 6])
    path = _write(tmp_path / "groundtruth.txt", "1,2,3,4\n3,1,7,2,6,9,2,8\n")
    np.testing.assert_array_equal(read_vot_polygons(path), [[1, 2, 4, 2, 4, 6, 1, 6], [3, 1, 7, 2, 6, 9, 2, 8]])


def _write(path, text):
    path.write_text(text)
    return path


def test_mixed_separators_and_round_trip(tmp_path):
    path = _write(tmp_path / "gt.txt", "1,2,3,4\n5\t6\t7\t8\n9 10,\t11  12\n\n\n")
    boxes = read_otb_boxes(path)
    np.testing.assert_array_equal(boxes, [[0, 1, 3, 4], [4, 5, 7, 8], [8, 9, 11, 12]])
    write_otb_boxes(tmp_path / "out.txt", boxes)
    np.testing.assert_array_equal(read_otb_boxes(tmp_path / "out.txt"), boxes)
    assert (tmp_path / "out.txt").read_text().splitlines()[0] == "1.00,2.00,3.00,4.00"


def test_byte_order_mark_and_crlf(tmp_path):
    """A ground truth saved by a Windows editor (BOM, CRLF) was refused: line 1 read '\ufeff1'."""
    path = tmp_path / "gt.txt"
    path.write_bytes("\ufeff1,2,3,4\r\n5\t6\t7\t8\r\n".encode("utf-8"))
    np.testing.assert_array_equal(read_otb_boxes(path), [[0, 1, 3, 4], [4, 5, 7, 8]])


def test_vot_accepts_four_values(tmp_path):
    path = _write(tmp_path / "groundtruth.txt", "0,0,4,0,4,3,0,3\n10.5,20,30,40\n")
    np.testing.assert_allclose(read_vot_boxes(path), [[0, 0, 4, 3], [10.5, 20, 30, 40]])


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        (read_otb_boxes, "1,2,3,4\n1,2,x,4\n", "line 2: cannot parse"),
        (read_otb_boxes, "1,2,3,4\n1,2,3\n", "line 2: expected 4 values, got 3"),
        (read_otb_boxes, "1,2,3,4\n1,2,inf,4\n", "line 2: infinite value"),
        (read_otb_boxes, "1,2,3,4\n\n1,2,3,4\n", "line 2: empty line"),
        (read_otb_boxes, "1,2,0,4\n1,2,3,4\n", "line 1: the first frame needs a box of positive size"),
        (read_otb_boxes, "NaN,NaN,NaN,NaN\n1,2,3,4\n", "line 1: the first frame needs"),
        (read_otb_boxes, "", "empty"),
        (read_vot_boxes, "0,0,4,0,4,3,0,3\n1,2,3,4,5,6\n", "line 2: expected 8 or 4 values, got 6"),
        (read_vot_boxes, "1,1,1,1,1,1,1,1\n0,0,4,0,4,3,0,3\n", "line 1: the first frame needs"),
        (read_vot_boxes, "m12,8,40,30,0,5,3,7\n", "line 1: a segmentation mask .*not supported"),
    ],
)
def test_malformed_annotations(tmp_path, reader, text, message):
    path = _write(tmp_path / "gt.txt", text)
    with pytest.raises(InputError, match=message) as info:
        reader(path)
    assert info.value.path == path


def test_frames_without_a_valid_box_are_kept(tmp_path):
    """NaN rows (an absent target) and zero-size rows are frames without a box, not errors: the metric
    scores them as the OTB toolkit does (tests/test_tracking_metrics.py)."""
    path = _write(tmp_path / "gt.txt", "1,2,3,4\nNaN,NaN,NaN,NaN\n0,0,0,0\nnan\t5\t6\t7\n5,6,7,8\n")
    boxes = read_otb_boxes(path)
    assert boxes.shape == (5, 4)
    np.testing.assert_array_equal(boxes[[0, 2, 4]], [[0, 1, 3, 4], [-1, -1, 0, 0], [4, 5, 7, 8]])
    assert np.isnan(boxes[1]).all() and np.isnan(boxes[3, 0]) and boxes[3, 3] == 7
    vot = _write(tmp_path / "groundtruth.txt", "0,0,4,0,4,3,0,3\n1,1,1,1,1,1,1,1\nnan,nan,nan,nan,nan,nan,nan,nan\n")
    vot_boxes = read_vot_boxes(vot)
    np.testing.assert_array_equal(vot_boxes[1], [1, 1, 0, 0])  # degenerate polygon: size 0
    assert np.isnan(vot_boxes[2]).all()


def _otb_sequence(root, name, n_frames, n_lines):
    """16 x 12 frames, the box 1,1,4,4 on each of n_lines lines."""
    return blank_otb_sequence(root, name, n_frames, (16, 12), "1,1,4,4\n" * n_lines)


def test_frame_count_mismatch_names_file_and_line(tmp_path):
    _otb_sequence(tmp_path, "short", 3, 5)
    with pytest.raises(InputError, match=r"5 annotation lines but 3 frames.*line 4 has no frame") as info:
        load_sequence(tmp_path / "short", "otb")
    assert info.value.path.name == "groundtruth_rect.txt"
    _otb_sequence(tmp_path, "long", 4, 2)
    with pytest.raises(InputError, match="line 3 has no annotation"):
        load_sequence(tmp_path / "long", "otb")


@pytest.mark.parametrize("first_line", ["17,1,4,4", "1,13,4,4", "-3,1,4,4", "1,-8,4,9"])
def test_first_box_outside_the_first_frame_is_refused(tmp_path, first_line):
    """A first box that shares no pixel with the 16x12 first frame (1-based, so x = 17 starts past
    the last column and x = -3 with w = 4 ends at 0) gave `eval otb` a ValueError traceback when
    tracking reached the sequence; the reader refuses it naming the file and line 1."""
    folder = _otb_sequence(tmp_path, "seq", 2, 2)
    _write(folder / "groundtruth_rect.txt", f"{first_line}\n1,1,4,4\n")
    with pytest.raises(InputError, match="line 1: the first box lies outside the 16x12 first frame 0001.jpg") as info:
        load_sequence(folder, "otb")
    assert info.value.path == folder / "groundtruth_rect.txt"
    _write(folder / "groundtruth_rect.txt", "16,12,4,4\n1,1,4,4\n")  # its last pixel only: fine
    np.testing.assert_array_equal(load_sequence(folder, "otb").boxes[0], [15, 11, 4, 4])


def test_two_target_folders_are_one_sequence_per_target(tmp_path):
    """OTB-2015's Jogging / Skating2 hold groundtruth_rect.1.txt and .2.txt: sequences Jogging.1 and
    Jogging.2 (the OTB toolkit's names) over the same frames; Human4's only target file is .2 (and
    it has an empty groundtruth_rect1.txt, which is not an annotation)."""
    _otb_sequence(tmp_path, "Jogging", 3, 3).joinpath("groundtruth_rect.txt").rename(
        tmp_path / "Jogging" / "groundtruth_rect.1.txt")
    _write(tmp_path / "Jogging" / "groundtruth_rect.2.txt", "5,6,7,8\n" * 3)
    _otb_sequence(tmp_path, "Human4", 2, 2).joinpath("groundtruth_rect.txt").rename(
        tmp_path / "Human4" / "groundtruth_rect.2.txt")
    _write(tmp_path / "Human4" / "groundtruth_rect1.txt", "")
    _otb_sequence(tmp_path, "Soccer", 2, 2)
    seqs = discover_sequences(tmp_path, "otb")
    assert [s.name for s in seqs] == ["Human4.2", "Jogging.1", "Jogging.2", "Soccer"]
    jogging1, jogging2 = seqs[1:3]
    assert jogging1.frame_files == jogging2.frame_files and len(jogging1.frame_files) == 3
    np.testing.assert_array_equal(jogging2.boxes[0], [4, 5, 7, 8])
    assert jogging2.annotation.name == "groundtruth_rect.2.txt"
    assert [s.name for s in discover_sequences(tmp_path, "otb", ["Jogging.2"])] == ["Jogging.2"]
    with pytest.raises(InputError, match="unknown sequence.*Jogging; found Human4.2, Jogging.1, Jogging.2"):
        discover_sequences(tmp_path, "otb", ["Jogging"])



def test_a_folder_named_like_a_target_is_not_silently_dropped(tmp_path):
    """A folder Jogging.1 (a target copied out by hand) beside Jogging/groundtruth_rect.1.txt: both
    are the sequence Jogging.1, and one of them was left out without a word."""
    _otb_sequence(tmp_path, "Jogging.1", 3, 3)
    _otb_sequence(tmp_path, "Jogging", 3, 3).joinpath("groundtruth_rect.txt").rename(
        tmp_path / "Jogging" / "groundtruth_rect.1.txt")
    with pytest.raises(InputError, match="two sequences named Jogging.1: .*groundtruth_rect.* and .*groundtruth_rect"):
        discover_sequences(tmp_path, "otb")

def test_otb_annotated_range_picks_its_frames(tmp_path, monkeypatch):
    """A sequence of OTB_ANNOTATED_RANGES (David: frames 300-770 of 770) takes its annotated frames
    when both counts match; another count is still refused (another dataset's folder of that name)."""
    monkeypatch.setitem(OTB_ANNOTATED_RANGES, "David", (6, 3, 2))
    _otb_sequence(tmp_path, "David", 6, 3)
    seq = load_sequence(tmp_path / "David", "otb")
    assert [f.name for f in seq.frame_files] == ["0002.jpg", "0003.jpg", "0004.jpg"] and len(seq) == 3
    assert len(list(seq.open_frames())) == 3
    (tmp_path / "David" / "img" / "0006.jpg").unlink()
    with pytest.raises(InputError, match="3 annotation lines but 5 frames"):
        load_sequence(tmp_path / "David", "otb")
    assert set(OTB_ANNOTATED_RANGES) == {"David", "Diving", "Football1", "Freeman3", "Freeman4"}


def test_discovery_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_sequences(tmp_path / "nope", "otb")
    (tmp_path / "not-a-sequence").mkdir()
    with pytest.raises(InputError, match="no sequence folders"):
        discover_sequences(tmp_path, "otb")
    _otb_sequence(tmp_path, "good", 2, 2)
    assert [s.name for s in discover_sequences(tmp_path, "otb")] == ["good"]
    with pytest.raises(InputError, match="unknown sequence"):
        discover_sequences(tmp_path, "otb", ["good", "other"])
