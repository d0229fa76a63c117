"""Golden rules of a training step's batch/loss plumbing, the torchrun environment, the auto-encoder's
objective (METHODS.md §1.7) and the JHMDB readers' edge cases; expected values worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from jhmdb_helpers import NAME, jhmdb_tree
from torch import Tensor, nn

from vidcorr.errors import InputError
from vidcorr.io.jhmdb import JhmdbDataset, read_joints, read_split_file
from vidcorr.models import LabAutoencoder
from vidcorr.train import distributed
from vidcorr.train.autoencoder import AutoencoderTraining, he_initialised
from vidcorr.train.distributed import DistContext, all_reduce_mean, init_distributed, launched_rank
from vidcorr.train.distributed import launched_world_size
from vidcorr.train.step import to_device

CPU = torch.device("cpu")


# --- step.to_device --------------------------------------------------------------------------------

def test_to_device_scales_uint8_by_255_leaves_floats_and_sums_skipped() -> None:
    """uint8 0..255 -> [0, 1] (k / 255), float entries (CycleTime's theta) untouched, "skipped" summed."""
    ctx = DistContext(0, 1, 0, CPU)
    theta = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 2.0, -0.5]]])
    batch = {"image": torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1), "theta": theta,
             "skipped": torch.tensor([1, 0, 2])}
    images, skipped = to_device(batch, ctx, channels_last=False)
    assert set(images) == {"image", "theta"}
    torch.testing.assert_close(images["image"].flatten(), torch.tensor([0.0, 0.2, 1.0]))
    torch.testing.assert_close(images["theta"], torch.tensor([[[1.0, 0.0, 0.5], [0.0, 2.0, -0.5]]]))
    torch.testing.assert_close(theta, torch.tensor([[[1.0, 0.0, 0.5], [0.0, 2.0, -0.5]]]))  # nor in place
    assert skipped.item() == 3  # 1 + 0 + 2, not the max


def test_to_device_channels_last_only_for_4d_images() -> None:
    """channels_last is a 4-d memory format: clips (B, L, 3, H, W) keep their layout."""
    ctx = DistContext(0, 1, 0, CPU)
    batch = {"image": torch.zeros(2, 3, 4, 5, dtype=torch.uint8), "clip": torch.zeros(2, 2, 3, 4, 5, dtype=torch.uint8),
             "skipped": torch.zeros(2, dtype=torch.long)}
    images, _ = to_device(batch, ctx, channels_last=True)
    assert images["image"].is_contiguous(memory_format=torch.channels_last)
    assert images["clip"].shape == (2, 2, 3, 4, 5) and images["clip"].is_contiguous()


# --- distributed: the torchrun environment ---------------------------------------------------------

def test_launched_rank_and_world_size_read_torchrun_s_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (launched_rank(), launched_world_size()) == (0, 1)  # a plain call: rank 0 of 1
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")  # second node: the global rank is RANK, not LOCAL_RANK
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (launched_rank(), launched_world_size()) == (3, 4)


def test_init_distributed_joins_with_rank_world_and_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun (world 4, rank 2, local rank 1) on the CPU: gloo, with the environment's numbers."""
    calls: list[tuple] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert init_distributed("cpu") == DistContext(2, 4, 1, CPU)
    assert calls == [(("gloo",), {"rank": 2, "world_size": 4})]


def test_single_process_touches_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: calls.append((a, k)))
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1
    ctx = init_distributed("cpu")
    assert ctx == DistContext(0, 1, 0, CPU) and not ctx.distributed and calls == []


def test_all_reduce_mean_leaves_its_input_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks, the other's values simulated as (3, 5): the mean is returned, the input not summed into."""
    def all_reduce(values: Tensor, op: object = None) -> None:
        values += torch.tensor([3.0, 5.0])

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    values = torch.tensor([1.0, 1.0])
    mean = all_reduce_mean(values, DistContext(0, 2, 0, CPU))
    torch.testing.assert_close(mean, torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(values, torch.tensor([1.0, 1.0]))


# --- auto-encoder objective -------------------------------------------------------------------------

class _FixedDecoder(nn.Module):
    """Outputs (B, 3, 8·ceil(H/8), 8·ceil(W/8)): ``value`` per channel in the top-left H x W, 9 elsewhere."""

    def __init__(self, value: tuple[float, float, float]):
        super().__init__()
        self.value = torch.tensor(value).view(1, 3, 1, 1)

    def forward(self, lab_n: Tensor) -> Tensor:
        b, _, h, w = lab_n.shape
        out = torch.full((b, 3, -(-h // 8) * 8, -(-w // 8) * 8), 9.0)
        out[..., :h, :w] = self.value
        return out


def test_autoencoder_loss_is_l1_in_uvc_lab_on_the_top_left_crop() -> None:
    """Black RGB is Lab (0, 0, 0) = UVC Lab (-1, 0, 0) ((0·2.55 - 128) / 128). A decoder giving
    (0.5, 0.25, -0.75) errs by (1.5, 0.25, 0.75): L1 = 2.5 / 3, lightness 1.5, colour (0.25 + 0.75) / 2."""
    method = AutoencoderTraining(_FixedDecoder((0.5, 0.25, -0.75)))  # type: ignore[arg-type]
    losses = method({"image": torch.zeros(2, 3, 10, 13)})  # not multiples of 8: cropped from the top left
    torch.testing.assert_close(losses["loss"], torch.tensor(2.5 / 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(losses["l1_lightness"], torch.tensor(1.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(losses["l1_colour"], torch.tensor(0.5), atol=1e-4, rtol=0)


def test_he_initialisation_zeroes_every_conv_bias() -> None:
    convs = [m for m in he_initialised(LabAutoencoder()).modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(torch.count_nonzero(c.bias) == 0 for c in convs)


# --- JHMDB readers ----------------------------------------------------------------------------------

def test_read_joints_refuses_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "joint_positions.mat"
    scipy.io.savemat(path, {"pos_img": np.zeros((2, 15, 0))})
    with pytest.raises(InputError, match="T > 0") as err:
        read_joints(path)
    assert str(path) in str(err.value)


def test_split_file_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "brush_hair_test_split1.txt"
    path.write_text("a.avi 1\n\n   \nb.avi 2\n")
    assert read_split_file(path) == {"a": 1, "b": 2}


@pytest.fixture(scope="module")
def jhmdb_root(data_dir: Path) -> Path:
    return data_dir / "jhmdb"


def test_fewer_joint_frames_than_frame_images_is_refused(tmp_path: Path, jhmdb_root: Path) -> None:
    """The frame-count check works both ways: 3 pos_img frames for 4 images is as wrong as 5."""
    root = jhmdb_tree(tmp_path, jhmdb_root, 4, n_mat_frames=3)
    mat = root / "joint_positions" / NAME / "joint_positions.mat"
    with pytest.raises(InputError, match="pos_img has 3 frames but .* has 4 frame images") as err:
        JhmdbDataset(root).videos[0].joints()
    assert str(mat) in str(err.value)
