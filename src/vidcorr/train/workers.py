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
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_sharer, resource_tracker
from pathlib import Path
from types import TracebackType

from vidcorr.train.runlog import PACKAGE_LOGGER, text_log_handler


def worker_start_method() -> str | None:
    """How loader workers start: "forkserver" where the platform has it (not Windows), else its default.

    fork() copies a process whose other threads (torch's and PyAV's pools, the DDP store) may hold
    locks at that instant; the child then waits forever on a lock no thread will release. Two such
    hangs were found and fixed (docs/training.md, "Pitfalls"), Python 3.12 warns about the rest,
    and Python 3.14 made forkserver the default. Workers start from a clean single-threaded
    server instead; they are persistent, so the start-up (importing torch) is paid once a stage.
    Like spawn, it needs a script that starts training to guard its entry point with
    ``if __name__ == "__main__":``. The server is started here, deaf to Ctrl-C (`_start_forkserver`).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    _start_forkserver()
    return "forkserver"


def _start_forkserver() -> None:
    """Start this process's forkserver (once) with SIGINT blocked, which it and its children keep
    until they ignore it.

    Ctrl-C reaches the whole foreground process group, server and workers included, while the
    trainer finishes its step to stop at a boundary (`vidcorr.train.interrupt`). A server hit
    during its own start-up printed a KeyboardInterrupt traceback and died (the trainer's loader
    then failed with "EOFError: unexpected EOF"); a worker, which gets the handlers the server
    started with, quit, and the trainer's next batch failed ("DataLoader worker exited
    unexpectedly"). A signal mask crosses fork and exec unchanged, so the server starts with
    SIGINT blocked: one that comes stays pending until its main loop ignores SIGINT (CPython's
    forkserver does), which discards it, and a worker's until `worker_init` does. CPython starts
    its resource tracker the same way (bpo-33613). The mask is this thread's alone: ignoring
    SIGINT in the trainer around the spawn instead, as before, lost a Ctrl-C that came in those
    5 ms, and the run went on to its end; a blocked one reaches the trainer's handler through
    another thread or, once the mask is restored, through this one.
    """
    # The tracker first: it unblocks SIGINT after spawning its own process, and the forkserver's
    # start would start it (inside the block) if it were not running.
    resource_tracker.ensure_running()
    # The mask is read first: blocking runs any pending Python handler, whose StopAtOnce would
    # otherwise leave SIGINT blocked with nothing to give the old mask back.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_init(log_file: Path | None = None) -> Callable[[int], None]:
    """A loader's ``worker_init_fn``: the worker ends with this (training) process and logs like it,
    to ``log_file`` too (the run's train.log) if given."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    fmt = getattr(formatter, "_fmt", None)  # what logging.basicConfig(format=...) was given
    return functools.partial(_init_worker, os.getpid(), root.level, fmt, getattr(formatter, "datefmt", None),
                             log_file)


def _init_worker(trainer: int, level: int, fmt: str | None, datefmt: str | None, log_file: Path | None,
                 worker_id: int) -> None:
    """Runs first in each loader worker.

    A forkserver's worker is the server's child, not the trainer's, and holds the server's
    "alive" pipe open: when the trainer was killed (SIGKILL, the OOM killer), torch's watchdog,
    which watches the parent, never fired and worker and server stayed behind for good, each
    holding its memory. A daemon thread ends the worker once the trainer is gone. A started
    worker does not inherit the trainer's logging set-up either: the skipped-video warnings came
    out bare, without time and level, and missed the run's train.log. It ignores Ctrl-C (see
    `_start_forkserver`; SIGINT, blocked until now, is unblocked once ignored) also where the
    server was started before, by other code; SIGTERM keeps its default, a silent exit, which
    torch's clean-up sends a worker that does not stop when asked. A batch the trainer stops
    receiving halfway is dropped quietly (`_quiet_broken_hand_over`).
    """
    if fmt is not None:
        logging.basicConfig(level=level, format=fmt, datefmt=datefmt)
    if log_file is not None:  # appended to beside the trainer: each line is one write to the O_APPEND file
        logging.getLogger(PACKAGE_LOGGER).addHandler(text_log_handler(log_file))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    sys.excepthook = functools.partial(_quiet_broken_hand_over, sys.excepthook)
    threading.Thread(target=_exit_after, args=(trainer,), name="trainer-watch", daemon=True).start()


def _quiet_broken_hand_over(hook: Callable[..., object], kind: type[BaseException], error: BaseException,
                            tb: TracebackType | None) -> None:
    """A worker's ``sys.excepthook``: silent for a hand-over the trainer broke off, ``hook`` else.

    A batch crosses as shared memory whose file descriptors the trainer fetches, one connection
    each, from the worker's resource-sharer thread. A signal that stops the trainer in the
    middle (a second Ctrl-C) closes one early; the thread, which reports every error through
    ``sys.excepthook``, printed "Traceback ... EOFError" (or ConnectionResetError) although the
    trainer had stopped as asked. Nothing is lost: the batch was abandoned.
    """
    if (issubclass(kind, (EOFError, ConnectionError)) and tb is not None
            and tb.tb_frame.f_code is resource_sharer._ResourceSharer._serve.__code__):
        return
    hook(kind, error, tb)


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
