"""Golden values of a run's position, learning rates, wall time, TensorBoard steps and export record,
straight and resumed. `test_train_loop`'s kill-and-resume test compares a resumed run with a straight
one, so a mutant that changes both alike (the next stage starting at the last epoch, the learning
rate taken from the run's step) passed it; here each value is written out from the recipe."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vidcorr.errors import InputError
from vidcorr.train import TrainJob, load_checkpoint, recipe_from_dict, train
from vidcorr.train import checkpoint as ckpt
from vidcorr.train.checkpoint import rng_state, set_rng_state
from vidcorr.train.distributed import DistContext

pytestmark = pytest.mark.usefixtures("one_thread")


class NoisyMethod(nn.Module):
    """One conv, batch kind "image"; its loss adds a draw from each of Python's, NumPy's and torch's
    generators, so a resume that does not restore all three takes another trajectory."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 3)

    def batch_kind(self, stage: str) -> str:
        return "image"

    def trainable_parameters(self):
        return self.parameters()

    def export(self):
        return self.encoder, {"kind": "conv"}  # the weights' config is no concern here

    def forward(self, batch, stage):
        noise = random.random() + float(np.random.rand()) + float(torch.rand(()))
        loss = self.encoder(batch["image"]).pow(2).mean() * (1 + noise)
        return {"loss": loss, "noise": torch.tensor(noise)}


def two_stage_recipe(every: int = 1):
    """3 videos x 2 samples / batch 2 = 3 steps per epoch. Stage "a": 4 steps at a constant rate,
    so it ends one step into its second epoch; stage "b": 2 epochs of poly decay, moved per epoch."""
    return recipe_from_dict({
        "method": "autoencoder", "seed": 5,
        "data": {"crop": 16, "batch_size": 2, "workers": 0, "samples_per_video": 2},
        "stages": {"a": {"steps": 4, "lr": 1e-3, "schedule": "constant"},
                   "b": {"epochs": 2, "lr": 2e-3, "schedule": "poly", "power": 0.9}},
        "log": {"every": every, "images_every": 1000, "checkpoint_every": 1000},
    }, "golden")


# (stage, stage_step, step, epoch, batch_in_epoch, samples) after each step
GOLDEN = [(0, 1, 1, 0, 1, 2), (0, 2, 2, 0, 2, 4), (0, 3, 3, 0, 3, 6), (0, 4, 4, 1, 1, 8),
          (1, 1, 5, 0, 1, 10), (1, 2, 6, 0, 2, 12), (1, 3, 7, 0, 3, 14),
          (1, 4, 8, 1, 1, 16), (1, 5, 9, 1, 2, 18), (1, 6, 10, 1, 3, 20)]
# stage a constant; stage b lr (1 - e / 2) ** 0.9 for its epoch e, restarted at the stage start (METHODS.md §1.8)
GOLDEN_LR = [1e-3] * 4 + [2e-3] * 3 + [2e-3 * 0.5 ** 0.9] * 3


def _job(data: Path, run_dir: Path, seen: list, recipe=None, **options) -> TrainJob:
    def record(progress, terms):
        seen.append(((progress.stage, progress.stage_step, progress.step, progress.epoch,
                      progress.batch_in_epoch, progress.samples), terms["loss"], terms["noise"]))

    return TrainJob(recipe or two_stage_recipe(), NoisyMethod, [data], run_dir, cache_dir=run_dir.parent / "cache",
                    progress_bar=False, on_step=record, **options)


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    # here, not at the top: tensorboard is optional (`vidcorr.train.runlog`), and only this helper reads events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_a_straight_run_follows_the_recipes_positions_and_rates(short_list: Path, tmp_path: Path) -> None:
    seen: list = []
    result = train(_job(short_list, tmp_path / "run", seen))
    assert result.finished and [position for position, _, _ in seen] == GOLDEN
    lrs = _scalars(tmp_path / "run", "train/lr")
    assert [step for step, _ in lrs] == list(range(1, 11))
    assert [value for _, value in lrs] == pytest.approx(GOLDEN_LR, rel=1e-6)


def test_a_run_resumed_twice_is_the_straight_run_and_keeps_its_records(short_list: Path, tmp_path: Path) -> None:
    """Stopped mid-epoch in stage "a" (step 2) and one step into stage "b" (step 5), each time
    resumed by fresh objects: the same positions, losses (every RNG restored), learning rates,
    one TensorBoard point per step, the wall time summed over the sessions, and an export record
    that says how far the run got."""
    straight: list = []
    train(_job(short_list, tmp_path / "straight", straight))

    run_dir, resumed = tmp_path / "resumed", []
    train(_job(short_list, run_dir, resumed, max_steps=2))
    first = load_checkpoint(run_dir / "checkpoint.pt")
    assert first["progress"]["wall_time"] > 0  # each checkpoint records the time trained so far
    first["progress"]["wall_time"] = 1000.0  # as if the first session had taken 1000 s
    torch.save(first, run_dir / "checkpoint.pt")

    train(_job(short_list, run_dir, resumed, resume=True, max_steps=5, export=tmp_path / "w5.safetensors"))
    stopped = json.loads((tmp_path / "w5.json").read_text())["meta"]
    assert (stopped["steps"], stopped["samples"], stopped["finished"]) == (5, 10, False)
    assert stopped["wall_time_s"] >= 1000
    # the checkpoint's record of the schedule: one step into stage "b", at its first epoch's rate
    schedule = load_checkpoint(run_dir / "checkpoint.pt")["schedule"]
    assert schedule == {"stage": 1, "stage_name": "b", "stage_step": 1, "lr": pytest.approx(2e-3)}

    train(_job(short_list, run_dir, resumed, resume=True, export=tmp_path / "w.safetensors"))
    assert resumed == straight  # positions, loss and noise of every step, bit for bit
    assert [position for position, _, _ in resumed] == GOLDEN
    for tag in ("loss/loss", "train/lr"):  # no step purged or written twice by a resume
        assert [step for step, _ in _scalars(run_dir, tag)] == list(range(1, 11)), tag
    assert [v for _, v in _scalars(run_dir, "train/lr")] == pytest.approx(GOLDEN_LR, rel=1e-6)
    final = load_checkpoint(run_dir / "checkpoint.pt")["progress"]
    assert (final["stage"], final["step"], final["samples"]) == (2, 10, 20) and final["wall_time"] > 1000
    done = json.loads((tmp_path / "w.json").read_text())["meta"]
    assert (done["steps"], done["samples"], done["finished"]) == (10, 20, True) and done["wall_time_s"] > 1000


def test_each_rank_resumes_its_own_generator_states(tmp_path: Path) -> None:
    """The checkpoint holds one RNG entry per rank (DESIGN.md: checkpoints with the RNG state); rank
    r restores entry r, so that the ranks' model-side draws do not become one stream on resume."""
    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    recipe = recipe_from_dict({"method": "uvc", "stages": {"warmup": {"steps": 4}}}, "tiny")
    method = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(method.parameters())
    states = []
    for seed in (11, 12):  # what rank 0 and rank 1 held at the save
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        states.append(ckpt.rng_state())
    expected = []
    for state in states:
        ckpt.set_rng_state(state)
        expected.append(draws())
    assert expected[0] != expected[1]
    alone = DistContext(0, 1, 0, torch.device("cpu"))  # payload's RNG gather needs no process group
    payload = ckpt.payload(method, optimizer, ckpt.Progress(step=2), recipe, {}, alone, lr=1e-3, stage_name="warmup")
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {**payload, "rng": states, "world_size": 2})
    for rank in (1, 0):
        ckpt.resume(path, recipe, method, optimizer, DistContext(rank, 2, rank, torch.device("cpu")))
        assert draws() == expected[rank], rank


def test_a_log_line_after_a_resume_averages_the_steps_it_covers(short_list: Path, tmp_path: Path) -> None:
    """Loss scalars every 2 steps, averaged over the steps since the last line (`RunLog`). Resumed
    after step 3, the line at step 4 covers step 4 alone: its mean is that step's loss, not half of it."""
    seen: list = []
    train(_job(short_list, tmp_path / "run", seen, two_stage_recipe(every=2), max_steps=3))
    train(_job(short_list, tmp_path / "run", seen, two_stage_recipe(every=2), resume=True))
    loss = {position[2]: value for position, value, _ in seen}  # step -> loss
    expected = [(2, (loss[1] + loss[2]) / 2), (4, loss[4]), (6, (loss[5] + loss[6]) / 2),
                (8, (loss[7] + loss[8]) / 2), (10, (loss[9] + loss[10]) / 2)]
    logged = _scalars(tmp_path / "run", "loss/loss")
    assert [step for step, _ in logged] == [step for step, _ in expected]
    assert [value for _, value in logged] == pytest.approx([value for _, value in expected], rel=1e-5)


def test_a_resume_does_not_read_the_init_weights_again(short_list: Path, tmp_path: Path) -> None:
    """A resumed encoder comes from its checkpoint and the --init record is only compared
    (`vidcorr.cli.train_inputs.recorded_init`): the weights a run started from may be gone."""
    weights = tmp_path / "start.safetensors"
    train(_job(short_list, tmp_path / "first", [], max_steps=1, export=weights))
    init = {"weights": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    recipe = two_stage_recipe().replace(init=init)
    train(_job(short_list, tmp_path / "run", [], recipe, max_steps=2))
    weights.unlink()
    weights.with_suffix(".json").unlink()
    seen: list = []
    assert train(_job(short_list, tmp_path / "run", seen, recipe, resume=True)).finished
    assert [position for position, _, _ in seen] == GOLDEN[2:]


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """Module docstring of `vidcorr.train.checkpoint`: a crash during a save leaves the previous
    checkpoint intact (written to a temporary file, then renamed over it)."""
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {"progress": {"step": 1}})
    save = torch.save

    def crash(obj, f, *args, **kwargs):  # half a file, then the disk fills up
        save(obj, f, *args, **kwargs)
        with open(f, "r+b") as written:
            written.truncate(40)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save_checkpoint(path, {"progress": {"step": 2}})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["progress"] == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # the half-written file removed


def test_another_programs_checkpoint_is_refused_as_such(tmp_path: Path) -> None:
    """UVC's own ``checkpoint_latest.pth.tar`` (METHODS.md §1.8) loads with weights_only too: it is
    refused by its missing format, not later as a vidcorr checkpoint without a recipe."""
    path = tmp_path / "checkpoint_latest.pth.tar"
    torch.save({"epoch": 3, "state_dict": {"gray_encoder.w": torch.zeros(1)}, "best_loss": 0.5}, path)
    with pytest.raises(InputError, match="not a vidcorr training checkpoint"):
        load_checkpoint(path)


@pytest.fixture(autouse=True)
def _global_generators_kept():
    """The tests here seed and restore the process's generators: put them back for the next test."""
    state = rng_state()
    yield
    set_rng_state(state)
