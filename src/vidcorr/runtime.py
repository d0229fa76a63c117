"""Process-wide CPU settings: memory that keeps a long propagation run's peak flat, and subnormal
floats flushed to zero for training (`flush_cpu_denormals`, at the end); `checked_device`,
whether this machine has the device a user named (`known_device`: whether any machine could); and
`RankRole`, a process's place among the ranks of a torchrun group (training and evaluation).

Propagation allocates the same large temporaries (score chunks, unfolded reference tiles) for every
frame. With glibc's default malloc, a freed large block raises the mmap threshold dynamically (up to
32 MiB), so later blocks of up to that size come from the heap, which fragments: the peak resident
memory then creeps up over the first few hundred frames (docs/benchmarks.md: +5 % at 240p, +10 % at
480p from 40 to 400 frames) although nothing accumulates. A fixed 64 KiB threshold serves every
large block by mmap and returns it on free, so the peak is flat and 10-20 % lower; PyTorch's own
``THP_MEM_ALLOC_ENABLE`` backs blocks of 2 MiB and more with transparent huge pages, which removes
most of the page faults that per-block mmap costs (12 M -> 2 M for 25 frames at 480p).

`bound_cpu_memory` applies both. The propagating commands call it before any work; library users
can call it too, or set the environment variables themselves. Settings a user already chose are
kept. The price is system time for page faults: +17-20 % CPU time per frame in our A/B runs
(docs/benchmarks.md); ``VIDCORR_DEFAULT_MALLOC=1`` keeps glibc's default for speed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 64 * 1024
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def bound_cpu_memory() -> bool:
    """Fix glibc's mmap threshold and enable huge pages for PyTorch's large CPU tensors.

    Returns True when the malloc setting was applied (Linux with glibc, no
    ``MALLOC_MMAP_THRESHOLD_`` in the environment, no ``VIDCORR_DEFAULT_MALLOC=1``), False
    otherwise. Safe to call more than once.
    """
    if os.environ.get("VIDCORR_DEFAULT_MALLOC") == "1":
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # read by PyTorch at its first large allocation
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # the user's own choice, already applied by glibc
        return False
    try:
        applied = ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError):
        applied = False
    if not applied:
        log.debug("mallopt(M_MMAP_THRESHOLD) not applied; peak memory may creep on long videos")
    return applied


@contextlib.contextmanager
def flush_cpu_denormals(enabled: bool = True) -> Iterator[bool]:
    """Flush subnormal floats (below 1.2e-38) to zero in CPU arithmetic while the block runs.

    Softmax affinities of raw features at UVC's temperature 1 underflow into subnormals, which x86
    computes many times slower: `uvc-cpu` trains 19 % (warm-up) and 27-29 % (joint stage) faster
    with them flushed; at temperature 20 (`uvc-cpu-t20`) and for CycleTime and STT (L2-normalised
    features) nothing changes (benchmarks/training.py, docs/benchmarks.md). Such values carry
    nothing a loss can use; TensorFlow flushes them by default. Yields whether the CPU supports
    it; torch's default (off) is restored afterwards. The setting belongs to the calling thread
    and the threads it starts.
    """
    import torch

    applied = enabled and torch.set_flush_denormal(True)
    try:
        yield applied
    finally:
        if applied:
            torch.set_flush_denormal(False)


def api_device(name: str) -> str:
    """How the Python API's refusals name a device setting: ``device='cuda'`` (`known_device`'s
    ``spell``; the command line names it ``--device cuda``, `vidcorr.cli.common.check_device`)."""
    return f"device={name!r}"


def known_device(device: Any, spell: Callable[[str], str] = api_device) -> Any:
    """``device`` (a name or a ``torch.device``) as a ``torch.device``, if it is one that can run a model on
    some machine; ValueError for a name torch does not know (a typo) and for ``meta``. Whether this
    machine has it is `checked_device`'s question. spell: how the message names a device setting, in
    the caller's own terms (`api_device`; the command line's ``--device cpu``)."""
    import torch

    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {str(device)!r}; expected cpu, cuda, cuda:N, mps, ...") from None
    except TypeError:  # None, a float: torch's message lists its overloads ("invalid combination of arguments")
        raise ValueError(f"unknown device {device!r}; expected a name (cpu, cuda, cuda:N, mps, ...), a GPU "
                         "index or a torch.device") from None
    if device.type == "meta":
        raise ValueError(f"{spell(str(device))} holds tensor shapes but no data and cannot run a model; "
                         f"use {spell('cpu')}")
    return device


def checked_device(device: Any, spell: Callable[[str], str] = api_device) -> Any:
    """``device`` (a name or a ``torch.device``) as a ``torch.device`` this machine has; ValueError
    otherwise (`known_device`'s refusals included), naming the setting as ``spell`` does. Checked where
    the user names it (the command line, before the command starts: `vidcorr.cli.common.check_device`;
    the API's call): an unknown or absent device otherwise failed with a raw torch error deep inside,
    after the model and the first frames had been loaded. Besides cpu, cuda and mps, a type counts only where its
    torch backend module says it is available (``torch.xpu.is_available()``, ...): torch parses
    names such as xpu or hpu on any build, and ``meta`` holds shapes but no data."""
    import torch

    device = known_device(device, spell)
    kind = device.type
    named = spell(str(device))
    if kind == "cpu":
        return device
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{named} but CUDA is not available here (torch {torch.__version__}, no GPU or no "
                         f"driver); use {spell('cpu')}")
    if kind == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{named} but this machine has {torch.cuda.device_count()} GPU(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{named} but MPS is not available on this machine")
    if kind not in ("cuda", "mps"):
        backend = getattr(torch, kind, None)  # torch.xpu, torch.mtia, an out-of-tree backend's module
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(f"{named} but {kind} is not available here (torch {torch.__version__}); "
                             f"use {spell('cpu')}")
        count = getattr(backend, "device_count", None)
        if device.index is not None and count is not None and device.index >= count():
            raise ValueError(f"{named} but this machine has {count()} {kind} device(s)")
    return device


class RankRole:
    """``is_main`` and ``distributed`` from a process's ``rank`` among ``world_size``: the trainer's
    `DistContext` and the eval commands' `vidcorr.evaluate.ranks.Ranks`."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Only the main process logs, writes checkpoints, exports weights and scores."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1
