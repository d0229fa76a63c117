"""`vidcorr train`: bad input exits 2 naming the path; a tiny end-to-end run, stop, resume."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from vidcorr.cli import main
from vidcorr.models import (
    AUTOENCODER_CONFIG,
    LabAutoencoder,
    build_encoder,
    load_encoder,
    read_weights,
    save_weights,
)
from vidcorr.train import checkpoint, loop
from vidcorr.train.checkpoint import load_checkpoint, save_checkpoint
from vidcorr.train.recipe_files import cpu_counterpart, load_recipe

TINY_UVC = """
method = "uvc"
base = "uvc-cpu"
[model]
concentration_weight = 0.5
[data]
crop = 32
frame = 64
gap = [0.04, 0.5]
gap_unit = "seconds"
batch_size = 2
workers = 0
[stages.warmup]
steps = 2
[stages.joint]
steps = 1
lr = 5e-5
[log]
every = 1
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def autoencoder(tmp_path: Path) -> Path:
    return save_weights(LabAutoencoder(), tmp_path / "ae.safetensors", AUTOENCODER_CONFIG)


def test_missing_data_folder_exits_2_naming_it(tmp_path: Path, autoencoder: Path, capsys) -> None:
    missing = tmp_path / "no-such-videos"
    code = main(["train", "uvc", "--data", str(missing), "--recipe", "uvc-cpu", "--autoencoder",
                 str(autoencoder), "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path)])
    assert code == 2 and f"{missing}: no such data folder or list file" in capsys.readouterr().err
    code = main(["train", "autoencoder", "--data", str(missing), "--out", str(tmp_path / "w.safetensors"),
                 "--run-dir", str(tmp_path / "run2"), "--cache-dir", str(tmp_path)])
    assert code == 2 and str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--max-steps", "-1"), ("--workers", "-1")])
def test_negative_step_and_worker_counts_exit_2(tmp_path: Path, autoencoder: Path, capsys, option: str,
                                                value: str) -> None:
    """--workers -1 ended in a torch traceback once the videos were indexed."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "uvc", "--data", str(tmp_path), "--autoencoder", str(autoencoder), option, value,
              "--run-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2 and option in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_recipes_exit_2_naming_the_file(data_dir: Path, tmp_path: Path, autoencoder: Path,
                                            capsys) -> None:
    data = str(data_dir / "videos" / "davis2016-train")
    broken = tmp_path / "broken.toml"
    broken.write_text("method = 'uvc'\n[data\ncrop = 3")
    unknown_key = tmp_path / "unknown.toml"
    unknown_key.write_text(TINY_UVC.replace("crop = 32", "crop_size = 32"))
    bad_model = tmp_path / "bad-model.toml"
    bad_model.write_text(TINY_UVC.replace("concentration_weight = 0.5", "concentration_wieght = 0.5"))
    wrong_type = tmp_path / "wrong-type.toml"  # was a TypeError from UVCConfig, naming no field
    wrong_type.write_text(TINY_UVC.replace("concentration_weight = 0.5", 'concentration_weight = "0.5"'))
    for recipe, problem in ((broken, "unreadable recipe"), (unknown_key, "crop_size"),
                            (bad_model, "concentration_wieght"), (tmp_path / "nope.toml", "no such recipe"),
                            (wrong_type, '[model] concentration_weight = "0.5": expected a number')):
        code = main(["train", "uvc", "--data", data, "--recipe", str(recipe), "--autoencoder",
                     str(autoencoder), "--run-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert code == 2 and str(recipe) in err and problem in err, err
    code = main(["train", "uvc", "--data", data, "--recipe", "autoencoder", "--autoencoder",
                 str(autoencoder), "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "not 'uvc'" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["uvc", "autoencoder"])
def test_weights_to_write_to_another_kind_of_file_exit_2_before_training(tmp_path: Path, autoencoder: Path,
                                                                         capsys, method: str) -> None:
    """`train uvc --export w.pt` trained the whole run, then failed at the export with a ValueError
    traceback (exit 1)."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_UVC)
    weights = tmp_path / "w.pt"
    argv = (["train", "uvc", "--recipe", str(recipe), "--autoencoder", str(autoencoder), "--export", str(weights)]
            if method == "uvc" else ["train", "autoencoder", "--out", str(weights)])
    code = main(argv + ["--data", str(tmp_path / "no-such-videos"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err  # named before the (missing) videos are looked for
    assert code == 2 and f"{weights}: weights must be written to a .safetensors file" in err, err
    assert not (tmp_path / "run").exists() and not weights.exists()


@pytest.mark.parametrize("output", ["--run-dir", "--export", "--out", "--cache-dir"])
def test_outputs_that_cannot_be_created_exit_2_before_training(tmp_path: Path, autoencoder: Path, capsys,
                                                              output: str) -> None:
    """A --run-dir or --cache-dir under a file was a NotADirectoryError traceback once the videos were
    indexed (or the run had begun); an --export or --out there one after the whole run had trained,
    without its weights."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_UVC)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    paths = {"--run-dir": tmp_path / "run", "--cache-dir": tmp_path / "cache",
             "--export": tmp_path / "w.safetensors", "--out": tmp_path / "w.safetensors"}
    paths[output] = blocker / ("w.safetensors" if output in ("--export", "--out") else "sub")
    argv = (["train", "autoencoder", "--out", str(paths["--out"])] if output == "--out" else
            ["train", "uvc", "--recipe", str(recipe), "--autoencoder", str(autoencoder), "--export",
             str(paths["--export"])])
    code = main(argv + ["--data", str(tmp_path / "no-such-videos"), "--run-dir", str(paths["--run-dir"]),
                        "--cache-dir", str(paths["--cache-dir"])])
    err = capsys.readouterr().err  # named before the (missing) videos are looked for
    assert code == 2, err
    assert f"{paths[output]}: cannot be created: {blocker} is a file, not a folder" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "ae.json", "ae.safetensors", "tiny.toml"]


def test_the_start_line_says_how_many_steps_and_where_the_run_writes(data_dir: Path, tmp_path: Path,
                                                                    autoencoder: Path, caplog) -> None:
    """It said `stages ['warmup', 'joint']`: neither how long each stage is (an epoch-based one
    depends on the number of videos) nor where checkpoints and weights go."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_UVC.replace("[stages.warmup]\nsteps = 2", "[stages.warmup]\nepochs = 3")
                      .replace("batch_size = 2", "batch_size = 2\nsamples_per_video = 4")
                      .replace("[log]\nevery = 1", "[log]\nevery = 1\ncheckpoint_every = 5"))
    run, export = tmp_path / "run", tmp_path / "w.safetensors"
    with caplog.at_level("INFO"):
        # 2 videos x 4 samples in batches of 2: 4 steps an epoch
        assert main(["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train" / "bear.mp4"),
                     "--data", str(data_dir / "videos" / "davis2016-train" / "boat.mp4"),
                     "--recipe", str(recipe), "--autoencoder", str(autoencoder), "--run-dir", str(run),
                     "--cache-dir", str(tmp_path / "cache"), "--export", str(export), "--max-steps", "0"]) == 0
    said = [r.getMessage() for r in caplog.records if "process(es) on" in r.getMessage()]
    assert said == [f"{recipe}: uvc on 2 videos (157 frames), 1 process(es) on cpu: warmup 3 epochs = 12 steps, "
                    f"joint 1 step, 13 in all, batches of 2; run dir {run} (checkpoint every 5 steps), "
                    f"weights {export}"], said
    caplog.clear()
    with caplog.at_level("INFO"):  # one video: "1 videos" before
        assert main(["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train" / "bear.mp4"),
                     "--recipe", str(recipe), "--autoencoder", str(autoencoder), "--run-dir", str(tmp_path / "one"),
                     "--cache-dir", str(tmp_path / "cache"), "--max-steps", "0"]) == 0
    assert any(f"{recipe}: uvc on 1 video (82 frames), 1 process(es)" in r.getMessage() for r in caplog.records)


def test_export_to_a_path_that_cannot_be_created_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    """`train export --out FILE/w.safetensors` read the checkpoint, built the model, then failed in a
    FileExistsError traceback (exit 1)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "w.safetensors"
    code = main(["train", "export", "--checkpoint", str(tmp_path / "no-such.pt"), "--out", str(out)])
    err = capsys.readouterr().err  # named before the (missing) checkpoint is read
    assert code == 2 and f"{out}: cannot be created: {blocker} is a file, not a folder" in err, err


@pytest.mark.parametrize("method", ["uvc", "autoencoder"])
def test_a_batch_torchruns_processes_cannot_share_exits_2_naming_the_recipe(tmp_path: Path, autoencoder: Path,
                                                                            monkeypatch, capsys, method: str) -> None:
    """batch_size 3 under torchrun --nproc_per_node=2 was refused only once the videos were indexed and
    the start line printed, as "batch_size 3 is not divisible by 2 processes", without the recipe."""
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it, for the rank 0 it starts
    recipe = tmp_path / "odd.toml"
    recipe.write_text(f'extends = "{method}"\n[data]\nbatch_size = 3\n')
    options = ["--autoencoder", str(autoencoder)] if method == "uvc" else ["--out", str(tmp_path / "ae.safetensors")]
    code = main(["train", method, "--data", str(tmp_path / "no-such-videos"), "--recipe", str(recipe),
                 "--run-dir", str(tmp_path / "run"), *options])
    err = capsys.readouterr().err
    assert code == 2 and "no such data folder" not in err, err  # refused before the data is looked at
    assert f"{recipe}: invalid " in err and "[data] batch_size = 3: not divisible by the 2 processes" in err, err
    assert not (tmp_path / "run").exists()


def test_an_autoencoder_recipe_with_a_stage_it_lacks_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    """[stages.main] under extends = "autoencoder" (meant to shorten its one stage, "reconstruct") ran
    the parent's 1500 steps, then a stage "main" of its own."""
    recipe = tmp_path / "ae.toml"
    recipe.write_text('extends = "autoencoder"\n[stages.main]\nsteps = 4\n')
    code = main(["train", "autoencoder", "--data", str(tmp_path / "no-such-videos"), "--recipe", str(recipe),
                 "--out", str(tmp_path / "ae.safetensors"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{recipe}: invalid auto-encoder recipe: stage 'main' is not one of the auto-encoder stages " \
           "('reconstruct',)" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("data", "ablate", "problem"), [
    # was: a traceback after the warm-up
    ("crop = 64\nframe = 131", [], "[data] frame = 131: UVC needs a multiple of 8"),
    ("crop = 61\nframe = 128", [], "[data] crop = 61: UVC needs a multiple of 8"),  # was: one at step 1
    ("crop = 64\nframe = 32", [], "[data] crop = 64 is larger than frame = 32"),  # a patch padded out of the frame
    ("crop = 64\nframe = 32", ["--ablate", "L"], "frame = 32"),  # without localisation frame is unused: no error
    # batch norm's "Expected more than 1 value per channel" at step 1: a 1x1 layer2 for one image
    ("crop = 8\nframe = 16\nbatch_size = 1", [], "[data] crop = 8 with batch_size 1"),
])
def test_uvc_sizes_it_cannot_train_on_exit_2_naming_the_field(tmp_path: Path, autoencoder: Path, capsys,
                                                             data: str, ablate: list[str], problem: str) -> None:
    recipe = tmp_path / "sizes.toml"
    recipe.write_text(f'extends = "uvc-cpu"\n[data]\n{data}\n')
    code = main(["train", "uvc", "--data", str(tmp_path / "no-such-videos"), "--recipe", str(recipe),
                 "--autoencoder", str(autoencoder), "--run-dir", str(tmp_path / "run"), *ablate])
    err = capsys.readouterr().err
    assert code == 2, err
    if ablate:  # the sizes pass; the (missing) videos are what stops it
        assert "no such data folder" in err and "UVC needs" not in err, err
    else:
        assert f"{recipe}: invalid UVC recipe: {problem}" in err, err
    assert not (tmp_path / "run").exists()


def test_train_stop_resume_and_export(data_dir: Path, tmp_path: Path, autoencoder: Path, capsys) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_UVC)
    export = tmp_path / "weights" / "uvc_tiny.safetensors"
    args = ["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
            str(recipe), "--autoencoder", str(autoencoder), "--run-dir", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--export", str(export), "--ablate", "O"]
    assert main(args + ["--max-steps", "1"]) == 0
    assert "stopped at step 1" in capsys.readouterr().out
    assert main(args) == 2  # the run dir holds a run: continuing it needs --resume
    assert main(args + ["--resume", "--workers", "1"]) == 0
    assert "finished" in capsys.readouterr().out
    encoder = load_encoder(export)
    assert encoder.colour_mode == "gray-l" and encoder.config.out_layer == "layer3"
    meta = json.loads(export.with_suffix(".json").read_text())["meta"]
    assert meta["steps"] == 3 and meta["finished"] and meta["recipe"] == str(recipe.resolve())  # not "tiny"
    model = meta["recipe_config"]["model"]
    assert model["orthogonal"] is False and model["concentration_weight"] == 0.5  # --ablate O, [model]
    assert meta["data"]["videos"] == 30 and meta["command"] and meta["wall_time_s"] > 0
    assert {"device", "processes", "torch"} <= set(meta["hardware"])
    # `train export` writes the same encoder from the final checkpoint
    again = tmp_path / "exported.safetensors"
    assert main(["train", "export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(again)]) == 0
    a, b = load_encoder(export).state_dict(), load_encoder(again).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # ... with the trainer's sidecar, but for what only the trainer knows (it said "finished": false)
    trained, exported = (json.loads(w.with_suffix(".json").read_text()) for w in (export, again))
    assert exported["config"] == trained["config"] and exported["meta"].pop("exported_from")
    assert trained["meta"].pop("command") and trained["meta"].pop("hardware")
    assert 0 < exported["meta"].pop("wall_time_s") <= trained["meta"].pop("wall_time_s")  # at its save
    assert exported["meta"] == trained["meta"]
    warmup = tmp_path / "warmup.safetensors"  # a stage that is not the last: unfinished
    assert main(["train", "export", "--checkpoint", str(tmp_path / "run" / "checkpoint-warmup.pt"),
                 "--out", str(warmup)]) == 0
    assert json.loads(warmup.with_suffix(".json").read_text())["meta"]["finished"] is False
    assert main(["train", "export", "--checkpoint", str(tmp_path / "run" / "checkpoint-joint.pt"),
                 "--out", str(warmup)]) == 0
    assert json.loads(warmup.with_suffix(".json").read_text())["meta"]["finished"] is True
    assert main(["train", "export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(again)]) == 2
    # A parameter beyond float16's range is exported in float32 (the refusal left no way out)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    checkpoint["model"]["encoder.backbone.conv1.weight"].view(-1)[0] = 1e5
    save_checkpoint(tmp_path / "big.pt", {k: v for k, v in checkpoint.items() if k != "format"})
    big = tmp_path / "big.safetensors"
    assert main(["train", "export", "--checkpoint", str(tmp_path / "big.pt"), "--out", str(big)]) == 0
    assert load_encoder(big).state_dict()["backbone.conv1.weight"].view(-1)[0] == 1e5
    assert json.loads(big.with_suffix(".json").read_text())["dtype"] == "float32"


def test_resume_without_recipe_or_autoencoder_takes_the_checkpoints(data_dir: Path, tmp_path: Path,
                                                                     autoencoder: Path, capsys, caplog) -> None:
    """--resume without --recipe fell back to the paper recipe `uvc` and was refused field by field;
    --autoencoder was required even though the checkpoint records it (path and sha256)."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_UVC)
    run = tmp_path / "run"
    common = ["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train"), "--run-dir", str(run),
              "--cache-dir", str(tmp_path / "cache"), "--export", str(tmp_path / "w.safetensors")]
    assert main(common + ["--recipe", str(recipe)]) == 2  # a fresh run still needs --autoencoder
    assert "--autoencoder is required" in capsys.readouterr().err
    assert main(common + ["--resume"]) == 2  # nothing to resume: named, with what to give
    assert f"{run / 'checkpoint.pt'}: no checkpoint to resume from" in capsys.readouterr().err
    assert main(common + ["--recipe", str(recipe), "--autoencoder", str(autoencoder), "--max-steps", "1"]) == 0
    capsys.readouterr()
    moved = autoencoder.with_name("moved.safetensors")
    autoencoder.rename(moved)  # gone: refused, naming it and what the run was trained with
    autoencoder.with_suffix(".json").rename(moved.with_suffix(".json"))
    assert main(common + ["--resume"]) == 2
    assert f"{autoencoder}: is missing: {run / 'checkpoint.pt'} was trained with it" in capsys.readouterr().err
    save_weights(LabAutoencoder(), autoencoder, AUTOENCODER_CONFIG)  # another one (other bytes): refused
    assert main(common + ["--resume"]) == 2
    assert f"{autoencoder}: has changed since" in capsys.readouterr().err
    moved.replace(autoencoder)
    moved.with_suffix(".json").replace(autoencoder.with_suffix(".json"))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(common + ["--resume"]) == 0
    assert "finished" in capsys.readouterr().out
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"recipe '{recipe.resolve()}' stored in {run / 'checkpoint.pt'}" in said
    assert f"autoencoder {autoencoder}" in said
    meta = json.loads((tmp_path / "w.json").read_text())["meta"]
    assert meta["steps"] == 3 and meta["recipe"] == str(recipe.resolve())
    assert meta["recipe_config"]["model"]["concentration_weight"] == 0.5
    code = main(["train", "cycletime", *common[2:], "--resume"])  # another method's checkpoint
    assert code == 2 and "is a checkpoint of `vidcorr train uvc`" in capsys.readouterr().err


def test_a_resume_reads_its_checkpoint_once_and_continues_where_it_stopped(data_dir: Path, tmp_path: Path,
                                                                         autoencoder: Path, monkeypatch,
                                                                         caplog) -> None:
    """--resume without --recipe (or without --autoencoder) read the checkpoint for its recipe (or
    its weights records), then again to restore it. With --recipe and no --run-dir, the records
    were read from runs/uvc (the paper recipe's run dir), not from the run it continued."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY_UVC)
    run = tmp_path / "runs" / "tiny"  # the default run dir of --recipe tiny.toml
    common = ["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train"),
              "--cache-dir", str(tmp_path / "cache"), "--export", str(tmp_path / "w.safetensors")]
    assert main(common + ["--recipe", "tiny.toml", "--autoencoder", str(autoencoder), "--max-steps", "1"]) == 0
    reads, jobs = [], []
    real_load, real_train = checkpoint.load_checkpoint, loop.train
    monkeypatch.setattr(checkpoint, "load_checkpoint",
                        lambda path: reads.append(Path(path).resolve()) or real_load(path))
    monkeypatch.setattr(loop, "train", lambda job: jobs.append(job) or real_train(job))
    caplog.set_level("INFO")
    # the auto-encoder taken from the checkpoint's records
    assert main(common + ["--recipe", "tiny.toml", "--resume", "--max-steps", "2"]) == 0
    assert reads == [run / "checkpoint.pt"] and jobs[-1].checkpoint is None  # read once, let go of by train
    assert real_load(run / "checkpoint.pt")["progress"]["step"] == 2
    reads.clear()
    # the recipe and the auto-encoder taken from the checkpoint
    assert main(common + ["--run-dir", str(run), "--resume"]) == 0
    assert reads == [run / "checkpoint.pt"] and jobs[-1].checkpoint is None
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resumed")]
    assert [m.split(" (")[0].split(" at ")[1] for m in resumed] == ["step 1", "step 2"]
    final = real_load(run / "checkpoint.pt")
    assert final["progress"]["step"] == 3 and final["progress"]["stage"] == 2  # both stages done
    meta = json.loads((tmp_path / "w.json").read_text())["meta"]
    assert meta["steps"] == 3 and meta["finished"] and len(meta["commands"]) == 3


def test_a_resume_of_another_methods_run_is_refused_before_any_note(data_dir: Path, tmp_path: Path, capsys,
                                                                   caplog) -> None:
    """`train stt --recipe R --resume` on an auto-encoder run warned "no --teacher" first, then refused
    the checkpoint: the refusal comes first, and alone."""
    recipe, run = tmp_path / "ae.toml", tmp_path / "ae"
    recipe.write_text('extends = "autoencoder"\n[data]\ncrop = 32\nbatch_size = 2\nworkers = 0\n'
                      '[stages.reconstruct]\nsteps = 3\n')
    videos = ["--data", str(data_dir / "videos" / "davis2016-train"), "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", "autoencoder", *videos, "--recipe", str(recipe), "--run-dir", str(run),
                 "--out", str(tmp_path / "ae.safetensors"), "--max-steps", "1"]) == 0
    (tmp_path / "stt.toml").write_text(TINY_STT)
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["train", "stt", *videos, "--recipe", str(tmp_path / "stt.toml"), "--run-dir", str(run),
                     "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (f"vidcorr: error: {run / 'checkpoint.pt'}: is a checkpoint of `vidcorr train autoencoder`, not "
                   "of `vidcorr train stt`; resume it with `vidcorr train autoencoder`\n"), err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_export_of_an_autoencoder_checkpoint_says_how_to_get_its_weights(data_dir: Path, tmp_path: Path,
                                                                         capsys) -> None:
    """It said only "not a UVC, CycleTime, STT or MoCo checkpoint"; the command it now gives works."""
    recipe = tmp_path / "ae.toml"
    recipe.write_text('extends = "autoencoder"\n[data]\ncrop = 32\nbatch_size = 2\nworkers = 0\n'
                      '[stages.reconstruct]\nsteps = 3\n')
    run, videos = tmp_path / "ae", str(data_dir / "videos" / "davis2016-train")
    first = tmp_path / "first.safetensors"
    assert main(["train", "autoencoder", "--data", videos, "--recipe", str(recipe), "--run-dir", str(run),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(first), "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "export", "--checkpoint", str(run / "checkpoint.pt"),
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    command = (f"vidcorr train autoencoder --data <its videos> --run-dir {run} --resume --max-steps 1 "
               "--out W.safetensors")
    assert "is a checkpoint of `vidcorr train autoencoder` (step 1)" in err and command in err, err
    again = tmp_path / "W.safetensors"
    given = command.replace("<its videos>", videos).replace("W.safetensors", str(again)).split()[1:]
    assert main(given + ["--cache-dir", str(tmp_path / "cache")]) == 0
    a, b = read_weights(first), read_weights(again)
    assert a.tensors.keys() == b.tensors.keys() and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert json.loads(again.with_suffix(".json").read_text())["meta"]["steps"] == 1


TINY_CYCLETIME = """
method = "cycletime"
base = "cycletime-cpu"
[data]
crop = 168
frame = 176
clip_length = 2
gap = [0.1, 0.1]
gap_unit = "seconds"
batch_size = 2
workers = 0
[optim]
betas = [0.5, 0.999]
grad_clip = 10.0
[stages.cycle]
steps = 2
lr = 2e-4
schedule = "constant"
[log]
every = 1
images_every = 1
"""


def test_cycletime_trains_stops_resumes_and_exports_a_propagation_encoder(data_dir: Path, tmp_path: Path,
                                                                          capsys) -> None:
    recipe = tmp_path / "tiny-cycle.toml"
    recipe.write_text(TINY_CYCLETIME)
    export = tmp_path / "cycletime_tiny.safetensors"
    args = ["train", "cycletime", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
            str(recipe), "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--export", str(export)]
    assert main(args + ["--max-steps", "1"]) == 0
    assert "stopped at step 1" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    assert "finished" in capsys.readouterr().out
    encoder = load_encoder(export)
    assert encoder.config.arch == "resnet18" and encoder.config.head_channels == 512
    assert encoder(torch.rand(1, 3, 64, 96)).shape == (1, 512, 8, 12)
    meta = json.loads(export.with_suffix(".json").read_text())["meta"]
    assert meta["method"] == "cycletime" and meta["steps"] == 2 and meta["finished"]
    assert meta["recipe_config"]["model"]["frame_size"] == 168  # taken from [data] crop
    assert (tmp_path / "run" / "tensorboard").is_dir()
    again = tmp_path / "exported.safetensors"
    assert main(["train", "export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(again)]) == 0
    a, b = load_encoder(export).state_dict(), load_encoder(again).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # --init takes the exported encoder, head included, back into a new run
    start = tmp_path / "start.safetensors"
    assert main([x if x != str(tmp_path / "run") else str(tmp_path / "tuned") for x in args[:-1]]
                + [str(start), "--init", str(export), "--max-steps", "0"]) == 0
    out = capsys.readouterr().out  # it named a checkpoint it had not written
    assert "no checkpoint written" in out and not (tmp_path / "tuned" / "checkpoint.pt").exists()
    c = load_encoder(start).state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_cycletime_recipe_whose_model_disagrees_with_its_data_exits_2(data_dir: Path, tmp_path: Path,
                                                                     capsys) -> None:
    recipe = tmp_path / "clash.toml"
    recipe.write_text(TINY_CYCLETIME.replace('base = "cycletime-cpu"',
                                             'base = "cycletime-cpu"\n[model]\nframe_size = 240'))
    code = main(["train", "cycletime", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
                 str(recipe), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and str(recipe) in err and "frame_size" in err, err
    code = main(["train", "cycletime", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
                 "uvc-cpu", "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "not 'cycletime'" in capsys.readouterr().err


TINY_MOCO = """
method = "moco"
base = "moco-cpu"
[model]
queue_size = 8
[data]
crop = 64
batch_size = 4
workers = 0
[stages.contrastive]
steps = 2
lr = 0.03
[log]
every = 1
images_every = 1
"""

TINY_STT = """
method = "stt"
base = "stt-cpu"
[data]
crop = 64
gap = [0.1667, 0.1667]
gap_unit = "seconds"
batch_size = 2
workers = 0
[stages.temporal]
steps = 2
lr = 2e-4
warmup = 1
[log]
every = 1
images_every = 1
"""


def test_stt_spatial_then_temporal_trains_resumes_and_exports(data_dir: Path, tmp_path: Path, capsys) -> None:
    """`train moco` makes the teacher, `train stt --teacher` the student; stop, resume, export."""
    videos = str(data_dir / "videos" / "davis2016-train")
    (tmp_path / "moco.toml").write_text(TINY_MOCO)
    (tmp_path / "stt.toml").write_text(TINY_STT.replace("crop = 64", "crop = 96"))  # a teacher needs 3x3 cells
    teacher = tmp_path / "teacher.safetensors"
    assert main(["train", "moco", "--data", videos, "--recipe", str(tmp_path / "moco.toml"), "--run-dir",
                 str(tmp_path / "moco"), "--cache-dir", str(tmp_path / "cache"), "--export", str(teacher)]) == 0
    assert load_encoder(teacher).stride == 32
    export = tmp_path / "stt_tiny.safetensors"
    args = ["train", "stt", "--data", videos, "--recipe", str(tmp_path / "stt.toml"), "--teacher", str(teacher),
            "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--export", str(export)]
    assert main(args + ["--max-steps", "1"]) == 0
    assert "stopped at step 1" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    assert "finished" in capsys.readouterr().out
    encoder = load_encoder(export)  # the "stt" propagation preset: stride 8, Lab, layer3
    assert encoder.config.colour_mode == "lab" and encoder.stride == 8 and encoder.config.arch == "resnet18"
    assert encoder(torch.rand(1, 3, 64, 96)).shape == (1, 256, 8, 12)
    meta = json.loads(export.with_suffix(".json").read_text())["meta"]
    assert meta["method"] == "stt" and meta["steps"] == 2 and meta["finished"]
    teacher_sha = json.loads(teacher.with_suffix(".json").read_text())["sha256"]
    assert meta["recipe_config"]["model"]["teacher"] == {"weights": str(teacher), "sha256": teacher_sha}
    assert meta["recipe_config"]["model"]["frame_size"] == 96  # taken from [data] crop
    again = tmp_path / "exported.safetensors"
    assert main(["train", "export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(again)]) == 0
    a, b = load_encoder(export).state_dict(), load_encoder(again).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(again.with_suffix(".json").read_text())["meta"]["recipe_config"]["model"]["teacher"] == \
        meta["recipe_config"]["model"]["teacher"]
    # A resume with another teacher is another run: refused; the same bytes under another name (a
    # moved copy) are the same teacher, as for --init. By path, an overwritten teacher file resumed.
    other = save_weights(build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4"),
                         tmp_path / "other_teacher.safetensors")
    twin = tmp_path / "same_teacher_other_file.safetensors"
    shutil.copy(teacher, twin)
    shutil.copy(teacher.with_suffix(".json"), twin.with_suffix(".json"))
    capsys.readouterr()
    swapped = [str(other) if a == str(teacher) else a for a in args]
    assert main(swapped + ["--resume", "--max-steps", "3"]) == 2
    now = f"{other} (sha256 {read_weights(other).sha256[:12]})"
    assert f"--teacher {teacher} (sha256 {teacher_sha[:12]}) (checkpoint) vs {now} (now)" in capsys.readouterr().err
    # Without --teacher a resume takes the checkpoint's (it was refused as "none"), if its bytes are the same
    untaught = [a for a in args if a not in ("--teacher", str(teacher))]
    for suffix in (".safetensors", ".json"):
        shutil.copy(other.with_suffix(suffix), teacher.with_suffix(suffix))
    assert main(untaught + ["--resume", "--max-steps", "3"]) == 2
    assert f"{teacher}: has changed since" in capsys.readouterr().err
    for suffix in (".safetensors", ".json"):
        shutil.copy(twin.with_suffix(suffix), teacher.with_suffix(suffix))
    assert main(untaught + ["--resume", "--max-steps", "3"]) == 0
    assert main([str(twin) if a == str(teacher) else a for a in args] + ["--resume", "--max-steps", "3"]) == 0
    # A checkpoint from before the sha256 was recorded names its teacher by path alone: compared so
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    checkpoint["recipe"]["model"]["teacher"] = str(teacher)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k != "format"})
    assert main(args + ["--resume", "--max-steps", "3"]) == 0
    capsys.readouterr()
    assert main([str(twin) if a == str(teacher) else a for a in args] + ["--resume", "--max-steps", "3"]) == 2
    # its path as written, not a JSON string ("--teacher \"/p\" (checkpoint)")
    assert f"--teacher {teacher} (checkpoint) vs {twin} (sha256 {teacher_sha[:12]}) (now)" in capsys.readouterr().err


def test_stt_with_a_teacher_refuses_a_crop_whose_global_term_is_zero(data_dir: Path, tmp_path: Path, capsys) -> None:
    """At crop 64 the global term compares 2x2 stride-32 grids whose correlations are both the identity:
    a run logged "global 0.0000" at every step (1e-28 with a MoCo teacher). Without a teacher there is
    no such term, and 64 trains."""
    recipe = tmp_path / "stt.toml"
    recipe.write_text(TINY_STT)
    teacher = save_weights(build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4"),
                           tmp_path / "teacher.safetensors")
    code = main(["train", "stt", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe", str(recipe),
                 "--teacher", str(teacher), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        f"vidcorr: error: {recipe}: invalid STT recipe: [data] crop = 64: with a teacher, STT's global term correlates "
        "2x2 stride-32 cells, on which the student's and the teacher's correlations are both the identity (the term "
        "is 0 and trains nothing); at least 96 (3x3 cells), or train without a teacher\n"), err
    assert not (tmp_path / "run").exists()


def test_stt_teacher_that_is_not_a_stride_32_encoder_exits_2(data_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "stt.toml").write_text(TINY_STT)
    wrong = tmp_path / "stride8.safetensors"

    save_weights(build_encoder("resnet18"), wrong)
    code = main(["train", "stt", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
                 str(tmp_path / "stt.toml"), "--teacher", str(wrong), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and str(wrong) in err and "stride 32" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("method", "recipe_text", "problems"), [
    ("moco", TINY_MOCO.replace("queue_size = 8", "queue_size = 2"), ("queue_size 2",)),  # cannot hold a batch
    ("stt", TINY_STT.replace("[stages.temporal]", "[stages.joint]"), ("stage 'joint'", "STT")),  # not its stage
    # named as the recipe sets it: STT's frame_size is not a field of the file
    ("stt", TINY_STT.replace("crop = 64", "crop = 100"), ("[data] crop = 100: STT needs a multiple of 32",)),
    # both were tracebacks after indexing: a ValueError from the clip augmentation, and batch norm's
    # "Expected more than 1 value per channel" at the first step (a key group of 1 image at 1x1)
    ("cycletime", TINY_CYCLETIME.replace("frame = 176", "frame = 160"),
     ("[data] frame = 160 is smaller than crop = 168",)),
    ("moco", TINY_MOCO.replace("crop = 64", "crop = 32").replace("batch_size = 4", "batch_size = 2"),
     ("[data] crop = 32 with batch_size 2", "groups of 1 image")),
])
def test_invalid_method_recipe_exits_2_naming_it(data_dir: Path, tmp_path: Path, capsys, method: str,
                                                 recipe_text: str, problems: tuple[str, ...]) -> None:
    recipe = tmp_path / f"{method}.toml"
    recipe.write_text(recipe_text)
    code = main(["train", method, "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe", str(recipe),
                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and str(recipe) in err and all(p in err for p in problems), err
    assert not (tmp_path / "run").exists()


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_encoder(path).state_dict()


def test_init_starts_the_encoder_from_weights_and_a_resume_keeps_the_same_ones(data_dir: Path, tmp_path: Path,
                                                                               capsys, caplog) -> None:
    """`--init W`: step 0 holds W's tensors (exported unchanged at --max-steps 0), MoCo's key
    encoder starts as their copy, training moves on from them; the sidecar records W's sha256;
    a resume with other weights is refused, with a copy of the same weights it continues, and
    without --init (--recipe given) it continues with the checkpoint's."""
    videos = str(data_dir / "videos" / "davis2016-train")
    (tmp_path / "moco.toml").write_text(TINY_MOCO)
    common = ["--data", videos, "--recipe", str(tmp_path / "moco.toml"), "--cache-dir", str(tmp_path / "cache")]
    first = tmp_path / "first.safetensors"
    assert main(["train", "moco", *common, "--run-dir", str(tmp_path / "a"), "--export", str(first)]) == 0
    untouched = tmp_path / "untouched.safetensors"
    assert main(["train", "moco", *common, "--run-dir", str(tmp_path / "b"), "--init", str(first),
                 "--max-steps", "0", "--export", str(untouched)]) == 0
    a, b = _state(first), _state(untouched)
    assert all(torch.equal(a[k], b[k]) for k in a)
    checkpoint = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    fresh = {k.removeprefix("encoder."): v for k, v in checkpoint.items() if k.startswith("encoder.")}
    assert not all(torch.equal(fresh[k].float(), b[k]) for k in b)  # a seeded fresh start differs from W

    tuned = tmp_path / "tuned.safetensors"
    args = ["train", "moco", *common, "--run-dir", str(tmp_path / "c"), "--init", str(first), "--export", str(tuned)]
    assert main(args + ["--max-steps", "1"]) == 0
    model = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["model"]
    for name, value in model.items():  # the key encoder followed the query from W, not from a fresh start
        if name.startswith("key_encoder.") and value.is_floating_point() and value.dim() == 4:
            assert (value.float() - a[name.removeprefix("key_encoder.")]).abs().max() < 0.01, name
    twin = tmp_path / "twin.safetensors"  # the same bytes under another name: the same run
    shutil.copy(first, twin)
    shutil.copy(first.with_suffix(".json"), twin.with_suffix(".json"))
    capsys.readouterr()
    # `untouched` holds the same tensors as `first` but another file (its metadata differs)
    recorded = f"--init {first} (sha256 {read_weights(first).sha256[:12]}) (checkpoint) vs "
    wrong = [a_ if a_ != str(first) else str(untouched) for a_ in args]
    assert main(wrong + ["--resume"]) == 2
    assert recorded + f"{untouched} (sha256 {read_weights(untouched).sha256[:12]}) (now)" in capsys.readouterr().err
    assert main([a_ if a_ != str(first) else str(twin) for a_ in args] + ["--resume", "--max-steps", "1"]) == 0
    # --recipe given, --init left out: the run goes on (its last step) with the weights its checkpoint records
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main([a_ for a_ in args if a_ not in ("--init", str(first))] + ["--resume"]) == 0
    assert f"--resume without --init: keeping the --init {first}" in " ".join(r.getMessage() for r in caplog.records)
    meta = json.loads(tuned.with_suffix(".json").read_text())["meta"]
    assert meta["steps"] == 2 and meta["recipe_config"]["init"]["sha256"] == json.loads(
        first.with_suffix(".json").read_text())["sha256"]
    assert not all(torch.equal(a[k], v) for k, v in _state(tuned).items())


def test_init_with_weights_of_another_encoder_exits_2_naming_them(data_dir: Path, tmp_path: Path,
                                                                  autoencoder: Path, capsys) -> None:
    """UVC's encoder sees grayscale at stride 8: an RGB stride-32 MoCo encoder, a corrupt file and
    a missing one are refused before anything is written."""
    rgb = save_weights(build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4"),
                       tmp_path / "rgb.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not safetensors")
    (tmp_path / "tiny.toml").write_text(TINY_UVC)
    for weights, problem in ((rgb, "encoder config differs"), (corrupt, "not a readable safetensors"),
                             (tmp_path / "missing.safetensors", "does not exist")):
        run_dir = tmp_path / f"run-{weights.stem}"
        code = main(["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
                     str(tmp_path / "tiny.toml"), "--autoencoder", str(autoencoder), "--run-dir", str(run_dir),
                     "--cache-dir", str(tmp_path / "cache"), "--init", str(weights)])
        err = capsys.readouterr().err
        assert code == 2 and str(weights) in err and problem in err, err
        assert not (run_dir / "checkpoint.pt").exists()


@pytest.mark.parametrize("source", ["--init", "--autoencoder", "--teacher"])
def test_an_export_onto_the_weights_the_run_starts_from_exits_2(tmp_path: Path, autoencoder: Path, capsys,
                                                               source: str) -> None:
    """`--init weights/uvc_r18_ft3.safetensors --export weights/uvc_r18_ft3.safetensors` replaced the
    shipped weights with the fine-tuned ones at the run's end (and a resume giving that --init again
    was then refused as other weights); an --export onto the auto-encoder or the teacher destroyed it."""
    if source == "--teacher":
        start = save_weights(build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4"),
                             tmp_path / "start.safetensors")  # what `train moco` exports
        argv = ["train", "stt", "--recipe", "stt-cpu", "--teacher", str(start)]
    else:
        start = autoencoder if source == "--autoencoder" else save_weights(
            build_encoder("resnet18", strides=(1, 2, 1, 1), out_layer="layer3", colour_mode="gray-l"),
            tmp_path / "start.safetensors")
        (tmp_path / "tiny.toml").write_text(TINY_UVC)
        argv = ["train", "uvc", "--recipe", str(tmp_path / "tiny.toml"), "--autoencoder", str(autoencoder)]
        if source == "--init":
            argv += ["--init", str(start)]
    before = start.read_bytes()
    (tmp_path / "alias").symlink_to(tmp_path)
    same = tmp_path / "alias" / start.name  # another spelling of the same file
    code = main(argv + ["--export", str(same), "--data", str(tmp_path / "no-such-videos"),
                        "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err  # refused before the (missing) videos are looked for
    assert code == 2, err
    assert f"{same}: is the {source} weights this run starts from" in err, err
    assert start.read_bytes() == before and not (tmp_path / "run").exists()


def test_a_resume_removes_the_temporary_checkpoint_a_killed_save_left(data_dir: Path, tmp_path: Path,
                                                                      autoencoder: Path, caplog) -> None:
    """A run killed (SIGKILL, the OOM killer) while saving kept `.checkpoint.pt.XXXXXXXX.tmp.pt`, up
    to a checkpoint's size, in its run dir for ever: resumes went on beside it. Other names stay."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_UVC)
    run = tmp_path / "run"
    args = ["train", "uvc", "--data", str(data_dir / "videos" / "davis2016-train" / "bear.mp4"), "--recipe",
            str(recipe), "--autoencoder", str(autoencoder), "--run-dir", str(run), "--cache-dir",
            str(tmp_path / "cache")]
    assert main(args + ["--max-steps", "1"]) == 0
    leftovers = [run / ".checkpoint.pt.k1ll3d_x.tmp.pt", run / ".checkpoint-warmup.pt.abcdefgh.tmp.pt"]
    kept = [run / "notes.tmp.pt", run / ".checkpoint.pt.short.tmp.pt"]  # not `atomic_file`'s names
    for path in leftovers + kept:
        path.write_bytes(b"half a checkpoint")
    with caplog.at_level("INFO"):
        assert main(args + ["--resume", "--max-steps", "2"]) == 0
    assert not any(path.exists() for path in leftovers) and all(path.exists() for path in kept)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert (f"removed 2 temporary file(s) left by a killed run in {run}: .checkpoint-warmup.pt.abcdefgh.tmp.pt, "
            ".checkpoint.pt.k1ll3d_x.tmp.pt") in said, said


def test_a_paper_recipe_on_a_cpu_is_told_its_cpu_version_before_the_first_step(data_dir: Path, tmp_path: Path,
                                                                              caplog) -> None:
    """`train cycletime --recipe cycletime` on a 2-core CPU was killed mid-step for memory (batches of
    36 outgrew 23 GB) after a start line that gave no hint; the shipped -cpu recipes are the way there."""
    assert [cpu_counterpart(load_recipe(n)) for n in ("uvc", "cycletime", "moco", "stt")] == [
        "uvc-cpu", "cycletime-cpu", "moco-cpu", "stt-cpu"]
    assert cpu_counterpart(load_recipe("moco-cpu")) is None and cpu_counterpart(load_recipe("autoencoder")) is None
    mine = tmp_path / "moco.toml"  # a file of one's own is the user's choice, even named as a shipped one
    mine.write_text('extends = "moco"\n')
    assert cpu_counterpart(load_recipe(mine)) is None
    with caplog.at_level("INFO"):
        assert main(["train", "moco", "--data", str(data_dir / "videos" / "davis2016-train" / "bear.mp4"),
                     "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
                     "--max-steps", "0"]) == 0
    said = [r.getMessage() for r in caplog.records]
    start = next(i for i, line in enumerate(said) if "process(es) on cpu" in line)
    assert said[start + 1] == ("recipe 'moco' is the paper's, sized for GPUs (batches of 256): on a CPU a step takes "
                               "minutes and may need more memory than the machine has; --recipe moco-cpu is its "
                               "CPU-sized version (docs/training.md, the recipes table)")
