"""`vidcorr ... | head`: a reader of stdout that closes early ends the command quietly, with exit
status 141 (128 + SIGPIPE, as a shell reports for a C tool); any other broken pipe is still an error."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from vidcorr import cli
from vidcorr.cli import BROKEN_PIPE_EXIT


def _into_closed_pipe(argv: list[str], *, buffered: bool) -> subprocess.CompletedProcess:
    """Run `python -m vidcorr ARGV` with stdout a pipe whose reader has already gone (as after `head
    -1` read its line). buffered: stdout buffered (the error shows when it is flushed), else each
    print writes at once (PYTHONUNBUFFERED: the error shows at the first print)."""
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    try:
        return subprocess.run([sys.executable, "-m", "vidcorr", *argv], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=300)
    finally:
        os.close(write)


def _score(short_clip, tmp_path) -> list[str]:
    """`score davis` of predictions that are the annotations themselves: a table on stdout, no model."""
    return ["score", "davis", "--root", str(short_clip), "--results", str(short_clip / "Annotations" / "480p"),
            "--out", str(tmp_path / "score.json")]


def _quiet(done: subprocess.CompletedProcess) -> bool:
    return not any(word in done.stderr for word in ("Error", "Traceback", "ignored"))


def test_a_closed_stdout_pipe_ends_the_command_quietly(short_clip, tmp_path):
    """`vidcorr score davis ... | head -1` ended in "Exception ignored ... BrokenPipeError" (exit 120)
    when Python flushed stdout at exit; `vidcorr --help | head -1` likewise."""
    for argv in (_score(short_clip, tmp_path), ["--help"]):
        done = _into_closed_pipe(argv, buffered=True)
        assert done.returncode == BROKEN_PIPE_EXIT == 141 and _quiet(done), done.stderr
    assert (tmp_path / "score.json").is_file()  # the printed table was only buffered: the command finished
    # a failed command keeps its own exit status and message
    done = _into_closed_pipe(["score", "davis", "--root", str(tmp_path / "missing"), "--results", str(tmp_path)],
                             buffered=True)
    assert done.returncode == 2
    assert done.stderr == f"vidcorr: error: {tmp_path / 'missing'}: DAVIS root folder not found\n"


def test_only_stdout_s_broken_pipe_is_quiet(short_clip, tmp_path):
    """Unbuffered, the first print of the table raised a BrokenPipeError traceback (exit 1); it ends
    quietly."""
    done = _into_closed_pipe(_score(short_clip, tmp_path), buffered=False)
    assert done.returncode == 141 and _quiet(done), done.stderr


def test_a_broken_pipe_that_is_not_stdout_s_is_raised(monkeypatch):
    """A broken pipe that is not stdout's (a worker's, a socket's) is a real error, raised, while stdout
    is a pipe whose reader is still open: poll must see that pipe healthy (with stdout a capture
    object without a descriptor the check would answer "not gone" before polling anything)."""
    def broken(args):
        print("a line")
        raise BrokenPipeError("a worker's pipe")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=broken, command="a command", verbose=False)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    read, write = os.pipe()
    with os.fdopen(read, "r") as reader, os.fdopen(write, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(BrokenPipeError, match="a worker's pipe"):
            cli.main([])
        monkeypatch.undo()  # sys.stdout back before the pipe closes
        stdout.flush()
        stdout.close()
        assert reader.read() == "a line\n"  # the pipe kept its descriptor (not /dev/null)


def test_ctrl_c_while_the_parser_imports_ends_quietly_with_130(monkeypatch, capsys):
    """Ctrl-C before a command runs (building the parser imports every command module; a command's own
    imports of torch take seconds): "interrupted" and 130, as during the command, not a traceback."""
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["score", "davis"]) == 130
    assert capsys.readouterr().err == "vidcorr: interrupted\n"
