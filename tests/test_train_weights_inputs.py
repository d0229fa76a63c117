"""`vidcorr train`: the weights a run is given (--autoencoder, --init, --teacher) recorded and
checked on resume, warnings about them, and `train export` of a missing checkpoint, of one whose
[model] cannot be built or of one whose weights do not fit that model."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from test_train_cli import TINY_MOCO, TINY_STT, TINY_UVC

from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.models import AUTOENCODER_CONFIG, LabAutoencoder, build_encoder, read_weights, save_weights
from vidcorr.train import checkpoint as ckpt
from vidcorr.train import load_recipe, recipe_from_dict
from vidcorr.train.checkpoint import Progress, load_checkpoint, save_checkpoint, stored_recipe
from vidcorr.train.distributed import DistContext

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def autoencoder(tmp_path: Path) -> Path:
    return save_weights(LabAutoencoder(), tmp_path / "ae.safetensors", AUTOENCODER_CONFIG)


def test_uvc_records_its_autoencoder_and_a_resume_needs_the_same_one(short_list: Path, tmp_path: Path,
                                                                    autoencoder: Path, capsys) -> None:
    """The checkpoint holds the auto-encoder's tensors and a resume loaded them over those of
    --autoencoder: another one was ignored without a word. Its path and sha256 are recorded as
    --init's (checkpoint, sidecar, `train export`'s sidecar) and a resume compares the sha256."""
    (tmp_path / "tiny.toml").write_text(TINY_UVC)
    other = save_weights(LabAutoencoder(), tmp_path / "other_ae.safetensors", AUTOENCODER_CONFIG)
    twin = tmp_path / "twin_ae.safetensors"  # the same bytes under another name: the same run
    shutil.copy(autoencoder, twin)
    shutil.copy(autoencoder.with_suffix(".json"), twin.with_suffix(".json"))
    run, export = tmp_path / "run", tmp_path / "uvc.safetensors"
    args = ["train", "uvc", "--data", str(short_list), "--recipe", str(tmp_path / "tiny.toml"), "--autoencoder",
            str(autoencoder), "--run-dir", str(run), "--cache-dir", str(tmp_path / "cache"), "--export", str(export)]

    def swapped(weights: Path) -> list[str]:
        return [str(weights) if a == str(autoencoder) else a for a in args] + ["--resume", "--max-steps", "1"]

    assert main(args + ["--max-steps", "1"]) == 0
    sha = read_weights(autoencoder).sha256
    record = {"weights": str(autoencoder), "sha256": sha}
    assert load_checkpoint(run / "checkpoint.pt")["recipe"]["model"]["autoencoder"] == record
    exported = tmp_path / "exported.safetensors"
    assert main(["train", "export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(exported)]) == 0
    for weights in (export, exported):
        assert json.loads(weights.with_suffix(".json").read_text())["meta"]["recipe_config"]["model"]["autoencoder"] \
            == record
    capsys.readouterr()
    assert main(swapped(other)) == 2
    assert (f"--autoencoder {autoencoder} (sha256 {sha[:12]}) (checkpoint) vs {other} "
            f"(sha256 {read_weights(other).sha256[:12]}) (now)") in capsys.readouterr().err
    assert main(swapped(twin)) == 0
    # A checkpoint from before the record: the auto-encoder tensors it holds are compared
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    del checkpoint["recipe"]["model"]["autoencoder"]
    save_checkpoint(run / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k != "format"})
    capsys.readouterr()
    assert main(swapped(other)) == 2
    assert f"another autoencoder than --autoencoder {other} (the autoencoder tensors it holds differ" in \
        capsys.readouterr().err
    assert main(swapped(autoencoder)) == 0


def test_export_of_a_missing_checkpoint_or_of_a_folder_names_what_is_missing(tmp_path: Path, capsys) -> None:
    """Both said "no checkpoint to resume from", though nothing is resumed."""
    out = str(tmp_path / "w.safetensors")
    missing = tmp_path / "nonexist" / "checkpoint.pt"
    assert main(["train", "export", "--checkpoint", str(missing), "--out", out]) == 2
    assert f"{missing}: no checkpoint at this path\n" in capsys.readouterr().err
    folder = tmp_path / "run"
    folder.mkdir()
    assert main(["train", "export", "--checkpoint", str(folder), "--out", out]) == 2
    assert (f"{folder}: is a folder, not a checkpoint: give the checkpoint file in it ({folder / 'checkpoint.pt'}, "
            "which does not exist)\n") in capsys.readouterr().err
    (folder / "checkpoint.pt").write_bytes(b"")
    assert main(["train", "export", "--checkpoint", str(folder), "--out", out]) == 2
    assert f"give the checkpoint file in it ({folder / 'checkpoint.pt'})\n" in capsys.readouterr().err


def test_the_recipe_a_checkpoint_stores_is_read_alike_by_resume_resume_without_recipe_and_export(
        tmp_path: Path, capsys) -> None:
    """Three near-twin readers became `checkpoint.stored_recipe`: a recipe that cannot be read is
    named with the checkpoint (resume and `train export` failed with a traceback), and one without a
    name (vidcorr always writes one) is read as "checkpoint" by all three (export alone did)."""
    recipe = recipe_from_dict({"method": "autoencoder", "stages": {"reconstruct": {"steps": 1}}}, "ae")
    nameless = {k: v for k, v in recipe.to_dict().items() if k != "name"}
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", {"recipe": nameless})
    assert stored_recipe(path, load_checkpoint(path)) == recipe.replace(name="checkpoint")
    broken = save_checkpoint(tmp_path / "broken" / "checkpoint.pt", {"recipe": {**nameless, "stages": {}}})
    named = f"{broken}: holds no readable recipe (ValueError: a recipe needs at least one [stages.<name>] table)"
    with pytest.raises(InputError) as error:  # `vidcorr.train.train(..., resume=True)`
        ckpt.resume(broken, recipe, LabAutoencoder(), None, DistContext(0, 1, 0, torch.device("cpu")))
    assert str(error.value) == named
    assert main(["train", "autoencoder", "--data", str(tmp_path), "--run-dir", str(broken.parent), "--resume",
                 "--out", str(tmp_path / "ae.safetensors")]) == 2
    assert capsys.readouterr().err == f"vidcorr: error: {named}\n"
    assert main(["train", "export", "--checkpoint", str(broken), "--out", str(tmp_path / "w.safetensors")]) == 2
    assert capsys.readouterr().err == f"vidcorr: error: {named}\n"
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_train_export_of_a_checkpoint_with_a_non_finite_model_value_names_the_checkpoint(
        tmp_path: Path, capsys, bad: float) -> None:
    """Its config is refused when built (`MoCoConfig` refuses NaN and inf): that was a traceback, exit 1."""
    recipe = recipe_from_dict({"method": "moco", "stages": {"contrastive": {"steps": 1}},
                               "model": {"temperature": bad}}, "moco")
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt",
                           {"recipe": recipe.to_dict(), "progress": dataclasses.asdict(Progress(step=1))})
    out = tmp_path / "w.safetensors"
    assert main(["train", "export", "--checkpoint", str(path), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"vidcorr: error: {path}: holds a [model] config that cannot be built: "
                                       f"MoCoConfig temperature = {bad}: expected a finite number\n")
    assert not list(tmp_path.glob("w.*"))


def _moco_checkpoint(tmp_path: Path, arch: str, state: dict) -> Path:
    recipe = recipe_from_dict({"method": "moco", "stages": {"contrastive": {"steps": 1}},
                               "model": {"arch": arch, "queue_size": 8}}, "moco")
    return save_checkpoint(tmp_path / "run" / "checkpoint.pt", {
        "recipe": recipe.to_dict(), "progress": dataclasses.asdict(Progress(step=1)), "model": state})


def test_train_export_of_weights_that_do_not_fit_the_recipes_model_names_what_does_not(
        tmp_path: Path, capsys) -> None:
    """`load_state_dict` raised a RuntimeError: a traceback, exit 1; now one line, exit 2, a few names."""
    state = MoCo(MoCoConfig(arch="resnet18", queue_size=8)).state_dict()
    first, second, third = list(state)[:3]
    del state[first], state[second]
    state["extra.weight"] = torch.zeros(2)
    state[third] = torch.zeros(1, *state[third].shape)
    path = _moco_checkpoint(tmp_path, "resnet18", state)
    out = tmp_path / "w.safetensors"
    assert main(["train", "export", "--checkpoint", str(path), "--out", str(out)]) == 2
    shape = tuple(state[third].shape)
    assert capsys.readouterr().err == (
        f"vidcorr: error: {path}: its model weights do not match the moco model its recipe's [model] builds: "
        f"2 missing ({first}, {second}), 1 unexpected (extra.weight), "
        f"1 of another shape ({third}: {shape} in the checkpoint, {shape[1:]} in the model)\n")
    assert not list(tmp_path.glob("w.*"))


def test_train_export_of_another_archs_weights_is_one_short_line(tmp_path: Path, capsys) -> None:
    """resnet18 weights under a resnet50 recipe differ in hundreds of keys: three of each kind are named."""
    path = _moco_checkpoint(tmp_path, "resnet50", MoCo(MoCoConfig(arch="resnet18", queue_size=8)).state_dict())
    assert main(["train", "export", "--checkpoint", str(path), "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vidcorr: error: {path}: its model weights do not match the moco model")
    assert err.count("\n") == 1 and len(err) < 1000 and "missing (" in err and "more" in err
    assert not list(tmp_path.glob("w.*"))


def test_a_warning_for_fine_tuning_without_init_stt_without_teacher_and_unfinished_weights(
        short_list: Path, tmp_path: Path, caplog) -> None:
    """Each is one log line and the run goes on: a fine-tuning recipe without --init trains from
    random weights, `train stt` without --teacher without its global term, and weights of an
    unfinished run (as `eval` and `propagate` warn) were taken as --init, --teacher, --autoencoder."""
    for name, text in (("moco-finetune", TINY_MOCO),
                       ("stt", TINY_STT.replace("crop = 64", "crop = 96")),  # --teacher: >= 96
                       ("uvc", TINY_UVC)):
        (tmp_path / f"{name}.toml").write_text(text)
    unfinished = {"finished": False, "steps": 7}
    stride32 = save_weights(build_encoder("resnet18", strides=(1, 2, 2, 2), out_layer="layer4"),
                            tmp_path / "stride32.safetensors", meta=unfinished)
    ae = save_weights(LabAutoencoder(), tmp_path / "ae.safetensors", AUTOENCODER_CONFIG, unfinished)
    runs = iter(range(10))

    def warnings(method: str, recipe: str, *options: str) -> list[str]:
        caplog.clear()
        assert main(["train", method, "--data", str(short_list), "--recipe", str(tmp_path / f"{recipe}.toml"),
                     *options, "--run-dir", str(tmp_path / f"run{next(runs)}"), "--cache-dir",
                     str(tmp_path / "cache"), "--max-steps", "0"]) == 0
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "vidcorr.train.feed"
                != r.name]  # the feed's note on 3 videos for a batch of 4 is not under test

    def one(warnings: list[str], start: str) -> bool:
        return len(warnings) == 1 and warnings[0].startswith(start)

    unfinished_run = "weights of an unfinished training run (exported at step 7"
    assert one(warnings("moco", "moco-finetune"),
               f"{(tmp_path / 'moco-finetune.toml').resolve()} is a fine-tuning recipe but no --init was given")
    assert one(warnings("moco", "moco-finetune", "--init", str(stride32)), f"{stride32}: {unfinished_run}")
    assert one(warnings("stt", "stt"), "no --teacher: STT trains without its global distillation term")
    assert one(warnings("stt", "stt", "--teacher", str(stride32)), f"{stride32}: {unfinished_run}")
    assert one(warnings("uvc", "uvc", "--autoencoder", str(ae)), f"{ae}: {unfinished_run}")


@pytest.mark.parametrize("init", [{"weights": "/w/enc.safetensors"}, {"sha256": "ab" * 32}, "/w/enc.safetensors",
                                  {"weights": "/w/enc.safetensors", "sha256": None}])
def test_a_checkpoint_whose_init_record_is_malformed_is_refused_naming_it(short_list: Path, tmp_path: Path,
                                                                         capsys, init) -> None:
    """`recorded_init` kept a record without its sha256 (a KeyError when the resume compared it);
    --init has been recorded as path and sha256 since it came, so no bare-path form is taken."""
    run = tmp_path / "run"
    (tmp_path / "moco.toml").write_text(TINY_MOCO)
    recipe = load_recipe(tmp_path / "moco.toml").to_dict()
    save_checkpoint(run / ckpt.LATEST, {"recipe": {**recipe, "init": init}})
    with pytest.raises(InputError, match="records its --init as .*, not as the weights' path and sha256") as error:
        stored_recipe(run / ckpt.LATEST, load_checkpoint(run / ckpt.LATEST))
    assert error.value.path == run / ckpt.LATEST
    assert main(["train", "moco", "--data", str(short_list), "--run-dir", str(run), "--resume"]) == 2
    assert f"{run / ckpt.LATEST}: records its --init as" in capsys.readouterr().err
