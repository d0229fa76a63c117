"""Two-process DDP smoke run on the CPU (gloo), initialised from torchrun's environment variables."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vidcorr.methods import uvc
from vidcorr.models import LabAutoencoder
from vidcorr.train import TrainJob, recipe_from_dict, train
from vidcorr.train.distributed import shutdown


def _rank(rank: int, port: int, data: str, out: Path) -> None:
    """One process, set up as torchrun would (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    recipe = recipe_from_dict({
        "method": "uvc", "base": "uvc-cpu",
        "data": {"crop": 32, "frame": 64, "gap": [0.04, 0.5], "gap_unit": "seconds",
                 "batch_size": 4, "workers": 0},
        "stages": {"warmup": {"steps": 2, "lr": 1e-3}, "joint": {"steps": 1, "lr": 5e-4}},
        "log": {"every": 1, "images_every": 100, "checkpoint_every": 100},
    }, "ddp-smoke")
    losses, built = [], []

    def build():
        built.append(uvc.UVC(uvc.recipe("uvc-cpu"), LabAutoencoder()))
        return built[-1]

    job = TrainJob(recipe, build, [data], out / "run", switches=uvc.stage_switches,
                   cache_dir=out / "cache", progress_bar=False,
                   on_step=lambda progress, terms: losses.append(terms["loss"]))
    result = train(job)
    world = dist.get_world_size()
    shutdown()
    weights = torch.cat([p.detach().double().flatten() for p in built[0].encoder.parameters()])
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world": world, "losses": losses, "steps": result.progress.step,
        "samples": result.progress.samples,
        "checksum": float(weights.mul(torch.arange(1, len(weights) + 1)).sum()),
        "checkpoint": (out / "run" / "checkpoint.pt").exists(),
    }))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_run_agrees_on_losses(data_dir: Path, tmp_path: Path) -> None:
    # fork: the ranks start from this already-imported process (a fresh interpreter per rank
    # costs ~10 s of imports on the 2-core box); init is still from the environment variables.
    mp.start_processes(_rank, args=(_free_port(), str(data_dir / "videos" / "davis2016-train"), tmp_path),
                       nprocs=2, start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 3 and r["samples"] == 12 for r in ranks)
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the all-reduced loss, step by step
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # DDP kept the replicas identical
    assert all(r["checkpoint"] for r in ranks)  # written once, by rank 0
