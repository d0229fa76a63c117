"""Devices a user names: one this machine cannot run on is refused in one line before anything is
made (`vidcorr.runtime.checked_device`), by `vidcorr train`, the trainer's API and the training
benchmark, as by `eval` and `propagate`; under torchrun ``cuda`` is each rank's own GPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from vidcorr.cli import main
from vidcorr.errors import VidcorrError
from vidcorr.runtime import checked_device
from vidcorr.train import TrainJob, recipe_from_dict, train
from vidcorr.train.distributed import resolve_device

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_gpu(monkeypatch):
    """As on a machine without CUDA or MPS, even where the tests run on one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("device, message", [
    ("xpu", "device='xpu' but xpu is not available here"),  # was "Torch not compiled with XPU enabled"
    ("mtia:0", "device='mtia:0' but mtia is not available here"),
    ("hpu", "device='hpu' but hpu is not available here"),  # no torch.hpu module at all
    ("meta", "device='meta' holds tensor shapes but no data .*; use device='cpu'"),  # was an autocast traceback
    ("cuda", r"device='cuda' but CUDA is not available here \(torch .*\); use device='cpu'$"),
    ("mps", "device='mps' but MPS is not available"),
    ("gpu", "unknown device 'gpu'"),
    (None, r"unknown device None; expected a name \(cpu, cuda"),  # was torch's list of overloads, a TypeError
    (1.5, "unknown device 1.5; expected a name"),
])
def test_devices_this_machine_cannot_run_on_are_refused(no_gpu, monkeypatch, device: str, message: str) -> None:
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    with pytest.raises(ValueError, match=message):
        checked_device(device)
    assert checked_device("cpu") == torch.device("cpu")


def test_a_backend_that_says_it_is_available_is_accepted_up_to_its_device_count(monkeypatch) -> None:
    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)
    monkeypatch.setattr(torch.xpu, "device_count", lambda: 2)
    assert checked_device("xpu:1") == torch.device("xpu", 1)
    with pytest.raises(ValueError, match="device='xpu:2' but this machine has 2 xpu device"):
        checked_device("xpu:2")


@pytest.mark.parametrize("method, extra", [
    ("uvc", ["--autoencoder", "ae.safetensors"]), ("cycletime", []), ("stt", []), ("moco", []),
    ("autoencoder", ["--out", "ae.safetensors"]),
])
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu", "meta"])
def test_every_train_command_refuses_an_absent_device_before_making_its_run_dir(
        no_gpu, tmp_path: Path, capsys, method: str, extra: list[str], device: str) -> None:
    """--device cuda without a GPU was a driver traceback from torch.cuda.set_device."""
    run_dir = tmp_path / "run"
    _refused(["train", method, "--data", str(tmp_path), *extra, "--run-dir", str(run_dir), "--device", device],
             device, capsys)
    assert not run_dir.exists()


def _refused(argv: list[str], device: str, capsys) -> None:
    """``vidcorr ARGV`` ends with exit 2 and no traceback: a device name torch does not know as a usage
    error (argparse's, usage line included), one this machine lacks as bad input, one line; both in the
    command line's terms (--device cpu, not the API's device='cpu')."""
    if device in ("gpu", "meta"):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "argument --device:" in err and "Traceback" not in err
        assert "device='" not in err and ("use --device cpu" in err) == (device == "meta")
        assert "argument --device: --device" not in err  # the flag named once, by argparse
        return
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vidcorr: error: --device {device} but CUDA is not "
                                                   "available here"), lines
    assert lines[0].endswith("; use --device cpu") and "device='" not in lines[0]


@pytest.mark.parametrize("command", [["propagate", "v.mp4", "--mask", "m.png", "--out", "out"],
                                     ["match", "a.png", "b.png", "--out", "m.png"],
                                     ["eval", "davis", "--root", "davis", "--out", "out"],
                                     ["eval", "jhmdb", "--root", "jhmdb", "--out", "out"],
                                     ["eval", "otb", "--root", "otb", "--out", "out"], ["demo", "--out", "out"]])
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu"])
def test_a_device_this_machine_lacks_is_one_line_of_bad_input(no_gpu, tmp_path: Path, monkeypatch, capsys,
                                                              command: list[str], device: str) -> None:
    """--device cuda on a machine without CUDA printed argparse's usage lines above the error, as for a
    mistyped option; the command line is right, the machine lacks the device: one line, exit 2, as for
    other bad input (README, "Exit status"), before anything is read or written."""
    monkeypatch.chdir(tmp_path)
    _refused([*command, "--device", device], device, capsys)
    assert not list(tmp_path.iterdir())


def test_under_torchrun_cuda_is_the_ranks_gpu_and_one_it_lacks_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device(None, local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    with pytest.raises(VidcorrError, match=r"device=.cuda:2. but this machine has 2 GPU.*"
                                           r"\(LOCAL_RANK 2: more processes per node than GPUs\?\)"):
        resolve_device("cuda", local_rank=2)  # more processes than GPUs


def test_the_trainer_api_refuses_an_absent_device_before_making_its_run_dir(no_gpu, tmp_path: Path) -> None:
    recipe = recipe_from_dict({"method": "uvc", "stages": {"warmup": {"steps": 1}}}, "tiny")
    job = TrainJob(recipe, lambda: None, [tmp_path], tmp_path / "run", device="cuda")
    with pytest.raises(VidcorrError, match="device='cuda' but CUDA is not available"):
        train(job)
    assert not (tmp_path / "run").exists()


def _training_benchmark(monkeypatch, *args: str) -> None:
    """benchmarks/training.py's main() with these arguments, in this process (no interpreter start)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # its `from report import ...`
    spec = importlib.util.spec_from_file_location("benchmark_training", REPO / "benchmarks" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["training.py", *args])
    module.main()


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "error: --device cuda but CUDA is not available"),  # was a traceback
    (["--steps", "0"], "argument --steps: expected a positive integer"),  # was UnboundLocalError: start
    (["--warmup", "-1"], "argument --warmup: expected an integer >= 0"),  # the same UnboundLocalError
])
def test_training_benchmark_refuses_bad_arguments_in_one_line(no_gpu, monkeypatch, capsys, args: list[str],
                                                              message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        _training_benchmark(monkeypatch, "--recipe", "uvc-cpu", *args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
