"""Lab auto-encoder training on real frames, through the generic trainer (worker processes on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidcorr.data import GapRange, build_dataset, build_index
from vidcorr.models import load_autoencoder, read_weights
from vidcorr.train import recipe_from_dict
from vidcorr.train.autoencoder import AutoencoderTraining, train_autoencoder


pytestmark = pytest.mark.usefixtures("one_thread")


def test_reconstruction_loss_falls_within_a_few_steps(data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "short.txt"  # three short videos: decoding stays cheap
    data.write_text("".join(f"{data_dir / 'videos' / 'davis2016-train' / name}.mp4\n"
                            for name in ("dog-agility", "rollerblade", "motorbike")))
    recipe = recipe_from_dict({
        "method": "autoencoder", "seed": 3,
        "data": {"crop": 32, "batch_size": 4, "workers": 1, "samples_per_video": 4},
        "stages": {"reconstruct": {"steps": 10, "lr": 3e-4, "schedule": "constant"}},
        "log": {"every": 4, "images_every": 5, "checkpoint_every": 5},
    }, "ae-tiny")
    # held-out frames (an epoch the run never reaches) and the run's own initial weights
    dataset = build_dataset("image", build_index([data], tmp_path / "cache"), crop=32, frame=32,
                            gap=GapRange())
    held_out = {"image": torch.stack([dataset[(999, i)]["image"] for i in range(8)]) / 255}
    torch.manual_seed(recipe.seed)
    before = AutoencoderTraining()(held_out)["loss"].item()
    result = train_autoencoder(recipe, [data], tmp_path / "run", tmp_path / "ae.safetensors",
                               cache_dir=tmp_path / "cache", progress_bar=False)
    trained = AutoencoderTraining(load_autoencoder(result.export))  # as `train uvc` loads it
    after = trained(held_out)["loss"].item()
    assert result.finished and after < 0.6 * before, (before, after)
    assert trained.autoencoder.encode(torch.zeros(1, 3, 32, 32)).shape == (1, 256, 4, 4)
    meta = read_weights(result.export).meta
    assert meta["method"] == "autoencoder" and meta["steps"] == 10 and meta["data"]["videos"] == 3


def test_method_contract_and_uneven_sizes() -> None:
    method = AutoencoderTraining()
    batch = {"image": torch.rand(2, 3, 36, 44)}  # not multiples of 8: the output is cropped
    losses = method(batch)
    assert set(losses) == {"loss", "l1_lightness", "l1_colour"} and losses["loss"].requires_grad
    losses["loss"].backward()
    assert all(p.grad is not None for p in method.trainable_parameters())
    assert method.visualise(batch)["input_vs_reconstruction"].shape == (2, 3, 36, 88)
    with pytest.raises(ValueError, match="not the auto-encoder"):
        train_autoencoder(recipe_from_dict({"stages": {"warmup": {"steps": 1}}}, "uvc"), [], "x", "y")
