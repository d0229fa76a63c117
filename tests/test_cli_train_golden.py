"""`vidcorr train` plumbing (cli/train_cmd, cli/train_inputs, cli/train_export) and the small
helpers around it (io/roots, io/text, runtime, defaults), pinned where hand-made mutants passed
the suite: the job a command hands the trainer (captured instead of trained, so no video is
read), what it prints, `train export` of a made-up checkpoint, and the helpers' edge cases."""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from test_train_cli import TINY_MOCO, TINY_UVC
from torch import nn

from vidcorr.cli import main
from vidcorr.cli.train_export import state_dict_mismatch
from vidcorr.defaults import BEST_FLOOR, DEFAULT_WEIGHTS, FLOOR_NAMES, REPO_ROOT
from vidcorr.errors import InputError
from vidcorr.io.roots import misplaced_root_hint, names_held
from vidcorr.io.text import decode_text, has_wide_text_bom, read_text
from vidcorr.methods.moco import MoCo, MoCoConfig
from vidcorr.models import AUTOENCODER_CONFIG, LabAutoencoder, build_encoder, save_weights
from vidcorr.runtime import RankRole, bound_cpu_memory, flush_cpu_denormals
from vidcorr.train import loop, recipe_from_dict
from vidcorr.train.checkpoint import Progress, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def jobs(monkeypatch) -> list:
    """The `TrainJob`s `vidcorr train` hands the trainer, which trains nothing and says it finished."""
    seen: list = []

    def fake_train(job):
        seen.append(job)
        return SimpleNamespace(summary=lambda: "finished", export=job.export)

    monkeypatch.setattr(loop, "train", fake_train)
    return seen


@pytest.fixture
def autoencoder(tmp_path: Path) -> Path:
    return save_weights(LabAutoencoder(), tmp_path / "ae.safetensors", AUTOENCODER_CONFIG)


def _uvc(tmp_path: Path, autoencoder: Path, *extra: str) -> list[str]:
    (tmp_path / "tiny.toml").write_text(TINY_UVC)
    return ["train", "uvc", "--data", str(tmp_path / "videos"), "--recipe", str(tmp_path / "tiny.toml"),
            "--autoencoder", str(autoencoder), "--run-dir", str(tmp_path / "run"), *extra]


# ---- cli/train_cmd ---------------------------------------------------------------------------

def test_repeated_ablations_all_apply(tmp_path: Path, autoencoder: Path, jobs: list) -> None:
    """--ablate is repeatable (Table 2's O and C together): each one given switches its terms off."""
    assert main(_uvc(tmp_path, autoencoder, "--ablate", "O", "--ablate", "C")) == 0
    model = jobs[0].recipe.model
    assert model["orthogonal"] is False and model["orthogonal_coords"] is False and model["concentration"] is False
    assert model["localisation"] is True  # L was not given


def test_the_end_of_a_run_names_its_weights(tmp_path: Path, autoencoder: Path, jobs: list, capsys) -> None:
    """The last lines: the recipe and how it ended, then the weights written (RUN_DIR/encoder.safetensors)."""
    assert main(_uvc(tmp_path, autoencoder)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [f"{(tmp_path / 'tiny.toml').resolve()}: finished",
                        f"weights: {tmp_path / 'run' / 'encoder.safetensors'}"]


def test_moco_takes_a_batch_as_large_as_its_queue(tmp_path: Path, jobs: list, capsys) -> None:
    """A batch of K keys fills a queue of K exactly (`MoCo._enqueue` refuses only more); K + 1 is refused."""
    for queue, code in ((4, 0), (3, 2)):
        recipe = tmp_path / f"q{queue}.toml"
        recipe.write_text(TINY_MOCO.replace("queue_size = 8", f"queue_size = {queue}"))  # batch_size = 4
        assert main(["train", "moco", "--data", str(tmp_path / "videos"), "--recipe", str(recipe),
                     "--run-dir", str(tmp_path / f"run{queue}")]) == code
    assert len(jobs) == 1 and jobs[0].recipe.model["queue_size"] == 4
    assert "queue_size 3 is smaller than a batch (4)" in capsys.readouterr().err


def test_an_export_onto_a_hard_link_of_the_init_weights_is_refused(tmp_path: Path, autoencoder: Path,
                                                                   jobs: list, capsys) -> None:
    """Another name of the same file (a hard link) is the same weights: refused as the path itself is."""
    start = save_weights(build_encoder("resnet18", strides=(1, 2, 1, 1), out_layer="layer3", colour_mode="gray-l"),
                         tmp_path / "start.safetensors")
    os.link(start, tmp_path / "linked.safetensors")
    code = main(_uvc(tmp_path, autoencoder, "--init", str(start), "--export", str(tmp_path / "linked.safetensors")))
    assert code == 2 and "is the --init weights this run starts from" in capsys.readouterr().err and not jobs


# ---- cli/train_inputs ------------------------------------------------------------------------

def test_workers_override_the_recipes_and_nothing_else(tmp_path: Path, autoencoder: Path, jobs: list) -> None:
    assert main(_uvc(tmp_path, autoencoder, "--workers", "3")) == 0
    assert main(_uvc(tmp_path, autoencoder, "--run-dir", str(tmp_path / "run2"))) == 0
    given, default = (job.recipe.data for job in jobs)
    assert given.workers == 3 and default.workers == 0  # TINY_UVC's [data] workers
    assert dataclasses.replace(given, workers=0) == default


def test_the_job_gets_the_command_lines_options(tmp_path: Path, autoencoder: Path, jobs: list) -> None:
    cache = tmp_path / "cache"
    assert main(_uvc(tmp_path, autoencoder, "--max-steps", "5", "--device", "cpu", "--cache-dir", str(cache),
                     "--data", str(tmp_path / "more.txt"), "--export", str(tmp_path / "w.safetensors"))) == 0
    job = jobs[0]
    assert job.max_steps == 5 and str(job.device) == "cpu" and job.cache_dir == cache and job.resume is False
    assert [str(d) for d in job.data] == [str(tmp_path / "videos"), str(tmp_path / "more.txt")]
    assert job.export == tmp_path / "w.safetensors" and job.run_dir == tmp_path / "run"


def test_the_default_run_dir_is_named_after_the_recipe_given(tmp_path: Path, autoencoder: Path, jobs: list,
                                                             monkeypatch) -> None:
    """runs/<recipe name>: `--recipe tiny.toml` trains in runs/tiny, not in runs/uvc (the method's)."""
    monkeypatch.chdir(tmp_path)
    argv = _uvc(tmp_path, autoencoder)
    at = argv.index("--run-dir")
    del argv[at:at + 2]
    assert main(argv) == 0
    assert jobs[0].run_dir == Path("runs") / "tiny" and jobs[0].export == Path("runs") / "tiny" / "encoder.safetensors"


def test_weights_given_are_recorded_by_the_path_as_given(tmp_path: Path, autoencoder: Path, jobs: list,
                                                         monkeypatch) -> None:
    """{"weights": the path as typed, "sha256": of its bytes}: what a resume finds and compares."""
    monkeypatch.chdir(tmp_path)
    argv = _uvc(tmp_path, autoencoder)
    argv[argv.index("--autoencoder") + 1] = "ae.safetensors"
    assert main(argv) == 0
    digest = hashlib.sha256(autoencoder.read_bytes()).hexdigest()
    assert jobs[0].recipe.model["autoencoder"] == {"weights": "ae.safetensors", "sha256": digest}



def test_a_fresh_run_without_recipe_trains_the_methods_paper_recipe(tmp_path: Path, jobs: list) -> None:
    """No --recipe and no --resume: the method's recipe, with no checkpoint looked for."""
    assert main(["train", "moco", "--data", str(tmp_path / "videos"), "--run-dir", str(tmp_path / "run")]) == 0
    assert jobs[0].recipe.name == "moco" and jobs[0].checkpoint is None and not (tmp_path / "run").exists()


def test_a_stored_recipe_the_method_cannot_train_is_refused_naming_the_checkpoint(tmp_path: Path, capsys) -> None:
    """--resume without --recipe trains the recipe the checkpoint stores: its errors name the checkpoint,
    not the method's paper recipe file it did not use."""
    recipe = recipe_from_dict({"method": "uvc", "stages": {"main": {"steps": 2}}}, "mine")
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", {
        "recipe": recipe.to_dict(), "progress": dataclasses.asdict(Progress(step=1)), "model": {}})
    assert main(["train", "uvc", "--data", str(tmp_path / "videos"), "--run-dir", str(tmp_path / "run"),
                 "--resume"]) == 2
    assert capsys.readouterr().err.startswith(f"vidcorr: error: {path}: invalid UVC recipe: stage 'main' is not one")




@pytest.mark.parametrize("record", ["PATH", {"weights": "PATH"}, {"sha256": "0" * 64}])
def test_a_checkpoints_weights_record_without_a_sha256_is_refused_naming_it(tmp_path: Path, autoencoder: Path,
                                                                            jobs: list, capsys, record) -> None:
    """A record that is a bare path (older checkpoints) or lacks a field: resumed only with --autoencoder."""
    record = str(autoencoder) if record == "PATH" else {k: str(autoencoder) if v == "PATH" else v
                                                         for k, v in record.items()}
    recipe = recipe_from_dict({"method": "uvc", "base": "uvc-cpu", "stages": {"warmup": {"steps": 2}},
                               "model": {"autoencoder": record}}, "mine")
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", {
        "recipe": recipe.to_dict(), "progress": dataclasses.asdict(Progress(step=1)), "model": {}})
    assert main(["train", "uvc", "--data", str(tmp_path / "videos"), "--run-dir", str(tmp_path / "run"),
                 "--resume"]) == 2 and not jobs
    assert capsys.readouterr().err == (f"vidcorr: error: {path}: does not record the sha256 of its autoencoder "
                                       "(an older checkpoint); resume with --autoencoder given\n")


# ---- cli/train_export ------------------------------------------------------------------------

def _moco_checkpoint(path: Path, progress: dict, **changed) -> tuple[Path, dict[str, torch.Tensor]]:
    """A two-step MoCo run's checkpoint at ``progress``, with random (float32) weights, some ``changed``."""
    recipe = recipe_from_dict({"method": "moco", "stages": {"contrastive": {"steps": 2}},
                               "model": {"arch": "resnet18", "queue_size": 8}}, "moco")
    torch.manual_seed(0)
    state = {**MoCo(MoCoConfig(arch="resnet18", queue_size=8)).state_dict(), **changed}
    save_checkpoint(path, {"recipe": recipe.to_dict(), "progress": dataclasses.asdict(Progress(**progress)),
                           "model": state})
    return path, state


@pytest.mark.parametrize(("progress", "when", "finished"), [
    ({"stage": 1, "stage_step": 2, "step": 2}, "the run's end", True),
    ({"stage": 0, "stage_step": 1, "step": 1}, "before the recipe's end: marked unfinished", False),
])
def test_train_export_writes_the_query_encoder_in_float16(tmp_path: Path, capsys, progress: dict, when: str,
                                                          finished: bool) -> None:
    """The tensors under "encoder." (the query encoder, not the key encoder, projectors or queue),
    parameters in float16 as released weights are, batch-norm statistics and counters as they are;
    its line says when it was saved."""
    checkpoint, state = _moco_checkpoint(tmp_path / "run" / "checkpoint.pt", progress)
    out = tmp_path / "w.safetensors"
    assert main(["train", "export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert capsys.readouterr().out == (f"exported the encoder at step {progress['step']} ({when}) of {checkpoint} "
                                       f"to {out}\n")
    expected = {k[len("encoder."):]: (v.half() if v.is_floating_point() and "running_" not in k else v)
                for k, v in state.items() if k.startswith("encoder.")}
    written = load_file(out)  # as stored: `read_weights` gives float32
    assert written.keys() == expected.keys()
    assert all(written[k].dtype == v.dtype and torch.equal(written[k], v) for k, v in expected.items())
    meta = json.loads(out.with_suffix(".json").read_text())["meta"]
    assert json.loads(out.with_suffix(".json").read_text())["dtype"] == "float16"
    assert meta["finished"] is finished and meta["steps"] == progress["step"]
    assert meta["exported_from"] == str(checkpoint)


def test_train_export_refuses_an_out_it_cannot_write_before_reading_the_checkpoint(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-checkpoint.pt"  # named only if the --out checks were passed
    (tmp_path / "folder.safetensors").mkdir()
    for out, problem in ((tmp_path / "w.pt", "weights must be written to a .safetensors file"),
                         (tmp_path / "folder.safetensors", "is a folder; expected a file name")):
        assert main(["train", "export", "--checkpoint", str(missing), "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"vidcorr: error: {out}: {problem}\n"


def test_train_export_of_a_value_that_is_no_tensor_names_it_in_one_line(tmp_path: Path, capsys) -> None:
    """What the key and shape comparison does not see: `load_state_dict`'s message is a header line, then
    one per problem; the problem is shown."""
    key = "encoder.backbone.conv1.weight"
    checkpoint, _ = _moco_checkpoint(tmp_path / "checkpoint.pt", {"step": 1}, **{key: 1.0})
    assert main(["train", "export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vidcorr: error: {checkpoint}: its model weights cannot be loaded: While copying the "
                          f'parameter named "{key}", expected torch.Tensor'), err
    assert err.count("\n") == 1 and not (tmp_path / "w.safetensors").exists()


def test_state_dict_mismatch_names_three_of_each_kind() -> None:
    """"N kind (a, b, c, ... and M more)", kinds in the order missing, unexpected, of another shape."""
    model = nn.ModuleDict({name: nn.Linear(2, 3, bias=False) for name in "abcde"})
    expected = model.state_dict()
    assert state_dict_mismatch(model, expected) is None
    three = {k: v for k, v in expected.items() if k != "a.weight"}
    three.update({"x": torch.zeros(1), "b.weight": torch.zeros(3, 4), "c.weight": torch.zeros(2, 3)})
    assert state_dict_mismatch(model, three) == (
        "1 missing (a.weight), 1 unexpected (x), "
        "2 of another shape (b.weight: (3, 4) in the checkpoint, (3, 2) in the model; "
        "c.weight: (2, 3) in the checkpoint, (3, 2) in the model)")
    assert state_dict_mismatch(model, {k: v for k, v in expected.items() if k in ("d.weight", "e.weight")}) == (
        "3 missing (a.weight, b.weight, c.weight)")  # exactly three: no "more"
    assert state_dict_mismatch(model, {}) == "5 missing (a.weight, b.weight, c.weight, ... and 2 more)"


# ---- io/roots --------------------------------------------------------------------------------

def test_names_held_shows_the_first_ten() -> None:
    ten = [f"s{i}" for i in range(10)]
    assert names_held(ten) == "10: " + ", ".join(ten)  # all shown: no "..."
    assert names_held([*ten, "s10"]) == "11: " + ", ".join(ten) + ", ..."
    assert names_held([]) == "0: "


def test_the_hint_names_the_first_root_inside_in_name_order_and_how_many_more(tmp_path: Path, monkeypatch) -> None:
    for name in ("z-root", "a-other", "b-root", "k-other", "m-root"):
        (tmp_path / name).mkdir()
    listed = Path.iterdir  # a folder's entries come in no set order: here, against the names' order
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(listed(self), reverse=True)))
    is_root = lambda folder: folder.name.endswith("-root")  # noqa: E731
    first = tmp_path / "b-root"
    assert misplaced_root_hint(tmp_path, is_root) == f"; {first} (and 2 more) is one: --root {first}"
    for name in ("m-root", "z-root"):
        (tmp_path / name).rmdir()
    assert misplaced_root_hint(tmp_path, is_root) == f"; {first} is one: --root {first}"


def test_the_hint_looks_four_levels_up(tmp_path: Path) -> None:
    root = tmp_path / "ROOT"
    (root / "a/b/c/d/e").mkdir(parents=True)
    is_root = lambda folder: folder == root  # noqa: E731
    assert misplaced_root_hint(root / "a/b/c/d", is_root) == f"; it lies inside the root {root}: --root {root}"
    assert misplaced_root_hint(root / "a/b/c/d/e", is_root) == ""  # five levels: not looked for
    assert misplaced_root_hint(root / "a/missing", is_root) == f"; it lies inside the root {root}: --root {root}"


# ---- io/text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_text_is_decoded_by_its_byte_order_mark(encoding: str) -> None:
    """A UTF-32 LE mark starts with the UTF-16 LE one: read as UTF-16 it would hold NULs."""
    text = "bike-packing\nélan 205\n"
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
           "utf-32-be": codecs.BOM_UTF32_BE}.get(encoding, b"")
    raw = bom + text.encode(encoding)
    assert decode_text(raw) == text
    assert has_wide_text_bom(raw) is (bom != b"")


def test_read_text_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    binary = tmp_path / "list.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    cases = ((tmp_path / "none.txt", "split list not found"),
             (binary, "unreadable split list: not UTF-8 or UTF-16 text"),
             (tmp_path, "unreadable split list ("))  # a folder: an OSError (IsADirectoryError)
    for path, message in cases:
        with pytest.raises(InputError) as error:
            read_text(path, "split list")
        assert str(error.value).startswith(f"{path}: {message}"), error.value


# ---- runtime, defaults -----------------------------------------------------------------------

def test_flush_cpu_denormals_applies_only_when_asked_and_restores_torchs_default() -> None:
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a subnormal float32
    with flush_cpu_denormals(enabled=False) as applied:
        assert applied is False and (tiny * 1).item() != 0
    with flush_cpu_denormals() as applied:
        if not applied:
            pytest.skip("this CPU cannot flush subnormals")
        assert (tiny * 1).item() == 0
    assert (tiny * 1).item() != 0  # torch's default again


def test_a_users_huge_page_setting_is_kept_without_a_malloc_setting(monkeypatch) -> None:
    monkeypatch.delenv("VIDCORR_DEFAULT_MALLOC", raising=False)
    # glibc read MALLOC_MMAP_THRESHOLD_ at start: set now, it only keeps mallopt off this process
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    bound_cpu_memory()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    monkeypatch.setenv("VIDCORR_DEFAULT_MALLOC", "0")  # only "1" opts out
    bound_cpu_memory()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"


def test_rank_roles() -> None:
    def role(rank: int, world: int) -> RankRole:
        r = RankRole()
        r.rank, r.world_size = rank, world
        return r

    assert (role(0, 1).is_main, role(0, 1).distributed) == (True, False)
    assert (role(0, 2).is_main, role(1, 2).is_main, role(1, 2).distributed) == (True, False, True)


def test_the_defaults_are_what_the_docs_call_the_default_and_the_better_floor() -> None:
    """DEFAULT_WEIGHTS: the file weights/MODEL_CARD.md heads "(the default)"; BEST_FLOOR: the untrained
    floor with the higher DAVIS-2016 J&F (first column) in docs/results.md."""
    card = (REPO_ROOT / "weights" / "MODEL_CARD.md").read_text()
    assert re.findall(r"^## `([^`]+)`.*\(the default\)", card, re.M) == [DEFAULT_WEIGHTS.name]
    assert DEFAULT_WEIGHTS.parent == REPO_ROOT / "weights" and (REPO_ROOT / "src" / "vidcorr" / "defaults.py").is_file()
    results = (REPO_ROOT / "docs" / "results.md").read_text()
    rows = dict(re.findall(r"^\| untrained floor: ([^|]+?) \| ([\d.]+)", results, re.M))
    names = {"random ResNet-18": "random-resnet18", "Lab pixels": "lab-pixels"}
    assert sorted(names[k] for k in rows) == sorted(FLOOR_NAMES)
    assert BEST_FLOOR == names[max(rows, key=lambda k: float(rows[k]))]
