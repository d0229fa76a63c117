"""User-facing errors. Each names the offending file and what is wrong with it.

The command line turns any `VidcorrError` into a one-line message and exit status 2, so a
user never sees a traceback for bad input.
"""

from __future__ import annotations

from pathlib import Path


class VidcorrError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class InputError(VidcorrError):
    """A file or folder given by the user is missing, unreadable or malformed."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class TooFewFrames(InputError):
    """A video or frame folder holds fewer frames than were asked for (`FrameSource.read_at`):
    its own type, so the training data can tell this from a decoding error (a list file's frame
    count that is too large shows as this, and only as this)."""

    def __init__(self, path: str | Path | None, requested: int, available: int):
        self.requested, self.available = requested, available
        held = ("no frames" if available == 0 else
                f"only {available} frame{'s' if available != 1 else ''} (indices 0..{available - 1})")
        super().__init__(path, f"frame {requested} requested but there are {held}")


class WeightsError(InputError):
    """A weights file is missing, corrupt or does not match the model it is loaded into."""


class EncoderOutputError(VidcorrError, ValueError):
    """An encoder of one's own gave features propagation cannot use (not (B, C, h, w) floats, or
    another grid than the first frame's). A `VidcorrError`, so that the command line prints one
    line, and a ValueError, as a bad argument of the Python API is."""


class NotStarted(InputError, RuntimeError):
    """A frame-at-a-time tracker stepped before its first frame's annotation was given
    (`vidcorr.masks.MaskTracker`). An `InputError`, as the API's other bad input (the docs promise
    one), and a RuntimeError, as it was raised before."""

    def __init__(self, problem: str):
        super().__init__(None, problem)


def said_already(interrupt: KeyboardInterrupt) -> KeyboardInterrupt:
    """Mark a Ctrl-C or SIGTERM as announced by the code that caught it first (a lower torchrun rank,
    `propagate`'s line of how far it got): `sigterm_cleans_up` and the command line then end with
    its exit status but print no line of their own, so that one line is printed, not two."""
    interrupt.said_elsewhere = True
    return interrupt


def said_elsewhere(interrupt: BaseException) -> bool:
    """Whether `said_already` marked ``interrupt``."""
    return getattr(interrupt, "said_elsewhere", False)


def shown_value(value: object, limit: int = 200) -> str:
    """``repr(value)`` for an error message about a value given where another kind was expected (a
    path as a frame or as an encoder): whole up to ``limit`` characters, so that a long path keeps
    its file name and closing quote, and cut with "..." beyond."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
