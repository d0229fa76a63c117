"""What every benchmark records beside its numbers: the machine, and the --json file it writes."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path


# Instruction sets that change which arithmetic is fast (bf16 matrix products run ~3x fp32 with
# AMX, ~2.5x with AVX512-BF16, and slower than fp32 without either).
_NOTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine() -> str:
    """The processor model, core count and the instruction sets that matter for speed, e.g.
    ``"AMD EPYC 9R14, x86_64, 2 cores (avx2 avx512f avx512_bf16)"``.

    The project's sessions run on more than one kind of 2-core VM (AMD EPYC, Intel Xeon with AMX),
    so a benchmark that only said "x86_64, 2 cores" could not be compared with another.
    """
    model, flags = _cpuinfo()
    arch = platform.processor() or platform.machine()
    noted = " ".join(f for f in _NOTED_FLAGS if f in flags)
    return f"{model + ', ' if model else ''}{arch}, {os.cpu_count()} cores" + (f" ({noted})" if noted else "")


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; empty where there is none (macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", set()
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields.get("model name", ""), set(fields.get("flags", "").split())


def write_json(path: Path, report: dict) -> None:
    """Write ``report`` to ``path`` (parents created) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")


def parse_device_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser.parse_args()``, with its --device checked against this machine
    (`vidcorr.cli.common.check_device`, which `vidcorr` runs after parsing): one the machine lacks
    (--device cuda without a GPU) is a usage error, argparse's exit 2."""
    from vidcorr.cli.common import check_device
    from vidcorr.errors import VidcorrError

    args = parser.parse_args()
    try:
        check_device(args.device)
    except VidcorrError as error:
        parser.error(str(error))
    return args


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --threads and --json (a script's `build_parser`, which tests parse the docs' commands with)."""
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path)


def apply_timing_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Apply --threads and put the repository's src/ first on the import path (the scripts time the
    working tree, installed or not); returns ``args``."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    return args


def run_script(main: Callable[[], object]) -> None:
    """Run a benchmark's ``main``: bad input (a `vidcorr.errors.VidcorrError`: a missing DAVIS root,
    sequence, weights file or recipe; a frame file that is not there) is one line naming the file and
    the problem, exit status 2, as `vidcorr` says it, instead of a traceback and exit status 1. Nothing
    is written: each script writes its --json last."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # as apply_timing_arguments
    from vidcorr.errors import VidcorrError

    try:
        main()
    except (VidcorrError, FileNotFoundError) as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
