"""What an eval run took: each item's time as the run record keeps it (`timed_sequence`), the whole
run's in results.json's ``timing`` (`RunStats`, `run_timing`), and the process's peak memory
(`peak_rss_mib`, `peak_gpu_mib`, also read by benchmarks/propagation.py).

Shared by the propagating runners (``eval davis``, ``eval jhmdb``, ``eval vip``); the trackers'
``timing`` (`vidcorr.evaluate.tracking`) holds frames and seconds only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vidcorr.evaluate.runs import RunRecord
from vidcorr.propagate import Propagator


@dataclass
class RunStats:
    """Wall time of a propagation run, split into feature extraction and affinity + transport."""

    frames: int = 0
    seconds: float = 0.0
    feature_seconds: float = 0.0
    propagation_seconds: float = 0.0
    device: str = "cpu"

    @classmethod
    def of_run(cls, record: RunRecord, device: str | torch.device) -> RunStats:
        """The times of a whole run, summed over its items as ``record`` holds them (`timed_sequence`):
        a resumed run's, kept items included, and a finished run's when resumed with nothing to do."""
        totals = record.totals()
        return cls(frames=int(totals.get("frames", 0)), seconds=totals.get("seconds", 0.0),
                   feature_seconds=totals.get("feature_seconds", 0.0),
                   propagation_seconds=totals.get("propagation_seconds", 0.0), device=str(device))

    def as_dict(self) -> dict:
        fps = self.frames / self.seconds if self.seconds else 0.0
        stats = {"frames": self.frames, "seconds": round(self.seconds, 3), "frames_per_second": round(fps, 3),
                 "feature_seconds": round(self.feature_seconds, 3),
                 "propagation_seconds": round(self.propagation_seconds, 3),
                 "peak_rss_mib": peak_rss_mib(), "torch_threads": torch.get_num_threads(), "device": self.device}
        if torch.device(self.device).type == "cuda":
            stats["peak_gpu_mib"] = peak_gpu_mib(self.device)
            stats["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        return stats


def run_timing(record: RunRecord, device: str | torch.device) -> dict:
    """results.json's ``timing`` of a recorded run (`RunStats.of_run`), with the items kept from an
    earlier session (``kept_from_earlier_run``) when it was resumed."""
    timing = RunStats.of_run(record, device).as_dict()
    if record.kept:
        timing["kept_from_earlier_run"] = record.kept
    return {**timing, **rank_timing(record)}


def rank_timing(record: RunRecord) -> dict:
    """What a run under torchrun adds to ``timing``: its ``ranks`` and this session's ``wall_seconds``
    (from opening the record to the last rank's last item). Its ``seconds`` stay the items' seconds
    summed over the ranks, as a single process sums them; ``peak_rss_mib`` and ``torch_threads``
    are rank 0's. Nothing for a single process (its timing as before)."""
    if record.ranks <= 1:
        return {}
    return {"ranks": record.ranks, "wall_seconds": round(record.wall_seconds, 3)}


def timed_sequence(propagator: Propagator, propagate: Callable[[], int]) -> dict[str, float]:
    """Run ``propagate`` (one sequence; returns its frame count) -> what it took, as a run record
    keeps it (`RunStats.of_run`): frames, seconds, and the propagator's feature / propagation seconds."""
    before = dict(propagator.timing)
    start = time.perf_counter()
    frames = propagate()
    return {"frames": frames, "seconds": time.perf_counter() - start,
            "feature_seconds": propagator.timing["features"] - before["features"],
            "propagation_seconds": propagator.timing["propagation"] - before["propagation"]}


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far, MiB (None where the OS does not report it).

    On Linux the high-water mark of this process's own memory (VmHWM), not ``ru_maxrss``: the kernel
    carries ru_maxrss across exec, so a process started by a larger one (benchmarks/propagation.py's
    measurements, whose parent has imported torch; torchrun's ranks) reported its parent's peak
    wherever its own was lower.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:  # no /proc (macOS)
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)  # bytes on macOS, KiB on Linux


def peak_gpu_mib(device: str | torch.device) -> float:
    """Peak memory PyTorch allocated on a CUDA device so far, MiB (tensors, not the allocator's cache)."""
    return round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)
