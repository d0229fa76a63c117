"""Heatmap codec: exact round trip to sub-cell precision, pixel-centre convention, FIRST.json, skeletons."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import PositionCodes

from vidcorr import api
from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.evaluate.jhmdb import jhmdb_preset
from vidcorr.keypoints import CODECS, HeatmapCodec, propagate_keypoints, read_keypoints_json
from vidcorr.labels import downsample_labels
from vidcorr.presets import customised_preset, get_preset
from vidcorr.propagate import Propagator
from vidcorr.viz_keypoints import draw_skeleton

FRAME_HW = (240, 320)  # JHMDB frames
FEAT_HW = (40, 40)  # square 320 input at stride 8
CELL = np.array([FRAME_HW[1] / FEAT_HW[1], FRAME_HW[0] / FEAT_HW[0]])  # (x, y) pixels per cell


def _round_trip(codec: HeatmapCodec, points: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Encode at frame size, downsample like the propagator does, decode: no propagation."""
    labels = codec.encode(points, FRAME_HW, FEAT_HW)
    small = downsample_labels(labels, FEAT_HW, mode)
    return codec.decode(small, FRAME_HW)


def _cell_centres(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Pixel coordinates of feature-cell centres (pixel centres at integers)."""
    return np.stack([(ix + 0.5) * CELL[0] - 0.5, (iy + 0.5) * CELL[1] - 0.5], axis=1)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize(("topk", "offset"), [(5, 0.0), (9, 0.0), (4, 0.5)])
def test_round_trip_exact_when_the_topk_set_is_symmetric(topk, offset, mode):
    """A cell centre with its 4 (top-5) or 8 (top-9) neighbours, or a point midway between four
    centres (top-4): the weighted average has no truncation bias, so any error would come from
    the pixel <-> cell mapping. There is none."""
    ix, iy = np.array([0, 3, 17, 30]) + offset, np.array([0, 5, 20, 33]) + offset
    points = _cell_centres(ix, iy)
    coords, visible = _round_trip(HeatmapCodec(topk=topk), points, mode)
    assert visible.all()
    np.testing.assert_allclose(coords[1:], points[1:], atol=1e-4)
    # at the frame corner the neighbourhood is cut: still within the protocol's bias
    assert np.abs(coords[0] - points[0]).max() < 0.5 * CELL.max()


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize(("name", "bound"), [("uvc", 0.065), ("crw", 0.17)])
def test_round_trip_off_grid_within_topk_bias(name, bound, mode):
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(10, 310, 150), rng.uniform(10, 230, 150)], axis=1)
    coords, visible = _round_trip(CODECS[name], points, mode)
    assert visible.all()
    error_cells = np.abs(coords - points) / CELL
    # top-5 / top-3 weighted averages of a sampled sigma-0.5 Gaussian: <= 0.062 / 0.167 cells
    assert error_cells.max() < bound
    assert error_cells.mean() < bound / 2


def test_gaussian_peak_is_the_cell_containing_the_point():
    """Pixel-centre convention: the brightest cell is the one whose pixels hold the point."""
    codec = CODECS["crw"]
    points = np.array([[0.0, 0.0], [7.9, 5.9], [8.0, 6.0], [319.0, 239.0], [100.3, 50.7]])
    small = downsample_labels(codec.encode(points, FRAME_HW, FEAT_HW), FEAT_HW, "nearest")
    for j, (x, y) in enumerate(points):
        peak = int(small[1 + j].flatten().argmax())
        assert (peak // FEAT_HW[1], peak % FEAT_HW[1]) == (int((y + 0.5) // CELL[1]), int((x + 0.5) // CELL[0]))


def test_background_channel_is_one_where_no_joint_reaches():
    codec = CODECS["uvc"]
    small = downsample_labels(codec.encode(np.array([[100.0, 100.0], [200.0, 50.0]]), FRAME_HW, FEAT_HW),
                              FEAT_HW, "nearest")
    joints_zero = small[1:].sum(0) == 0
    assert torch.equal(small[0] == 1, joints_zero)
    assert torch.all((small[0] == 0) | (small[0] == 1))
    # Gaussians are cut at 3 sigma = 1.5 cells: a disc of 9 cells around an on-centre point
    assert int((small[1] > 0).sum()) <= 9


def test_invisible_joint_has_empty_channel_and_decodes_as_missing():
    codec = CODECS["crw"]
    points = np.array([[100.0, 100.0], [200.0, 50.0]])
    labels = codec.encode(points, FRAME_HW, FEAT_HW, visible=np.array([True, False]))
    assert labels[2].sum() == 0
    coords, visible = codec.decode(downsample_labels(labels, FEAT_HW, "nearest"), FRAME_HW)
    assert visible.tolist() == [True, False]
    assert np.isnan(coords[1]).all() and np.isfinite(coords[0]).all()


def test_stt_pixel_sigma_decodes_at_full_resolution_within_half_a_cell():
    codec = CODECS["stt"]
    assert (codec.sigma, codec.sigma_unit, codec.decode_at) == (4.0, "pixel", "original")
    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(20, 300, 50), rng.uniform(20, 220, 50)], axis=1)
    coords, visible = _round_trip(codec, points, "bilinear")
    assert visible.all()
    # the propagated map lives on the feature grid: full-res top-5 snaps towards cell centres
    assert (np.abs(coords - points) / CELL).max() < 0.5


def test_minmax_does_not_move_an_unpropagated_joint():
    points = np.array([[123.4, 77.7]])
    plain = HeatmapCodec(minmax=False)
    normed = HeatmapCodec(minmax=True)
    small = downsample_labels(plain.encode(points, FRAME_HW, FEAT_HW), FEAT_HW, "nearest")
    np.testing.assert_allclose(plain.decode(small, FRAME_HW)[0], normed.decode(small, FRAME_HW)[0], atol=1e-6)


def test_encode_refuses_features_finer_than_half_the_frame():
    with pytest.raises(ValueError, match="finer than half"):
        CODECS["crw"].encode(np.array([[5.0, 5.0]]), (30, 40), (20, 20))


def _write(tmp_path, data) -> str:
    path = tmp_path / "first.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_read_keypoints_json_defaults_and_fields(tmp_path):
    kps = read_keypoints_json(_write(tmp_path, {"keypoints": [[1, 2], [3.5, 4]]}))
    assert kps.points.tolist() == [[1, 2], [3.5, 4]]
    assert kps.names == ["0", "1"] and kps.edges == [] and kps.visible.tolist() == [True, True]
    full = read_keypoints_json(_write(tmp_path, {"keypoints": [[1, 2], [3, 4]], "names": ["a", "b"],
                                                 "edges": [[0, 1]], "visible": [True, False]}))
    assert full.edges == [(0, 1)] and full.visible.tolist() == [True, False]


def test_read_keypoints_json_takes_a_byte_order_mark(tmp_path):
    """A file saved by a Windows editor starts with one: it was refused as "not valid JSON"."""
    path = tmp_path / "kps.json"
    path.write_bytes('{"keypoints": [[1, 2]], "names": ["nez"]}'.encode("utf-8-sig"))
    kps = read_keypoints_json(path)
    assert kps.points.tolist() == [[1, 2]] and kps.names == ["nez"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_read_keypoints_json_takes_utf16_text(tmp_path, encoding):
    """Windows PowerShell's `python make_kps.py > kps.json` writes UTF-16: it was refused as "a binary
    file ... a mask goes to --mask", which it is not."""
    path = tmp_path / "kps.json"
    path.write_bytes('{"keypoints": [[1, 2]], "names": ["nez"]}'.encode(encoding))
    kps = read_keypoints_json(path)
    assert kps.points.tolist() == [[1, 2]] and kps.names == ["nez"]


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not valid JSON"),
    ({"points": [[1, 2]]}, '"keypoints" list'),
    ({"keypoints": []}, "non-empty list"),
    ({"keypoints": [[1, 2, 3]]},
     r'entry 0 is \[1, 2, 3\], not an \[x, y\] pair .*\[x, y, v\] triplet\? give \[x, y\], and true where v > 0'),
    ({"keypoints": [[1, 2], None, [1, "x"]]}, r'entry 2 is \[1, "x"\], not an \[x, y\] pair of numbers'),
    ({"keypoints": [[1, 2], [True, 3]]}, r"entry 1 is \[true, 3\]"),
    ({"keypoints": [{"x": 1, "y": 2}]}, r'entry 0 is \{"x": 1, "y": 2\}'),
    ({"keypoints": [10, 20, 2, 30, 40, 2]}, "flat list of 6 numbers; give one \\[x, y\\] pair per keypoint"),
    ({"keypoints": [[1, 2]], "names": ["a", "b"]}, '"names"'),
    ({"keypoints": [[1, 2]], "edges": [[0, 1]]}, '"edges"'),
    ({"keypoints": [[1, 2], [3, 4]], "edges": [[0, 0]]}, '"edges" must be .* two different keypoint indices'),
    ({"keypoints": [[1, 2], [3, 4]], "edges": [[True, False]]}, '"edges"'),
    ({"keypoints": [[1, 2]], "visible": [1]}, '"visible"'),
    ({"keypoints": [[1, 2]], "visible": "yes"}, '"visible" must be a list of 1 booleans$'),
    # 0/1 (COCO's v) was refused without saying what to write
    ({"keypoints": [[1, 2], [3, 4]], "visible": [2, 0]},
     r'"visible" must be a list of 2 booleans, true / false, not numbers \(COCO\'s v: true where v > 0\)$'),
])
def test_read_keypoints_json_rejects_malformed_files(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match=message) as err:
        read_keypoints_json(path)
    assert str(path) in str(err.value)


def test_read_keypoints_json_names_a_matlab_file(data_dir):
    """JHMDB's joint_positions.mat given as --keypoints was refused as "not valid JSON: 'utf-8'
    codec can't decode byte ...", which did not say what to give instead."""
    mat = next((data_dir / "jhmdb").glob("joint_positions/*/*/joint_positions.mat"))
    with pytest.raises(InputError, match=r"is a MATLAB file, not the JSON file --keypoints takes.*docs/keypoints.md"):
        read_keypoints_json(mat)


def test_null_and_nan_keypoints_are_absent_unless_marked_visible(tmp_path):
    """null (and NaN, as Python's json writes np.nan) means "no position": not visible by default.
    Marked visible it is a contradiction, named with its index, name and the file; Infinity never
    is a position. These were refused as "non-finite", naming no joint."""
    kps = read_keypoints_json(_write(tmp_path, '{"keypoints": [[1, 2], null, [NaN, 4]], "names": ["a", "b", "c"]}'))
    assert kps.visible.tolist() == [True, False, False]
    assert kps.points[0].tolist() == [1, 2] and np.isnan(kps.points[1:]).any(axis=1).all()
    hidden = _write(tmp_path, {"keypoints": [[1, 2], None], "visible": [True, False]})
    assert read_keypoints_json(hidden).visible.tolist() == [True, False]
    path = _write(tmp_path, {"keypoints": [[1, 2], None], "names": ["neck", "belly"], "visible": [True, True]})
    with pytest.raises(InputError, match=r"first.json: keypoint 1 \(belly\) at \(nan, nan\) has no position "
                                         r"\(NaN\) but is marked visible.*\"visible\": false"):
        read_keypoints_json(path)
    with pytest.raises(InputError, match=r"keypoint 0 at \(inf, 2\) has an infinite coordinate"):
        read_keypoints_json(_write(tmp_path, '{"keypoints": [[Infinity, 2]], "visible": [false]}'))


@pytest.mark.parametrize("first", [{"keypoints": [None, None]},
                                   {"keypoints": [[10, 12], [50, 40]], "visible": [False, False]}])
def test_propagate_refuses_a_first_frame_without_a_visible_keypoint(tmp_path, capsys, first):
    """`vidcorr propagate --keypoints`: every keypoint absent or hidden wrote a keypoints.json of nulls
    and exited 0. Now one line naming the file, exit 2, and no output folder."""
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for t in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(frames / f"{t:05d}.png")
    path, out = _write(tmp_path, first), tmp_path / "out"
    code = main(["propagate", str(frames), "--keypoints", str(path), "--out", str(out), "--features", "lab-pixels"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{path}: no keypoint is visible in the first frame (all 2 have no position or are marked not " \
           "visible): there is nothing to propagate" in err
    assert not out.exists()


def test_a_nan_first_keypoint_is_not_propagated_or_marked_visible():
    """A NaN keypoint used to be drawn as a NaN heatmap and yielded as visible on frame 0."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8)] * 3
    points = np.array([[40.0, 50.0], [np.nan, np.nan], [200.0, 100.0]])
    preset = customised_preset("crw", n_previous=2)
    got = list(propagate_keypoints(Propagator(PositionCodes(), preset), frames, points, CODECS["crw"]))
    hidden = np.where(np.isnan(points), 7.0, points)  # the same joint at some position, marked invisible
    want = list(propagate_keypoints(Propagator(PositionCodes(), preset), frames, hidden, CODECS["crw"],
                                    np.array([True, False, True])))
    for (_, coords, visible), (_, w_coords, w_visible) in zip(got, want, strict=True):
        assert visible.tolist() == w_visible.tolist() == [True, False, True]
        np.testing.assert_array_equal(coords, w_coords)  # NaN for joint 1, the others untouched
    with pytest.raises(InputError, match=r"keypoint 1 at \(nan, nan\) has no position \(NaN\) but is marked "
                                         r"visible.*visible\[1\] = False"):
        next(propagate_keypoints(Propagator(PositionCodes(), preset), frames, points, CODECS["crw"],
                                 np.array([True, True, True])))


def test_draw_skeleton_draws_visible_joints_and_edges_only():
    frame = np.zeros((60, 80, 3), np.uint8)
    points = np.array([[10.0, 10.0], [60.0, 40.0], [30.0, 50.0]])
    drawn = draw_skeleton(frame, points, np.array([True, True, False]), [(0, 1), (1, 2)])
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8 and not frame.any()
    assert drawn[10, 10].any() and drawn[40, 60].any() and drawn[25, 35].any()  # joints and the 0-1 edge
    assert not drawn[50, 30].any() and not drawn[45, 45].any()  # hidden joint 2 and its edge


@pytest.mark.parametrize("name", ["crw", "uvc", "stt"])
def test_still_video_keeps_every_joint_in_place(name):
    """Encode -> Propagator -> decode end to end: with nothing moving and features that match each
    cell to itself, every frame decodes to the first-frame joints (up to the codec's round trip)."""
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8)] * 5
    points = np.stack([rng.uniform(20, 300, 15), rng.uniform(20, 220, 15)], axis=1)
    propagator = Propagator(PositionCodes(), jhmdb_preset(get_preset(name)))
    out = list(propagate_keypoints(propagator, frames, points, CODECS[name]))
    assert len(out) == 5 and out[0][0] is frames[0]
    np.testing.assert_array_equal(out[0][1], points)
    reference, _ = _round_trip(CODECS[name], points, jhmdb_preset(get_preset(name)).label_downsample)
    for _, coords, visible in out[1:]:
        assert visible.all()
        np.testing.assert_allclose(coords, reference, atol=0.05)


@pytest.mark.parametrize("name", ["uvc", "timecycle"])
def test_small_frames_enlarged_by_the_preset_get_an_input_error_with_a_size(name):
    """uvc / timecycle resize 64x48 frames to 480 / 320: cell heatmaps cannot be drawn. The user gets
    an InputError (a one-line CLI message, exit 2) that names --size, from the API at the call."""
    frames = [np.zeros((48, 64, 3), np.uint8)] * 2
    points = np.array([[20.0, 20.0]])
    propagator = Propagator(PositionCodes(), get_preset(name))
    with pytest.raises(InputError, match=r"64x48 frames .* --size 48"):
        next(propagate_keypoints(propagator, frames, points, CODECS[name]))
    with pytest.raises(InputError, match="--size 48"):
        api.propagate_keypoints(frames, points, encoder=PositionCodes(), preset=name)  # before iterating
    out = list(api.propagate_keypoints(frames, points, encoder=PositionCodes(), preset=name, size=48))
    assert len(out) == 2 and out[1][2].all()


@pytest.mark.parametrize("name", ["first.png", "first.npy"])
def test_read_keypoints_json_names_a_binary_file(tmp_path, name):
    """A mask PNG or a .npy given as --keypoints was refused as "not valid JSON: 'utf-8' codec can't
    decode byte 0x89 ...", which did not say what the file is or where it belongs."""
    path = tmp_path / name
    if name.endswith(".png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    else:
        np.save(path, np.zeros((1, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"is a binary file, not the JSON text --keypoints takes.*--mask.*--labels"):
        read_keypoints_json(path)
