"""Ranks of a torchrun group in forked processes on the CPU (gloo), the group's store held by the
test as torchrun's agent holds it (`forked_ranks`); and `vidcorr` run so (`run_ranks`): each rank's
exit status and stderr come back; a run that does not end in time fails the test."""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

from vidcorr.cli import build_parser, main

_STORE_WAIT_SECONDS = 60  # a rank whose launcher never said the store's port: fail, not hang


@contextlib.contextmanager
def forked_ranks(fn: Callable[..., None], args: tuple[Any, ...], world: int = 2) -> Iterator[mp.ProcessContext]:
    """``fn(rank, *args)`` in ``world`` forked processes with torchrun's environment, the process
    group's store served from here -> the processes (`mp.ProcessContext`: ``join()`` raises a rank's
    error); the ones still alive at the end of the block are killed, then the store goes.

    The store is torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE: every rank a client, as
    under torchrun). A port chosen free here and bound later by rank 0 could be taken in between,
    by another test's group under pytest-xdist or any process: rank 0 then failed with "address
    already in use", or a rank joined the other group's store. The store binds port 0 itself and
    keeps it until the ranks are done. It is made after the fork, so that the ranks inherit no
    server thread (a lock it held would stay held in the child), and each rank waits for its port."""
    port = mp.get_context("fork").RawValue("i", 0)  # shared memory: 0 until the store listens
    context = mp.start_processes(_torchrun_rank, args=(fn, world, port, args), nprocs=world,
                                 start_method="fork", join=False)
    try:
        store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        port.value = store.port
        yield context
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()


def _torchrun_rank(rank: int, fn: Callable[..., None], world: int, port: Any, args: tuple[Any, ...]) -> None:
    deadline = time.monotonic() + _STORE_WAIT_SECONDS
    while not port.value:
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: the store's port did not come in {_STORE_WAIT_SECONDS} s")
        time.sleep(0.01)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port.value), TORCHELASTIC_USE_AGENT_STORE="True",
                      TORCHELASTIC_RESTART_COUNT="0")  # torch 2.4 reads it with the agent store
    fn(rank, *args)


def _rank(rank: int, argv: list[str], folder: Path) -> None:
    os.environ.pop("OMP_NUM_THREADS", None)

    with open(folder / f"err{rank}.txt", "w", buffering=1) as err:  # by line: read whole if it hangs
        sys.stderr = err  # what the command prints, and tqdm's bars
        faulthandler.register(signal.SIGUSR1, file=err, all_threads=True)  # run_ranks' timeout: where it waits
        logging.getLogger().handlers.clear()  # pytest's: the command's own logging to stderr, as under torchrun
        try:
            code = main(argv)
        except SystemExit as stop:  # SIGTERM's 143 (`sigterm_cleans_up`), as `python -m vidcorr` exits
            code = stop.code
    (folder / f"code{rank}.txt").write_text(str(code))


# What a rank imports only as it runs: the process group (`vidcorr.evaluate.ranks.join` imports
# vidcorr.train.distributed for it), the commands and their runners.
_RANK_MODULES = ("vidcorr.api", "vidcorr.cli", "vidcorr.train.distributed", "vidcorr.evaluate.davis",
                 "vidcorr.evaluate.jhmdb", "vidcorr.evaluate.vip", "vidcorr.evaluate.tracking")


def _load_rank_modules() -> None:
    """Import here what the ranks would import as they run, so that the forked ranks run the code
    this session loaded. Each test's ranks imported them anew from the working tree, which others
    edit while the tests run: a SyntaxError of an edit in progress in vidcorr/data/videos.py
    (imported through vidcorr.train) failed one rank in `join`, and the other waited for it in the
    rendezvous until the test's time limit, failing one test of a whole-file run that no rerun
    failed. (CI's clean clone is not edited.)"""
    for name in _RANK_MODULES:
        importlib.import_module(name)
    build_parser()  # every command's module


def _stderr_of(folder: Path, rank: int, lines: int = 60) -> str:
    """The last ``lines`` of a rank's stderr, for the message of a run that did not end: what it said
    and where its threads waited (faulthandler's stacks, innermost call first), each stack cut below
    `_rank` (the rest is pytest's, which the fork inherited)."""
    path, kept, below = folder / f"err{rank}.txt", [], False
    for line in (path.read_text() if path.exists() else "").splitlines():
        if line.startswith("  File "):
            if below:
                continue
            below = f'{Path(__file__).name}", line' in line
        else:
            below = False
        kept.append(line)
    return f"\n--- rank {rank} stderr:\n" + "\n".join(kept[-lines:])


def run_ranks(argv: list[str], folder: Path, world: int = 2, timeout: float = 60) -> list[tuple[int, str]]:
    """``vidcorr argv`` on ``world`` ranks -> each rank's (exit status, stderr), in rank order; for a
    rank killed by a signal, -the signal number. A rank that dies leaves the others running (torchrun
    would SIGTERM them: a test does that itself).

    fork: the ranks start from this already-imported process (a fresh interpreter per rank costs
    seconds of imports on the 2-core box); they join the group from torchrun's environment variables."""
    folder.mkdir(parents=True, exist_ok=True)
    _load_rank_modules()
    with forked_ranks(_rank, (argv, folder), world) as context:
        deadline = time.monotonic() + timeout
        while any(process.is_alive() for process in context.processes):
            if time.monotonic() > deadline:  # a rare hang says where each rank waited, then they are killed
                for process in context.processes:
                    if process.is_alive():
                        os.kill(process.pid, signal.SIGUSR1)
                time.sleep(1)
                raise AssertionError(f"the {world} ranks of vidcorr {' '.join(argv)} did not end in {timeout} s"
                                     + "".join(_stderr_of(folder, r) for r in range(world)))
            time.sleep(0.1)
    codes = [folder / f"code{r}.txt" for r in range(world)]
    return [(int(code.read_text()) if code.exists() else process.exitcode, (folder / f"err{r}.txt").read_text())
            for r, (code, process) in enumerate(zip(codes, context.processes))]
