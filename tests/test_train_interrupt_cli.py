"""Ctrl-C / SIGTERM to `vidcorr train` on the command line: the exit status, the line, the
checkpoint and no traceback; and Ctrl-C, under `train_interrupt_helpers.HOOKS`, at the moments
around the loader workers that went wrong (the forkserver starting, a batch being handed over, a
hung worker, the workers starting)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_interrupt_helpers import TINY_AE, _assert_resumes, _ctrl_c_at, _default_sigint

import vidcorr.cli
from vidcorr.cli import main
from vidcorr.errors import VidcorrError
from vidcorr.train import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread", "ctrl_c_as_in_a_terminal")


def _train_until(args: list[str], line: str, signum: int, group: bool, delay: float = 0.0) -> tuple[int, str]:
    """Run ``vidcorr train ...``, send ``signum`` ``delay`` s after stderr shows ``line``; exit status
    and stderr. group: to the whole process group, as a terminal's Ctrl-C or torchrun (else to the
    trainer alone)."""
    trainer = subprocess.Popen([sys.executable, "-m", "vidcorr", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_default_sigint)
    try:
        err = []
        for text in trainer.stderr:
            err.append(text)
            if line in text:
                time.sleep(delay)
                (os.killpg if group else os.kill)(trainer.pid, signum)
                break
        err.append(trainer.communicate(timeout=60)[1])
        return trainer.returncode, "".join(err)
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)


def test_ctrl_c_then_sigterm_on_the_command_line(short_list: Path, tmp_path: Path) -> None:
    """Exit status, the line, the checkpoint, and no traceback from the trainer or its worker."""
    recipe, run_dir = tmp_path / "tiny.toml", tmp_path / "run"
    recipe.write_text(TINY_AE)
    args = ["train", "autoencoder", "--data", str(short_list), "--recipe", str(recipe), "--run-dir", str(run_dir),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "ae.safetensors")]
    code, err = _train_until(args, "step 3 |", signal.SIGINT, group=True)
    assert code == 130 and "Traceback" not in err, err
    step = load_checkpoint(run_dir / "checkpoint.pt")["progress"]["step"]
    assert step >= 3 and (f"vidcorr: interrupted by SIGINT at step {step} of stage 'reconstruct'; checkpoint "
                          f"written to {run_dir / 'checkpoint.pt'}; resume with --resume") in err
    # SIGTERM to the whole group, as torchrun sends it: the loader worker dies at once while the
    # trainer waits for its next batch (50 ms after a step's line; the tiny model trains faster
    # than one worker decodes): the trainer abandons the wait (or, should torch's "DataLoader
    # worker exited unexpectedly" come first, takes that as the stop)
    code, err = _train_until(args + ["--resume"], f"step {step + 10} |", signal.SIGTERM, group=True, delay=0.05)
    assert code == 143 and "Traceback" not in err and f"resumed {run_dir / 'checkpoint.pt'} at step {step}" in err
    assert load_checkpoint(run_dir / "checkpoint.pt")["progress"]["step"] >= step + 10
    assert not (tmp_path / "ae.safetensors").exists()


# `vidcorr train` with one function followed by "hook: <its name>" and a pause, in which the test signals.
PAUSED_AT = """
import os, sys, time
import vidcorr.cli
import vidcorr.train.distributed
import vidcorr.train.recipe_files
owner = {"build_parser": vidcorr.cli, "check_device": vidcorr.cli, "launched_rank": vidcorr.train.distributed,
         "load_recipe": vidcorr.train.recipe_files}[sys.argv[1]]
original = getattr(owner, sys.argv[1])
def paused(*args, **kwargs):
    result = original(*args, **kwargs)
    os.write(2, f"hook: {sys.argv[1]}\\n".encode())
    time.sleep(10)
    return result
setattr(owner, sys.argv[1], paused)
sys.exit(vidcorr.cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("where", "line"), [
    ("build_parser", "vidcorr: interrupted by SIGTERM while starting; nothing was done"),
    # after the parser, before the command's own handlers (17 ms on CPU, longer with --device cuda's check):
    # the start-up handler was given back there, and SIGTERM's default exited 143 without a word
    ("check_device", "vidcorr: interrupted by SIGTERM while starting; nothing was done"),
    ("launched_rank", "vidcorr: interrupted by SIGTERM while starting; nothing was done"),
    ("load_recipe", "vidcorr: interrupted by SIGTERM before the first step, while the run was being prepared; "
                    "nothing was written")])
def test_sigterm_before_the_trainer_starts_says_so_in_one_line(short_list: Path, tmp_path: Path, where: str,
                                                               line: str) -> None:
    """SIGTERM while the command line imported torch or read the recipe ended `vidcorr train` at
    SIGTERM's default: exit 143 and not a word."""
    (tmp_path / "paused.py").write_text(PAUSED_AT)
    (tmp_path / "tiny.toml").write_text(TINY_AE)
    trainer = subprocess.Popen(
        [sys.executable, str(tmp_path / "paused.py"), where, "train", "autoencoder", "--data", str(short_list),
         "--recipe", str(tmp_path / "tiny.toml"), "--run-dir", str(tmp_path / "run"), "--cache-dir",
         str(tmp_path / "cache"), "--out", str(tmp_path / "ae.safetensors")],
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert trainer.stderr.readline() == f"hook: {where}\n"
        trainer.send_signal(signal.SIGTERM)
        err = trainer.communicate(timeout=30)[1]
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 143 and err == f"{line}\n", err
    assert not (tmp_path / "run").exists()


def test_only_a_training_command_keeps_the_start_up_sigterm_handler_after_parsing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vidcorr train METHOD` keeps it until its own handlers take over; `train export` and a torchrun
    rank of `eval` (held only in a process alone: test_cli_eval_davis.py) start with SIGTERM's handler
    as it was (its default: exit 143), as before; all give it back at the end."""
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun rank: its --device check comes before any joining

    def stop_at_check(device: str | None) -> None:
        seen[command] = signal.getsignal(signal.SIGTERM)
        raise VidcorrError("stopped at the device check")

    monkeypatch.setattr(vidcorr.cli, "check_device", stop_at_check)
    for command, argv in (("train", ["train", "autoencoder", "--data", str(tmp_path), "--out", "w.safetensors"]),
                          ("export", ["train", "export", "--checkpoint", "c.pt", "--out", "w.safetensors"]),
                          ("eval", ["eval", "davis", "--root", str(tmp_path), "--out", str(tmp_path / "out")])):
        assert main(argv) == 2
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert seen["train"] not in (signal.SIG_DFL, None) and seen["export"] == seen["eval"] == signal.SIG_DFL


@pytest.fixture
def hooked_videos(short_list: Path, tmp_path: Path) -> Path:
    """The short videos, listed where `_ctrl_c_at` reads them."""
    (tmp_path / "videos.txt").write_text(short_list.read_text())
    return tmp_path / "videos.txt"


def test_ctrl_c_while_the_forkserver_starts_is_not_lost(hooked_videos: Path, tmp_path: Path) -> None:
    """The trainer ignored SIGINT while it spawned the forkserver (so that the server would): a
    Ctrl-C then was lost, and the run went on to its end (exit status 0). The server, hit while
    it starts, must not print a traceback either."""
    code, err, _ = _ctrl_c_at(tmp_path, [("hook: forkserver started", 0.0)], {"HOOK_SLOW_FORKSERVER_START": "1"},
                              ("--max-steps", "3"))
    assert code == 130 and "Traceback" not in err, err
    assert "vidcorr: interrupted by SIGINT before the first step; no checkpoint was written" in err
    assert not (tmp_path / "run").exists()


def test_ctrl_c_breaks_off_a_batch_being_handed_over_quietly(hooked_videos: Path, tmp_path: Path) -> None:
    """A batch a worker is handing over is abandoned at once (the trainer waited for it), and the
    worker, whose connection the trainer closed, prints no "EOFError" traceback; the checkpoint
    of the last step resumes."""
    code, err, seconds = _ctrl_c_at(tmp_path, [("hook: a hand-over", 0.2)], {"HOOK_SLOW_HAND_OVER": "6"})
    assert code == 130 and "Traceback" not in err and seconds < 10, (seconds, err)
    step = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["progress"]["step"]
    assert step >= 1 and f"vidcorr: interrupted by SIGINT at step {step} of stage 'reconstruct'" in err
    _assert_resumes(tmp_path, step)


def test_a_hung_loader_worker_does_not_hold_the_stop(hooked_videos: Path, tmp_path: Path) -> None:
    """Ctrl-C while the trainer waits for a batch from a worker that hangs: the wait is abandoned
    and the worker ended (SIGTERM after torch's 5 s); the trainer waited for ever."""
    code, err, seconds = _ctrl_c_at(tmp_path, [("hook: a worker hangs", 1.0)], {"HOOK_HANG_WORKER": "2"})
    assert code == 130 and "Traceback" not in err and seconds < 15, (seconds, err)
    step = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["progress"]["step"]
    assert f"vidcorr: interrupted by SIGINT at step {step} of stage 'reconstruct'" in err


def test_a_second_ctrl_c_while_workers_start_lets_them_start(hooked_videos: Path, tmp_path: Path) -> None:
    """Two Ctrl-Cs while the loader's workers start: the second stops the run once they have
    started. Broken off in the middle of a worker's start, it left the half-started worker to
    print "EOFError: Ran out of input" from the forkserver."""
    code, err, _ = _ctrl_c_at(tmp_path, [("hook: a worker starts", 0.0), (None, 0.2)], {"HOOK_SLOW_WORKER_START": "1"})
    assert code == 130 and "Traceback" not in err, err
    assert "vidcorr: interrupted by SIGINT and stopped at once; no checkpoint was written" in err
    assert not (tmp_path / "run").exists()
