"""Run `vidcorr` as the ranks of a torchrun group would, in forked processes on the CPU (gloo):
each rank's exit status and stderr come back; a run that does not end in time fails the test."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path

import torch.multiprocessing as mp


def _rank(rank: int, world: int, port: int, argv: list[str], folder: Path) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.pop("OMP_NUM_THREADS", None)
    from vidcorr.cli import main

    with open(folder / f"err{rank}.txt", "w") as err:
        sys.stderr = err  # what the command prints, and tqdm's bars
        logging.getLogger().handlers.clear()  # pytest's: the command's own logging to stderr, as under torchrun
        try:
            code = main(argv)
        except SystemExit as stop:  # SIGTERM's 143 (`sigterm_cleans_up`), as `python -m vidcorr` exits
            code = stop.code
    (folder / f"code{rank}.txt").write_text(str(code))


def free_port() -> int:
    """A TCP port free on this machine now, for a process group's MASTER_PORT (each test its own:
    tests run side by side under pytest-xdist)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(argv: list[str], folder: Path, world: int = 2, timeout: float = 60) -> list[tuple[int, str]]:
    """``vidcorr argv`` on ``world`` ranks -> each rank's (exit status, stderr), in rank order; for a
    rank killed by a signal, -the signal number. A rank that dies leaves the others running (torchrun
    would SIGTERM them: a test does that itself).

    fork: the ranks start from this already-imported process (a fresh interpreter per rank costs
    seconds of imports on the 2-core box); they join the group from torchrun's environment variables."""
    folder.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(_rank, args=(world, free_port(), argv, folder), nprocs=world,
                                 start_method="fork", join=False)
    deadline = time.monotonic() + timeout
    while any(process.is_alive() for process in context.processes):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError(f"the {world} ranks of vidcorr {' '.join(argv)} did not end in {timeout} s")
        time.sleep(0.1)
    codes = [folder / f"code{r}.txt" for r in range(world)]
    return [(int(code.read_text()) if code.exists() else process.exitcode, (folder / f"err{r}.txt").read_text())
            for r, (code, process) in enumerate(zip(codes, context.processes))]
