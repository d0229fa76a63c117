"""The benchmark scripts run: CI never times anything, but a script that no longer starts (an
import a refactor moved) would only be found by the session that needs its numbers, perhaps on a
GPU lent for 15 minutes. Each runs once on a tiny workload and must write its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from vidcorr.defaults import DEFAULT_WEIGHTS

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, out: Path, env: dict | None = None) -> dict:
    subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args, "--json", str(out)],
                   check=True, cwd=REPO, timeout=300, capture_output=True, env=env)
    return json.loads(out.read_text())


@pytest.mark.parametrize("recipe", ["uvc-cpu", "cycletime-cpu", "stt-cpu"])
def test_training_benchmark(recipe: str, tmp_path: Path) -> None:
    report = _run("training.py", "--recipe", recipe, "--steps", "1", "--warmup", "1", "--batch-size", "2",
                  "--device", "cpu", "--threads", "1", out=tmp_path / "training.json")
    assert report["recipe"] == recipe and report["batch"] == 2
    rates = {k: v for k, v in report.items() if k.endswith("_per_s")}
    assert rates and all(v > 0 for v in rates.values()), rates  # every stage of the recipe timed
    assert "cores" in report["machine"] and report["torch_threads"] == 1  # the key every benchmark writes


def test_propagation_benchmark(davis2016_root: Path, tmp_path: Path) -> None:
    report = _run("propagation.py", "--root", str(davis2016_root), "--sequences", "car-shadow", "--size", "120",
                  "--preset", "crw", "--skip", "memory", "--threads", "1", "--features", "lab-pixels",
                  out=tmp_path / "propagation.json")
    throughput = report["throughput"]
    assert throughput["frames"] == 40 and 0 < throughput["J&F-Mean"] <= 1
    assert throughput["feature_ms_per_frame"] > 0 and throughput["propagation_ms_per_frame"] > 0


def test_propagation_benchmark_names_the_weights_it_ran(davis2016_root: Path, tmp_path: Path) -> None:
    """Without --weights it recorded "default weights", which named uvc_r18 in the JSONs of
    docs/benchmarks.md and uvc_r18_ft3 once the default changed; an --encoder was "default weights" too."""
    memory_run = ("--root", str(davis2016_root), "--skip", "throughput", "--lengths", "2", "--size", "64",
                  "--threads", "1")
    report = _run("propagation.py", *memory_run, out=tmp_path / "default.json")
    assert report["model"] == str(DEFAULT_WEIGHTS.relative_to(REPO))
    factory = tmp_path / "tiny_models.py"
    factory.write_text("from torch import nn\n\ndef build():\n    return nn.Conv2d(3, 8, 8, stride=8)\n")
    report = _run("propagation.py", *memory_run, "--encoder", f"{factory}:build", out=tmp_path / "encoder.json",
                  env={**os.environ, "VIDCORR_DEFAULT_MALLOC": "1"})
    assert report["model"] == f"--encoder {factory}:build"
    # what a memory-only record ran: the size was only in the command; the opt-out was recorded as
    # "vidcorr.runtime.bound_cpu_memory", which VIDCORR_DEFAULT_MALLOC=1 turns off
    assert report["preset_knobs"]["size"]["size"] == 64 and report["preset_knobs"]["n_previous"] == 20
    assert report["allocator"] == "glibc default" and report["environment"]["VIDCORR_DEFAULT_MALLOC"] == "1"


def test_propagation_benchmark_says_why_its_measurement_failed(davis2016_root: Path, tmp_path: Path) -> None:
    """Only "CalledProcessError: ... returned non-zero exit status 1" was shown, not the child's error."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "propagation.py"), "--root", str(davis2016_root),
                          "--sequences", "car-shadw", "--skip", "memory", "--features", "lab-pixels",
                          "--json", str(tmp_path / "p.json")], cwd=REPO, timeout=300, capture_output=True, text=True)
    assert run.returncode == 2 and "car-shadw" in run.stderr and "the throughput measurement failed" in run.stderr
    assert "CalledProcessError" not in run.stderr and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(("script", "args", "named"), [
    ("metrics.py", ("--sequence", "blackswn"), "blackswn/00000.png: mask file not found"),
    ("training.py", ("--recipe", "uvc-cpuu"), "uvc-cpuu.toml: no such recipe"),
    ("pruning.py", ("--targets", "car-shadow:5", "--size", "64"), "target frame 5 needs 20 previous frames"),
    ("propagation.py", ("--lengths", "40,4OO"), "argument --lengths"),  # refused before the throughput run
])
def test_bad_input_is_one_line_and_exit_2(script: str, args: tuple, named: str, davis2016_root: Path,
                                          tmp_path: Path) -> None:
    """A missing sequence, recipe or too early a frame was a traceback with exit status 1; a mistyped
    length stopped propagation.py only after its throughput run."""
    root = () if script == "training.py" else ("--root", str(davis2016_root))  # training.py times random batches
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *root, *args,
                          "--json", str(tmp_path / "out.json")], cwd=REPO, timeout=120, capture_output=True, text=True)
    assert run.returncode == 2 and named in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out.json").exists()


def test_features_benchmark(davis2016_root: Path, tmp_path: Path) -> None:
    report = _run("features.py", "--root", str(davis2016_root), "--frames", "1", "--repeats", "1",
                  "--threads", "1", out=tmp_path / "features.json")
    assert report["ms_per_frame"] and all(v > 0 for v in report["ms_per_frame"].values())


def test_selection_benchmark(davis2016_root: Path, tmp_path: Path) -> None:
    report = _run("selection.py", "--root", str(davis2016_root), "--size", "120", "--repeats", "1",
                  "--threads", "1", out=tmp_path / "selection.json")
    assert report["same_selection"] and all(v > 0 for v in report["ms_per_context_frame"].values())


def test_pruning_benchmark(davis2016_root: Path, tmp_path: Path) -> None:
    report = _run("pruning.py", "--root", str(davis2016_root), "--targets", "car-shadow:21", "--size", "64",
                  out=tmp_path / "pruning.json")
    found = report["targets"]["car-shadow:21"]
    assert found["bound_violations"] == 0  # both bounds really are upper bounds of the exact cosines
    kept = found["survivors_per_cell"]
    assert 0 < kept["project 96"] <= kept["project 96 from t-1"] <= found["candidates_per_cell"]
    assert kept["project 32"] >= kept["project 96"]  # fewer directions: a looser bound


def test_tracking_benchmark(data_dir: Path, tmp_path: Path) -> None:
    """benchmarks/tracking.py: both trackers timed, and the windows docs/tracking.md counts ("Speed"):
    the DCF four 256 x 256 a frame, localise three 80 x 224 on Crossing."""
    report = _run("tracking.py", "--root", str(data_dir / "tracking" / "otb"), "--frames", "3", "--repeats", "1",
                  "--features", "lab-pixels", "--threads", "1", out=tmp_path / "tracking.json")
    localise, dcf = report["trackers"]["localise"], report["trackers"]["dcf"]
    assert (dcf["crops_per_frame"], dcf["pixels_per_frame"]) == (4, 4 * 256 * 256)
    assert (localise["crops_per_frame"], localise["pixels_per_frame"]) == (3, 3 * 80 * 224)
    for r in (localise, dcf):
        assert 0 < r["encoder_ms_per_frame"] <= r["ms_per_frame"] and len(r["last_box"]) == 4
    assert report["torch_threads"] == 1 and "threads" not in report


def test_kept_benchmark_records_name_the_thread_count_torch_threads() -> None:
    """training.py and tracking.py wrote "threads" where the other benchmarks write "torch_threads": one
    name, also in the records kept under docs/benchmarks/ (the key renamed, the value as measured)."""
    kept = sorted((REPO / "docs" / "benchmarks").glob("*.json"))
    assert kept
    for path in kept:
        record = json.loads(path.read_text())
        assert "threads" not in record, path.name
        if path.name.startswith(("training-", "tracking-")):
            assert isinstance(record["torch_threads"], int), path.name


def test_metrics_benchmark(davis2016_root: Path, tmp_path: Path) -> None:
    """benchmarks/metrics.py: the four J / F cases docs/metrics.md times, on a real 480x854 annotation."""
    report = _run("metrics.py", "--root", str(davis2016_root), "--number", "1", "--repeats", "1",
                  out=tmp_path / "metrics.json")
    assert report["annotation"] == "blackswan/00000.png" and report["shape"] == [480, 854]
    assert set(report["ms"]) == {"F shift", "J shift", "F full", "F noise"}
    assert all(v > 0 for v in report["ms"].values()) and "cores" in report["machine"]

    assert report["numpy"] == numpy.__version__  # what computed the metric (torch does not)


def test_speed_accuracy_refuses_to_mix_two_models_in_one_table(tmp_path: Path) -> None:
    """Its kept JSONs measured uvc_r18; rerunning a missing variant measured the new default
    (uvc_r18_ft3) and put one row of another model in the table. It stops before measuring, naming both."""
    kept = tmp_path / "propagation-cpu-crw-protocol.json"
    kept.write_text(json.dumps({"model": "weights/uvc_r18.safetensors"}))
    env = {**os.environ, "OUT": str(tmp_path), "VARIANTS": "context10"}
    run = subprocess.run(["bash", str(REPO / "scripts" / "speed_accuracy.sh")], cwd=REPO, timeout=120,
                         capture_output=True, text=True, env=env)
    assert run.returncode == 2, run.stderr
    assert f"this run measures {DEFAULT_WEIGHTS.relative_to(REPO)}" in run.stderr
    assert f"{kept} (weights/uvc_r18.safetensors)" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name]


def test_propagation_benchmark_runs_beside_records_of_its_own_model(davis2016_root: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps({"model": "lab-pixels"}))
    report = _run("propagation.py", "--root", str(davis2016_root), "--skip", "throughput", "--lengths", "2",
                  "--size", "64", "--threads", "1", "--features", "lab-pixels", "--same-model-as", str(kept),
                  out=tmp_path / "new.json")
    assert report["model"] == "lab-pixels"
