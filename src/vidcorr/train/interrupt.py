"""SIGINT (Ctrl-C) and SIGTERM (Slurm, Kubernetes, torchrun) while training: `StopSignals`, the
handlers `vidcorr.train.loop.train` installs, and `TrainingInterrupted`, what it raises then.

A stop must land on a step boundary: the checkpoint written there continues bit for bit, while
a step left halfway has already moved batch-norm statistics, MoCo's queue or the RNG streams, a
state no checkpoint describes. So the first signal is a request the loop honours at the next
boundary, abandoning at most a batch being loaded (nothing has changed then); a second one stops
at once wherever it lands (checkpoint writes are atomic: the last one stays intact).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training; the message says where and which checkpoint to resume.

    A KeyboardInterrupt, as a plain Ctrl-C is, so that ``except Exception`` (a script's, or the
    data pipeline's skipping of broken videos) never swallows it.
    at_boundary: stopped at a step boundary, with every DDP rank (False: stopped at once).
    """

    def __init__(self, message: str, signum: int, at_boundary: bool):
        super().__init__(message)
        self.signal, self.at_boundary = signal.Signals(signum), at_boundary

    @property
    def exit_code(self) -> int:
        """128 + the signal number, the shells' convention: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signal


def stopped_at_once(signum: int, latest: Path, before_training: bool = False) -> TrainingInterrupted:
    """A signal before training began (``before_training``), or a second one: nothing was saved for
    the current state; ``latest`` is the run's checkpoint, if one was written earlier."""
    if latest.exists():
        kept = f"the last checkpoint, {latest}, is intact (resume with --resume)"
    else:  # before training, a fresh run's run dir is taken back (`vidcorr.train.loop`)
        kept = "nothing was written" if before_training else "no checkpoint was written"
    when = BEFORE_FIRST_STEP if before_training else "and stopped at once"
    return TrainingInterrupted(f"interrupted by {signal.Signals(signum).name} {when}; {kept}",
                               signum, at_boundary=False)


# Where a stop before the loop's first step came: the command read its inputs, built the method,
# indexed the videos or restored the checkpoint.
BEFORE_FIRST_STEP = "before the first step, while the run was being prepared"


_replaced: dict[int, Any] = {}  # the handlers the running `preparing` block replaced (one block at a time)


@contextlib.contextmanager
def preparing() -> Iterator[None]:
    """A training command preparing its run (reading its recipe, checkpoint and weights, building
    the method): SIGINT and SIGTERM raise `StopAtOnce` with ``before_training`` set, which the
    command words as a stop before the first step. SIGTERM's default there was a silent exit 143.
    The trainer's own handlers take over when it installs them (`StopSignals`, which ends the
    block early: `_end_preparing`); only in the main thread, and not for an ignored signal.

    A handler with a ``stands_in_for`` (the command line's start-up one, `vidcorr.cli`, held until
    this block replaces it, so that no signal falls between the two) is given back as that handler."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                replaced = signal.signal(signum, _stop_preparing)
                _replaced[signum] = getattr(replaced, "stands_in_for", replaced)
    try:
        yield
    finally:
        _end_preparing()


def _stop_preparing(signum: int, frame: FrameType | None) -> None:
    _end_preparing()  # a second signal, while the first unwinds, gets the handlers from before
    raise StopAtOnce(signum, before_training=True)


def _end_preparing() -> None:
    """Give back the handlers the running `preparing` block replaced (and forget them)."""
    _restore(_replaced)
    _replaced.clear()


def _restore(handlers: dict[int, Any]) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


class StopAtOnce(BaseException):
    """Raised by the handler where a signal cannot wait for a step boundary (`StopSignals`)."""

    def __init__(self, signum: int, before_training: bool = False):
        super().__init__(signum)
        self.signal, self.before_training = signum, before_training


class WaitAbandoned(BaseException):
    """Raised by the handler into a wait for a batch (`StopSignals.abandoning`), or instead of
    beginning one once a stop was requested."""


class StopSignals:
    """SIGINT and SIGTERM handlers for one training call, restored when it ends.

    Until `training` is called (indexing, building, restoring) a signal stops at once
    (`StopAtOnce`): nothing worth a checkpoint exists yet. From then on the first signal sets
    `signal` and the loop stops at its next step boundary; inside `abandoning` (a wait for a
    batch) it also raises `WaitAbandoned`. A second signal raises `StopAtOnce` (at the end of a
    `sheltered` section) and gives the handlers back, so a third gets the defaults. Handlers can
    only be set in the main thread: elsewhere, and for a signal that was ignored (``SIG_IGN``,
    e.g. SIGINT in a background job), nothing changes.

    announce: write one line to stderr on the first signal (a step can take seconds).
    """

    def __init__(self, announce: bool):
        self.signal: int | None = None
        self.announce = announce
        self._mode = "at once"  # "at once" | "boundary" | "wait"
        self._sheltered = False  # in `sheltered`: a stop at once waits for its end
        self._deferred: int | None = None  # the signal that stops at once, after the shelter
        self._previous: dict[int, Any] = {}  # the handlers to give back

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            _end_preparing()  # these handlers take over from the command's, and give back what it replaced
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) not in (signal.SIG_IGN, None):  # None: set outside Python
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def training(self) -> None:
        """The loop starts: from now on a first signal waits for a step boundary."""
        self._mode = "boundary"

    @contextlib.contextmanager
    def abandoning(self) -> Iterator[None]:
        """A wait for a batch: not begun once a stop was requested, broken off by a signal
        (`WaitAbandoned`). Nothing has changed while a batch loads; one that loader workers were
        handing over is dropped (their part is quiet: `vidcorr.train.workers`). Waiting for it
        instead held the stop for as long as the worker took, for ever when it hung."""
        if self.requested:
            raise WaitAbandoned
        self._mode = "wait"
        try:
            yield
        finally:
            self._mode = "boundary"

    @contextlib.contextmanager
    def sheltered(self) -> Iterator[None]:
        """Work a second signal may not break into: starting loader workers (one whose start was
        broken off printed a traceback from the forkserver; seconds with a large dataset to send
        each worker). Not begun once a stop was requested (`WaitAbandoned`); a first signal inside
        is noted as anywhere, a second one raises `StopAtOnce` as the section ends, and a third
        breaks in at once (should the section hang)."""
        if self.requested:
            raise WaitAbandoned
        self._sheltered = True
        try:
            yield
        finally:
            self._sheltered = False
            if self._deferred is not None:
                signum, self._deferred = self._deferred, None
                self._restore()
                raise StopAtOnce(signum)

    def _restore(self) -> None:
        _restore(self._previous)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested or self._mode == "at once":
            if self._sheltered and self._deferred is None:  # a third signal breaks in
                self._deferred = signum
                return
            self._restore()
            raise StopAtOnce(signum, before_training=not self.requested)
        self.signal = signum
        if self.announce:
            _write_stderr(f"vidcorr: {signal.Signals(signum).name}: finishing the step in progress (if any), then "
                          "writing a checkpoint; a second signal stops at once, without one")
        if self._mode == "wait":
            raise WaitAbandoned


def _write_stderr(line: str) -> None:
    """One line to file descriptor 2, unbuffered: a handler may run in the middle of a write to
    ``sys.stderr`` (a log line, the tqdm bar), whose buffer refuses a re-entrant write."""
    with contextlib.suppress(OSError):
        os.write(2, f"\n{line}\n".encode())
