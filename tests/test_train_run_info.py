"""RUN_DIR/run.json and the weights sidecar name every command that started and resumed a run;
a resume already past --max-steps says it trained nothing."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

import vidcorr
from vidcorr.cli import main
from vidcorr.train.checkpoint import load_checkpoint

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


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_no_run_json(run_args: list[str],
                                                                              tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("vidcorr.train.loop._run_stages", fail)
    with pytest.raises(RuntimeError, match="boom"):
        _train(run_args, monkeypatch)
    assert not (tmp_path / "run" / "run.json").exists()


def test_resume_past_max_steps_says_nothing_was_trained(run_args: list[str], tmp_path: Path, monkeypatch,
                                                        caplog, capsys) -> None:
    assert _train(run_args + ["--max-steps", "3"], monkeypatch) == 0
    with caplog.at_level(logging.INFO):
        assert _train(run_args + ["--resume", "--max-steps", "2"], monkeypatch) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert "already past --max-steps 2: nothing was trained" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):  # exactly at it: the deliberate way to write the weights, no remark
        assert _train(run_args + ["--resume", "--max-steps", "3"], monkeypatch) == 0
    assert "already past" not in caplog.text
