"""Golden rules of the weights files, atomic outputs and DAVIS scoring, with expected values from the
rules themselves (float16's range, sha256 of the file's bytes, J&F = (J-Mean + F-Mean) / 2 over
objects as davis2017-evaluation computes it), never from the code under test."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from synthetic import PatchEncoder
from torch import nn

from vidcorr.errors import WeightsError
from vidcorr.evaluate.davis import run_davis, write_davis_results
from vidcorr.io.atomic import atomic_file, is_atomic_leftover, write_text_atomic
from vidcorr.io.masks import read_mask, write_indexed_png
from vidcorr.metrics.davis import format_results_table, score_davis
from vidcorr.models import read_weights, save_weights, sidecar_path
from vidcorr.models.weights import export_dtype

CONFIG = {"model": "test-linear"}  # read_weights takes any config; only the encoder loaders check it


def _linear(value: float, size: int = 4) -> nn.Linear:
    layer = nn.Linear(size, size)
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.weight[0, 0] = value
    return layer


# --------------------------------------------------------------------------- weights
def test_float16_max_itself_is_exported_as_float16_exactly(tmp_path: Path) -> None:
    # 65504 is float16's largest finite value: it fits, so no float32 fallback and no loss.
    layer = _linear(65504.0)
    assert export_dtype(layer) == torch.float16
    path = save_weights(layer, tmp_path / "m.safetensors", config=CONFIG, dtype=export_dtype(layer))
    assert safetensors.torch.load_file(str(path))["weight"].dtype == torch.float16
    loaded = read_weights(path).tensors["weight"]
    assert loaded.dtype == torch.float32 and loaded[0, 0].item() == 65504.0


def test_values_beyond_float16_fall_back_to_float32(tmp_path: Path) -> None:
    layer = _linear(65536.0)  # 2**16: infinite in float16
    assert export_dtype(layer) == torch.float32
    path = save_weights(layer, tmp_path / "m.safetensors", config=CONFIG, dtype=export_dtype(layer))
    assert safetensors.torch.load_file(str(path))["weight"].dtype == torch.float32
    assert read_weights(path).tensors["weight"][0, 0].item() == 65536.0


def test_sha256_covers_every_byte_of_a_file_above_one_mib(tmp_path: Path) -> None:
    layer = nn.Linear(1024, 1024)  # 2 MiB of float16: more than one read block
    path = save_weights(layer, tmp_path / "big.safetensors", config=CONFIG)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()  # what `sha256sum` says
    sidecar = json.loads((tmp_path / "big.json").read_text())
    assert sidecar_path(path) == tmp_path / "big.json"
    assert sidecar["sha256"] == expected and sidecar["dtype"] == "float16"
    assert sidecar["weights"] == "big.safetensors"  # its file's name, not a path: the pair can be moved
    assert read_weights(path).sha256 == expected
    # A changed byte near the end (tensor data, beyond the first MiB) must be caught by the sidecar.
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    assert info.value.path == path and "sha256" in str(info.value)


# --------------------------------------------------------------------------- atomic output
def test_atomic_file_writes_beside_the_target_with_its_suffix_and_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "out" / "video.mp4"
    with atomic_file(target) as tmp:
        # same folder: os.replace is a rename on one file system; the suffix picks container formats
        assert tmp.parent == target.parent and tmp.suffix == ".mp4" and tmp != target
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["video.mp4"]


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, error: type) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise error()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_text_atomic_failing_midway_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "table.txt"
    target.write_text("old")
    real = Path.write_text

    def half_then_fail(self: Path, text: str, *args, **kwargs):
        real(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError):
        write_text_atomic(target, "new contents")
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.txt"]


def test_a_symlink_named_like_a_temp_file_is_not_a_leftover(tmp_path: Path) -> None:
    real = tmp_path / ".notes.json.abcd1234.tmp.json"
    real.write_text("{}")
    link = tmp_path / ".data.json.abcd1234.tmp.json"
    link.symlink_to(real)
    assert is_atomic_leftover(real) and not is_atomic_leftover(link)  # a user's link, never ours


# --------------------------------------------------------------------------- DAVIS J&F
SIZE = 40  # radius ceil(0.008 * 56.6) = 1 px; the squares below are far apart


def _square(mask: np.ndarray, top: int, value: int) -> None:
    mask[top : top + 4, top : top + 4] = value


def _davis_root(tmp_path: Path) -> tuple[Path, Path]:
    """alpha: 4 frames, objects 1 and 2; beta: 5 frames, object 1. Predictions (scored frames only):
    alpha_1 perfect (J = F = 1), alpha_2 missing (J = F = 0); beta_1 perfect, then its square plus an
    equal far square (J = 16/32, boundary precision 1/2, recall 1: F = 2/3), then empty (J = F = 0)."""
    root, results = tmp_path / "davis", tmp_path / "results"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("alpha\nbeta\n")
    for seq, frames in (("alpha", 4), ("beta", 5)):
        (root / "Annotations" / "480p" / seq).mkdir(parents=True)
        (results / seq).mkdir(parents=True)
        for t in range(frames):
            gt = np.zeros((SIZE, SIZE), np.uint8)
            _square(gt, 5, 1)
            if seq == "alpha":
                _square(gt, 25, 2)
            write_indexed_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", gt)
            pred = np.zeros_like(gt)
            if seq == "alpha" or t == 1:
                _square(pred, 5, 1)
            elif t == 2:
                _square(pred, 5, 1)
                _square(pred, 25, 1)
            write_indexed_png(results / seq / f"{t:05d}.png", pred)
    return root, results


def test_global_measures_are_means_over_objects_and_jf_is_their_average(tmp_path: Path) -> None:
    root, results_dir = _davis_root(tmp_path)
    results = score_davis(root, results_dir, progress=False)
    beta_f = (1 + 2 / 3 + 0) / 3
    # over objects (alpha_1, alpha_2, beta_1), not over sequences nor frames
    assert results["J-Mean"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert results["F-Mean"] == pytest.approx((1 + 0 + beta_f) / 3)
    assert results["F-Recall"] == pytest.approx((1 + 0 + 2 / 3) / 3)  # F > 0.5 in 2 of beta's 3 frames
    assert results["J&F-Mean"] == pytest.approx(((1 + 0 + 0.5) / 3 + (1 + 0 + beta_f) / 3) / 2)
    assert list(results["per_object"]) == ["alpha_1", "alpha_2", "beta_1"]
    assert results["per_object"]["beta_1"]["J-Mean"] == pytest.approx(0.5)
    assert results["per_object"]["beta_1"]["F-Mean"] == pytest.approx(beta_f)
    alpha, beta = results["per_sequence"]["alpha"], results["per_sequence"]["beta"]
    assert (alpha["J-Mean"], alpha["F-Mean"], alpha["n_objects"]) == (pytest.approx(0.5), pytest.approx(0.5), 2)
    assert alpha["J&F-Mean"] == pytest.approx(0.5)
    assert beta["J&F-Mean"] == pytest.approx((0.5 + beta_f) / 2)


def test_results_json_and_table_hold_the_per_sequence_values(tmp_path: Path) -> None:
    root, results_dir = _davis_root(tmp_path)
    results = score_davis(root, results_dir, progress=False, per_frame=True)
    write_davis_results(results, tmp_path / "results.json")
    # the caller's results keep their per-frame lists (run_davis returns them)
    assert results["per_object"]["beta_1"]["J_per_frame"] == pytest.approx([1.0, 0.5, 0.0])
    written = json.loads((tmp_path / "results.json").read_text())
    for key in ("J&F-Mean", "J-Mean", "F-Mean", "per_sequence", "per_object"):
        assert key in written
    # per-frame lists go into the plot, not the JSON
    assert not any(k.endswith("_per_frame") for obj in written["per_object"].values() for k in obj)
    assert written["per_sequence"]["beta"]["F-Mean"] == pytest.approx((1 + 2 / 3) / 3)
    rows = {line.split()[0]: line.split()[1:] for line in format_results_table(written).splitlines()[1:3]}
    # columns: objects, J&F-Mean, J-Mean, F-Mean
    assert rows["beta"] == ["1", f"{(0.5 + 5 / 9) / 2:.4f}", "0.5000", f"{5 / 9:.4f}"]
    assert rows["alpha"] == ["2", "0.5000", "0.5000", "0.5000"]


# --------------------------------------------------------------------------- eval davis: every sequence, resume
SPLIT = ["zeta", "alpha", "mid"]  # the split file's order, not alphabetical


def _clip_root(tmp_path: Path, split: list[str] = SPLIT, frames: int = 4,
               annotated: tuple[int, ...] = (0, 1, 2, 3)) -> Path:
    """4-frame 64x64 sequences (default): a textured frame with a bright square (object 1) that moves."""
    root = tmp_path / "clips"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(split) + "\n")
    rng = np.random.default_rng(0)
    for i, seq in enumerate(split):
        (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        (root / "Annotations" / "480p" / seq).mkdir(parents=True)
        background = rng.integers(0, 120, (64, 64, 3), dtype=np.uint8)
        for t in range(frames):
            top = 8 + 4 * i + 2 * t
            frame, gt = background.copy(), np.zeros((64, 64), np.uint8)
            frame[top : top + 24, top : top + 24] = 230
            gt[top : top + 24, top : top + 24] = 1
            Image.fromarray(frame).save(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", quality=95)
            if t in annotated:
                write_indexed_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", gt)
    return root


def _naive_j(root: Path, out: Path, seq: str) -> float:
    """Mean region IoU of object 1 over frames 1..T-2, from the PNGs themselves (IoU of two empty masks is 1)."""
    values = []
    for t in (1, 2):
        gt = read_mask(root / "Annotations" / "480p" / seq / f"{t:05d}.png") == 1
        pred = read_mask(out / seq / f"{t:05d}.png") == 1
        union = (gt | pred).sum()
        values.append(1.0 if union == 0 else (gt & pred).sum() / union)
    return float(np.mean(values))


def test_eval_davis_propagates_and_scores_every_sequence_and_resumes_an_unfinished_one(tmp_path: Path) -> None:
    root, out = _clip_root(tmp_path), tmp_path / "out"
    results = run_davis(PatchEncoder(), "crw", root, out)
    written = json.loads((out / "results.json").read_text())
    assert list(written["per_sequence"]) == SPLIT and list(written["per_object"]) == [f"{s}_1" for s in SPLIT]
    for seq in SPLIT:
        assert sorted(p.name for p in (out / seq).iterdir()) == [f"{t:05d}.png" for t in range(4)]
        assert written["per_sequence"][seq]["J-Mean"] == pytest.approx(_naive_j(root, out, seq))
    # one object per sequence: the global J-Mean is the mean of the sequences' J-Means
    assert written["J-Mean"] == pytest.approx(np.mean([_naive_j(root, out, s) for s in SPLIT]))
    assert written["J&F-Mean"] == pytest.approx((written["J-Mean"] + written["F-Mean"]) / 2)
    # alpha's result folder is gone (deleted by hand; a killed session left only its .partial folder) while
    # the record names every sequence finished: a resume keeps zeta and mid only (not a prefix of the
    # split) and propagates alpha again; a .partial folder is never a result.
    expected = {seq: (out / seq / "00002.png").read_bytes() for seq in SPLIT}
    assert json.loads((out / ".run.json").read_text())["finished"] == SPLIT
    shutil.rmtree(out / "alpha")
    (out / ".alpha.partial").mkdir()
    shutil.copy(out / "zeta" / "00000.png", out / ".alpha.partial" / "00000.png")
    (out / "results.json").unlink()
    kept = (out / "zeta" / "00002.png").stat().st_mtime_ns
    resumed = run_davis(PatchEncoder(), "crw", root, out, resume=True)
    assert resumed["timing"]["kept_from_earlier_run"] == ["zeta", "mid"]
    assert (out / "zeta" / "00002.png").stat().st_mtime_ns == kept  # not propagated again
    assert {seq: (out / seq / "00002.png").read_bytes() for seq in SPLIT} == expected
    assert not (out / ".alpha.partial").exists()
    assert resumed["per_sequence"] == results["per_sequence"]


def test_eval_davis_writes_one_prediction_per_frame_when_only_some_frames_are_annotated(tmp_path: Path) -> None:
    # every other frame annotated: the scorer reads 00002.png, which must be frame 2's mask
    root, out = _clip_root(tmp_path, ["sparse"], frames=5, annotated=(0, 2, 4)), tmp_path / "out"
    run_davis(PatchEncoder(), "crw", root, out)
    assert sorted(p.name for p in (out / "sparse").iterdir()) == [f"{t:05d}.png" for t in range(5)]
