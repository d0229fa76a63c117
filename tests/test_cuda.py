"""The CUDA path gives the CPU path's answers: affinity, propagation, evaluation, training.

Skipped where no GPU is visible (CI has none); `scripts/device_check.sh` runs this file on a GPU
machine. Self-contained: the repository's demo sequence and synthetic tensors, no ../shared.
TF32 is switched off so the GPU computes the same IEEE fp32 products as the CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidcorr.affinity import sparse_affinity
from vidcorr.cli import main
from vidcorr.cli.demo_cmd import DEMO_ROOT, DEMO_SEQUENCE
from vidcorr.io.davis import DavisDataset
from vidcorr.io.video import open_frames
from vidcorr.masks import propagate_mask
from vidcorr.methods import STT, UVC, CycleTime, MoCo, MoCoConfig, STTConfig, recipe
from vidcorr.methods.cycletime import recipe as cycletime_recipe
from vidcorr.patches import rigid_theta
from vidcorr.models import AUTOENCODER_CONFIG, LabAutoencoder, build_encoder, load_encoder, save_weights
from vidcorr.presets import PRESETS, SizePolicy, get_preset
from vidcorr.propagate import Propagator
from vidcorr.track_uvc import TrackOptions, mask_propagator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def ieee_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _features(n: int, c: int = 64, h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, c, h, w, generator=g), dim=1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_sparse_affinity_matches_cpu(name: str) -> None:
    """Windowed (tiled: 40 x 56 cells > one 36 x 36 block) and dense top-k, every preset's rules."""
    preset = get_preset(name)
    feats = _features(4)
    query, keys = feats[0], list(feats[1:])
    windowed = [preset.window_first] + [True] * (len(keys) - 1)
    cpu = sparse_affinity(query, keys, windowed, preset.topk)
    gpu = sparse_affinity(query.to(CUDA), [k.to(CUDA) for k in keys], windowed, preset.topk)
    assert gpu.index.device.type == "cuda"
    assert torch.equal(gpu.index.cpu(), cpu.index)
    torch.testing.assert_close(gpu.weights.cpu(), cpu.weights, atol=1e-5, rtol=1e-4)


def _demo_frames(n: int) -> tuple[list[np.ndarray], np.ndarray]:
    dataset = DavisDataset(DEMO_ROOT, sequences=[DEMO_SEQUENCE])
    frames = list(open_frames(dataset.frames(DEMO_SEQUENCE)[0].parent))[:n]
    return [np.asarray(f) for f in frames], dataset.first_mask(DEMO_SEQUENCE)


@pytest.mark.parametrize(("name", "track"), [("crw", False), ("uvc", False), ("uvc", True)])
def test_propagation_on_real_frames_matches_cpu(name: str, track: bool) -> None:
    """12 frames of the demo sequence at 240p: the GPU's masks are the CPU's, pixel for pixel
    except where near-equal scores swap places in a top-k (features differ in the last bits);
    with UVC-track (boxes on the GPU) too."""
    preset = get_preset(name).with_overrides(size=SizePolicy("short_side", 240, None))
    frames, first_mask = _demo_frames(12)
    masks = {}
    for device in ("cpu", "cuda"):
        propagator = mask_propagator(build_encoder("random-resnet18"), preset, TrackOptions() if track else None,
                                     device=device)
        masks[device] = np.stack([labels for _, labels in propagate_mask(propagator, frames, first_mask)])
    agree = (masks["cpu"] == masks["cuda"]).mean()
    assert agree > 0.999, f"GPU and CPU masks agree on only {agree:.4%} of pixels"


def test_bf16_autocast_propagation_stays_close() -> None:
    """bf16 features (the Propagator's `autocast`, CUDA only) move few pixels."""
    preset = get_preset("crw").with_overrides(size=SizePolicy("short_side", 240, None))
    frames, first_mask = _demo_frames(12)
    masks = []
    for autocast in (False, True):
        propagator = Propagator(build_encoder("random-resnet18"), preset, device="cuda", autocast=autocast)
        masks.append(np.stack([labels for _, labels in propagate_mask(propagator, frames, first_mask)]))
    assert (masks[0] == masks[1]).mean() > 0.98


def test_eval_davis_on_cuda_scores_like_cpu(tmp_path: Path) -> None:
    """`vidcorr eval davis --device cuda` end to end: same J&F as on CPU, GPU memory recorded."""
    scores = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        args = ["eval", "davis", "--root", str(DEMO_ROOT), "--out", str(out), "--size", "240",
                "--features", "random-resnet18", "--device", device]
        assert main(args) == 0
        scores[device] = json.loads((out / "results.json").read_text())
    gpu_timing = scores["cuda"]["timing"]
    assert gpu_timing["device"].startswith("cuda") and gpu_timing["peak_gpu_mib"] > 0
    assert scores["cuda"]["J&F-Mean"] == pytest.approx(scores["cpu"]["J&F-Mean"], abs=5e-3)


def _uvc_batches(seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {"warmup": {"ref": torch.rand(2, 3, 64, 64, generator=g), "target": torch.rand(2, 3, 64, 64, generator=g)},
            "joint": {"ref": torch.rand(2, 3, 64, 64, generator=g), "target": torch.rand(2, 3, 128, 128, generator=g)}}


@pytest.mark.parametrize("stage", ["warmup", "joint"])
def test_uvc_training_step_matches_cpu(stage: str) -> None:
    """Same weights, same batch: the fp32 loss and gradients agree; bf16 autocast stays finite.
    Temperature 20 (as the shipped weights were trained): at the paper's 1 the softmax of a fresh
    network is one-hot, and last-bit differences in the features could pick another maximum."""
    config = recipe("uvc", temperature=20.0)
    torch.manual_seed(0)
    cpu_model = UVC(config, LabAutoencoder()).train()
    gpu_model = UVC(config, LabAutoencoder()).train()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(CUDA)
    batch = _uvc_batches()[stage]
    cpu_out = cpu_model(batch, stage)
    gpu_out = gpu_model({k: v.to(CUDA) for k, v in batch.items()}, stage)
    torch.testing.assert_close(gpu_out["loss"].cpu(), cpu_out["loss"], rtol=1e-3, atol=1e-4)
    cpu_out["loss"].backward()
    gpu_out["loss"].backward()
    for (name, p_cpu), p_gpu in zip(cpu_model.named_parameters(), gpu_model.parameters()):
        if p_cpu.grad is not None:
            torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, rtol=1e-2, atol=1e-4, msg=name)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gpu_model({k: v.to(CUDA) for k, v in batch.items()}, stage)["loss"]
    assert torch.isfinite(loss)


def test_cycletime_training_step_matches_cpu() -> None:
    """CycleTime's tracking (affinity, regressor, feature crops, inlier count) gives the CPU's loss
    and gradients on the GPU; bf16 autocast stays finite."""
    torch.manual_seed(0)
    config = cycletime_recipe("cycletime-cpu", frame_size=168, clip_length=2)
    cpu_model = CycleTime(config).train()
    gpu_model = CycleTime(config).train()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(CUDA)
    g = torch.Generator().manual_seed(1)
    batch = {"clip": torch.rand(2, 2, 3, 168, 168, generator=g), "target": torch.rand(2, 3, 168, 168, generator=g),
             "patch": torch.rand(2, 3, 56, 56, generator=g),
             "theta": rigid_theta(torch.tensor([[0.2, -0.3, 0.4], [-0.5, 0.1, -0.2]]))}
    cpu_out = cpu_model(batch)
    gpu_out = gpu_model({k: v.to(CUDA) for k, v in batch.items()})
    for term in ("loss", "cycle", "skip", "inlier"):
        torch.testing.assert_close(gpu_out[term].cpu(), cpu_out[term], rtol=1e-3, atol=1e-5, msg=term)
    cpu_out["loss"].backward()
    gpu_out["loss"].backward()
    for (name, p_cpu), p_gpu in zip(cpu_model.named_parameters(), gpu_model.parameters()):
        torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, rtol=1e-2, atol=1e-5, msg=name)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gpu_model({k: v.to(CUDA) for k, v in batch.items()})["loss"]
    assert torch.isfinite(loss)


def test_stt_training_step_matches_cpu() -> None:
    """STT's correlations, reconstruction, distillation and teacher give the CPU's losses and
    gradients on the GPU (every target cell weighted: the uncertainty threshold is a discrete
    choice that float rounding may flip); bf16 autocast with the release's threshold stays finite."""
    torch.manual_seed(0)
    config = STTConfig(arch="resnet18", frame_size=96, uncertain_fraction=None)  # a teacher needs >= 96
    teacher = build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4")
    cpu_model = STT(config, teacher).train()
    gpu_model = STT(config, build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4")).train()
    gpu_model.teacher.load_state_dict(teacher.state_dict())
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(CUDA)
    g = torch.Generator().manual_seed(1)
    batch = {"ref": torch.rand(2, 3, 96, 96, generator=g), "target": torch.rand(2, 3, 96, 96, generator=g)}
    torch.manual_seed(5)  # the same dropped channel for both
    cpu_out = cpu_model(batch)
    torch.manual_seed(5)
    gpu_out = gpu_model({k: v.to(CUDA) for k, v in batch.items()})
    for term in ("loss", "rec_s4", "rec_s8", "local", "global"):
        torch.testing.assert_close(gpu_out[term].cpu(), cpu_out[term], rtol=1e-3, atol=1e-6, msg=term)
    cpu_out["loss"].backward()
    gpu_out["loss"].backward()
    gpu_params = dict(gpu_model.named_parameters())
    for name, p_cpu in cpu_model.named_parameters():
        if p_cpu.grad is not None:
            torch.testing.assert_close(gpu_params[name].grad.cpu(), p_cpu.grad, rtol=1e-2, atol=1e-5, msg=name)
    release = STT(STTConfig(arch="resnet18", frame_size=96), gpu_model.teacher).to(CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(release({k: v.to(CUDA) for k, v in batch.items()})["loss"])


def test_moco_training_step_on_cuda() -> None:
    """MoCo's momentum update, shuffled key groups and queue run on the GPU and match the CPU."""
    torch.manual_seed(0)
    cpu_model = MoCo(MoCoConfig(arch="resnet18", queue_size=16, key_splits=2)).eval()
    gpu_model = MoCo(MoCoConfig(arch="resnet18", queue_size=16, key_splits=2)).eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(CUDA)
    g = torch.Generator().manual_seed(1)
    batch = {"query": torch.rand(4, 3, 64, 64, generator=g), "key": torch.rand(4, 3, 64, 64, generator=g)}
    cpu_loss = cpu_model(batch)["loss"]
    gpu_loss = gpu_model({k: v.to(CUDA) for k, v in batch.items()})["loss"]
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss, rtol=1e-3, atol=1e-5)
    gpu_model.train()
    gpu_model({k: v.to(CUDA) for k, v in batch.items()})["loss"].backward()
    assert int(gpu_model.queue_pointer) == 4 and gpu_model.queue.device.type == "cuda"


TINY_CYCLETIME = """
method = "cycletime"
base = "cycletime-cpu"
[data]
crop = 168
frame = 176
clip_length = 2
gap = [1, 1]
gap_unit = "frames"
batch_size = 4
workers = 1
samples_per_video = 8
[stages.cycle]
steps = 2
lr = 2e-4
schedule = "constant"
[log]
every = 1
[cuda]
bf16 = true
channels_last = true
"""


def test_train_cycletime_on_cuda_stops_resumes_and_exports(tmp_path: Path, capsys) -> None:
    """`vidcorr train cycletime --device cuda` (bf16, channels-last images beside 5-d clips and
    float transforms) on the demo's frame folder, stopped and resumed."""
    data = tmp_path / "videos"
    shutil.copytree(DEMO_ROOT / "JPEGImages" / "480p" / DEMO_SEQUENCE, data / DEMO_SEQUENCE)
    (tmp_path / "tiny.toml").write_text(TINY_CYCLETIME)
    export = tmp_path / "cycletime_tiny.safetensors"
    args = ["train", "cycletime", "--data", str(data), "--recipe", str(tmp_path / "tiny.toml"), "--device", "cuda",
            "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--export", str(export)]
    assert main(args + ["--max-steps", "1"]) == 0
    assert main(args + ["--resume"]) == 0
    assert "finished" in capsys.readouterr().out
    meta = json.loads(export.with_suffix(".json").read_text())["meta"]
    assert meta["steps"] == 2 and meta["method"] == "cycletime" and meta["hardware"]["device"].startswith("cuda")
    assert load_encoder(export).config.head_channels == 512


TINY_UVC = """
method = "uvc"
base = "uvc-cpu"
[data]
crop = 64
frame = 128
gap = [1, 5]
gap_unit = "frames"
batch_size = 4
workers = 1
samples_per_video = 8
[stages.warmup]
steps = 2
[stages.joint]
steps = 2
lr = 5e-5
[log]
every = 1
[cuda]
bf16 = true
channels_last = true
"""


def test_train_on_cuda_stops_resumes_and_exports(tmp_path: Path, capsys) -> None:
    """`vidcorr train uvc --device cuda` (bf16, channels-last) on the demo's frame folder, stopped
    and resumed; the exported encoder loads on the CPU."""
    data = tmp_path / "videos"
    shutil.copytree(DEMO_ROOT / "JPEGImages" / "480p" / DEMO_SEQUENCE, data / DEMO_SEQUENCE)
    (tmp_path / "tiny.toml").write_text(TINY_UVC)
    autoencoder = save_weights(LabAutoencoder(), tmp_path / "ae.safetensors", AUTOENCODER_CONFIG)
    export = tmp_path / "uvc_tiny.safetensors"
    args = ["train", "uvc", "--data", str(data), "--recipe", str(tmp_path / "tiny.toml"), "--device", "cuda",
            "--autoencoder", str(autoencoder), "--run-dir", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--export", str(export)]
    assert main(args + ["--max-steps", "2"]) == 0
    assert "stopped at step 2" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    assert "finished" in capsys.readouterr().out
    meta = json.loads(export.with_suffix(".json").read_text())["meta"]
    assert meta["steps"] == 4 and meta["hardware"]["device"].startswith("cuda")
    encoder = load_encoder(export)
    assert all(p.device.type == "cpu" for p in encoder.parameters())
