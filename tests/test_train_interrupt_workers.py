"""Ctrl-C / SIGTERM while training, around the end of the loader workers and the run's last step:
the checkpoint of a stop comes before the workers are ended, and a signal in the last step ends
the run as it would have ended, saying so. CLI tests under `train_interrupt_helpers.HOOKS`."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_train_loop import tiny_job, tiny_recipe
from train_interrupt_helpers import HOOKED_AE, _assert_resumes, _ctrl_c_at, signal_at

from vidcorr.train import load_checkpoint, train
from vidcorr.train.autoencoder import AutoencoderTraining
from vidcorr.train.endings import ended_anyway

pytestmark = pytest.mark.usefixtures("one_thread")

# `HOOKED_AE` (two loader workers) without its checkpoint every step: a stop's checkpoint is then
# the only one of the state it stopped at
SPARSE_AE = HOOKED_AE.replace("checkpoint_every = 1\n", "checkpoint_every = 1000\n")
SHORT_AE = SPARSE_AE.replace("steps = 100", "steps = 3")  # one stage of three steps


@pytest.fixture(autouse=True)
def listed_videos(short_list: Path, tmp_path: Path) -> None:
    """The short videos, listed where `_ctrl_c_at` reads them."""
    (tmp_path / "videos.txt").write_text(short_list.read_text())


def test_a_second_ctrl_c_while_the_workers_end_keeps_the_stops_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C in step 2, a second one while the loader workers are ended (torch waits up to 5 s
    for each). They were ended before the checkpoint: the second Ctrl-C stopped the run without
    one, and a fresh run lost all its steps. Now the checkpoint of step 2 is written first, and
    the line says so."""
    code, err, _ = _ctrl_c_at(tmp_path, [("hook: a step logged", 0.0), ("hook: joined a worker", 0.0)],
                              {"HOOK_SLOW_STEP": "2", "HOOK_SLOW_JOIN": "1"}, recipe=SPARSE_AE)
    latest = tmp_path / "run" / "checkpoint.pt"
    assert code == 130 and "Traceback" not in err and "Exception ignored" not in err, err
    assert (f"vidcorr: interrupted by SIGINT at step 2 of stage 'reconstruct'; checkpoint written to {latest}; "
            "resume with --resume") in err
    assert load_checkpoint(latest)["progress"]["step"] == 2
    _assert_resumes(tmp_path, 2)


def test_ctrl_c_in_the_last_step_ends_the_run_as_usual_and_says_so(tmp_path: Path) -> None:
    """The announcement promises a checkpoint at the next boundary: after the last step that is
    the run's end, which also exports. The run ended so, silently, after the announcement of a
    stop: now a line says why it did not stop."""
    code, err, _ = _ctrl_c_at(tmp_path, [("hook: a step logged", 0.0)], {"HOOK_SLOW_STEP": "3"}, recipe=SHORT_AE)
    latest, weights = tmp_path / "run" / "checkpoint.pt", tmp_path / "ae.safetensors"
    assert code == 0 and "Traceback" not in err, err
    assert "vidcorr: SIGINT: finishing the step in progress (if any), then writing a checkpoint" in err
    assert (f"SIGINT came after the run's last step had begun: the run is complete; checkpoint written to "
            f"{latest}; exported {weights}") in err
    assert load_checkpoint(latest)["progress"]["step"] == 3 and weights.is_file()


def test_a_second_ctrl_c_at_the_runs_end_stops_before_the_export(tmp_path: Path) -> None:
    """Ctrl-C in the last step, a second while the workers end: the run stops with the checkpoint
    of its end, not exported (exit status 130; --resume then exports). The workers were ended by
    the loader's ``__del__``, before that checkpoint, where the second Ctrl-C was printed as
    "Exception ignored in ..." with a traceback and dropped: the run went on to export, status 0."""
    code, err, _ = _ctrl_c_at(tmp_path, [("hook: a step logged", 0.0), ("hook: joined a worker", 0.0)],
                              {"HOOK_SLOW_STEP": "3", "HOOK_SLOW_JOIN": "1"}, recipe=SHORT_AE)
    latest, weights = tmp_path / "run" / "checkpoint.pt", tmp_path / "ae.safetensors"
    assert code == 130 and "Traceback" not in err and "Exception ignored" not in err, err
    assert (f"vidcorr: interrupted by SIGINT at step 3, the end of stage 'reconstruct'; checkpoint written to "
            f"{latest}; resume with --resume") in err
    assert load_checkpoint(latest)["progress"]["step"] == 3 and not weights.exists()
    code, err, _ = _ctrl_c_at(tmp_path, [], {}, ("--resume",), timeout=60, recipe=SHORT_AE)
    assert code == 0 and f"resumed {latest} at step 3 (finished)" in err and weights.is_file(), err


def test_a_signal_in_the_last_step_ends_the_run_as_usual(short_list: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """`train` returns (nothing to stop: the checkpoint of the signal's boundary is the run's
    last), and the log says why; so too in the last step before max_steps. SIGTERM: an ignored
    SIGINT (pytest started in the background) is rightly left alone."""
    for max_steps, run, ended in ((None, "done", "the run is complete"),
                                  (2, "cut", "it stopped there at max_steps (2) as asked (--resume continues)")):
        weights = tmp_path / f"{run}.safetensors"
        job = tiny_job(tiny_recipe(steps=3, checkpoint_every=100), short_list, tmp_path / run, AutoencoderTraining,
                       on_step=signal_at(max_steps or 3, signal.SIGTERM), max_steps=max_steps, export=weights)
        with caplog.at_level("WARNING", logger="vidcorr.train.loop"):
            result = train(job)
        assert result.finished == (max_steps is None) and result.progress.step == (max_steps or 3)
        assert (f"SIGTERM came after the run's last step had begun: {ended}; checkpoint written to "
                f"{tmp_path / run / 'checkpoint.pt'}; exported {weights}") in caplog.text
        assert load_checkpoint(tmp_path / run / "checkpoint.pt")["progress"]["step"] == (max_steps or 3)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_last_step_note_names_a_checkpoint_only_where_one_was_written(tmp_path):
    """--max-steps 0 writes no checkpoint; a signal during its export was logged as "checkpoint written"."""
    run = SimpleNamespace(stop=SimpleNamespace(signal=signal.SIGINT),
                          job=SimpleNamespace(run_dir=tmp_path, max_steps=0))
    assert "no checkpoint written" in ended_anyway(run, False, None)
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert f"checkpoint written to {tmp_path / 'checkpoint.pt'}" in ended_anyway(run, False, None)
