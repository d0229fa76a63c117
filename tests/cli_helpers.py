"""Shared by the test_cli_* files: the fast feature flags, the check of a refused command (exit 2)
and a Ctrl-C in the middle of a run (`interrupt_on_call`)."""

from __future__ import annotations

from collections.abc import Callable

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
