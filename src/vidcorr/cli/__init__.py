"""The `vidcorr` command line: a thin layer over the library.

Each sub-command lives in its own module with a `register(subparsers)` function; `eval` and
`score` have one sub-parser per task (davis, jhmdb, vip, otb, vot) registered the same way.
Heavy imports (torch, models) happen inside the command functions so `vidcorr --help` is fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import select
import signal
import sys
import threading
from typing import Any, NoReturn

from vidcorr import __version__
from vidcorr.cli.common import check_device
from vidcorr.errors import VidcorrError, said_elsewhere
from vidcorr.runtime import bound_cpu_memory

# Top-level commands: module path -> registers one sub-command.
COMMAND_MODULES = [
    "vidcorr.cli.eval_cmd",
    "vidcorr.cli.score_cmd",
    "vidcorr.cli.propagate_cmd",
    "vidcorr.cli.match_cmd",
    "vidcorr.cli.demo_cmd",
    "vidcorr.cli.train_cmd",
]

# Exit status when stdout's reader went away (`vidcorr score ... | head`): 128 + SIGPIPE, what a shell
# reports for a C tool killed by SIGPIPE in the same pipeline, so a script with `set -o pipefail` that
# tolerates `cat x | head` tolerates vidcorr alike; 1 would read as a failed command.
BROKEN_PIPE_EXIT = 141

# Commands that stream through videos: their peak memory must not depend on the video's length.
# Training keeps glibc's default (same-shaped batches every step; not measured with the setting).
PROPAGATING_COMMANDS = ("eval", "propagate", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidcorr",
        description="Self-supervised video correspondence: train, propagate labels, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"vidcorr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status. A reader of stdout that closed early (`| head`)
    ends the command quietly with `BROKEN_PIPE_EXIT` (it failed with a BrokenPipeError traceback);
    a broken pipe that is not stdout's is raised as any other error."""
    code = None
    try:
        try:
            code = _run(argv)
        except SystemExit:  # argparse's --help, --version and usage errors
            sys.stdout.flush()  # the help text, buffered in a pipe
            raise
        sys.stdout.flush()  # what the command printed waits in a pipe's buffer: a gone reader shows here
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        # Python flushes stdout again at exit: into /dev/null, not into the closed pipe with a second error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return code or BROKEN_PIPE_EXIT  # a command that had failed keeps its own status


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end is closed: poll flags its writing end
    POLLERR (POLLHUP for a socket). False where poll is missing (Windows) or stdout has no descriptor."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return False
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class _StartTerminated(KeyboardInterrupt):
    """SIGTERM while the command line starts (`_run_command`): unwinds as Ctrl-C there does."""


class _StartUpHandler:
    """SIGTERM's handler while the command line starts: raises `_StartTerminated`. stands_in_for: the
    handler it replaced, which a training command's own handlers give back when they end (they take
    over from this one: `vidcorr.train.interrupt.preparing`)."""

    def __init__(self, stands_in_for: Any):
        self.stands_in_for = stands_in_for

    def __call__(self, signum: int, frame: object) -> None:
        raise _StartTerminated


def _run(argv: list[str] | None) -> int:
    try:
        return _run_command(argv)
    except KeyboardInterrupt as interrupt:  # also while the parser or a command imports torch (seconds): no traceback
        if isinstance(interrupt, _StartTerminated):
            print("vidcorr: interrupted by SIGTERM while starting; nothing was done", file=sys.stderr)
            return 128 + signal.SIGTERM
        if not said_elsewhere(interrupt):
            print("vidcorr: interrupted", file=sys.stderr)
        return 130


def _run_command(argv: list[str] | None) -> int:
    # Until the command begins (its own handlers, if any, then take over): building the parser imports
    # torch, seconds in which SIGTERM's default ended `vidcorr train` silently with 143. A training
    # command's handlers replace this one themselves (`takes_over_sigterm`): given back before they
    # did, SIGTERM in between (--device's check, the command's imports: 17 ms on CPU) was that silent 143.
    taken = _main_thread() and signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, None)
    previous = signal.signal(signal.SIGTERM, _StartUpHandler(signal.getsignal(signal.SIGTERM))) if taken else None
    held = False
    try:
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        takes_over = getattr(args.func, "takes_over_sigterm", False)  # True, or a test of the arguments
        held = taken and (takes_over(args) if callable(takes_over) else takes_over)
    finally:
        if taken and not held:
            signal.signal(signal.SIGTERM, previous)
    try:
        return _run_parsed(parser, args, unknown, argv)
    finally:
        if held:  # where the command failed before its handlers took over, or a signal cut the take-over short
            signal.signal(signal.SIGTERM, previous)


def _run_parsed(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str],
                argv: list[str] | None) -> int:
    """The parsed command's exit status; argparse's error (SystemExit 2) for ``unknown`` arguments."""
    if unknown:
        _refuse_unknown(parser, sys.argv[1:] if argv is None else argv, unknown)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command in PROPAGATING_COMMANDS:
        bound_cpu_memory()  # before torch allocates: flat peak memory on long videos (vidcorr.runtime)
    try:
        check_device(getattr(args, "device", None))  # every command with --device, before it starts
        return int(args.func(args) or 0)
    except VidcorrError as err:
        print(f"vidcorr: error: {err}", file=sys.stderr)
        return 2


def _refuse_unknown(parser: argparse.ArgumentParser, argv: list[str], unknown: list[str]) -> NoReturn:
    """argparse's "unrecognized arguments" error (exit 2), said by the sub-command's own parser, with
    the closest option it has: the top-level parser's said only `usage: vidcorr [-h] [--version] [-v]
    COMMAND ...` above `vidcorr: error: unrecognized arguments: --sise 120`."""
    command = _command_parser(parser, argv)
    options = [name for action in command._actions for name in action.option_strings]
    hints = []
    for token in (t for t in unknown if t.startswith("--")):
        # 0.8: --sise -> --size, --recipie -> --recipe, but --bogus is not "--out"
        close = difflib.get_close_matches(token.split("=")[0], options, n=1, cutoff=0.8)
        if close:
            hints.append(f"{token}: did you mean {close[0]}?")
    command.error("; ".join([f"unrecognized arguments: {' '.join(unknown)}", *hints]))


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub-)parser the command words of ``argv`` lead to: `vidcorr eval davis ...` -> eval davis's."""
    for token in argv:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if commands and token in commands[0].choices:
            parser = commands[0].choices[token]
    return parser


if __name__ == "__main__":
    sys.exit(main())
