"""Propagation speed and memory benchmark (not a test).

Two measurements, each in a fresh subprocess so peak resident memory (VmHWM) is its own:

* ``throughput``: `vidcorr eval davis` on a DAVIS root (default ../shared/data/davis2016, 480p):
  frames/s, and the share of wall time in feature extraction vs affinity + label transport.
* ``memory``: propagation through one sequence played forward and backward (ping-pong) to 40 and
  to 400 frames; peak RSS must not grow with the video length.

    python benchmarks/propagation.py --features random-resnet18 --preset crw \
        --json docs/benchmarks/propagation-cpu-crw.json

``--track`` measures UVC-track (`vidcorr eval davis --track`) instead of plain propagation.

Results are printed as a table and written to --json; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import machine, parse_device_arguments, run_script, write_json  # benchmarks/report.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "davis2016"


def current_rss_mib() -> float:
    """Resident set size of this process now (Linux VmRSS), MiB; the peak comes from
    `vidcorr.evaluate.timing.peak_rss_mib`, the same measurement `eval davis` records."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not available (Linux only)")


def model_label(args) -> str:
    """The model a run measures, as its JSON records it: the floor, the --encoder spec, or the weights'
    path. Not "default weights": the default changed (uvc_r18, then uvc_r18_ft3) under the JSONs
    docs/benchmarks.md quotes."""
    from vidcorr.defaults import DEFAULT_WEIGHTS

    if args.features:
        return args.features
    if args.encoder:
        return f"--encoder {args.encoder}"
    weights = Path(args.weights).resolve() if args.weights else DEFAULT_WEIGHTS
    return str(weights.relative_to(REPO) if weights.is_relative_to(REPO) else weights)


def refuse_other_models(model: str, records: list[Path]) -> None:
    """InputError naming each of ``records`` (kept JSONs of one table) that measured another model
    than ``model``, the one this run measures: scripts/speed_accuracy.sh reran a missing variant
    with the default weights (now uvc_r18_ft3) beside records of uvc_r18, one table of two models."""
    from vidcorr.errors import InputError

    others = [f"{path} ({recorded})" for path in records
              if (recorded := json.loads(path.read_text()).get("model")) != model]
    if others:
        raise InputError(None, f"this run measures {model}, and its table's records another model: "
                               f"{', '.join(others)}; give their model (--weights) or keep them elsewhere")


def _model(args):
    from vidcorr.cli.common import load_model, resolve_preset

    preset = resolve_preset(args)
    encoder, info = load_model(args, preset)
    return preset, encoder, info


def child_throughput(args) -> dict:
    from vidcorr.evaluate.davis import run_davis

    preset, encoder, info = _model(args)
    with tempfile.TemporaryDirectory() as out:
        results = run_davis(encoder, preset, args.root, out, sequences=args.sequences,
                            device=args.device, batch_size=args.batch_size, model_info=info,
                            track=args.track)
    t = results["timing"]
    spent = t["feature_seconds"] + t["propagation_seconds"]
    return {"J&F-Mean": results["J&F-Mean"], "preset_knobs": results["preset_knobs"], **t,
            "feature_share": t["feature_seconds"] / spent, "propagation_share": t["propagation_seconds"] / spent,
            "feature_ms_per_frame": 1000 * t["feature_seconds"] / t["frames"],
            "propagation_ms_per_frame": 1000 * t["propagation_seconds"] / t["frames"]}  # t has peak_rss_mib


def ping_pong(paths: list, length: int) -> list:
    """Frame paths played forward, backward, forward... to ``length`` frames."""
    cycle = paths + paths[-2:0:-1]
    return [cycle[i % len(cycle)] for i in range(length)]


def child_memory(args) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from vidcorr.evaluate.timing import peak_gpu_mib, peak_rss_mib
    from vidcorr.io.davis import DavisDataset
    from vidcorr.masks import propagate_mask
    from vidcorr.track_uvc import mask_propagator

    preset, encoder, info = _model(args)
    dataset = DavisDataset(args.root, sequences=[args.memory_sequence])
    paths = ping_pong(dataset.frames(args.memory_sequence), args.length)
    frames = (np.asarray(Image.open(p).convert("RGB")) for p in paths)
    propagator = mask_propagator(encoder, preset, args.track, device=args.device, batch_size=args.batch_size)
    start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    on_gpu = propagator.device.type == "cuda"
    # frame index -> (current, peak) RSS [, (current, peak) GPU MiB]: does the peak plateau, does
    # anything accumulate?
    trace = {}
    n = 0
    for n, _ in enumerate(propagate_mask(propagator, frames, dataset.first_mask(args.memory_sequence)), 1):
        if n % args.trace_every == 0:
            trace[n] = [round(current_rss_mib(), 1), peak_rss_mib()]
            if on_gpu:
                trace[n] += [round(torch.cuda.memory_allocated(propagator.device) / 2**20, 1),
                             peak_gpu_mib(propagator.device)]
    end = resource.getrusage(resource.RUSAGE_SELF)
    # CPU time and page faults, not only wall time: they compare allocator settings fairly on a busy
    # machine (per-block mmap costs page faults, i.e. system time).
    return {"frames": n, "seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": peak_rss_mib(),
            "user_seconds": round(end.ru_utime - usage.ru_utime, 2),
            "system_seconds": round(end.ru_stime - usage.ru_stime, 2),
            "minor_page_faults": end.ru_minflt - usage.ru_minflt,
            "context_frames_held": propagator.context_size, "rss_trace_mib": trace,
            **({"peak_gpu_mib": peak_gpu_mib(propagator.device)} if on_gpu else {})}


def run_child(args, mode: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, *sys.argv[1:]]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if out.returncode != 0:  # say why (an unknown sequence, a missing root), not only "exit status 1"
        sys.stderr.write(out.stderr)
        why = (f"was killed by signal {-out.returncode} (out of memory?)" if out.returncode < 0
               else f"failed (exit status {out.returncode}); its error is above")
        print(f"benchmarks/propagation.py: the {mode} measurement {why}", file=sys.stderr)
        raise SystemExit(2 if out.returncode == 2 else 1)  # 2: bad input (`run_script`), as the child said
    return json.loads(out.stdout.strip().splitlines()[-1])


def video_lengths(text: str) -> list[str]:
    """--lengths "40,400" -> ["40", "400"] (the JSON's keys), checked before any measurement runs: a
    typo surfaced only when the memory child started, after the throughput run."""
    from vidcorr.cli.common import comma_list, positive_int

    return [str(positive_int(length)) for length in comma_list(text)]


def build_parser() -> argparse.ArgumentParser:
    from vidcorr.cli.common import add_model_arguments, comma_list

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--sequences", type=comma_list, help="throughput on a subset (default: the whole split)")
    p.add_argument("--memory-sequence", default="car-shadow")
    p.add_argument("--lengths", type=video_lengths, default=["40", "400"], help="video lengths (frames) to trace")
    p.add_argument("--trace-every", type=int, default=50, help="record the peak RSS every N frames")
    p.add_argument("--skip", choices=["throughput", "memory"], help="skip one measurement")
    p.add_argument("--track", action="store_true",
                   help="UVC-track instead of plain propagation (as eval davis --track)")
    p.add_argument("--json", type=Path, help="write results here")
    p.add_argument("--same-model-as", type=Path, nargs="*", default=[], metavar="JSON",
                   help="refuse to run unless these records measured the model this run does (one table's rows)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--default-malloc", action="store_true",
                   help="skip vidcorr.runtime.bound_cpu_memory (the CLI applies it): glibc's default heap")
    p.add_argument("--child", choices=["throughput", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    add_model_arguments(p)
    return p


def main() -> None:
    args = parse_device_arguments(build_parser())
    if args.child and not args.default_malloc:
        from vidcorr.runtime import bound_cpu_memory

        bound_cpu_memory()  # as `vidcorr eval` does
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.child:
        result = child_throughput(args) if args.child == "throughput" else child_memory(args)
        print(json.dumps(result))
        return

    import torch

    from vidcorr.cli.common import resolve_preset
    from vidcorr.presets import preset_knobs

    # The knobs both measurements run (--size, --context, --window-first...): a memory-only record had
    # only the preset's name; resolved here, a refused combination stops before any measurement.
    knobs = preset_knobs(resolve_preset(args))
    refuse_other_models(model_label(args), args.same_model_as)  # before any measurement
    # VIDCORR_DEFAULT_MALLOC=1 (docs/benchmarks.md's way to reproduce the earlier rows) makes the
    # children's bound_cpu_memory() a no-op, as --default-malloc does.
    default_malloc = args.default_malloc or os.environ.get("VIDCORR_DEFAULT_MALLOC") == "1"
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "preset": args.preset,
              "preset_knobs": knobs, "track": args.track,
              "model": model_label(args), "device": args.device,
              "machine": machine(),
              "torch_threads": args.threads or torch.get_num_threads(), "torch": torch.__version__,
              "allocator": "glibc default" if default_malloc else "vidcorr.runtime.bound_cpu_memory",
              "environment": {k: v for k, v in os.environ.items()
                              if k.startswith("MALLOC_") or k in ("THP_MEM_ALLOC_ENABLE", "VIDCORR_DEFAULT_MALLOC",
                                                                   "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE")}}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(args.device)  # "cuda:1" names the second GPU
    if args.skip != "throughput":
        report["throughput"] = run_child(args, "throughput")
        t = report["throughput"]
        print(f"throughput: {t['frames']} frames, {t['frames_per_second']:.2f} frames/s, features "
              f"{t['feature_ms_per_frame']:.0f} ms/frame, affinity+transport {t['propagation_ms_per_frame']:.0f} "
              f"ms/frame, peak RSS {t['peak_rss_mib']:.0f} MiB"
              + (f", peak GPU {t['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in t else "")
              + f", J&F {t['J&F-Mean']:.4f}")
    if args.skip != "memory":
        report["memory"] = {}
        for length in args.lengths:
            m = run_child(args, "memory", length=length)
            report["memory"][length] = m
            gpu = f", peak GPU {m['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in m else ""
            print(f"memory: {m['frames']} frames -> peak RSS {m['peak_rss_mib']:.0f} MiB{gpu} ({m['seconds']} s wall, "
                  f"{m['user_seconds']} s user + {m['system_seconds']} s system CPU, "
                  f"{m['minor_page_faults']} page faults)")
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    run_script(main)
