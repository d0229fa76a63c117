"""Shared by the test_cli_* files: the fast feature flags, the check of a refused command (exit 2),
a Ctrl-C in the middle of a run (`interrupt_on_call`) and a SIGTERM (`sigterm_after_writes`)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from vidcorr.cli import main


FAST = ["--features", "lab-pixels", "--size", "120"]


def _fails(argv, capsys, *expected) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    return err


def interrupt_on_call(monkeypatch, owner, name: str, call: int = 2) -> Callable:
    """Make ``owner.name`` raise KeyboardInterrupt (Ctrl-C) on its ``call``-th call, running the real
    one on every other call; -> the real one (to put back)."""
    real, calls = getattr(owner, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)
    return real


def sigterm_after_writes(monkeypatch, owner, writes: int) -> list[Path]:
    """Make ``owner.write_indexed_png`` send this process SIGTERM right after its ``writes``-th mask
    PNG -> the paths written (the list grows as the command runs)."""
    real, written = owner.write_indexed_png, []

    def write_then_terminate(path, labels, palette=None):
        real(path, labels, palette)
        written.append(path)
        if len(written) == writes:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(owner, "write_indexed_png", write_then_terminate)
    return written


@contextlib.contextmanager
def sigterm_default_raises() -> Iterator[Callable]:
    """For the block, a SIGTERM handler that raises "SIGTERM reached the default handler": what the
    test sees where a command leaves SIGTERM to Python's default (which would end the test process).
    Yields it, so that the test can check the command put it back; the previous one is restored after."""
    def unhandled(signum, frame):
        raise RuntimeError("SIGTERM reached the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        yield unhandled
    finally:
        signal.signal(signal.SIGTERM, previous)
