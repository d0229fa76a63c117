"""Ctrl-C / SIGTERM while training: a checkpoint at a step boundary, an exact resume, a second signal
that stops at once without harming the last checkpoint, quiet loader workers, ranks that agree on
the step, and no half-written run dir. On the command line: test_train_interrupt_cli.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from rank_helpers import forked_ranks
from test_train_loop import TinyMethod, tiny_job, tiny_recipe, tiny_uvc_recipe, uvc_job
from train_interrupt_helpers import _default_sigint, signal_at

from vidcorr.data import pairs
from vidcorr.models import load_encoder
from vidcorr.train import TrainingInterrupted, checkpoint, load_checkpoint, train
from vidcorr.train.distributed import shutdown
from vidcorr.train.interrupt import StopAtOnce, StopSignals, WaitAbandoned, preparing

pytestmark = pytest.mark.usefixtures("one_thread", "ctrl_c_as_in_a_terminal")


def assert_handlers_restored() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_signal_stops_at_the_step_boundary_and_the_resume_is_exact(short_list: Path, tmp_path: Path) -> None:
    """SIGINT after step 3 (mid warm-up, an epoch end), SIGTERM after step 4 (the warm-up's last step),
    then a resume to the end: the real UVC's losses and weights equal an uninterrupted run's, bit for bit."""
    recipe = tiny_uvc_recipe(checkpoint_every=100)  # the interrupts alone write the mid-stage checkpoints
    straight: list = []
    train(uvc_job(recipe, short_list, tmp_path / "straight", straight, export=tmp_path / "straight.safetensors"))

    run_dir, resumed = tmp_path / "run", []
    stops = [(3, signal.SIGINT, 130, "step 3 of stage 'warmup'"),
             (4, signal.SIGTERM, 143, "step 4, the end of stage 'warmup'")]
    for stop, signum, code, where in stops:
        job = uvc_job(recipe, short_list, run_dir, [], resume=stop != 3, export=tmp_path / "resumed.safetensors")
        job.on_step = signal_at(stop, signum, resumed)
        with pytest.raises(TrainingInterrupted) as error:
            train(job)
        assert error.value.exit_code == code and error.value.at_boundary
        assert str(error.value) == (f"interrupted by {signal.Signals(signum).name} at {where}; checkpoint written to "
                                    f"{run_dir / 'checkpoint.pt'}; resume with --resume")
        assert load_checkpoint(run_dir / "checkpoint.pt")["progress"]["step"] == stop
        assert not (tmp_path / "resumed.safetensors").exists()  # exported only when a run ends normally
        assert_handlers_restored()
    train(uvc_job(recipe, short_list, run_dir, resumed, resume=True, export=tmp_path / "resumed.safetensors"))
    assert [step for step, _ in resumed] == list(range(1, 8))
    assert resumed == straight  # every loss term of every step, bit for bit
    log = (run_dir / "train.log").read_text()  # warnings and the end lines (logging is at WARNING here)
    assert [line.split(": ")[0][-7:] for line in log.splitlines() if line.startswith("=====")] == [
        "started", "resumed", "resumed"]
    assert all(f"WARNING vidcorr.train.loop: interrupted by {s.name} at {where}; " in log for _, s, _, where in stops)
    assert log.endswith(f"INFO vidcorr.train.loop: tiny-uvc: finished; checkpoint {run_dir / 'checkpoint.pt'}\n")
    a, b = (load_encoder(tmp_path / f"{n}.safetensors").state_dict() for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def signal_on_read(monkeypatch: pytest.MonkeyPatch, call: int) -> list:
    """SIGINT to this process at the ``call``-th frame read (a batch being loaded, workers = 0),
    just before it; returns the videos of the reads done."""
    read, calls = pairs.read_frames_at, []

    def reading(path, indices):
        if len(calls) + 1 == call:
            os.kill(os.getpid(), signal.SIGINT)
        calls.append(path)
        return read(path, indices)

    monkeypatch.setattr(pairs, "read_frames_at", reading)
    return calls


def test_a_signal_while_a_batch_loads_abandons_it(short_list: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing has changed while a batch loads: the stop comes at once, not once the batch has
    loaded (decoding can take seconds), and is not taken for a broken video (those are skipped)."""
    recipe = tiny_recipe(steps=6, checkpoint_every=100)
    straight: list = []
    train(tiny_job(recipe, short_list, tmp_path / "straight", on_step=lambda p, t: straight.append((p.step, t))))

    reads = signal_on_read(monkeypatch, call=5)  # batches of 2 single-frame samples: the third batch's first
    resumed: list = []
    with pytest.raises(TrainingInterrupted, match="at step 2 of stage 'reconstruct'"):
        train(tiny_job(recipe, short_list, tmp_path / "run", on_step=lambda p, t: resumed.append((p.step, t))))
    assert len(reads) == 4  # the fifth read, and the rest of the batch, never happened
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["progress"]["step"] == 2 and checkpoint["progress"]["skipped_videos"] == 0
    monkeypatch.undo()
    train(tiny_job(recipe, short_list, tmp_path / "run", resume=True,
                   on_step=lambda p, t: resumed.append((p.step, t))))
    assert resumed == straight


def test_a_fresh_run_stopped_before_its_first_step_leaves_no_run_dir(short_list: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    signal_on_read(monkeypatch, call=1)
    with pytest.raises(TrainingInterrupted) as error:
        train(tiny_job(tiny_recipe(), short_list, tmp_path / "run"))
    assert str(error.value) == "interrupted by SIGINT before the first step; no checkpoint was written"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_run_dir_is_being_set_up_takes_it_back(short_list: Path, tmp_path: Path, signum: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the first step, after the run dir was made (its run.json being written): the run said
    "stopped at once" and left run.json, train.log and TensorBoard files there. Now the line says it
    came before the first step and nothing was written, and the run dir is gone: a rerun starts clean."""
    write_run_info = checkpoint.write_run_info

    def interrupted_write(run_dir, *args):
        write_run_info(run_dir, *args)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(checkpoint, "write_run_info", interrupted_write)
    with pytest.raises(TrainingInterrupted) as error:
        train(tiny_job(tiny_recipe(), short_list, tmp_path / "run"))
    assert error.value.exit_code == 128 + signum and not error.value.at_boundary
    assert str(error.value) == (f"interrupted by {signal.Signals(signum).name} before the first step, while the run "
                                "was being prepared; nothing was written")
    assert not (tmp_path / "run").exists()
    assert_handlers_restored()


def test_a_signal_while_a_command_prepares_stops_before_the_first_step_and_the_trainer_takes_over() -> None:
    """`preparing` (a training command reading its inputs): SIGTERM's default there was a silent exit
    143. It raises `StopAtOnce` marked before_training; the trainer's own handlers replace it."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        with pytest.raises(StopAtOnce) as stopped, preparing():
            os.kill(os.getpid(), signum)
            time.sleep(1)  # never reached: the handler raises
        assert stopped.value.signal == signum and stopped.value.before_training
        assert_handlers_restored()
    with preparing():
        with StopSignals(announce=False) as stop:  # takes over: a signal now is the trainer's
            stop.training()
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signal == signal.SIGTERM
        assert_handlers_restored()  # the defaults, not `preparing`'s: its block was ended
    assert_handlers_restored()


class _StandIn:
    """A handler standing in for SIGTERM's default, as the command line's start-up one does."""

    stands_in_for = signal.SIG_DFL

    def __call__(self, signum: int, frame: object) -> None:
        raise AssertionError("never called here")


def test_preparing_takes_over_from_a_stand_in_and_gives_back_what_it_stands_in_for() -> None:
    """The command line holds its start-up handler until `preparing` replaces it (no moment of
    SIGTERM's silent default between the two). What comes back at the block's end, or when the
    trainer takes over, is the handler it stood in for: the stand-in's "while starting; nothing was
    done" would have been said for a SIGTERM after training, or a third one during it."""
    for trainer in (False, True):
        signal.signal(signal.SIGTERM, _StandIn())
        try:
            with preparing():
                if trainer:
                    with StopSignals(announce=False):  # takes over: ends the block early
                        pass
                    assert_handlers_restored()  # what the trainer gave back
            assert_handlers_restored()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_second_signal_during_the_save_stops_at_once_keeping_the_last_checkpoint(
        short_list: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first SIGINT (after step 3) asks for a checkpoint; a second one halfway through writing
    it stops at once: the temporary file goes, the checkpoint of step 2 stays as it was."""
    save, saves = torch.save, []

    def slow_save(obj, path):  # writes half a checkpoint, then the second Ctrl-C comes
        saves.append(path)
        if len(saves) == 2:
            Path(path).write_bytes(b"PK half a checkpoint")
            os.kill(os.getpid(), signal.SIGINT)
        save(obj, path)

    monkeypatch.setattr(torch, "save", slow_save)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as error:
        train(tiny_job(tiny_recipe(steps=6, checkpoint_every=2), short_list, run_dir,
                       on_step=signal_at(3, signal.SIGINT)))
    assert len(saves) == 2 and error.value.exit_code == 130 and not error.value.at_boundary
    assert str(error.value) == (f"interrupted by SIGINT and stopped at once; the last checkpoint, "
                                f"{run_dir / 'checkpoint.pt'}, is intact (resume with --resume)")
    assert load_checkpoint(run_dir / "checkpoint.pt")["progress"]["step"] == 2
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "run.json", "tensorboard",
                                                         "train.log"]  # no temporary file
    assert (run_dir / "train.log").read_text().endswith(f"WARNING vidcorr.train.loop: {error.value}\n")
    assert_handlers_restored()


def test_a_sheltered_section_holds_a_second_signal_until_its_end() -> None:
    """`StopSignals.sheltered` (starting loader workers): a first signal is noted without breaking
    in, a second one stops at once when the section ends; nothing is begun after a request."""
    reached = []
    with StopSignals(announce=False) as stop:
        stop.training()
        with pytest.raises(StopAtOnce) as stopped:
            with stop.sheltered():
                os.kill(os.getpid(), signal.SIGINT)
                reached.append(stop.requested)
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("the end")
        assert reached == [True, "the end"] and stopped.value.signal == signal.SIGINT
        for section in (stop.sheltered, stop.abandoning):
            with pytest.raises(WaitAbandoned), section():
                reached.append("begun")
        assert "begun" not in reached
    assert_handlers_restored()
    with StopSignals(announce=False) as stop:  # a third signal breaks in, should the section hang
        stop.training()
        reached.clear()
        with pytest.raises(StopAtOnce), stop.sheltered():
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("sent")
        assert reached == ["sent", "sent"]
    assert_handlers_restored()


class FailingMethod(TinyMethod):
    def forward(self, batch, stage):
        raise RuntimeError("out of memory (simulated)")


def test_a_fresh_run_failing_before_its_first_checkpoint_leaves_no_output(short_list: Path, tmp_path: Path) -> None:
    """It left RUN_DIR/tensorboard behind (a run dir without a checkpoint: half-written output).
    What was there before stays."""
    with pytest.raises(RuntimeError, match="simulated"):
        train(tiny_job(tiny_recipe(), short_list, tmp_path / "run", FailingMethod))
    assert not (tmp_path / "run").exists()
    kept = tmp_path / "mine" / "tensorboard" / "notes.txt"
    kept.parent.mkdir(parents=True)
    kept.write_text("mine")
    with pytest.raises(RuntimeError, match="simulated"):
        train(tiny_job(tiny_recipe(), short_list, tmp_path / "mine", FailingMethod))
    assert [p.name for p in kept.parent.iterdir()] == ["notes.txt"]


def test_loader_workers_ignore_ctrl_c(short_list: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches the forkserver and the workers too (one process group). A worker took it as a
    KeyboardInterrupt and quit ("DataLoader worker exited unexpectedly" at the trainer's next batch),
    and a server starting up printed a traceback; the trainer alone decides when to stop."""
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, signal, torch
        from vidcorr.data import build_index
        from vidcorr.train.config import recipe_from_dict
        from vidcorr.train.distributed import DistContext
        from vidcorr.train.feed import loader as _loader

        def report(queue):  # SIGINT cannot reach it: blocked (until ignored, as workers do) or ignored
            blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            queue.put(blocked or signal.getsignal(signal.SIGINT) is signal.SIG_IGN)

        if __name__ == "__main__":
            signal.signal(signal.SIGINT, lambda *_: None)  # the trainer has a handler of its own
            data = {{"crop": 32, "batch_size": 2, "workers": 1, "samples_per_video": 4}}
            recipe = recipe_from_dict({{"method": "autoencoder", "data": data, "stages": {{"s": {{"steps": 1}}}}}}, "t")
            index = build_index([{str(short_list)!r}], {str(tmp_path / "cache")!r})
            ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
            loader, sampler, _ = _loader(recipe, "image", index, 0, ctx)
            sampler.set_epoch(0)
            batches = iter(loader)
            next(batches)
            forkserver = multiprocessing.get_context("forkserver")
            queue = forkserver.Queue()
            child = forkserver.Process(target=report, args=(queue,))  # a sibling of the workers
            child.start()
            print(queue.get(), flush=True)
            child.join()
            input()  # the test presses Ctrl-C now
            print(sum(1 for _ in batches), flush=True)
    """))
    trainer = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_default_sigint)
    try:
        assert trainer.stdout.readline().strip() == "True"  # the server's children are deaf to SIGINT from birth
        for _ in range(3):
            os.killpg(trainer.pid, signal.SIGINT)
            time.sleep(0.2)
        out, err = trainer.communicate("\n", timeout=60)
        assert trainer.returncode == 0, err
        assert out.strip() == "5" and "Traceback" not in err  # 3 videos x 4 samples / 2, less the first
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)


def _rank(rank: int, data: str, out: Path) -> None:
    """One of two torchrun-style ranks (`forked_ranks`); only rank 1 gets SIGTERM, after step 2."""
    torch.set_num_threads(1)
    steps: list[int] = []

    def on_step(progress, terms) -> None:
        steps.append(progress.step)
        if rank == 1 and progress.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    job = tiny_job(tiny_recipe(steps=6, checkpoint_every=100), Path(data), out / "run", on_step=on_step)
    try:
        train(job)
        outcome = {"finished": True}
    except TrainingInterrupted as interrupted:
        outcome = {"message": str(interrupted), "code": interrupted.exit_code,
                   "at_boundary": interrupted.at_boundary}
    shutdown(synchronise=outcome.get("at_boundary", False))
    (out / f"rank{rank}.json").write_text(json.dumps({**outcome, "steps": steps}))


def test_ddp_ranks_stop_at_the_same_step(short_list: Path, tmp_path: Path) -> None:
    """A signal to one rank stops every rank at the same step: a rank that stopped alone went on to
    the checkpoint's collectives while the others ran the next step's (a hang, or garbage)."""
    with forked_ranks(_rank, (str(short_list), tmp_path)) as ranks:  # killed at the end if they hung
        deadline = time.monotonic() + 60
        while not ranks.join(timeout=1):
            assert time.monotonic() < deadline, "the ranks hung"
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [o["steps"] for o in outcomes] == [[1, 2], [1, 2]]
    latest = tmp_path / "run" / "checkpoint.pt"
    assert outcomes[1]["message"].startswith("interrupted by SIGTERM at step 2 of stage 'reconstruct'")
    assert outcomes[0]["message"].startswith("interrupted by a signal to another rank at step 2")
    assert all(o["code"] == 143 and o["at_boundary"] for o in outcomes)
    assert load_checkpoint(latest)["progress"]["step"] == 2
    lines = (tmp_path / "run" / "train.log").read_text().splitlines()  # rank 0's alone
    assert " started: " in lines[0] and sum(" started: " in line for line in lines) == 1
    assert [line.split(": ", 1)[1].split(" | ")[0] for line in lines if " | " in line] == ["step 1", "step 2"]
    assert not any(outcomes[1]["message"] in line for line in lines)
    assert lines[-1].endswith(f"WARNING vidcorr.train.loop: {outcomes[0]['message']}")
