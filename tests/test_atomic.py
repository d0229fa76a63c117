"""`vidcorr.io.atomic`: an output folder or file is complete or as it was, never half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from vidcorr.errors import InputError
from vidcorr.io import atomic
from vidcorr.io.atomic import atomic_dir, sigterm_cleans_up, write_json_atomic


def test_atomic_dir_fills_an_existing_empty_folder_in_place(tmp_path):
    """A symlink to an empty folder (or a mount point, or ".") cannot be removed and replaced: the
    finished results ended in a NotADirectoryError and a hidden .partial folder."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with atomic_dir(link) as tmp:
        (tmp / "a.txt").write_text("done")
        (tmp / "sub").mkdir()
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["a.txt", "sub"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="halfway"):
        with atomic_dir(empty) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("halfway")
    assert list(empty.iterdir()) == []  # as it was: nothing half-written left inside
    with pytest.raises(InputError, match="a.txt appeared in the output folder during the run; nothing was moved in"):
        with atomic_dir(empty) as tmp:
            (tmp / "a.txt").write_text("ours")
            (tmp / "b.txt").write_text("ours")
            (empty / "a.txt").write_text("theirs")  # written into OUT meanwhile: not replaced
    assert [(p.name, p.read_text()) for p in empty.iterdir()] == [("a.txt", "theirs")]
    (empty / "a.txt").unlink()
    (empty / ".empty.partial-x1y2").mkdir()  # a killed run's leftover: named in the refusal
    with pytest.raises(InputError, match=r"not empty; .* \(.empty.partial-x1y2: left by a run that was killed\)"):
        with atomic_dir(empty):
            pass
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")  # refused up front, not after the work
    with pytest.raises(InputError, match=f"is a symbolic link to {tmp_path / 'nowhere'}, which does not exist"):
        with atomic_dir(dangling):
            pass


def test_atomic_dir_replaces_an_earlier_result_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "old").mkdir()
    (out / "old" / "a.txt").write_text("old")
    seen: list[list[str]] = []

    def ours(entries: list[Path]) -> list[Path]:
        seen.append([e.name for e in entries])
        foreign = [e.name for e in entries if not e.name.startswith("old")]
        if foreign:
            raise InputError(out, f"holds {foreign}")
        return entries

    with pytest.raises(RuntimeError, match="halfway"):
        with atomic_dir(out, replaces=ours) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("halfway")
    assert sorted(p.name for p in out.iterdir()) == ["old", "old.txt"] and (out / "old" / "a.txt").is_file()
    with pytest.raises(InputError, match="new.txt appeared in the output folder during the run"):
        with atomic_dir(out, replaces=lambda entries: [e for e in entries if e.name != "new.txt"]) as tmp:
            (tmp / "new.txt").write_text("ours")
            (out / "new.txt").write_text("theirs")  # kept, and the old entries put back
    assert sorted(p.name for p in out.iterdir()) == ["new.txt", "old", "old.txt"]
    (out / "new.txt").unlink()
    seen.clear()
    with atomic_dir(out, replaces=ours) as tmp:
        (tmp / "new.txt").write_text("new")
    assert seen == [["old", "old.txt"], ["old", "old.txt"]]  # asked before the work and at the end, without tmp
    assert [(p.name, p.read_text()) for p in out.iterdir()] == [("new.txt", "new")]
    (out / "mine.txt").write_text("mine")
    with pytest.raises(InputError, match="holds"):  # refused before the work
        with atomic_dir(out, replaces=ours):
            raise AssertionError("the block ran")


def test_a_relative_output_folder_is_replaced_in_place(tmp_path, monkeypatch):
    """Python 3.12 made mkdtemp's path absolute: the run's own temporary folder, listed relative,
    was taken for a foreign entry of a relative --out (the demo's default out/demo) after the work."""
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: os.path.abspath(real_mkdtemp(*a, **k)))
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    Path("out", "old.txt").write_text("old")

    def ours(entries: list[Path]) -> list[Path]:
        assert [e.name for e in entries] == ["old.txt"]
        return entries

    with atomic_dir(Path("out"), replaces=ours) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in Path("out").iterdir()] == ["new.txt"]


def test_an_earlier_result_that_cannot_be_put_back_is_kept_and_named(tmp_path, monkeypatch, caplog):
    """The undo of a failed swap must never delete the earlier result with the temporary folder."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_rename = Path.rename

    def rename(self, target):
        if self.parent.name.startswith(".replaced-"):
            raise OSError("cannot put it back")
        return real_rename(self, target)

    with pytest.raises(InputError, match="new.txt appeared in the output folder during the run"):
        with atomic_dir(out, replaces=lambda entries: [e for e in entries if e.name == "old.txt"]) as tmp:
            (tmp / "new.txt").write_text("ours")
            (out / "new.txt").write_text("theirs")
            monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.undo()
    kept = list(out.glob(".out.partial-*/.replaced-*/old.txt"))
    assert [p.read_text() for p in kept] == ["old"]
    assert f"the earlier output could not be put back; it is in {kept[0].parent}" in caplog.text


def test_a_ctrl_c_while_the_replaced_result_is_deleted_finishes_the_deletion(tmp_path, monkeypatch, caplog):
    """The result was in place, but a Ctrl-C while the earlier one was deleted reported failure and
    left a half-deleted .partial folder, which made the next run refuse the output folder."""
    out = tmp_path / "out"
    out.mkdir()
    for name in "abc":
        (out / f"old-{name}.txt").write_text("old")
    real_rmtree = shutil.rmtree
    calls = []

    def ctrl_c_once(path, *args, **kwargs):  # the first deletion is interrupted halfway
        calls.append(path)
        if len(calls) == 1:
            next(Path(path).rglob("old-*.txt")).unlink()
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    def ours(entries: list[Path]) -> list[Path]:
        assert all(e.name.startswith(("old-", "new")) for e in entries), entries
        return entries

    monkeypatch.setattr(atomic.shutil, "rmtree", ctrl_c_once)
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_dir(out, replaces=ours) as tmp:
            (tmp / "new.txt").write_text("new")
    assert len(calls) == 2 and [p.name for p in out.iterdir()] == ["new.txt"]  # complete, nothing left over
    assert "interrupted after the result was in place; it is complete" in caplog.text
    monkeypatch.undo()
    with atomic.atomic_dir(out, replaces=ours) as tmp:  # the next run is not refused
        (tmp / "new.txt").write_text("newer")
    assert [(p.name, p.read_text()) for p in out.iterdir()] == [("new.txt", "newer")]


def test_write_json_atomic_refuses_nan_leaving_the_earlier_file(tmp_path):
    """The JSON writer of every eval / score / propagate command: indented JSON, and a NaN (which
    json.dumps would write as the non-JSON token NaN) a ValueError with the old file untouched."""
    path = tmp_path / "results.json"
    write_json_atomic({"J&F-Mean": 0.5, "per_sequence": {"dog": [1, 2]}}, path)
    assert json.loads(path.read_text()) == {"J&F-Mean": 0.5, "per_sequence": {"dog": [1, 2]}}
    assert path.read_text().startswith('{\n  "J&F-Mean"') and path.read_text().endswith("}\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json_atomic({"J&F-Mean": float("nan")}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_second_sigterm_does_not_cut_the_cleanup_of_the_first_short(tmp_path, capsys):
    """sigterm_cleans_up: a SIGTERM repeated while the first one's unwinding removes the temporary
    output raised again inside that removal, leaving part of it behind; it is ignored until the
    block is left (143, the output gone), and the previous handler is put back."""
    out, cleaned = tmp_path / "out", []
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        with sigterm_cleans_up("test"), atomic_dir(out) as tmp:
            (tmp / "half.png").write_bytes(b"x")
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary: the handler runs
            finally:  # the cleanup, as atomic_dir's own: a second SIGTERM arrives in the middle of it
                os.kill(os.getpid(), signal.SIGTERM)
                cleaned.append(True)
    assert stop.value.code == 143 and cleaned == [True]
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.parametrize("in_place", [False, True])
def test_a_sigterm_after_the_output_is_in_place_says_it_is_complete(tmp_path, monkeypatch, capsys, in_place):
    """SIGTERM right after atomic_dir moved the finished output into place (renamed it, or moved its
    entries into an existing folder): the line said "nothing written" of a complete output. The
    move is not cut short, and the line says the output is complete; still exit 143."""
    out = tmp_path / "out"
    if in_place:
        out.mkdir()
        real_move = atomic._move_entries

        def move_then_terminate(tmp, to, replacing):
            real_move(tmp, to, replacing)
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary: the handler runs

        monkeypatch.setattr(atomic, "_move_entries", move_then_terminate)
    else:
        real_rename = Path.rename

        def rename_then_terminate(self, target):
            moved = real_rename(self, target)
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])
            return moved

        monkeypatch.setattr(Path, "rename", rename_then_terminate)
    with pytest.raises(SystemExit) as stop:
        with atomic.sigterm_cleans_up("test"), atomic.atomic_dir(out) as tmp:
            (tmp / "result.png").write_bytes(b"x")
    assert stop.value.code == 143
    assert capsys.readouterr().err == f"vidcorr test: stopped by SIGTERM after {out} was written in full\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["result.png"]


class _StandIn:
    """A handler standing in for another (``stands_in_for``), as the command line's start-up one does."""

    stands_in_for = signal.SIG_IGN

    def __call__(self, signum: int, frame: object) -> None:
        raise AssertionError("never called here")


def test_the_block_gives_back_what_a_stand_in_stood_in_for() -> None:
    """The command line holds its start-up handler until the block replaces it; after the block, a
    SIGTERM (as the command prints its summary) said "while starting; nothing was done" of a command
    whose output was written. The handler the stand-in stands in for comes back instead."""
    previous = signal.signal(signal.SIGTERM, _StandIn())
    try:
        with sigterm_cleans_up("test"):
            pass
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
