"""UVC training throughput benchmark (not a test): pairs per second of forward + backward + Adam step.

Times the model alone on random batches of a recipe's shapes (no video decoding), for each stage:
warm-up (two S x S crops) and joint (an S x S patch against a T x T frame).

    python benchmarks/training.py --recipe uvc-cpu --device cpu --threads 1
    python benchmarks/training.py --recipe uvc --device cuda --bf16

End-to-end numbers with real decoding are in each run's log (``samples/s``); docs/benchmarks.md
quotes both.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from vidcorr.methods import UVC, recipe as uvc_recipe
from vidcorr.models import LabAutoencoder
from vidcorr.train.config import load_recipe

from report import machine, write_json  # benchmarks/report.py, beside this script


def make_batch(kind: str, batch: int, crop: int, frame: int, device) -> dict[str, torch.Tensor]:
    """Random RGB in [0, 1] shaped like the data pipeline's batches."""
    target = crop if kind == "crop_pair" else frame
    return {"ref": torch.rand(batch, 3, crop, crop, device=device),
            "target": torch.rand(batch, 3, target, target, device=device)}


def time_stage(model: UVC, stage: str, args, data, steps: int, warmup: int) -> float:
    """Pairs per second over ``steps`` timed steps after ``warmup`` untimed ones."""
    device = torch.device(args.device)
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    batch = make_batch(model.batch_kind(stage), data.batch_size, data.crop, data.frame, device)
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16 and device.type == "cuda"):
            loss = model(batch, stage)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * data.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="uvc-cpu", help="recipe name or TOML (shapes and model config)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="override the recipe's batch")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    data = recipe.data if not args.batch_size else dataclasses.replace(recipe.data, batch_size=args.batch_size)
    config = uvc_recipe(recipe.base or "uvc", **recipe.model)
    model = UVC(config, LabAutoencoder()).to(args.device).train()
    report = {"recipe": args.recipe, "device": args.device, "batch": data.batch_size, "crop": data.crop,
              "frame": data.frame, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": machine()}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(0)
    for stage in ("warmup", "joint"):
        report[f"{stage}_pairs_per_s"] = round(time_stage(model, stage, args, data, args.steps, args.warmup), 3)
        print(f"{stage}: {report[f'{stage}_pairs_per_s']:.2f} pairs/s (batch {data.batch_size}, "
              f"crop {data.crop}, frame {data.frame}, {args.device})")
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
