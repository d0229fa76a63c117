"""Loader worker processes: how they start (`worker_start_method`) and what each does first
(`worker_init`, a DataLoader ``worker_init_fn``); used by `vidcorr.train.feed`."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
import time
from collections.abc import Callable


def worker_start_method() -> str | None:
    """How loader workers start: "forkserver" where the platform has it (not Windows), else its default.

    fork() copies a process whose other threads (torch's and PyAV's pools, the DDP store) may hold
    locks at that instant; the child then waits forever on a lock no thread will release. Two such
    hangs were found and fixed (docs/training.md, "Pitfalls"), Python 3.12 warns about the rest,
    and Python 3.14 made forkserver the default. Workers start from a clean single-threaded
    server instead; they are persistent, so the start-up (importing torch) is paid once a stage.
    Like spawn, it needs a script that starts training to guard its entry point with
    ``if __name__ == "__main__":``. The server is started here, ignoring Ctrl-C (`_start_forkserver`).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    _start_forkserver()
    return "forkserver"


def _start_forkserver() -> None:
    """Start this process's forkserver (once) with SIGINT ignored, which it and its children keep.

    Ctrl-C reaches the whole foreground process group, server and workers included, while the
    trainer finishes its step to stop at a boundary (`vidcorr.train.interrupt`). A server hit
    during its own start-up printed a KeyboardInterrupt traceback and died (the trainer's loader
    then failed with "EOFError: unexpected EOF"); a worker, which gets the handlers the server
    started with, quit, and the trainer's next batch failed ("DataLoader worker exited
    unexpectedly"). An ignored signal stays ignored across exec, and Python then installs no
    handler of its own. A Ctrl-C to the trainer in the milliseconds of the spawn is lost.
    Elsewhere than in the main thread, or under a handler set outside Python (which could not be
    given back), torch starts the server as it would.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_init() -> Callable[[int], None]:
    """A loader's ``worker_init_fn``: the worker ends with this (training) process and logs like it."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    fmt = getattr(formatter, "_fmt", None)  # what logging.basicConfig(format=...) was given
    return functools.partial(_init_worker, os.getpid(), root.level, fmt, getattr(formatter, "datefmt", None))


def _init_worker(trainer: int, level: int, fmt: str | None, datefmt: str | None, worker_id: int) -> None:
    """Runs first in each loader worker.

    A forkserver's worker is the server's child, not the trainer's, and holds the server's
    "alive" pipe open: when the trainer was killed (SIGKILL, the OOM killer), torch's watchdog,
    which watches the parent, never fired and worker and server stayed behind for good, each
    holding its memory. A daemon thread ends the worker once the trainer is gone. A started
    worker does not inherit the trainer's logging set-up either: the skipped-video warnings came
    out bare, without time and level. It ignores Ctrl-C (see `_start_forkserver`) also where the
    server was started before, by other code; SIGTERM keeps its default, a silent exit, which
    torch's clean-up sends a worker that does not stop when asked.
    """
    if fmt is not None:
        logging.basicConfig(level=level, format=fmt, datefmt=datefmt)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_after, args=(trainer,), name="trainer-watch", daemon=True).start()


def _exit_after(pid: int) -> None:
    """Wait for process ``pid`` to exit, then end this process at once."""
    try:  # Linux >= 5.3: readable once the process has exited, even before it is reaped
        select.select([os.pidfd_open(pid)], [], [])
    except (AttributeError, OSError):  # elsewhere: poll (an unreaped zombie counts as alive)
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(1.0)
    os._exit(1)
