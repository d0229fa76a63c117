"""Two-process DDP smoke run on the CPU (gloo), initialised from torchrun's environment variables."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from rank_helpers import forked_ranks

from vidcorr.cli import main, train_cmd
from vidcorr.methods import uvc
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.models import LabAutoencoder
from vidcorr.train import TrainJob, loop, recipe_from_dict, train
from vidcorr.train import checkpoint as ckpt
from vidcorr.train.distributed import DistContext, environment_int, shutdown


def _rank(rank: int, data: str, out: Path) -> None:
    """One process, set up as torchrun would (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*: `forked_ranks`)."""
    torch.set_num_threads(1)
    recipe = recipe_from_dict({
        "method": "uvc", "base": "uvc-cpu",
        "data": {"crop": 32, "frame": 64, "gap": [0.04, 0.5], "gap_unit": "seconds",
                 "batch_size": 4, "workers": 0},
        "stages": {"warmup": {"steps": 2, "lr": 1e-3}, "joint": {"steps": 1, "lr": 5e-4}},
        "log": {"every": 1, "images_every": 100, "checkpoint_every": 100},
    }, "ddp-smoke")
    losses, built = [], []

    def build():
        built.append(uvc.UVC(uvc.recipe("uvc-cpu"), LabAutoencoder()))
        return built[-1]

    job = TrainJob(recipe, build, [data], out / "run", switches=uvc.stage_switches,
                   cache_dir=out / "cache", progress_bar=False,
                   on_step=lambda progress, terms: losses.append(terms["loss"]))
    result = train(job)
    world = dist.get_world_size()
    shutdown(synchronise=True)
    weights = torch.cat([p.detach().double().flatten() for p in built[0].encoder.parameters()])
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world": world, "losses": losses, "steps": result.progress.step,
        "samples": result.progress.samples,
        "checksum": float(weights.mul(torch.arange(1, len(weights) + 1)).sum()),
        "checkpoint": (out / "run" / "checkpoint.pt").exists(),
    }))


def test_two_rank_gloo_run_agrees_on_losses(data_dir: Path, tmp_path: Path) -> None:
    # fork: the ranks start from this already-imported process (a fresh interpreter per rank
    # costs ~10 s of imports on the 2-core box); init is still from the environment variables.
    with forked_ranks(_rank, (str(data_dir / "videos" / "davis2016-train"), tmp_path)) as ranks:
        while not ranks.join():  # each call returns as one rank ends; raises its error if it failed
            pass
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 3 and r["samples"] == 12 for r in ranks)
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the all-reduced loss, step by step
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # DDP kept the replicas identical
    assert all(r["checkpoint"] for r in ranks)  # written once, by rank 0


def _moco_rank(rank: int, out: Path) -> None:
    """One MoCo training step per rank on its own images; the queue and pointer are written out."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)  # the same initial weights and queue on both ranks
    model = MoCo(MoCoConfig(arch="resnet18", dim=8, queue_size=16, key_splits=1)).train()
    before = model.queue.clone()
    torch.manual_seed(100 + rank)  # different images per rank
    images = torch.rand(3, 3, 32, 32)
    model({"query": images, "key": images.flip(-1)})
    shutdown(synchronise=True)
    with torch.no_grad():  # this rank's keys again (one BN group: batch statistics as in the step)
        keys = model._embed(model.key_encoder, model.key_projector, images.flip(-1))
    torch.save({"pointer": int(model.queue_pointer), "queue": model.queue, "before": before, "keys": keys},
               out / f"moco{rank}.pt")


def test_moco_under_ddp_enqueues_every_ranks_keys_in_rank_order(tmp_path: Path) -> None:
    with forked_ranks(_moco_rank, (tmp_path,)) as ranks:
        while not ranks.join():
            pass
    ranks = [torch.load(tmp_path / f"moco{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["pointer"] == 6 for r in ranks)  # advanced by the global batch, 2 x 3
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])
    new = ranks[0]["queue"][:, :6].T
    assert torch.allclose(new[:3], ranks[0]["keys"], atol=1e-5) and torch.allclose(new[3:], ranks[1]["keys"], atol=1e-5)
    assert torch.equal(ranks[0]["queue"][:, 6:], ranks[0]["before"][:, 6:])


def test_only_rank_0_reports_a_resume_and_the_runs_end(tmp_path: Path, monkeypatch, caplog, capsys) -> None:
    """Under torchrun the "resumed" log line and the command's summary came once per rank."""
    recipe = recipe_from_dict({"method": "uvc", "stages": {"warmup": {"steps": 4}}}, "tiny")
    method = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(method.parameters())
    ctx = [DistContext(rank, 2, rank, torch.device("cpu")) for rank in (0, 1)]
    alone = DistContext(0, 1, 0, torch.device("cpu"))  # payload's RNG gather needs no process group
    state = ckpt.payload(method, optimizer, ckpt.Progress(step=2), recipe, {}, alone, lr=1e-3, stage_name="warmup")
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.pt", {**state, "rng": state["rng"] * 3})  # 3 ranks: warns
    result = loop.TrainResult(ckpt.Progress(step=2), False, path, None)
    monkeypatch.setattr(loop, "train", lambda job: result)
    for rank, lines in ((1, 0), (0, 2)):
        caplog.clear()
        with caplog.at_level("INFO", logger="vidcorr.train.checkpoint"):
            ckpt.resume(path, recipe, method, optimizer, ctx[rank])
        monkeypatch.setenv("RANK", str(rank))
        assert train_cmd._run(SimpleNamespace(recipe=recipe)) == 0
        assert len(caplog.records) == lines and capsys.readouterr().out.count("stopped at step 2") == lines // 2


def test_a_divergence_or_an_agreed_stop_is_told_by_rank_0_alone(monkeypatch, capsys) -> None:
    """Every torchrun rank printed "training diverged" (the reduced losses diverge on all at once) and
    the stop the ranks agreed on; a rank stopped at once on its own still says so itself."""
    def raising(error):
        def run(job):
            raise error
        return run

    agreed = loop.TrainingInterrupted("interrupted by SIGTERM at step 3", 15, at_boundary=True)
    alone = loop.TrainingInterrupted("interrupted by SIGINT", 2, at_boundary=False)
    for error, code, told_by in ((loop.TrainingDiverged("non-finite loss"), 1, {0}),
                                 (agreed, 128 + 15, {0}), (alone, 128 + 2, {0, 1})):
        monkeypatch.setattr(loop, "train", raising(error))
        for rank in (0, 1):
            monkeypatch.setenv("RANK", str(rank))
            assert train_cmd._run(SimpleNamespace()) == code
            assert (str(error) in capsys.readouterr().err) == (rank in told_by), (error, rank)


def test_a_recipe_error_under_torchrun_is_said_by_rank_0_alone(tmp_path: Path, monkeypatch, capsys) -> None:
    """Each rank printed the same refusal (a recipe read by all). Rank 0 says it; the others wait a
    moment for it, deaf to torchrun's SIGTERM, and all exit 2."""
    (tmp_path / "bad.toml").write_text("method = \n")
    waits = []
    monkeypatch.setattr(train_cmd.time, "sleep", lambda s: waits.append(
        (s, signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))))
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["train", "autoencoder", "--data", str(tmp_path), "--recipe", str(tmp_path / "bad.toml"),
            "--out", str(tmp_path / "w.safetensors"), "--run-dir", str(tmp_path / "run")]
    for rank, said in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        assert main(args) == 2
        assert capsys.readouterr().err.count(f"vidcorr: error: {tmp_path / 'bad.toml'}: unreadable recipe") == said
    assert waits == [(train_cmd.REFUSAL_GRACE_S, signal.SIG_IGN, signal.SIG_IGN)]  # rank 1's
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # given back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_malformed_torchrun_variable_is_named_with_its_value(tmp_path: Path, monkeypatch, capsys) -> None:
    """RANK=x was int()'s traceback ("invalid literal for int() with base 10: 'x'"), WORLD_SIZE=two an
    "invalid auto-encoder recipe"."""
    (tmp_path / "ae.toml").write_text('method = "autoencoder"\n[stages.reconstruct]\nsteps = 1\n')
    args = ["train", "autoencoder", "--data", str(tmp_path), "--recipe", str(tmp_path / "ae.toml"),
            "--out", str(tmp_path / "w.safetensors"), "--run-dir", str(tmp_path / "run")]
    for name, value, minimum in (("RANK", "x", 0), ("WORLD_SIZE", "two", 1), ("WORLD_SIZE", "0", 1),
                                 ("RANK", "-1", 0)):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert main(args) == 2
            assert capsys.readouterr().err == (f"vidcorr: error: environment variable {name}={value!r}: expected "
                                               f"a whole number >= {minimum} (torchrun sets it; unset it to run "
                                               "in one process)\n")
    monkeypatch.setenv("LOCAL_RANK", " 3 ")  # int() takes surrounding blanks, as torchrun's own parsing does
    assert environment_int("LOCAL_RANK", 0, 0) == 3
    monkeypatch.delenv("LOCAL_RANK")
    assert environment_int("LOCAL_RANK", 7, 0) == 7
    assert not (tmp_path / "run").exists()
