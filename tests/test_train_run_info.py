"""RUN_DIR/run.json and the weights sidecar name every command that started and resumed a run;
RUN_DIR/train.log keeps the run's log lines across resumes; a resume already past --max-steps says
it trained nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

import vidcorr
from vidcorr.cli import main
from vidcorr.methods import moco
from vidcorr.train import load_recipe, recipe_from_dict, runlog
from vidcorr.train.autoencoder import train_autoencoder
from vidcorr.train.checkpoint import Progress, export_meta, load_checkpoint, save_checkpoint, write_run_info
from vidcorr.train.distributed import DistContext
from vidcorr.train.recipe_files import CONFIG_DIR
from vidcorr.train.runlog import RunLog, TextLog

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_AE = ('extends = "autoencoder"\n[data]\ncrop = 32\nbatch_size = 2\nworkers = 0\n'
           "[stages.reconstruct]\nsteps = 6\n")


def _train(argv: list[str], monkeypatch) -> int:
    """`main(argv)` as if typed: the trainer records sys.argv as the command line."""
    monkeypatch.setattr(sys, "argv", ["vidcorr", *argv])
    return main(argv)


@pytest.fixture
def run_args(data_dir: Path, tmp_path: Path) -> list[str]:
    recipe = tmp_path / "ae.toml"
    recipe.write_text(TINY_AE)
    return ["train", "autoencoder", "--data", str(data_dir / "videos" / "davis2016-train"), "--recipe",
            str(recipe), "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "ae.safetensors")]


def test_run_json_and_sidecar_list_the_start_and_every_resume(run_args: list[str], tmp_path: Path,
                                                              monkeypatch) -> None:
    run = tmp_path / "run"
    first, second = run_args + ["--max-steps", "2"], run_args + ["--resume", "--max-steps", "3"]
    assert _train(first, monkeypatch) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["commands"] == [" ".join(["vidcorr", *first])]
    assert info["vidcorr_version"] == vidcorr.__version__
    assert info["recipe"] == load_checkpoint(run / "checkpoint.pt")["recipe"]  # as the checkpoint stores it
    assert _train(second, monkeypatch) == 0
    both = [" ".join(["vidcorr", *first]), " ".join(["vidcorr", *second])]
    assert json.loads((run / "run.json").read_text())["commands"] == both
    assert load_checkpoint(run / "checkpoint.pt")["commands"] == both  # what a third resume extends
    meta = json.loads((tmp_path / "ae.json").read_text())["meta"]
    assert meta["commands"] == both and meta["command"] == both[-1] and meta["steps"] == 3


DATED = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def test_train_log_keeps_the_lines_of_the_start_and_of_every_resume(run_args: list[str], tmp_path: Path,
                                                                    monkeypatch, capsys, caplog) -> None:
    """Lines went to stderr (and TensorBoard) only: a terminal that scrolled away, or nohup, lost them."""
    caplog.set_level(logging.INFO)  # what `vidcorr` sets up (pytest's own handlers keep it from doing so)
    recipe = tmp_path / "ae.toml"
    recipe.write_text(TINY_AE + "[log]\nevery = 1\ncheckpoint_every = 100\n")
    log = tmp_path / "run" / "train.log"
    first = run_args + ["--max-steps", "2"]
    assert _train(first, monkeypatch) == 0
    assert "%|" in capsys.readouterr().err  # the console had a tqdm bar ...
    text = log.read_text()
    assert "%|" not in text and "\r" not in text  # ... which the file has not
    lines = text.splitlines()
    assert re.fullmatch(f"===== {DATED} started: vidcorr {re.escape(' '.join(first))}", lines[0]), lines[0]
    assert all(re.match(f"{DATED} (INFO|WARNING) vidcorr[.a-z_]*: ", line) for line in lines[1:]), lines
    stamps = [line.removeprefix("===== ")[:19] for line in lines]
    assert stamps == sorted(stamps), lines  # the header is as old as the lines held before the file opened
    said = [line.split(": ", 1)[1] for line in lines[1:]]
    assert said[0].startswith(f"{recipe.resolve()}: autoencoder on 30 videos")  # a file of one's own: its path
    assert [line.split(" | ")[0] for line in said if " | " in line] == ["step 1", "step 2"]
    assert f"step 2: saved {tmp_path / 'run' / 'checkpoint.pt'}" in said
    assert said[-1] == (f"{recipe.resolve()}: stopped at step 2 (--resume continues); checkpoint "
                        f"{tmp_path / 'run' / 'checkpoint.pt'}")
    (tmp_path / "other.toml").write_text(TINY_AE.replace("crop = 32", "crop = 24"))
    refused = [a if a != str(recipe) else str(tmp_path / "other.toml") for a in run_args] + ["--resume"]
    assert _train(refused, monkeypatch) == 2  # a refused resume adds nothing
    assert log.read_text() == text
    second = [a for a in run_args if a not in ("--recipe", str(recipe))] + ["--resume"]  # the stored recipe
    assert _train(second, monkeypatch) == 0
    appended = log.read_text()
    assert appended.startswith(text + "\n")  # appended, after a blank line
    lines = appended[len(text) + 1:].splitlines()
    assert re.fullmatch(f"===== {DATED} resumed: vidcorr {re.escape(' '.join(second))}", lines[0]), lines[0]
    said = [line.split(": ", 1)[1] for line in lines[1:]]
    latest = tmp_path / "run" / "checkpoint.pt"
    assert said[0] == f"--resume without --recipe: continuing with the recipe '{recipe.resolve()}' stored in {latest}"
    assert said[1] == f"resumed {latest} at step 2 (stage 'reconstruct', epoch 0)"
    assert [line.split(" | ")[0] for line in said if " | " in line] == [f"step {i}" for i in range(3, 7)]
    assert said[-1] == f"{recipe.resolve()}: finished; checkpoint {latest}"
    assert not logging.getLogger("vidcorr").handlers  # each command took its handlers away


def test_a_recipe_file_of_ones_own_is_recorded_by_path_and_sha256_and_old_records_resume(
        run_args: list[str], tmp_path: Path, monkeypatch) -> None:
    """Runs of my/uvc.toml were recorded as the shipped `uvc` (its stem). Checkpoints of such runs
    from before hold only the stem: they resume, with the file (another path: compared by fields)
    or without --recipe (then named as stored)."""
    recipe, run, weights = tmp_path / "ae.toml", tmp_path / "run", tmp_path / "ae.json"

    def recorded(path: Path) -> dict[str, str]:
        own, shipped = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, CONFIG_DIR / "autoencoder.toml"))
        return {"path": str(path.resolve()), "sha256": own,
                "chain_sha256": hashlib.sha256(f"{own}\n{shipped}\n".encode()).hexdigest()}  # ae.toml extends it

    def stored_before_the_record() -> None:
        checkpoint = load_checkpoint(run / "checkpoint.pt")
        del checkpoint["recipe"]["file"]
        save_checkpoint(run / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k != "format"})

    assert _train(run_args + ["--max-steps", "2"], monkeypatch) == 0
    assert json.loads((run / "run.json").read_text())["recipe"]["file"] == recorded(recipe)
    assert load_checkpoint(run / "checkpoint.pt")["recipe"]["file"] == recorded(recipe)
    meta = json.loads(weights.read_text())["meta"]
    assert meta["recipe"] == str(recipe.resolve()) and meta["recipe_sha256"] == recorded(recipe)["sha256"]
    assert meta["recipe_chain_sha256"] == recorded(recipe)["chain_sha256"]
    assert meta["recipe_config"]["name"] == "ae" and meta["recipe_config"]["file"] == recorded(recipe)
    stored_before_the_record()
    moved = tmp_path / "moved" / "ae.toml"  # another path, other bytes, the same fields
    moved.parent.mkdir()
    moved.write_text("# moved\n" + recipe.read_text())
    assert _train([str(moved) if a == str(recipe) else a for a in run_args] + ["--resume", "--max-steps", "3"],
                  monkeypatch) == 0
    meta = json.loads(weights.read_text())["meta"]
    assert meta["steps"] == 3 and meta["recipe"] == str(moved.resolve())
    assert meta["recipe_sha256"] == recorded(moved)["sha256"] != recorded(recipe)["sha256"]
    stored_before_the_record()
    assert _train([a for a in run_args if a not in ("--recipe", str(recipe))] + ["--resume"], monkeypatch) == 0
    meta = json.loads(weights.read_text())["meta"]
    assert meta["steps"] == 6 and meta["recipe"] == "ae" and "recipe_sha256" not in meta  # all it holds
    assert "recipe_chain_sha256" not in meta


def test_a_shipped_recipe_is_recorded_by_its_name() -> None:
    recipe = load_recipe("autoencoder")
    meta = export_meta(Path("runs/x"), recipe, None, Progress())
    assert meta["recipe"] == "autoencoder" and "recipe_sha256" not in meta and "file" not in meta["recipe_config"]


def test_run_json_is_strict_json(tmp_path: Path) -> None:
    """A NaN [model] value (a recipe built in code; recipe files refuse one) went into run.json as
    Python's NaN token, which strict JSON readers refuse: refused before writing, the earlier file kept."""
    recipe = load_recipe("uvc-cpu")
    path = write_run_info(tmp_path, recipe, ["vidcorr train uvc"])
    before = path.read_text()
    assert json.loads(before)["recipe"] == recipe.to_dict()
    with pytest.raises(ValueError, match="JSON"):
        write_run_info(tmp_path, recipe.replace(model={**recipe.model, "temperature": float("nan")}), ["again"])
    assert path.read_text() == before


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_no_run_json(run_args: list[str],
                                                                              tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("vidcorr.train.loop._run_stages", fail)
    with pytest.raises(RuntimeError, match="boom"):
        _train(run_args, monkeypatch)
    assert not (tmp_path / "run").exists()  # no run.json, no train.log
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.log").write_text("a log of one's own\n")  # its lines: taken back
    with pytest.raises(RuntimeError, match="boom"):
        _train(run_args, monkeypatch)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["train.log"]
    assert (tmp_path / "run" / "train.log").read_text() == "a log of one's own\n"


def test_resume_past_max_steps_says_nothing_was_trained(run_args: list[str], tmp_path: Path, monkeypatch,
                                                        caplog, capsys) -> None:
    assert _train(run_args + ["--max-steps", "3"], monkeypatch) == 0
    with caplog.at_level(logging.INFO):
        assert _train(run_args + ["--resume", "--max-steps", "2"], monkeypatch) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert "already past --max-steps 2: nothing was trained" in caplog.text
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"WARNING vidcorr.train.loop: {warning}\n" in (tmp_path / "run" / "train.log").read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO):  # exactly at it: the deliberate way to write the weights, no remark
        assert _train(run_args + ["--resume", "--max-steps", "3"], monkeypatch) == 0
    assert "already past" not in caplog.text


@pytest.mark.parametrize("commands, kept", [
    (["vidcorr train moco a", "vidcorr train moco a --resume"], True),
    (["vidcorr train moco a", 7], False),  # the export's own reader took this list as it came
    ("vidcorr train moco a", False),
    (None, False),  # a checkpoint from before the command lines were recorded
])
def test_export_reads_the_command_lines_as_a_resume_does(tmp_path: Path, caplog, capsys, commands, kept) -> None:
    """`train export` read the command lines with a looser copy of the resume's reader (a list of
    anything was written to the sidecar); the one reader's warning says the entry is ignored, not
    that a list is started anew, which only a resume does."""
    recipe = load_recipe("moco-cpu")
    config = moco.config_for_recipe(recipe.base, recipe.model)
    checkpoint = {"model": moco.MoCo(config).state_dict(), "progress": vars(Progress(step=4, stage=1)),
                  "recipe": recipe.replace(model=config.to_dict()).to_dict()}
    if commands is not None:
        checkpoint["commands"] = commands
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", checkpoint)
    with caplog.at_level(logging.WARNING):
        assert main(["train", "export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                     "--out", str(tmp_path / "w.safetensors")]) == 0
    assert "at step 4 (the run's end)" in capsys.readouterr().out
    meta = json.loads((tmp_path / "w.json").read_text())["meta"]
    assert meta.get("commands") == (commands if kept else None) and meta["steps"] == 4 and meta["finished"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    malformed = commands is not None and not kept
    assert warned == ([f"{tmp_path / 'run' / 'checkpoint.pt'}: its 'commands' entry is not a list of "
                       "command lines; ignored"] if malformed else [])


class _Console(logging.Handler):
    """What the root's handlers (a console) receive."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("root_level", [logging.WARNING, logging.INFO])
def test_train_log_from_python_holds_the_info_lines_whatever_the_console_shows(
        data_dir: Path, tmp_path: Path, root_level: int) -> None:
    """Called from Python without INFO logging configured (the root's WARNING), train.log held the
    start and end lines alone: the package's INFO records never reached its handler. The console
    (the root's handlers) gets what it got before; at INFO (the command line) nothing is changed."""
    package, root, console = logging.getLogger("vidcorr"), logging.getLogger(), _Console()
    during: list[tuple[int, bool]] = []

    def on_step(progress, terms) -> None:
        during.append((package.level, package.propagate))
        logging.getLogger("vidcorr.test").info("an info line at step %d", progress.step)
        logging.getLogger("vidcorr.test").warning("a warning at step %d", progress.step)

    recipe = recipe_from_dict({"method": "autoencoder", "data": {"crop": 32, "batch_size": 2, "workers": 0},
                               "stages": {"reconstruct": {"steps": 2}}, "log": {"every": 1}}, "tiny")
    former = root.level
    root.setLevel(root_level)
    root.addHandler(console)
    try:
        train_autoencoder(recipe, [data_dir / "videos" / "davis2016-train"], tmp_path / "run",
                          tmp_path / "ae.safetensors", cache_dir=tmp_path / "cache", progress_bar=False,
                          on_step=on_step)
    finally:
        root.removeHandler(console)
        root.setLevel(former)
    said = [line.split(": ", 1)[1] for line in (tmp_path / "run" / "train.log").read_text().splitlines()[1:]]
    assert [line.split(" | ")[0] for line in said if " | " in line] == ["step 1", "step 2"]
    assert f"step 2: saved {tmp_path / 'run' / 'checkpoint.pt'}" in said
    assert "an info line at step 1" in said and "a warning at step 2" in said
    shown = [r.getMessage() for r in console.records if r.name.startswith("vidcorr")]
    assert ("a warning at step 1" in shown and "a warning at step 2" in shown
            and ("an info line at step 1" in shown) == (root_level == logging.INFO))
    assert all(r.levelno >= root_level for r in console.records if r.name.startswith("vidcorr"))
    assert during == ([(logging.INFO, False)] * 2 if root_level == logging.WARNING else [(logging.NOTSET, True)] * 2)
    assert (package.level, package.propagate, package.handlers) == (logging.NOTSET, True, [])  # as before


def test_warnings_reach_stderr_while_a_run_logs_with_no_logging_configured(tmp_path: Path, capfd) -> None:
    """A script that configures no logging sees the package's warnings on stderr (Python's
    `logging.lastResort`); while train.log was open the package logger's own handlers hid them."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a plain script: pytest's capture handlers removed
    try:
        with TextLog(tmp_path, enabled=True):
            logging.getLogger("vidcorr.train.loop").warning("loss is not finite")
            logging.getLogger("vidcorr.train.loop").info("an info line")
    finally:
        root.handlers[:] = saved
    err = capfd.readouterr().err
    assert "loss is not finite" in err and "an info line" not in err


def test_the_header_of_a_session_is_as_old_as_its_first_held_line(tmp_path: Path, caplog) -> None:
    """The dated header was stamped when the file opened, after indexing: the lines held before it
    (indexing a large folder: minutes) were written under a header later than themselves."""
    caplog.set_level(logging.INFO)
    with TextLog(tmp_path, enabled=True) as text:
        logging.getLogger("vidcorr.train.loop").info("indexed 30 videos")
        text._held.buffer[0].created -= 3600  # as if indexing had taken an hour
        text.open("vidcorr train autoencoder", resumed=False)
    header, line = (tmp_path / "train.log").read_text().splitlines()
    assert header.startswith("===== ") and line.endswith("indexed 30 videos")
    assert header[6:25] == line[:19] != datetime.now().strftime("%Y-%m-%d %H:%M:%S"), (header, line)


def test_a_loss_line_gives_the_total_loss_first(tmp_path: Path, caplog) -> None:
    """The total sat among the terms in alphabetical order ("colour 3.2264 loss 3.5952 orthogonal
    3.1108 ..."), where UVC's eight terms hid it; it now comes first, then the terms."""
    run = RunLog(tmp_path, DistContext(0, 1, 0, torch.device("cpu")), Progress(), every=2, progress_bar=False)
    terms = [{"box_size": 4.0, "colour": 1.0, "loss": 2.0, "orthogonal": 3.0, "skipped_videos": 0.0},
             {"box_size": 2.0, "colour": 3.0, "loss": 4.0, "orthogonal": 1.0, "skipped_videos": 0.0}]
    with caplog.at_level(logging.INFO, logger="vidcorr.train.runlog"):
        for step, step_terms in enumerate(terms, 1):
            run.step(Progress(step=step), step_terms, 1e-4, "joint", 2)
    run.close()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("step 2 | joint epoch 0 | loss 3.0000 | box_size 3.0000 colour 2.0000 orthogonal "
                           "2.0000 | lr 1.00e-04 | "), line


def test_the_first_lines_throughput_leaves_out_the_loaders_start_up(tmp_path: Path, caplog, monkeypatch) -> None:
    """A stage's first line counted the loader's start-up (its workers, their imports, the first batch):
    0.4 samples/s on a tiny CPU run where the next lines said 6. Its clock starts at the first batch."""
    now = [100.0]
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: now[0])
    run = runlog.RunLog(tmp_path, DistContext(0, 1, 0, torch.device("cpu")), Progress(), every=1, progress_bar=False)
    terms = {"loss": 1.0, "skipped_videos": 0.0}
    with caplog.at_level(logging.INFO, logger="vidcorr.train.runlog"):
        for stage in ("warmup", "joint"):
            run.stage_started(stage, total=2, done=0, step=0, run_end=4)
            now[0] += 10.0  # the workers start
            for step in (1, 2):
                run.batch_arrived()
                now[0] += 0.5 if step == 1 else 0.25  # the step; the second batch came waiting
                run.step(Progress(step=step), terms, 1e-4, stage, 4)
    run.close()
    rates = [re.search(r"\| ([\d.]+) samples/s", r.getMessage())[1] for r in caplog.records]
    assert rates == ["8.0", "16.0", "8.0", "16.0"], rates
