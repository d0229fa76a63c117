"""VIP reader, part propagation + mIoU / AP_part end to end on a VIP-layout fixture built from real
DAVIS-2016 frames (the person masks cut into part instances), and on the VIPSeg snippet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import PositionCodes

import vidcorr.cli
import vidcorr.cli.eval_cmd
from vidcorr.errors import InputError
from vidcorr.evaluate.vip import first_frame_labels, run_vip, vip_preset
from vidcorr.evaluate.vip_results import score_vip
from vidcorr.io.masks import read_mask, write_indexed_png
from vidcorr.io.vip import VIP_CLASSES, VipDataset
from vidcorr.io.vip_predictions import write_instance_map
from vidcorr.labels import decode_label_map, downsample_labels
from vidcorr.models import build_encoder
from vidcorr.presets import get_preset

SEQUENCES = {"dance-twirl": [0, 4, 8], "breakdance": [0, 3, 6]}  # sparse frames, like VIP's 1 in 25
SIZE = (120, 214)  # (H, W): DAVIS 480p at a quarter
BANDS = (2, 5, 9)  # hair, upper-clothes, pants: top / middle / bottom of each "person"


def _parts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """Cut a binary mask into 2 people (left / right of the median column) x 3 bands.

    Returns (class map, instance map, [(instance id, class, human)]); row 0 is 255 (ignored).
    """
    rows, cols = np.nonzero(mask)
    cut_rows = np.quantile(rows, [1 / 3, 2 / 3])
    split = np.median(cols)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    band = np.digitize(yy, cut_rows)
    human = (xx >= split).astype(int)
    instance = np.where(mask, 1 + human * 3 + band, 0)
    category = np.where(mask, np.array(BANDS)[band], 0).astype(np.uint8)
    category[0] = 255
    table = [(1 + h * 3 + b, BANDS[b], h + 1) for h in range(2) for b in range(3)]
    return category, instance.astype(np.uint8), table


@pytest.fixture(scope="module")
def vip_root(tmp_path_factory, davis2016_root):
    root = tmp_path_factory.mktemp("vip") / "VIP_Fine"
    for video, indices in SEQUENCES.items():
        for i in indices:
            name = f"{i * 25 + 1:012d}"  # VIP frame names: 000000000001, 000000000026, ...
            image = Image.open(davis2016_root / "JPEGImages" / "480p" / video / f"{i:05d}.jpg")
            image = image.resize(SIZE[::-1], Image.BILINEAR)
            (root / "Images" / video).mkdir(parents=True, exist_ok=True)
            image.save(root / "Images" / video / f"{name}.jpg", quality=95)
            mask = read_mask(davis2016_root / "Annotations" / "480p" / video / f"{i:05d}.png")
            mask = np.array(Image.fromarray(mask).resize(SIZE[::-1], Image.NEAREST)) > 0
            category, instance, table = _parts(mask)
            write_indexed_png(root / "Annotations" / "Category_ids" / video / f"{name}.png", category)
            write_indexed_png(root / "Annotations" / "Instance_ids" / video / f"{name}.png", instance)
            (root / "Annotations" / "Instance_ids" / video / f"{name}.txt").write_text(
                "".join(f"{i} {c} {h}\n" for i, c, h in table))
    (root / "lists").mkdir()
    # UVC reads the last path component of each line
    (root / "lists" / "val_videos.txt").write_text("".join(f"VIP_Fine/Images/{v}\n" for v in SEQUENCES))
    return root


@pytest.fixture(scope="module")
def vipseg_root(data_dir):
    return data_dir / "vipseg-snippet"


def test_reads_the_vip_layout(vip_root):
    dataset = VipDataset(vip_root.parent)  # the parent of VIP_Fine works too
    assert dataset.layout == "vip" and dataset.num_classes == 20 and dataset.class_names == VIP_CLASSES
    assert [v.name for v in dataset.videos] == list(SEQUENCES)
    frame = dataset.videos[0].frames[1]
    assert frame.name == "000000000101"
    category = dataset.category_map(frame)
    assert category.shape == SIZE and set(np.unique(category)) <= {0, 2, 5, 9, 255}
    ids, table = dataset.instance_map(frame)
    assert table == {1: 2, 2: 5, 3: 9, 4: 2, 5: 5, 6: 9}
    assert set(np.unique(ids)) <= {0, 1, 2, 3, 4, 5, 6}


def test_an_unknown_video_names_the_valid_ones(vip_root, vipseg_root):
    """A misspelt --videos name said only that it was unknown; the valid names are listed, as eval
    davis lists a split's sequences (the first 10 and how many)."""
    with pytest.raises(InputError) as error:
        VipDataset(vip_root, videos=["breakdance", "brekdance"])
    assert str(error.value) == (f"{vip_root}: unknown video(s) brekdance; lists/val_videos.txt lists 2: "
                                "dance-twirl, breakdance")
    with pytest.raises(InputError) as error:
        VipDataset(vipseg_root, videos=["nope"])
    assert str(error.value) == f"{vipseg_root}: unknown video(s) nope; images/ holds 1: 12_1mWNahzcsAc"


def test_reads_the_vipseg_snippet_as_categories_and_thing_instances(vipseg_root):
    dataset = VipDataset(vipseg_root)
    assert dataset.layout == "vipseg" and len(dataset) == 1 and len(dataset.videos[0].frames) == 4
    first, second = dataset.videos[0].frames[:2]
    # segment ids change meaning between frames; categories do not
    assert set(np.unique(dataset.category_map(first))) == {7, 14, 60, 63, 66, 255}
    assert {7, 14, 60, 63, 66} <= set(np.unique(dataset.category_map(second)))
    ids, things = dataset.instance_map(first)
    assert things == {2: 63, 4: 60, 6: 63, 7: 60} and set(np.unique(ids)) == {0, 2, 4, 6, 7}


def _first(root, annotations, suffix):
    """The first frame's annotation file of the last video (the one the malformed-file test reads)."""
    return sorted((root / "Annotations" / annotations / "breakdance").glob(f"*.{suffix}"))[0]


def _copy_tree(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: (r / "lists" / "val_videos.txt").write_text("\n"), "video list is empty"),
    (lambda r: (r / "lists" / "val_videos.txt").write_text("nope\n"), "frames of video 'nope' not found"),
    (lambda r: _first(r, "Instance_ids", "txt").write_text("1 2\n"),
     "line 1: expected '<instance id> <class 1..19> <human id>'"),
    (lambda r: _first(r, "Instance_ids", "txt").write_text("1 25 1\n"),
     "line 1"),
    # "²" is isdigit: a raw ValueError from int()
    (lambda r: _first(r, "Instance_ids", "txt").write_text("1 \u00b2 1\n", encoding="utf-8"),
     "line 1: expected '<instance id> <class 1..19> <human id>', got '1 \u00b2 1'"),
    (lambda r: _first(r, "Category_ids", "png").unlink(),
     "class annotation not found"),
    # not text (a PNG's header; b"\xff\xfe..." is UTF-16 by its byte-order mark): a raw UnicodeDecodeError
    # that named no file
    (lambda r: (r / "lists" / "val_videos.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00"),
     r"val_videos\.txt: unreadable video list: not UTF-8 or UTF-16 text .*save it as UTF-8"),
    (lambda r: _first(r, "Instance_ids", "txt").write_bytes(b"1 2 \xe9\n"), r"\.txt: unreadable instance table"),
])
def test_rejects_malformed_vip_files(tmp_path, vip_root, edit, message):
    root = _copy_tree(vip_root, tmp_path / "VIP_Fine")
    edit(root)
    with pytest.raises(InputError, match=message):
        dataset = VipDataset(root)
        frame = dataset.videos[-1].frames[0]
        dataset.category_map(frame), dataset.instance_map(frame)


def test_a_video_list_saved_with_a_byte_order_mark(tmp_path, vip_root):
    """A Windows editor's BOM became part of the first name: its frames were "not found"."""
    root = _copy_tree(vip_root, tmp_path / "VIP_Fine")
    listed = root / "lists" / "val_videos.txt"
    names = [video.name for video in VipDataset(root).videos]
    listed.write_bytes(("\r\n".join(names) + "\r\n").encode("utf-8-sig"))
    assert [video.name for video in VipDataset(root).videos] == names


def test_rejects_unlisted_instances_and_out_of_range_classes(tmp_path, vip_root):
    root = _copy_tree(vip_root, tmp_path / "VIP_Fine")
    frame = VipDataset(root).videos[0].frames[0]
    frame.table.write_text("1 2 1\n")
    write_indexed_png(frame.category, np.full(SIZE, 30, np.uint8))
    dataset = VipDataset(root)
    with pytest.raises(InputError, match="instance id 2 of .* is not listed"):
        dataset.instance_map(frame)
    with pytest.raises(InputError, match="class id 30 outside 0..19"):
        dataset.category_map(frame)


def test_first_frame_labels_stack_present_classes_and_instances():
    category = np.array([[0, 2, 255], [9, 9, 2]], np.uint8)
    instances = np.array([[0, 4, 0], [7, 7, 4]])
    parts, labels = first_frame_labels(category, (instances, {4: 2, 7: 9}))
    assert parts.classes.tolist() == [0, 2, 9] and parts.instances.tolist() == [0, 4, 7]
    assert labels.shape == (6, 2, 3)
    assert labels[:3, 0, 2].sum() == 0  # ignored pixel: no class vote
    assert labels[3:].sum(0).eq(1).all()  # every pixel is in exactly one instance channel


def test_vip_variant_changes_only_the_protocol_knobs():
    assert vip_preset(get_preset("uvc")).n_previous == 1 and vip_preset(get_preset("uvc")).size.size == 560
    assert vip_preset(get_preset("crw")).n_previous == 4
    # CRW's test.py decodes at the frame it propagated, the 560 x 560 resize: argmax there, then
    # the class map goes to the GT's size (at native size, DAVIS, the two are one)
    assert vip_preset(get_preset("crw")).output_resize == "input" and get_preset("crw").output_resize == "original"
    assert vip_preset(get_preset("stt"), size=280).topk.radius == 16


def test_eval_end_to_end_on_the_fixture(tmp_path, vip_root):
    preset = vip_preset(get_preset("crw"), size=160)
    results = run_vip(build_encoder("lab-pixels"), preset, VipDataset(vip_root), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("mIoU", "AP_part", "AP_part@0.5", "AP_part_per_threshold", "per_class", "per_video",
                "preset", "preset_knobs", "skip_first_frame", "protocol", "timing"):
        assert key in saved
    assert 0.0 < saved["mIoU"] <= 1.0 and 0.0 <= saved["AP_part@0.5"] <= 1.0 and 0.0 <= saved["AP_part"] <= 1.0
    assert saved["AP_part_per_threshold"]["0.1"] >= saved["AP_part_per_threshold"]["0.9"]
    assert set(saved["per_video"]) == set(SEQUENCES) and saved["protocol"]["scored_frames"] == 6
    assert set(saved["per_class"]["AP_part"]) == {"hair", "upper-clothes", "pants"}
    frames = ["000000000001", "000000000076", "000000000151"]
    written = sorted(p.name for p in (tmp_path / "out" / "breakdance").iterdir())
    assert written == [f"{name}.png" for name in frames] + ["instances"]
    # the part-instance predictions AP_part is scored from (a resumed run reads them back)
    instances = tmp_path / "out" / "breakdance" / "instances"
    assert sorted(p.name for p in instances.iterdir()) == [f"{name}.png" for name in frames] + ["scores.json"]
    table = json.loads((instances / "scores.json").read_text())
    assert table["classes"] == {"1": 2, "2": 5, "3": 9, "4": 2, "5": 5, "6": 9} and list(table["scores"]) == frames
    assert all(0.0 <= s <= 1.0 for scores in table["scores"].values() for s in scores.values())
    # frame 0 is the given annotation
    dataset = VipDataset(vip_root)
    first = np.array(Image.open(tmp_path / "out" / "breakdance" / "000000000001.png"))
    np.testing.assert_array_equal(first, dataset.category_map(dataset.videos[1].frames[0]))
    np.testing.assert_array_equal(np.array(Image.open(instances / "000000000001.png")),
                                  dataset.instance_map(dataset.videos[1].frames[0])[0])


def _still_breakdance(root: Path) -> list[Path]:
    """Make every frame of ``root``'s breakdance frame 0, annotations included; its images."""
    images = sorted((root / "Images" / "breakdance").glob("*.jpg"))
    for folder in ("Category_ids", "Instance_ids"):
        for suffix in (".png", ".txt") if folder == "Instance_ids" else (".png",):
            first = (root / "Annotations" / folder / "breakdance" / images[0].stem).with_suffix(suffix)
            for image in images[1:]:
                first_bytes = first.read_bytes()
                (first.parent / f"{image.stem}{suffix}").write_bytes(first_bytes)
    for image in images[1:]:
        image.write_bytes(images[0].read_bytes())
    return images


def test_a_still_video_propagates_to_near_perfect_scores(tmp_path, vip_root):
    """All frames identical and features that match each cell to itself: propagation must give
    back frame 0's parts and instances, up to the feature grid's resolution."""
    root = _copy_tree(vip_root, tmp_path / "VIP_Fine")
    images = _still_breakdance(root)
    preset = vip_preset(get_preset("crw"), size=320)
    dataset = VipDataset(root, videos=["breakdance"])
    results = run_vip(PositionCodes(), preset, dataset, tmp_path / "out", skip_first_frame=True)
    assert results["protocol"]["scored_frames"] == 2
    assert results["mIoU"] > 0.8 and results["AP_part@0.5"] == 1.0
    # exactly frame 0's labels through the 40 x 40 grid: nothing moved, nothing was mislabelled
    frame0 = dataset.videos[0].frames[0]
    parts, labels = first_frame_labels(dataset.category_map(frame0), dataset.instance_map(frame0))
    small = downsample_labels(labels[: len(parts.classes)], (40, 40), preset.label_downsample)
    expected = parts.classes[decode_label_map(small, preset, (320, 320), SIZE).numpy()]
    for image in images[1:]:
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "out" / "breakdance" / f"{image.stem}.png")),
                                      expected)


def test_a_part_instance_numbered_255_is_propagated_and_scored(tmp_path, vip_root):
    """255 is ignored in Category_ids only: Instance_ids number instances 1..N (0 = none), so 255 is
    the 255th instance of a crowded frame. It was given a channel but none of its pixels (no
    prediction), while the scorer counted it as a GT instance: AP_part@0.5 was 0.5 for its class."""
    root = _copy_tree(vip_root, tmp_path / "VIP_Fine")
    instances = root / "Annotations" / "Instance_ids" / "breakdance"
    for png in instances.glob("*.png"):  # the right person's pants: instance 6 -> 255
        ids = np.array(Image.open(png))
        write_indexed_png(png, np.where(ids == 6, 255, ids).astype(np.uint8))
        table = png.with_suffix(".txt")
        table.write_text(table.read_text().replace("6 9 2\n", "255 9 2\n"))
    _still_breakdance(root)
    dataset = VipDataset(root, videos=["breakdance"])
    ids, classes = dataset.instance_map(dataset.videos[0].frames[0])
    parts, labels = first_frame_labels(dataset.category_map(dataset.videos[0].frames[0]), (ids, classes))
    assert classes[255] == 9 and parts.instances.tolist() == [0, 1, 2, 3, 4, 5, 255]
    torch.testing.assert_close(labels[len(parts.classes) + 6], torch.from_numpy(ids == 255).float())
    results = run_vip(PositionCodes(), vip_preset(get_preset("crw"), size=320), dataset, tmp_path / "out",
                      skip_first_frame=True)
    assert results["AP_part@0.5"] == 1.0 and results["per_class"]["AP_part"]["pants"] > 0.5
    later = dataset.videos[0].frames[1].name
    assert 255 in np.array(Image.open(tmp_path / "out" / "breakdance" / "instances" / f"{later}.png"))


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.eval_cmd"])
    monkeypatch.setattr(vidcorr.cli.eval_cmd, "TASK_MODULES", ["vidcorr.cli.eval_vip"])
    return vidcorr.cli.main


def test_eval_vip_command_on_the_vipseg_snippet(tmp_path, vipseg_root, cli, capsys):
    out = tmp_path / "out"
    assert cli(["eval", "vip", "--root", str(vipseg_root), "--out", str(out), "--features", "lab-pixels",
                "--preset", "uvc", "--size", "160", "--skip-first-frame"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["layout"] == "vipseg" and saved["protocol"]["scored_frames"] == 3
    assert saved["preset"] == "uvc" and saved["preset_knobs"]["n_previous"] == 1
    assert saved["skip_first_frame"] is True and 0.0 < saved["mIoU"] <= 1.0
    assert saved["AP_part"] is not None and len(list((out / "12_1mWNahzcsAc").glob("*.png"))) == 4
    assert "global (1 video(s), frame 0 skipped)" in capsys.readouterr().out


def _too_many_instances(frame):
    """255 part instances in one map (ids 1..255), each listed: one more than can be propagated."""
    ids = np.arange(SIZE[0] * SIZE[1]).reshape(SIZE) % 255 + 1
    write_indexed_png(frame.instances, ids.astype(np.uint8))
    frame.table.write_text("".join(f"{i} {1 + i % 19} 1\n" for i in range(1, 256)))


@pytest.mark.parametrize(("edit", "message"), [
    (_too_many_instances, "255 part instances in the first frame; at most 254 can be propagated"),
    (lambda frame: write_indexed_png(frame.instances, np.zeros((60, 107), np.uint8)),
     f"instance map is 107x60 but its class map {{name}}.png is {SIZE[1]}x{SIZE[0]}"),
])
def test_eval_vip_refuses_first_instances_it_cannot_propagate_naming_the_file(tmp_path, vip_root, cli, capsys,
                                                                               edit, message):
    """Once a ValueError (too many instances) or a RuntimeError (another size) with a traceback."""
    root = _copy_tree(vip_root, tmp_path / "VIP_Fine")
    first = VipDataset(root).videos[0].frames[0]
    edit(first)
    out = tmp_path / "out"
    assert cli(["eval", "vip", "--root", str(root), "--out", str(out), "--features", "lab-pixels",
                "--size", "64"]) == 2
    assert f"{first.instances}: {message.format(name=first.name)}" in capsys.readouterr().err
    assert not out.exists()


def test_eval_vip_command_reports_a_bad_root(tmp_path, cli, capsys):
    assert cli(["eval", "vip", "--root", str(tmp_path), "--out", str(tmp_path / "out"),
                "--features", "lab-pixels"]) == 2
    assert "not a VIP root" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- `vidcorr score vip`: the same mIoU and AP_part as eval, from eval's saved files ---------------

@pytest.fixture
def eval_and_score(monkeypatch):
    monkeypatch.setattr(vidcorr.cli, "COMMAND_MODULES", ["vidcorr.cli.eval_cmd", "vidcorr.cli.score_cmd"])
    monkeypatch.setattr(vidcorr.cli.eval_cmd, "TASK_MODULES", ["vidcorr.cli.eval_vip"])
    return vidcorr.cli.main


RUN_ONLY = ("preset", "preset_knobs", "model", "timing")  # what eval knows and saved files do not


def _scores(results):
    """Every number `score vip` can know from saved predictions (all but `RUN_ONLY`, and ``results`` and
    ``max_frames``, which only score's output holds)."""
    return {k: v for k, v in results.items() if k not in (*RUN_ONLY, "results", "max_frames")}


def _class_scores(results):
    """What `score vip` can know from class maps alone: every mIoU number and the frame counts."""
    return {"mIoU": results["mIoU"], "IoU": results["per_class"]["IoU"],
            "per_video": {v: (s["mIoU"], s["frames"]) for v, s in results["per_video"].items()},
            "skip_first_frame": results["skip_first_frame"],
            "protocol": {k: v for k, v in results["protocol"].items() if k != "instances"}}


def test_score_vip_of_eval_output_equals_eval_miou_and_ap_part(tmp_path, vip_root, eval_and_score, capsys):
    """Frame 0 scored: its saved map is the annotation with 255 (ignored) pixels, read back as they are."""
    out = tmp_path / "out"
    run_vip(build_encoder("lab-pixels"), vip_preset(get_preset("crw"), size=160), VipDataset(vip_root), out)
    assert eval_and_score(["score", "vip", "--root", str(vip_root), "--results", str(out)]) == 0
    scored, evaluated = json.loads((out / "score.json").read_text()), json.loads((out / "results.json").read_text())
    assert evaluated["AP_part"] is not None and evaluated["protocol"]["instances"] == "annotated"
    assert _scores(scored) == _scores(evaluated)
    assert scored["results"] == str(out) and scored["max_frames"] is None and not any(key in scored for key in RUN_ONLY)
    printed = capsys.readouterr().out
    assert f"mIoU  {evaluated['mIoU']:.4f}  AP_part  {evaluated['AP_part']:.4f}" in printed
    assert "not scored" not in printed


def test_score_vip_without_instance_files_gives_miou_and_says_why(tmp_path, vip_root, eval_and_score, capsys):
    """One video's instances/ gone (class maps of an older vidcorr or another tool): AP_part of the
    others alone would not be the run's, so none is scored, and the output names the missing folder."""
    out = tmp_path / "out"
    run_vip(build_encoder("lab-pixels"), vip_preset(get_preset("crw"), size=160), VipDataset(vip_root), out)
    shutil.rmtree(out / "breakdance" / "instances")
    assert eval_and_score(["score", "vip", "--root", str(vip_root), "--results", str(out)]) == 0
    scored, evaluated = json.loads((out / "score.json").read_text()), json.loads((out / "results.json").read_text())
    assert _class_scores(scored) == _class_scores(evaluated)
    assert scored["AP_part"] is None and scored["per_class"]["AP_part"] == {}
    assert all(v["AP_part"] is None for v in scored["per_video"].values())
    note = scored["protocol"]["instances"]
    assert note.startswith(f"not scored: {out / 'breakdance' / 'instances'} not found (1 of 2 video(s)")
    printed = capsys.readouterr().out
    assert f"mIoU  {evaluated['mIoU']:.4f}  AP_part     n/a" in printed
    assert f"AP_part {note}" in printed.splitlines()


def test_score_vip_scores_frame_0_unless_told(tmp_path, vip_root):
    """UVC's and CRW's eval_vip.py accumulate the confusion matrix over all frames, frame 0 with
    them (METHODS.md 6.3): the Python default, which the command line always overrides with its
    own. Frame 0 predicted as background, the rest exact: only a default that skips it scores 1."""
    dataset, results = VipDataset(vip_root), tmp_path / "results"
    for video in dataset.videos:
        for t, frame in enumerate(video.frames):
            gt = dataset.category_map(frame)
            write_indexed_png(results / video.name / f"{frame.name}.png", np.where((gt == 255) | (t == 0), 0, gt))
    default = score_vip(dataset, results)
    assert default["skip_first_frame"] is False and default["protocol"]["scored_frames"] == 6
    assert default["mIoU"] < 1.0
    assert default == score_vip(dataset, results, skip_first_frame=False)
    assert score_vip(dataset, results, skip_first_frame=True)["mIoU"] == 1.0

@pytest.mark.parametrize("skip_first", [True, False], ids=["frame0-skipped", "frame0-scored"])
def test_score_vip_of_the_vipseg_snippet_equals_eval(tmp_path, vipseg_root, eval_and_score, skip_first):
    """The real VIPSeg frames: eval's results.json and `score vip` of its folder agree on every
    number; with frame 0 skipped its class map may be gone."""
    out = tmp_path / "out"
    common = ["--root", str(vipseg_root), *(["--skip-first-frame"] if skip_first else [])]
    assert eval_and_score(["eval", "vip", *common, "--out", str(out), "--features", "lab-pixels", "--size", "160"]) == 0
    if skip_first:
        (out / "12_1mWNahzcsAc" / sorted((out / "12_1mWNahzcsAc").glob("*.png"))[0].name).unlink()  # frame 0
    scores = tmp_path / "scores" / "vip.json"
    assert eval_and_score(["score", "vip", *common, "--results", str(out), "--out", str(scores)]) == 0
    scored, evaluated = json.loads(scores.read_text()), json.loads((out / "results.json").read_text())
    assert _scores(scored) == _scores(evaluated) and scored["protocol"]["scored_frames"] == 4 - skip_first
    assert scored["AP_part"] is not None and scored["protocol"]["instances"] == "annotated"


def test_score_vip_max_frames_scores_the_first_n_frames_of_each_video(tmp_path, vipseg_root, eval_and_score, capsys):
    """The class maps of a `propagate --max-frames 2` run (frames 0 and 1 of the snippet's 4, every one
    annotated) were refused as missing predictions. --max-frames 2 scores those two frames as if the video
    ended there: exact maps give mIoU 1, and the wrong maps of frames 2 and 3, once written, do not count.
    Without the option, or with one too long, the refusal names the --max-frames that scores them."""
    dataset, results = VipDataset(vipseg_root), tmp_path / "results"
    (video,) = dataset.videos
    folder = results / video.name
    for frame in video.frames[:2]:
        write_indexed_png(folder / f"{frame.name}.png", dataset.category_map(frame))
    missing = folder / f"{video.frames[2].name}.png"
    for extra, fix in [([], "; a `propagate --max-frames 2` run? score its first 2 frames with --max-frames 2)"),
                       (["--max-frames", "3"], ": --max-frames 3 scores the first 3 of its 4 frames; score these "
                                               "with --max-frames 2)")]:
        assert eval_and_score(["score", "vip", "--root", str(vipseg_root), "--results", str(results), *extra]) == 2
        counts = "1 of the 3" if extra else "2 of the 4"
        want = f"{missing}: prediction not found ({counts} scored frames of '{video.name}' are missing"
        assert want + fix in capsys.readouterr().err
    assert not (results / "score.json").exists()
    assert eval_and_score(["score", "vip", "--root", str(vipseg_root), "--results", str(results),
                           "--max-frames", "1"]) == 2
    assert "--max-frames must be at least 2, got 1" in capsys.readouterr().err

    for frame in video.frames[2:]:  # the rest of the video, all background: wrong where the GT has parts
        write_indexed_png(folder / f"{frame.name}.png", np.zeros_like(dataset.category_map(frame)))
    assert eval_and_score(["score", "vip", "--root", str(vipseg_root), "--results", str(results),
                           "--max-frames", "2"]) == 0
    scored = json.loads((results / "score.json").read_text())
    assert scored["mIoU"] == 1.0 and scored["max_frames"] == 2 and scored["protocol"]["scored_frames"] == 2
    assert "global (1 video(s), first 2 frames, frame 0 included): mIoU  1.0000" in capsys.readouterr().out
    assert eval_and_score(["score", "vip", "--root", str(vipseg_root), "--results", str(results)]) == 0
    whole = json.loads((results / "score.json").read_text())
    assert whole["mIoU"] < 1.0 and whole["max_frames"] is None and whole["protocol"]["scored_frames"] == 4


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p.unlink(), "prediction not found"),
    (lambda p: Image.new("RGB", (214, 120)).save(p), "is a PNG RGB image; expected a palette or grayscale PNG"),
    (lambda p: Image.new("L", (214, 120)).save(p, format="JPEG"), "is a JPEG L image"),
    (lambda p: p.write_bytes(b"not a png"), "cannot read prediction"),
    (lambda p: write_indexed_png(p, np.full((120, 214), 20, np.uint8)), "class ids must be in 0..19"),
    # a grayscale 0 / 255 map is read as it is, not as a DAVIS-2016 mask (255 -> object 1)
    (lambda p: Image.fromarray(np.repeat([0, 255], 60)[:, None].repeat(214, 1).astype(np.uint8), "L").save(p),
     "class ids must be in 0..19 (gt max 9, pred 0..255)"),
])
def test_score_vip_bad_prediction_exits_2_naming_the_file(tmp_path, vip_root, eval_and_score, capsys, edit, message):
    results = tmp_path / "results"
    dataset = VipDataset(vip_root)
    for video in dataset.videos:
        for frame in video.frames:
            write_indexed_png(results / video.name / f"{frame.name}.png", dataset.category_map(frame))
    bad = results / "breakdance" / "000000000076.png"
    edit(bad)
    assert eval_and_score(["score", "vip", "--root", str(vip_root), "--results", str(results)]) == 2
    assert f"{bad}: {message}" in capsys.readouterr().err
    assert not (results / "score.json").exists()


@pytest.fixture(scope="module")
def vip_eval_out(tmp_path_factory, vip_root):
    """eval vip's output on the VIP-layout fixture (class maps, instances/ maps and scores.json)."""
    out = tmp_path_factory.mktemp("vip-eval") / "out"
    run_vip(build_encoder("lab-pixels"), vip_preset(get_preset("crw"), size=160), VipDataset(vip_root), out)
    return out


def _edit_scores_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


INSTANCE_MAP = "breakdance/instances/000000000076.png"
SCORES_JSON = "breakdance/instances/scores.json"


@pytest.mark.parametrize(("name", "edit", "message"), [
    (INSTANCE_MAP, lambda p: write_instance_map(p, np.zeros((60, 107), np.int64)),
     "part-instance map is 107x60 but its annotation"),
    (INSTANCE_MAP, lambda p: Image.new("RGB", (214, 120)).save(p),
     "is a PNG RGB image; expected a 16-bit grayscale PNG of part-instance ids"),
    (INSTANCE_MAP, lambda p: Image.new("L", (214, 120)).save(p, format="JPEG"), "is a JPEG L image"),
    (INSTANCE_MAP, lambda p: Image.new("F", (214, 120)).save(p, format="TIFF"), "is a TIFF F image"),
    (INSTANCE_MAP, lambda p: p.write_bytes(b"not a png"), "cannot read part-instance prediction"),
    (INSTANCE_MAP, lambda p: write_instance_map(p, np.repeat([0, 1, 77, 300], 30)[:, None].repeat(214, 1)),
     "part-instance id(s) 77, 300 have no class or no score of frame 000000000076"),
    (INSTANCE_MAP, lambda p: p.unlink(), "part-instance prediction not found"),
    # the map's id 1 has no score in scores.json: the map is named, and scores.json in the message
    (INSTANCE_MAP,
     lambda p: _edit_scores_json(p.parent / "scores.json", lambda d: d["scores"]["000000000076"].pop("1")),
     "part-instance id(s) 1 have no class or no score of frame 000000000076 in "),
    (SCORES_JSON, lambda p: _edit_scores_json(p, lambda d: d["classes"].update({"2": 20})),
     "part instance 2 has class 20, outside 0..19"),
    (SCORES_JSON, lambda p: _edit_scores_json(p, lambda d: d["scores"].pop("000000000076")),
     "no scores of frame 000000000076"),
])
def test_score_vip_bad_instance_prediction_exits_2_naming_the_file(tmp_path, vip_root, vip_eval_out, eval_and_score,
                                                                   capsys, name, edit, message):
    """A malformed part-instance map or scores.json is refused naming it: once, a map of another size
    was nearest-resized, another mode read as it came and an unlisted id ended in a KeyError."""
    results = tmp_path / "results"
    shutil.copytree(vip_eval_out, results)
    edit(results / name)
    assert eval_and_score(["score", "vip", "--root", str(vip_root), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"{results / name}: {message}" in err, err
    assert not (results / "score.json").exists()


def test_instance_ids_beyond_16_bits_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "instances" / "00000.png"
    with pytest.raises(ValueError, match=f"^{path}: instance ids 0..70000 do not fit a 16-bit PNG"):
        write_instance_map(path, np.array([[0, 70000]], np.int64))
    assert not path.exists()
