"""Ctrl-C / SIGTERM while training: a checkpoint at a step boundary, an exact resume, a second signal
that stops at once without harming the last checkpoint, quiet loader workers, ranks that agree on
the step, and no half-written run dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_train_loop import TinyMethod, tiny_job, tiny_recipe, tiny_uvc_recipe, uvc_job

from vidcorr.models import load_encoder
from vidcorr.train import TrainingInterrupted, load_checkpoint, train
from vidcorr.train.distributed import shutdown
from vidcorr.train.interrupt import StopAtOnce, StopSignals, WaitAbandoned

pytestmark = pytest.mark.usefixtures("one_thread", "ctrl_c_as_in_a_terminal")


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """SIGINT handled as in an interactive shell. A job started with ``&`` from a script (a CI
    runner, nohup) inherits SIGINT ignored, and training rightly leaves an ignored signal alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    """Popen's preexec_fn: the child starts with SIGINT at its default, as under a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_at(step: int, signum: int, trajectory: list | None = None):
    """An ``on_step`` hook that records the trajectory and sends ``signum`` to this process after ``step``."""
    def on_step(progress, terms) -> None:
        if trajectory is not None:
            trajectory.append((progress.step, terms))
        if progress.step == step:
            os.kill(os.getpid(), signum)
    return on_step


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
    a, b = (load_encoder(tmp_path / f"{n}.safetensors").state_dict() for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def signal_on_read(monkeypatch: pytest.MonkeyPatch, call: int) -> list:
    """SIGINT to this process at the ``call``-th frame read (a batch being loaded, workers = 0),
    just before it; returns the videos of the reads done."""
    from vidcorr.data import pairs

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
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "tensorboard"]  # no temporary file
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


TINY_AE = """
method = "autoencoder"
[data]
crop = 32
batch_size = 2
workers = 1
[stages.reconstruct]
steps = 100
lr = 1e-3
[log]
every = 1
images_every = 1000
checkpoint_every = 1000
"""


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


# Ctrl-C (SIGINT to the whole process group, as a terminal sends it) on the command line with two
# loader workers, at the moments that went wrong. Each moment lasts milliseconds in a real run, so
# `HOOKS` widens it to a second or more: `python HOOKS_FILE train ...` is `vidcorr train ...` with
# what an environment variable names slowed down, announced on stderr as "hook: ...".
HOOKS = '''
import os
import sys
import time


def say(what):
    os.write(2, f"hook: {what}\\n".encode())


def slowed(owner, name, what, times=1, after=0):
    """owner.name, each of its `times` calls after the first `after` followed by "hook: <what>"
    and a second's sleep."""
    original, calls = getattr(owner, name), []

    def call(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if after < len(calls) <= after + times:
            say(what)
            time.sleep(1.0)
        return result
    setattr(owner, name, call)


if os.environ.get("HOOK_HANG_WORKER"):  # at the top: the forkserver imports this file for the workers
    from torch.utils.data import get_worker_info

    from vidcorr.data import pairs
    read, reads = pairs.read_frames_at, []

    def hanging(path, indices):  # worker 0 hangs at its read number HOOK_HANG_WORKER + 1
        info = get_worker_info()
        if info is not None and info.id == 0:
            reads.append(path)
            if len(reads) > int(os.environ["HOOK_HANG_WORKER"]):
                say("a worker hangs")
                time.sleep(3600)
        return read(path, indices)
    pairs.read_frames_at = hanging


def slow_hand_over(after):
    """A batch's hand-over from a worker, from its connection number `after` + 1 on: the trainer
    connects to the worker's resource sharer, then waits a minute before asking for the file."""
    from multiprocessing import connection, process, resource_sharer
    calls = []

    def get_connection(ident):
        address, key = ident
        conn = connection.Client(address, authkey=process.current_process().authkey)
        calls.append(1)
        if len(calls) > after:
            say("a hand-over")
            time.sleep(60)
        conn.send((key, os.getpid()))
        return conn
    resource_sharer._ResourceSharer.get_connection = staticmethod(get_connection)


if __name__ == "__main__":
    import multiprocessing.forkserver
    import multiprocessing.process

    if os.environ.get("HOOK_SLOW_FORKSERVER_START"):
        slowed(multiprocessing.forkserver, "ensure_running", "forkserver started")
    if os.environ.get("HOOK_SLOW_WORKER_START"):
        slowed(multiprocessing.forkserver, "connect_to_new_process", "a worker starts", times=2)
    if os.environ.get("HOOK_SLOW_JOIN"):
        slowed(multiprocessing.process.BaseProcess, "join", "joined a worker")
    if os.environ.get("HOOK_SLOW_HAND_OVER"):
        slow_hand_over(int(os.environ["HOOK_SLOW_HAND_OVER"]))
    if os.environ.get("HOOK_SLOW_STEP"):  # inside step number HOOK_SLOW_STEP, once its line is logged
        from vidcorr.train.runlog import RunLog
        slowed(RunLog, "step", "a step logged", after=int(os.environ["HOOK_SLOW_STEP"]) - 1)
    from vidcorr.cli import main
    sys.exit(main())
'''

HOOKED_AE = TINY_AE.replace("workers = 1", "workers = 2").replace("checkpoint_every = 1000", "checkpoint_every = 1")


def _ctrl_c_at(tmp_path: Path, plan: list[tuple[str | None, float]], hooks: dict[str, str],
               extra: tuple[str, ...] = (), timeout: float = 20.0, recipe: str = HOOKED_AE) -> tuple[int, str, float]:
    """`vidcorr train autoencoder` (``recipe``; `HOOKED_AE`: two loader workers, a checkpoint every
    step) in a session of its own, under `HOOKS`; for each (line, delay) of ``plan``, SIGINT to its
    process group ``delay`` s after stderr shows a line containing ``line`` (None: after the
    previous one). Returns the exit status, stderr and the seconds from the last signal to the
    exit; a run still going ``timeout`` s after the last signal is killed (status -9)."""
    (tmp_path / "hooks.py").write_text(HOOKS)
    (tmp_path / "tiny.toml").write_text(recipe)
    args = [sys.executable, str(tmp_path / "hooks.py"), "train", "autoencoder", "--data", str(tmp_path / "videos.txt"),
            "--recipe", str(tmp_path / "tiny.toml"), "--run-dir", str(tmp_path / "run"), "--cache-dir",
            str(tmp_path / "cache"), "--out", str(tmp_path / "ae.safetensors"), *extra]
    trainer = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **hooks, "TQDM_DISABLE": "1"}, start_new_session=True,
                               preexec_fn=_default_sigint)
    err, signalled = [], time.monotonic()
    try:
        for line, delay in plan:
            while line is not None and line not in (err[-1] if err else ""):
                err.append(trainer.stderr.readline())
                if not err[-1]:
                    break  # it ended first
            if err and not err[-1]:
                break
            time.sleep(delay)
            os.killpg(trainer.pid, signal.SIGINT)
            signalled = time.monotonic()
        try:
            err.append(trainer.communicate(timeout=timeout)[1])
        except subprocess.TimeoutExpired:
            os.killpg(trainer.pid, signal.SIGKILL)
            err.append(trainer.communicate()[1])
        return trainer.returncode, "".join(err), time.monotonic() - signalled
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)


@pytest.fixture
def hooked_videos(short_list: Path, tmp_path: Path) -> Path:
    """The short videos, listed where `_ctrl_c_at` reads them."""
    (tmp_path / "videos.txt").write_text(short_list.read_text())
    return tmp_path / "videos.txt"


def _assert_resumes(tmp_path: Path, step: int) -> None:
    """--resume continues the checkpoint of ``step`` to step + 2 and ends normally."""
    code, err, _ = _ctrl_c_at(tmp_path, [], {}, ("--resume", "--max-steps", str(step + 2)), timeout=60)
    assert code == 0 and f"resumed {tmp_path / 'run' / 'checkpoint.pt'} at step {step}" in err, err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["progress"]["step"] == step + 2


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


def _rank(rank: int, port: int, data: str, out: Path) -> None:
    """One of two torchrun-style ranks; only rank 1 gets SIGTERM, after step 2."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_stop_at_the_same_step(short_list: Path, tmp_path: Path) -> None:
    """A signal to one rank stops every rank at the same step: a rank that stopped alone went on to
    the checkpoint's collectives while the others ran the next step's (a hang, or garbage)."""
    ranks = mp.start_processes(_rank, args=(_free_port(), str(short_list), tmp_path), nprocs=2,
                               start_method="fork", join=False)
    deadline = time.monotonic() + 60
    try:
        while not ranks.join(timeout=1):
            assert time.monotonic() < deadline, "the ranks hung"
    finally:
        for process in ranks.processes:
            if process.is_alive():
                process.kill()
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [o["steps"] for o in outcomes] == [[1, 2], [1, 2]]
    latest = tmp_path / "run" / "checkpoint.pt"
    assert outcomes[1]["message"].startswith("interrupted by SIGTERM at step 2 of stage 'reconstruct'")
    assert outcomes[0]["message"].startswith("interrupted by a signal to another rank at step 2")
    assert all(o["code"] == 143 and o["at_boundary"] for o in outcomes)
    assert load_checkpoint(latest)["progress"]["step"] == 2
