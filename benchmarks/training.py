"""Training throughput benchmark (not a test): samples per second of forward + backward + Adam step.

Times the model alone on random batches of a recipe's shapes (no video decoding), for each stage
of its method: UVC's warm-up (two S x S crops) and joint (an S x S patch against a T x T frame);
CycleTime's one stage (an L-frame clip, a target frame and its patch); STT's temporal stage (two
S x S frames, with a random teacher of the student's depth so the global term is timed too);
MoCo's (two S x S views).

    python benchmarks/training.py --recipe uvc-cpu --device cpu --threads 1
    python benchmarks/training.py --recipe uvc --device cuda --bf16
    python benchmarks/training.py --recipe cycletime-cpu --device cpu --threads 1
    python benchmarks/training.py --recipe stt-cpu --device cpu --threads 1

End-to-end numbers with real decoding are in each run's log (``samples/s``); docs/benchmarks.md
quotes both.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from vidcorr.cli.common import device_name, non_negative_int, positive_int
from vidcorr.methods import UVC, CycleTime, moco, recipe as uvc_recipe, stt
from vidcorr.methods.cycletime import config_for_recipe
from vidcorr.models import LabAutoencoder, build_encoder
from vidcorr.patches import rigid_theta
from vidcorr.runtime import flush_cpu_denormals
from vidcorr.train.config import DataConfig, Recipe
from vidcorr.train.recipe_files import load_recipe

from report import machine, parse_device_arguments, run_script, write_json  # benchmarks/report.py, beside this script


def make_batch(kind: str, data: DataConfig, device) -> dict[str, torch.Tensor]:
    """Random RGB in [0, 1] (and, for CycleTime, random patch transforms) shaped like the data
    pipeline's batches."""
    b, crop = data.batch_size, data.crop
    if kind == "cycle_clip":
        params = (torch.rand(b, 3, device=device) - 0.5) * torch.tensor([4 / 3, 4 / 3, 1.57], device=device)
        return {"clip": torch.rand(b, data.clip_length, 3, crop, crop, device=device),
                "target": torch.rand(b, 3, crop, crop, device=device),
                "patch": torch.rand(b, 3, crop // 3, crop // 3, device=device), "theta": rigid_theta(params)}
    if kind == "two_views":
        return {"query": torch.rand(b, 3, crop, crop, device=device),
                "key": torch.rand(b, 3, crop, crop, device=device)}
    target = data.frame if kind == "patch_frame" else crop
    return {"ref": torch.rand(b, 3, crop, crop, device=device),
            "target": torch.rand(b, 3, target, target, device=device)}


def build_model(recipe: Recipe) -> tuple[nn.Module, tuple[str, ...]]:
    """The recipe's training model and the stages to time."""
    if recipe.method == "cycletime":
        return CycleTime(config_for_recipe(recipe.base, recipe.model, recipe.data)), ("cycle",)
    if recipe.method == "stt":
        cfg = stt.config_for_recipe(recipe.base, recipe.model, recipe.data)
        teacher = build_encoder(cfg.arch, strides=(1, 2, 2, 2), out_layer="layer4")
        return stt.STT(cfg, teacher), stt.STAGES
    if recipe.method == "moco":
        return moco.MoCo(moco.config_for_recipe(recipe.base, recipe.model)), moco.STAGES
    if recipe.method == "uvc":
        return UVC(uvc_recipe(recipe.base or "uvc", **recipe.model), LabAutoencoder()), ("warmup", "joint")
    raise SystemExit(f"no training benchmark for method {recipe.method!r}")


def time_stage(model: nn.Module, stage: str, args, data: DataConfig, steps: int, warmup: int) -> float:
    """Samples per second over ``steps`` timed steps after ``warmup`` untimed ones."""
    device = torch.device(args.device)
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    batch = make_batch(model.batch_kind(stage), data, device)
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(batch, stage)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * data.batch_size / (time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="uvc-cpu", help="recipe name or TOML (shapes and model config)")
    p.add_argument("--device", default="cpu", type=device_name, help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA, or a CPU with bf16 instructions)")
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per stage (at least 1)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed steps before them")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch")
    p.add_argument("--keep-denormals", action="store_true",
                   help="compute with subnormal floats, as training did before 2026-12-06 (default: flushed, "
                        "as `vidcorr train` does on a CPU)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def main() -> None:
    args = parse_device_arguments(build_parser())
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    data = recipe.data if not args.batch_size else dataclasses.replace(recipe.data, batch_size=args.batch_size)
    model, stages = build_model(recipe)
    model = model.to(args.device).train()
    report = {"recipe": args.recipe, "method": recipe.method, "device": args.device, "batch": data.batch_size,
              "crop": data.crop, "frame": data.frame, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "machine": machine()}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(args.device)  # "cuda:1" names the second GPU
    # UVC's samples are frame pairs; the key keeps the name earlier JSONs use.
    unit = {"cycletime": "clips", "moco": "images"}.get(recipe.method, "pairs")
    report["denormals_flushed"] = not args.keep_denormals
    for stage in stages:
        key = f"{stage}_{unit}_per_s"
        with flush_cpu_denormals(not args.keep_denormals):
            report[key] = round(time_stage(model, stage, args, data, args.steps, args.warmup), 3)
        print(f"{stage}: {report[key]:.2f} {unit}/s (batch {data.batch_size}, crop {data.crop}, "
              f"frame {data.frame}, {args.device})")
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    run_script(main)
