"""Shared by the test_train_interrupt* files: a signal at a given step, SIGINT at its default in a child,
and `vidcorr train` on the command line under `HOOKS`, which widens a moment of a run to a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vidcorr.train import load_checkpoint


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


# Ctrl-C (SIGINT to the whole process group, as a terminal sends it) on the command line with two
# loader workers, at the moments that went wrong. Each moment lasts milliseconds in a real run, so
# `HOOKS` widens it to a second or more: `python HOOKS_FILE train ...` is `vidcorr train ...` with
# what an environment variable names slowed down, announced on stderr as "hook: ...".
# Its imports stay inside the hooks: each hook imports what it patches only when its variable is set.
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


def _assert_resumes(tmp_path: Path, step: int) -> None:
    """--resume continues the checkpoint of ``step`` to step + 2 and ends normally."""
    code, err, _ = _ctrl_c_at(tmp_path, [], {}, ("--resume", "--max-steps", str(step + 2)), timeout=60)
    assert code == 0 and f"resumed {tmp_path / 'run' / 'checkpoint.pt'} at step {step}" in err, err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["progress"]["step"] == step + 2
