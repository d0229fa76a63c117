"""The trainer: exact kill-and-resume with the real UVC method, NaN stop, skipped-video counter,
TensorBoard output, refusal to mix runs."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from vidcorr.data import build_index, pairs
from vidcorr.errors import InputError
from vidcorr.methods import uvc
from vidcorr.models import LabAutoencoder, load_encoder
from vidcorr.runtime import flush_cpu_denormals
from vidcorr.train import TrainingDiverged, TrainJob, feed, load_checkpoint, recipe_from_dict, train
from vidcorr.train.distributed import DistContext
from vidcorr.train.feed import loader as _loader

from conftest import SHORT_TRAINING_VIDEOS as SHORT


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_uvc_recipe(**log):
    """3 videos x 2 samples / batch 2 = 3 steps per epoch: the warm-up crosses an epoch (and
    switches concentration on), the joint stage starts mid-epoch-0 of its own sampler."""
    return recipe_from_dict({
        "method": "uvc", "base": "uvc-cpu", "seed": 1,
        "data": {"crop": 32, "frame": 64, "gap": [0.04, 0.5], "gap_unit": "seconds",
                 "batch_size": 2, "workers": 0, "samples_per_video": 2},
        "stages": {"warmup": {"steps": 4, "lr": 1e-3}, "joint": {"steps": 3, "lr": 5e-4}},
        "log": {"every": 1, "images_every": 100, "checkpoint_every": 2, **log},
    }, "tiny-uvc")


def uvc_job(recipe, data: Path, run_dir: Path, trajectory: list, **options) -> TrainJob:
    def build() -> nn.Module:
        return uvc.UVC(uvc.recipe("uvc-cpu"), LabAutoencoder())

    return TrainJob(recipe, build, [data], run_dir, switches=uvc.stage_switches,
                    cache_dir=run_dir.parent / "cache", progress_bar=False,
                    on_step=lambda progress, terms: trajectory.append((progress.step, terms)), **options)


def test_kill_and_resume_continues_the_exact_loss_trajectory(short_list: Path, tmp_path: Path) -> None:
    recipe = tiny_uvc_recipe()
    straight: list = []
    result = train(uvc_job(recipe, short_list, tmp_path / "straight", straight,
                           export=tmp_path / "straight.safetensors"))
    assert result.finished and result.progress.step == 7 and len(straight) == 7

    # The same run, stopped twice (at an epoch end inside the warm-up, then one step into the
    # joint stage) and each time continued by fresh objects from the checkpoint on disk.
    resumed: list = []
    for max_steps in (3, 5, None):
        train(uvc_job(recipe, short_list, tmp_path / "resumed", resumed, max_steps=max_steps,
                      resume=max_steps != 3, export=tmp_path / "resumed.safetensors"))
    assert [step for step, _ in resumed] == list(range(1, 8))
    assert resumed == straight  # every loss term of every step, bit for bit
    assert "concentration_local" not in straight[2][1] and "concentration_local" in straight[3][1]
    a, b = (load_encoder(tmp_path / f"{n}.safetensors").state_dict() for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert checkpoint["progress"]["step"] == 7 and checkpoint["progress"]["stage"] == 2
    assert (tmp_path / "resumed" / "checkpoint-warmup.pt").is_file()
    assert list((tmp_path / "resumed" / "tensorboard").iterdir())


def test_an_export_beyond_float16_is_written_in_float32(short_list: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """save_weights refuses a float16 file of a parameter beyond 65504 (loading would refuse it):
    the trainer's export exports float32 instead of ending a finished run there."""
    def build() -> nn.Module:
        method = uvc.UVC(uvc.recipe("uvc-cpu"), LabAutoencoder())
        with torch.no_grad():
            next(method.encoder.parameters()).view(-1)[0] = 1e5  # a batch norm follows it
        return method

    job = dataclasses.replace(uvc_job(tiny_uvc_recipe(), short_list, tmp_path / "run", []), build_method=build,
                              max_steps=1, export=tmp_path / "big.safetensors")
    with caplog.at_level("WARNING", logger="vidcorr.models.weights"):
        train(job)
    assert "backbone.conv1.weight holds values up to 100000, beyond float16's range: exporting float32" in caplog.text
    name = next(iter(load_encoder(tmp_path / "big.safetensors").state_dict()))
    assert load_encoder(tmp_path / "big.safetensors").state_dict()[name].view(-1)[0] == pytest.approx(1e5, rel=1e-3)
    assert json.loads((tmp_path / "big.json").read_text())["dtype"] == "float32"


class TinyMethod(nn.Module):
    """A stand-in method: one conv, batch kind "image", NaN on a chosen call."""

    def __init__(self, nan_at: int | None = None):
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 3)
        self.calls, self.nan_at = 0, nan_at

    def batch_kind(self, stage: str) -> str:
        return "image"

    def trainable_parameters(self):
        return self.parameters()

    def forward(self, batch, stage):
        self.calls += 1
        loss = self.encoder(batch["image"]).pow(2).mean()
        smoothness = torch.ones(())
        if self.calls == self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "colour": loss.detach(), "smoothness": smoothness}


def tiny_recipe(steps: int = 6, checkpoint_every: int = 2, **data):
    return recipe_from_dict({
        "method": "autoencoder",
        "data": {"crop": 32, "batch_size": 2, "workers": 0, **data},
        "stages": {"reconstruct": {"steps": steps, "lr": 1e-3, "schedule": "constant"}},
        "log": {"every": 1, "images_every": 1, "checkpoint_every": checkpoint_every},
    }, "tiny")


def tiny_job(recipe, data, run_dir: Path, method_factory=TinyMethod, **options) -> TrainJob:
    return TrainJob(recipe, method_factory, [data], run_dir, cache_dir=run_dir.parent / "cache",
                    progress_bar=False, **options)


def test_nan_loss_stops_naming_the_step_and_terms(short_list: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as error:
        train(tiny_job(tiny_recipe(), short_list, run_dir, lambda: TinyMethod(nan_at=5)))
    message = str(error.value)
    assert "step 5" in message and "loss=nan" in message and "colour=nan" in message
    assert "smoothness=1" in message and str(run_dir / "checkpoint.pt") in message
    assert load_checkpoint(run_dir / "checkpoint.pt")["progress"]["step"] == 4  # the last good one
    last = (run_dir / "train.log").read_text().splitlines()[-1]  # what the command line prints
    assert last.endswith(f" ERROR vidcorr.train.loop: training diverged: {message}")


def test_skipped_videos_are_counted_and_images_logged(short_list: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A video that passed indexing but fails to decode mid-training (a real corrupt file is
    # tested in test_data_pairs.py); here the loop's counter plumbing is under test.
    read = pairs.read_frames_at

    def flaky(path, indices):
        if SHORT[0] in str(path):
            raise OSError("simulated decoding failure")
        return read(path, indices)

    monkeypatch.setattr(pairs, "read_frames_at", flaky)
    seen: list = []
    job = tiny_job(tiny_recipe(steps=2, batch_size=3, samples_per_video=2), short_list,
                   tmp_path / "run", on_step=lambda progress, terms: seen.append(progress.skipped_videos))
    result = train(job)
    assert result.progress.skipped_videos >= 2 and seen[-1] == result.progress.skipped_videos
    events = list((tmp_path / "run" / "tensorboard").glob("events.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and images were written


def test_runs_are_never_mixed(short_list: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(InputError, match="no checkpoint to resume"):
        train(tiny_job(tiny_recipe(), short_list, run_dir, resume=True))
    train(tiny_job(tiny_recipe(steps=2), short_list, run_dir))
    with pytest.raises(InputError, match="already holds a training checkpoint"):
        train(tiny_job(tiny_recipe(steps=2), short_list, run_dir))
    with pytest.raises(InputError, match="different recipe.*stages"):
        train(tiny_job(tiny_recipe(steps=3), short_list, run_dir, resume=True))


def test_a_refused_resume_names_each_differing_field_or_only_the_method(short_list: Path, tmp_path: Path) -> None:
    """Refusals named only the tables ("data, seed, stages differ"); a run of another method listed
    every table (base, data, method, model, optim, stages) where only the method matters."""
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(steps=2)
    started = f"vidcorr train autoencoder --data {short_list} --run-dir {run_dir}"
    train(tiny_job(recipe, short_list, run_dir, command=started))
    other = recipe.replace(data=dataclasses.replace(recipe.data, crop=24, workers=1), seed=3,
                           stages=(dataclasses.replace(recipe.stages[0], lr=5e-4),))
    with pytest.raises(InputError, match="different recipe") as error:
        train(tiny_job(other, short_list, run_dir, resume=True, command="vidcorr train ... --resume"))
    # ... and the command that started the run: a resume without its `--ablate L` was told only
    # "[model] localisation false (checkpoint) vs true (now)"
    assert str(error.value).endswith(f"it was started with (`{started}`)")
    differences = str(error.value).split(": ", 2)[2].split("; resume")[0].split("; ")
    assert differences == ["[data] crop 32 (checkpoint) vs 24 (now)",  # workers may change
                           "seed 0 (checkpoint) vs 3 (now)",
                           "[stages.reconstruct] lr 0.001 (checkpoint) vs 0.0005 (now)"]
    renamed = recipe.replace(stages=(dataclasses.replace(recipe.stages[0], name="other"),))
    with pytest.raises(InputError, match=r'stages \["reconstruct"\] \(checkpoint\) vs \["other"\] \(now\)'):
        train(tiny_job(renamed, short_list, run_dir, resume=True))
    with pytest.raises(InputError) as error:
        train(tiny_job(recipe.replace(method="moco", base="moco-cpu"), short_list, run_dir, resume=True))
    assert str(error.value) == (f"{run_dir / 'checkpoint.pt'}: is a checkpoint of `vidcorr train autoencoder`, "
                                "not of `vidcorr train moco`; resume it with `vidcorr train autoencoder`")
    # a checkpoint from before commands were recorded lists its resumes alone: no start to show
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    torch.save({**checkpoint, "commands": ["vidcorr train autoencoder --resume"]}, run_dir / "checkpoint.pt")
    with pytest.raises(InputError, match="different recipe") as error:
        train(tiny_job(other, short_list, run_dir, resume=True))
    assert str(error.value).endswith("(--init, --teacher, --autoencoder) it was started with")


def test_a_resume_must_keep_bf16_but_may_change_threads(short_list: Path, tmp_path: Path) -> None:
    """bf16 autocast changes the arithmetic, not just its order: a resume that switched it was taken
    as the same run. Only the autocast the run trained under counts: on a CPU, [cuda] bf16 may
    change (it was refused), and a checkpoint written under bf16 (as on a GPU with [cuda] bf16) does
    not resume without it on the CPU (it was accepted when both recipe flags were unchanged)."""
    run_dir, recipe = tmp_path / "run", tiny_recipe(steps=6)
    train(tiny_job(recipe, short_list, run_dir, max_steps=2))
    assert load_checkpoint(run_dir / "checkpoint.pt")["bf16"] is False
    cpu_bf16 = recipe.replace(cpu=dataclasses.replace(recipe.cpu, bf16=True))
    with pytest.raises(InputError, match=r"trained without bf16 autocast, but \[cpu\] bf16 = true now"):
        train(tiny_job(cpu_bf16, short_list, run_dir, resume=True))
    cuda_fp32 = recipe.replace(cuda=dataclasses.replace(recipe.cuda, bf16=False),
                               cpu=dataclasses.replace(recipe.cpu, threads=1))
    assert not train(tiny_job(cuda_fp32, short_list, run_dir, resume=True, max_steps=4)).finished

    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    torch.save({**checkpoint, "bf16": True}, run_dir / "checkpoint.pt")  # as if trained on a GPU in bf16
    with pytest.raises(InputError, match=r"trained with bf16 autocast, but \[cpu\] bf16 = false now"):
        train(tiny_job(recipe, short_list, run_dir, resume=True))
    del checkpoint["bf16"]  # a checkpoint from before the flag was recorded: both recipe flags must match
    torch.save(checkpoint, run_dir / "checkpoint.pt")  # its recipe is cuda_fp32's, the last one to save
    with pytest.raises(InputError, match=r"different recipe \(cuda.bf16 differ\)"):
        train(tiny_job(recipe, short_list, run_dir, resume=True))
    assert train(tiny_job(cuda_fp32, short_list, run_dir, resume=True)).finished


def test_too_few_samples_for_a_batch_take_more_of_each_video(short_list: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """3 videos x 1 sample < a batch of 4 (one's own video under a shipped recipe: 1 x 4 < 8) failed;
    it now takes ceil(4 / 3) = 2 samples of each video an epoch, says so, and resumes with it."""
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(steps=4, batch_size=4, samples_per_video=1)
    with caplog.at_level("WARNING", logger="vidcorr.train.feed"):
        train(tiny_job(recipe, short_list, run_dir, max_steps=2))
    assert "3 video(s) x samples_per_video 1 give 3 samples" in caplog.text
    assert "taking 2 samples of each video" in caplog.text
    assert load_checkpoint(run_dir / "checkpoint.pt")["recipe"]["data"]["samples_per_video"] == 2
    assert train(tiny_job(recipe, short_list, run_dir, resume=True)).finished


def test_an_epoch_without_a_batch_is_an_error_not_an_endless_loop(short_list: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Were `filling_a_batch` to let 3 samples an epoch through to batches of 4 (drop_last: 0 batches),
    the stage would roll over empty epochs forever; the loop says so instead."""
    monkeypatch.setattr("vidcorr.train.feed.filling_a_batch", lambda recipe, videos, ctx: recipe)
    recipe = tiny_recipe(steps=4, batch_size=4, samples_per_video=1)
    with pytest.raises(RuntimeError, match="3 samples per process an epoch, fewer than one batch of 4"):
        train(tiny_job(recipe, short_list, tmp_path / "run"))


def test_a_resume_on_other_videos_is_refused(short_list: Path, tmp_path: Path) -> None:
    """Sample i comes from video i % N: other videos are another run, which --resume took silently."""
    run_dir = tmp_path / "run"
    train(tiny_job(tiny_recipe(steps=4), short_list, run_dir, max_steps=2))
    fewer = tmp_path / "fewer.txt"
    fewer.write_text("".join(short_list.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(InputError, match="trained on 3 videos .* now gives 2") as error:
        train(tiny_job(tiny_recipe(steps=4), fewer, run_dir, resume=True))
    assert error.value.path == run_dir / "checkpoint.pt"
    moved = tmp_path / "moved.txt"  # the same videos listed from elsewhere resume
    moved.write_text(short_list.read_text())
    assert train(tiny_job(tiny_recipe(steps=4), moved, run_dir, resume=True)).finished


def test_a_resume_on_the_same_videos_counted_otherwise_says_so(short_list: Path, tmp_path: Path) -> None:
    """A checkpoint from before the index format /4 can hold other frame counts for the same files
    (an AVI starting late, a frame folder with a wrong listed count): the refusal said to "resume
    with the data it was started with", which the user did. It now says the counts differ, why
    they may, and the ways on."""
    run_dir = tmp_path / "run"
    train(tiny_job(tiny_recipe(steps=4), short_list, run_dir, max_steps=2))
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    frames = checkpoint["data"]["frames"]
    checkpoint["data"]["frames"] = frames + 120  # as an older vidcorr counted a late-starting AVI
    torch.save(checkpoint, run_dir / "checkpoint.pt")
    with pytest.raises(InputError) as error:
        train(tiny_job(tiny_recipe(steps=4), short_list, run_dir, resume=True))
    message = str(error.value)
    assert f"was trained on 3 videos of {frames + 120} frames in all, but the 3 videos of --data now " \
           f"count {frames} frames" in message
    assert "index format /4" in message and "with the data it was started with" not in message
    assert f"vidcorr train export --checkpoint {run_dir / 'checkpoint.pt'} --out W, then --init W" in message


class AutocastProbe(TinyMethod):
    """Records whether each forward ran under CPU bf16 autocast, and the conv output's dtype."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, batch, stage):
        out = self.encoder(batch["image"])
        self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        loss = out.float().pow(2).mean()
        return {"loss": loss}


@pytest.mark.parametrize("bf16", [False, True])
def test_cpu_bf16_recipe_flag_autocasts_the_forward(short_list: Path, tmp_path: Path, bf16: bool) -> None:
    """[cpu] bf16 turns on bfloat16 autocast for the method's forward on the CPU ([cuda] bf16,
    on by default, does not)."""
    recipe = tiny_recipe(steps=1)
    recipe = recipe.replace(cpu=dataclasses.replace(recipe.cpu, bf16=bf16))
    assert recipe.cuda.bf16
    probes: list[AutocastProbe] = []
    train(tiny_job(recipe, short_list, tmp_path / "run", lambda: probes.append(AutocastProbe()) or probes[-1],
                   device="cpu"))
    assert probes[0].seen == [(bf16, torch.bfloat16 if bf16 else torch.float32)]


SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.2e-38


class DenormalProbe(TinyMethod):
    """Records whether a subnormal float survives arithmetic in the forward."""

    def __init__(self):
        super().__init__()
        self.subnormal_kept: list[bool] = []

    def forward(self, batch, stage):
        self.subnormal_kept.append(bool((torch.tensor([SUBNORMAL]) * 1.0).item() != 0))
        return super().forward(batch, stage)


def test_cpu_training_flushes_subnormals_and_restores_the_default(short_list: Path, tmp_path: Path) -> None:
    """Subnormals are flushed while training on the CPU (UVC at temperature 1: 19-29 % faster), and only then."""
    with flush_cpu_denormals() as supported:
        if not supported:
            pytest.skip("this CPU cannot flush subnormal floats")
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() != 0
    probes: list[DenormalProbe] = []
    train(tiny_job(tiny_recipe(steps=2), short_list, tmp_path / "run",
                   lambda: probes.append(DenormalProbe()) or probes[-1], device="cpu"))
    assert probes[0].subnormal_kept == [False, False]
    assert (torch.tensor([SUBNORMAL]) * 1.0).item() != 0  # torch's default again


def test_loader_workers_start_from_a_forkserver(short_list: Path, tmp_path: Path) -> None:
    """Workers are not fork()ed from the (multi-threaded) training process (`worker_start_method`)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no forkserver start method")
    recipe = dataclasses.replace(tiny_uvc_recipe(), data=dataclasses.replace(tiny_uvc_recipe().data, workers=1))
    index = build_index([short_list], tmp_path / "cache")
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    loader, sampler, per_rank = _loader(recipe, "crop_pair", index, 0, ctx)
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    sampler.set_epoch(0)
    batch = next(iter(loader))
    assert batch["ref"].shape == (per_rank, 3, 32, 32) and batch["ref"].dtype == torch.uint8


def test_loader_workers_are_capped_at_the_cpus_of_the_process(short_list: Path, tmp_path: Path, monkeypatch,
                                                             caplog) -> None:
    """`cycletime`'s workers = 12 started 12 loader processes on a 2-core machine (torch's warning:
    they may "freeze"): a rank starts at most its share of the CPUs it may use, saying so once."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert [feed.loader_workers(n) for n in (0, 1, 2, 12)] == [0, 1, 2, 2]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four ranks on the node share the two CPUs
    assert feed.loader_workers(12) == 1 and feed.loader_workers(0) == 0
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    recipe = tiny_recipe(steps=1, workers=12)
    index = build_index([short_list], tmp_path / "cache")
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert _loader(recipe, "image", index, 0, ctx)[0].num_workers == 2
    monkeypatch.setattr(feed, "loader_workers", lambda asked: 0)  # the run itself without processes to start
    with caplog.at_level("WARNING", logger="vidcorr.train.loop"):
        train(tiny_job(recipe, short_list, tmp_path / "run"))
    assert [r.getMessage() for r in caplog.records if "workers" in r.getMessage()] == [
        "[data] workers = 12 (or --workers) asks for more loader processes than the CPUs this process may use: "
        "starting 0 (more only compete for the same cores)"]


def test_loader_workers_append_their_warnings_to_train_log(data_dir: Path, tmp_path: Path) -> None:
    """A video that fails mid-training is warned about by the loader worker that drew it, a process
    without the trainer's handlers: its line reached the console only."""
    videos = data_dir / "videos" / "davis2016-train"
    listing = tmp_path / "overcounted.txt"  # the list's count is trusted: draws past the 25th frame fail
    listing.write_text(f"{videos / SHORT[0]}.mp4 400\n" + "".join(f"{videos / name}.mp4\n" for name in SHORT[1:]))
    result = train(tiny_job(tiny_recipe(steps=2, workers=1), listing, tmp_path / "run"))
    assert result.progress.skipped_videos > 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"WARNING vidcorr.data.pairs: skipping unreadable video {videos / SHORT[0]}.mp4: " in log, log


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_loader_workers_end_when_the_trainer_is_killed(short_list: Path, tmp_path: Path) -> None:
    """A forkserver worker is the server's child and keeps the server alive: after a SIGKILL of the
    trainer both stayed behind for good (torch's watchdog watches the parent, the server)."""
    if "forkserver" not in multiprocessing.get_all_start_methods() or not Path("/proc/self/stat").exists():
        pytest.skip("needs the forkserver start method and /proc")
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(f"""
        import time, torch
        from vidcorr.data import build_index
        from vidcorr.train.config import recipe_from_dict
        from vidcorr.train.distributed import DistContext
        from vidcorr.train.feed import loader as _loader

        if __name__ == "__main__":
            recipe = recipe_from_dict({{"method": "autoencoder", "data": {{"crop": 32, "batch_size": 2, "workers": 1}},
                                       "stages": {{"s": {{"steps": 1}}}}}}, "t")
            index = build_index([{str(short_list)!r}], {str(tmp_path / "cache")!r})
            ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
            batches = iter(_loader(recipe, "image", index, 0, ctx)[0])
            next(batches)
            print(*[worker.pid for worker in batches._workers], flush=True)
            time.sleep(60)
    """))
    trainer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in trainer.stdout.readline().split()]
    servers = [int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in workers]
    try:
        assert workers, "the trainer script failed before its first batch"
        trainer.kill()
        trainer.wait()
        deadline = time.monotonic() + 15
        while any(_running(pid) for pid in workers + servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(pid) for pid in workers + servers)
    finally:
        trainer.kill()
        for pid in workers + servers:  # what the failure left behind
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
