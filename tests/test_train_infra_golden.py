"""Golden tests of the training infrastructure: learning-rate schedules against a naive reference
(METHODS.md §1.8, §4.5), recipe field ranges and what a resume must share, recipe files (names,
extends lookup and loops, drop_stages), the strict-dict checks, the run log (loss lines, train.log,
TensorBoard purge), the signal handlers and the lines a stopped run ends with, what feeds the steps
(samples per video, stage lengths, the DDP stop agreement) and the loader workers' excepthook.
Written from a mutation audit: each test fails on a hand-made mutant the suite let through."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest
import torch

from vidcorr import strict_dict
from vidcorr.data import ShardedSampler, VideoInfo
from vidcorr.data.videos import VideoIndex
from vidcorr.errors import InputError, VidcorrError
from vidcorr.strict_dict import (
    POSITIVE_INTEGER,
    check_settings,
    check_types,
    dataclass_from_dict,
    one_of,
    or_none,
    plain,
    refuse_non_finite,
    refuse_out_of_range,
)
from vidcorr.train import StageConfig, endings, feed, learning_rate, load_recipe, runlog, stage_steps
from vidcorr.train.checkpoint import Progress
from vidcorr.train.config import CpuConfig, CudaConfig, LogConfig
from vidcorr.train.distributed import DistContext
from vidcorr.train.feed import filling_a_batch, loader, stage_lengths
from vidcorr.train.interrupt import StopAtOnce, StopSignals, WaitAbandoned, stopped_at_once
from vidcorr.train.recipe_files import CONFIG_DIR, cpu_counterpart, recipe_path
from vidcorr.train.runlog import RunLog, TextLog
from vidcorr.train.workers import _quiet_broken_hand_over

from test_train_config import _child_of_t20

# ----------------------------------------------------------------------------------------------
# Schedules


def _naive_rate(lr: float, schedule: str, unit: int, horizon: int, power: float = 0.9, floor: float = 0.0,
                warmup: int = 0, warmup_ratio: float = 0.001) -> float:
    """The rate at schedule unit ``unit`` (an epoch, or a step), written from the sources' formulas:
    UVC's ``lr (1 - e / nepoch) ** power`` (METHODS.md §1.8), mmcv's cosine annealing to
    ``floor * lr`` and its linear warm-up ``regular * (1 - (1 - i / w) * (1 - ratio))`` (§4.5)."""
    t = min(unit, horizon) / horizon
    if schedule == "poly":
        regular = lr * (1 - t) ** power
    elif schedule == "cosine":
        regular = floor * lr + (lr - floor * lr) * (1 + math.cos(math.pi * t)) / 2
    else:
        regular = lr
    if unit < warmup:
        regular *= 1 - (1 - unit / warmup) * (1 - warmup_ratio)
    return regular


@pytest.mark.parametrize("kwargs", [
    dict(epochs=4, schedule="poly", power=2.0),  # a power of its own, not UVC's 0.9
    dict(epochs=3, schedule="poly", power=0.9),  # no decay_over: the horizon is the stage's 3 epochs
    dict(epochs=5, schedule="cosine", min_lr_ratio=0.1, warmup=2, warmup_ratio=0.25),  # warm-up in epochs
    dict(steps=12, schedule="poly", power=1.0, decay_over=8),  # stays at 0 after its horizon
    dict(steps=10, schedule="constant", warmup=4, warmup_ratio=0.5),
])
def test_every_step_of_a_stage_follows_the_naive_schedule(kwargs: dict) -> None:
    stage = StageConfig("s", lr=0.2, **kwargs)
    per_epoch = 3
    by_epoch = "epochs" in kwargs
    length = kwargs.get("epochs") or kwargs["steps"]
    horizon = kwargs.get("decay_over") or length
    assert stage_steps(stage, per_epoch) == (length * per_epoch if by_epoch else length)
    for step in range(stage_steps(stage, per_epoch)):
        unit = step // per_epoch if by_epoch else step  # an epoch-based stage moves once an epoch, warm-up too
        expected = _naive_rate(0.2, kwargs["schedule"], unit, horizon, kwargs.get("power", 0.9),
                               kwargs.get("min_lr_ratio", 0.0), kwargs.get("warmup", 0),
                               kwargs.get("warmup_ratio", 0.001))
        assert learning_rate(stage, step, per_epoch) == pytest.approx(expected, rel=1e-12, abs=1e-15), step


# ----------------------------------------------------------------------------------------------
# Recipe fields out of range: refused when the file is read, naming the file and the key


@pytest.mark.parametrize("text, message", [
    ("[stages.joint]\nwarmup_ratio = 1.5", "stage 'joint': warmup_ratio = 1.5: must be in [0, 1]"),
    ("[stages.joint]\nmin_lr_ratio = -0.1", "stage 'joint': min_lr_ratio = -0.1: must be in [0, 1]"),
    ("[stages.joint]\nwarmup = -1", "stage 'joint': warmup = -1: must be >= 0"),
    ("[stages.joint]\nsteps = 0", "stage 'joint': steps = 0: must be at least 1"),
    ("[stages.joint]\nepochs = 0", "stage 'joint': epochs = 0: must be at least 1"),
    ("[stages.joint]\nlr = 0", "stage 'joint': lr = 0: must be > 0"),
    ("[stages.joint]\ndecay_over = 0", "stage 'joint': decay_over = 0: must be at least 1"),
    ("[data]\ngap = [0, 2]", "[data] gap = [0.0, 2.0]: must be [low, high] with 0 < low <= high"),
    ("[data]\nfolder_fps = 0", "[data] folder_fps = 0: must be > 0"),  # named alone, not with workers
    ("[data]\nworkers = -1", "[data] workers = -1: must be >= 0"),
    ("[data]\ncrop = 0", "[data] crop = 0: must be at least 1"),
    ("[optim]\nbetas = [0.9, 1.0]", "[optim] betas = [0.9, 1.0]: must be two numbers in [0, 1)"),
    ("[log]\ncheckpoint_every = 0", "[log] checkpoint_every = 0: intervals are in steps, at least 1"),
    ("seed = 2147483648", "seed = 2147483648: must be in [0, 2**31)"),
    ('[data]\ngap_unit = "second"', "[data] gap_unit must be 'frames' or 'seconds'"),
])
def test_a_value_at_the_edge_outside_its_range_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = _child_of_t20(tmp_path, text)
    with pytest.raises(InputError) as error:
        load_recipe(path)
    assert error.value.path == path and message in error.value.problem, error.value.problem


def test_the_values_at_the_edges_inside_their_ranges_load(tmp_path: Path) -> None:
    recipe = load_recipe(_child_of_t20(tmp_path, "seed = 2147483647\n[data]\ngap = [1, 1]\n[stages.joint]\nsteps = 1\n"
                                          "warmup_ratio = 1.0\nmin_lr_ratio = 1.0\ndecay_over = 1"))
    assert recipe.seed == 2**31 - 1 and recipe.data.gap == (1.0, 1.0)
    assert (recipe.stages[1].steps, recipe.stages[1].warmup_ratio, recipe.stages[1].decay_over) == (1, 1.0, 1)


# ----------------------------------------------------------------------------------------------
# What a resume must share with the original run (Recipe.trajectory_dict), and the device switch


def test_a_resume_may_change_workers_intervals_threads_and_names_but_not_the_trajectory() -> None:
    """docs/training.md: [cpu], [cuda], [log], the worker count, the name and the file only reorder
    float arithmetic or say where the run came from; init is compared by its sha256, not its path."""
    base = load_recipe("uvc-cpu").replace(init={"weights": "/a/w.safetensors", "sha256": "ab"})
    same = base.replace(name="other", data=dataclasses.replace(base.data, workers=5), log=LogConfig(every=3),
                        cpu=CpuConfig(threads=2), init={"weights": "/b/moved.safetensors", "sha256": "ab"},
                        file={"path": "/x/r.toml", "sha256": "cd", "chain_sha256": "ef"})
    assert same.trajectory_dict() == base.trajectory_dict()
    assert base.trajectory_dict()["init"] == "ab" and "workers" not in base.trajectory_dict()["data"]
    for other in (base.replace(init={"weights": "/a/w.safetensors", "sha256": "00"}), base.replace(seed=1),
                  base.replace(data=dataclasses.replace(base.data, samples_per_video=5)),
                  base.replace(stages=(dataclasses.replace(base.stages[0], lr=2e-4), base.stages[1]))):
        assert other.trajectory_dict() != base.trajectory_dict()


def test_bf16_autocast_follows_the_device_trained_on() -> None:
    recipe = load_recipe("uvc-cpu").replace(cuda=CudaConfig(bf16=True), cpu=CpuConfig(bf16=False))
    assert recipe.autocast_bf16("cuda") is True and recipe.autocast_bf16("cpu") is False
    flipped = recipe.replace(cuda=CudaConfig(bf16=False), cpu=CpuConfig(bf16=True))
    assert flipped.autocast_bf16("cuda") is False and flipped.autocast_bf16("cpu") is True


# ----------------------------------------------------------------------------------------------
# strict_dict: the checks every config shares, on a config of the test's own


@dataclass
class _Typed:  # at module level: `typing.get_type_hints` resolves the annotations here
    size: int = 1
    scale: float = 1.0
    mode: Literal[1, "a"] = 1
    pair: tuple[int, float] = (1, 1.0)
    many: tuple[int, ...] = ()
    limit: int | None = None


def test_typed_fields_take_exactly_what_their_annotations_allow() -> None:
    Toy = _Typed
    for key, value in [("size", 3), ("scale", 2), ("scale", 0.5), ("mode", 1), ("mode", "a"), ("pair", [2, 3]),
                       ("pair", (2, 0.5)), ("many", [1, 2, 3]), ("many", []), ("limit", None), ("limit", 4)]:
        check_types(Toy, {key: value}, "[toy]")  # no error
    for key, value, message in [
            ("size", True, "[toy] size = true: expected an integer"),  # a bool is an int to Python
            ("size", 2.0, "[toy] size = 2.0: expected an integer"),
            ("scale", False, "[toy] scale = false: expected a number"),
            ("mode", True, '[toy] mode = true: expected 1 or "a"'),  # True == 1, but not of its type
            ("mode", 1.0, '[toy] mode = 1.0: expected 1 or "a"'),
            ("pair", [1, 2, 3], "[toy] pair = [1, 2, 3]: expected a list [an integer, a number]"),
            ("pair", [1.5, 2], "[toy] pair = [1.5, 2]: expected a list [an integer, a number]"),
            ("many", [1, True], "[toy] many = [1, true]: expected a list of integers"),
            ("limit", 1.5, "[toy] limit = 1.5: expected an integer (or left out)")]:
        with pytest.raises(ValueError) as error:
            check_types(Toy, {key: value}, "[toy]")
        assert str(error.value) == message


def test_unknown_keys_are_named_with_whose_they_are_and_what_is_known() -> None:
    @dataclass
    class Toy:
        size: int = 1
        scale: float = 1.0

    assert dataclass_from_dict(Toy, {"scale": 2.0}, "toy config") == Toy(1, 2.0)  # missing: the default
    with pytest.raises(ValueError) as error:
        dataclass_from_dict(Toy, {"sise": 2, "zz": 1, "size": 3}, "toy config")
    assert str(error.value) == "unknown toy config keys ['sise', 'zz']; known: ['scale', 'size']"


def test_every_failing_settings_rule_is_named_with_its_value() -> None:
    settings = SimpleNamespace(lam=0.0, sigma=-1, width=3)
    with pytest.raises(ValueError) as error:
        check_settings("toy", settings, {"lam": ("positive", settings.lam > 0),
                                         "sigma": ("positive", settings.sigma > 0),
                                         "width": ("odd", settings.width % 2 == 1)})
    assert str(error.value) == "invalid toy settings: lam must be positive, got 0.0; sigma must be positive, got -1"


@pytest.mark.parametrize("rule, good, bad", [
    ("POSITIVE_INTEGER", [1, 7], [0, -1, True, 1.0]),
    ("NON_NEGATIVE_INTEGER", [0, 3], [-1, False, 0.0]),
    ("POSITIVE_NUMBER", [1e-9, 2, 0.5], [0, 0.0, -1.0, float("inf"), float("nan"), True]),
])
def test_value_rules_at_their_edges(rule: str, good: list, bad: list) -> None:
    _what, ok = getattr(strict_dict, rule)
    assert all(ok(v) for v in good) and not any(ok(v) for v in bad)


def test_one_of_or_none_and_the_range_error_label() -> None:
    what, ok = one_of(("a", 1))
    assert what == "'a' or 1" and ok("a") and ok(1) and not ok(True) and not ok(1.0) and not ok("b")
    what, ok = or_none(POSITIVE_INTEGER)
    assert what == "a positive integer or None" and ok(None) and ok(2) and not ok(0)

    @dataclass
    class Toy:
        size: int = 0

    with pytest.raises(ValueError) as error:
        refuse_out_of_range(Toy(), {"size": POSITIVE_INTEGER})
    assert str(error.value) == "Toy size: expected a positive integer, got 0"
    with pytest.raises(ValueError) as error:
        refuse_out_of_range(Toy(), {"size": POSITIVE_INTEGER}, label="[toy]")
    assert str(error.value) == "[toy] size: expected a positive integer, got 0"


def test_plain_makes_nested_tuples_lists_and_non_finite_tuple_items_are_refused() -> None:
    assert plain({"a": (1, (2, 3)), "b": [{"c": (4,)}]}) == {"a": [1, [2, 3]], "b": [{"c": [4]}]}
    assert type(plain((1,))) is list

    @dataclass
    class Toy:
        pair: tuple[float, float] = (1.0, 2.0)

    refuse_non_finite(Toy())
    with pytest.raises(ValueError, match=r"^\[toy\] pair = \[1.0, inf\]: expected a finite number$"):
        refuse_non_finite(Toy((1.0, float("inf"))), "[toy]")


# ----------------------------------------------------------------------------------------------
# The run log: loss lines and RUN_DIR/train.log


def test_loss_lines_average_the_steps_since_the_last_line(tmp_path: Path, caplog, monkeypatch) -> None:
    """A line every `every` steps (step % every == 0), each term the mean of the steps since the last
    line (after a resume at step 1: steps 2 and 3 only), samples/s those steps' samples over their time."""
    now = [50.0]
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: now[0])
    run = runlog.RunLog(tmp_path, DistContext(0, 1, 0, torch.device("cpu")), Progress(step=1, wall_time=7.0),
                        every=3, progress_bar=False)
    run.stage_started("joint", total=10, done=1, step=1, run_end=16)  # a 6-step stage follows: the run ends at 16
    with caplog.at_level(logging.INFO, logger="vidcorr.train.runlog"):
        for step in range(2, 8):
            run.batch_arrived()
            now[0] += 2.0
            run.step(Progress(step=step, epoch=1, skipped_videos=step // 3),
                     {"loss": float(step), "colour": 10.0 * step, "skipped_videos": 1.0}, 2.5e-5, "joint", 4)
    assert run.wall_time() == pytest.approx(7.0 + 12.0)  # the earlier sessions' 7 s, and this one's
    run.close()
    assert [r.getMessage() for r in caplog.records] == [
        # steps 2, 3: 2 steps x 4 samples in 4 s (the window starts at the stage's first batch); 2 s a
        # step: 7 steps left in the stage (to 10), 13 in the run (to 16)
        "step 3 | joint epoch 1 | loss 2.5000 | colour 25.0000 | lr 2.50e-05 | 2.0 samples/s | 0:14 left in the "
        "stage, ~0:26 in the run | unreadable draws 1",
        # steps 4, 5, 6: 3 x 4 samples in 6 s; 4 and 10 steps left
        "step 6 | joint epoch 1 | loss 5.0000 | colour 50.0000 | lr 2.50e-05 | 2.0 samples/s | 0:08 left in the "
        "stage, ~0:20 in the run | unreadable draws 2"]


def test_the_bar_counts_to_where_the_run_stops(tmp_path: Path) -> None:
    """With --max-steps inside a stage the bar counted to the stage's full length (and its time left
    was that of steps never taken): a stage of 3000 steps resumed at its step 5 (run step 4005) of a
    run stopping at step 4010 counts 5 to 10; a stage the run finishes counts to its own length."""
    run = runlog.RunLog(tmp_path, DistContext(0, 1, 0, torch.device("cpu")), Progress(), every=2, progress_bar=True)
    run.stage_started("warmup", total=4000, done=0, step=0, run_end=7000)
    assert (run.bar.total, run.bar.n, run.bar.desc) == (4000, 0, "warmup")
    run.stage_started("joint", total=3000, done=5, step=4005, run_end=4010)
    assert (run.bar.total, run.bar.n, run.bar.desc) == (10, 5, "joint (to 10 of 3000: --max-steps)")
    run.close()


def test_the_time_left_is_the_stages_and_the_runs_at_the_last_lines_step_time(tmp_path: Path, caplog,
                                                                              monkeypatch) -> None:
    """Lines had no ETA. The last stage (or one that --max-steps ends) says its time left alone; the
    bar, which shows the stage's itself, adds the run's where later stages follow."""
    now = [0.0]
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: now[0])
    run = runlog.RunLog(tmp_path, DistContext(0, 1, 0, torch.device("cpu")), Progress(), every=2, progress_bar=True)
    run.stage_started("warmup", total=4000, done=0, step=0, run_end=7000)
    run.batch_arrived()
    with caplog.at_level(logging.INFO, logger="vidcorr.train.runlog"):
        for step in (1, 2):
            now[0] += 1.5
            run.step(Progress(step=step), {"loss": 1.0}, 1e-4, "warmup", 2)
        assert run.bar.postfix == "loss=1.0000, run_left=2:54:57"  # 6998 steps x 1.5 s
        run.stage_started("joint", total=3000, done=0, step=4000, run_end=4010)  # --max-steps 4010
        run.batch_arrived()
        for step in (4001, 4002):
            now[0] += 30.0
            run.step(Progress(step=step), {"loss": 1.0}, 1e-4, "joint", 2)
        assert run.bar.postfix == "loss=1.0000"  # the run ends with the stage: the bar's own time left says it
    run.close()
    assert [r.getMessage().split(" | ")[-2] for r in caplog.records] == [
        "1:39:57 left in the stage, ~2:54:57 in the run",  # 3998 and 6998 steps x 1.5 s
        "4:00 left"]  # 8 steps x 30 s, to --max-steps


def test_train_log_sessions_append_after_a_blank_line_and_a_discard_takes_back_only_its_own(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    logger = logging.getLogger("vidcorr.train.loop")
    with TextLog(tmp_path, enabled=True) as text:
        text.open("vidcorr train a", resumed=False)
        logger.info("first session")
    first = path.read_text()
    assert first.splitlines()[0].endswith(" started: vidcorr train a") and first.endswith(": first session\n")
    with TextLog(tmp_path, enabled=True) as text:
        text.open("vidcorr train a --resume", resumed=True)
        logger.info("second session")
    second = path.read_text()
    assert second.startswith(first + "\n=====") and " resumed: vidcorr train a --resume\n" in second
    with TextLog(tmp_path, enabled=True) as text:  # a resume refused after the file opened: its lines go
        text.open("vidcorr train a --resume", resumed=True)
        logger.info("third session")
        text.discard()
    assert path.read_text() == second
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with TextLog(fresh, enabled=True) as text:  # a fresh run taken back: no file at all
        text.open("vidcorr train b", resumed=False)
        logger.info("gone")
        text.discard()
    assert not (fresh / "train.log").exists()


# ----------------------------------------------------------------------------------------------
# Signals: the handlers (StopSignals) and the lines a stopped run ends with (endings)


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")  # also under `nohup ... &`, where SIGINT is ignored
def test_a_first_signal_waits_for_the_boundary_and_a_second_stops_at_once() -> None:
    """Before `training` a signal stops at once; after it the first is a request (breaking off only
    a wait for a batch), the second stops at once and gives the handlers back."""
    before = signal.getsignal(signal.SIGINT)
    with StopSignals(announce=False) as stop:
        with pytest.raises(StopAtOnce):
            signal.raise_signal(signal.SIGINT)  # still building: nothing worth a checkpoint
        assert signal.getsignal(signal.SIGINT) is before  # given back at once
    with StopSignals(announce=False) as stop:
        stop.training()
        with stop.abandoning():  # a batch that arrives: the wait ends normally
            pass
        signal.raise_signal(signal.SIGTERM)  # outside a wait: noted, nothing raised
        assert stop.signal == signal.SIGTERM and stop.requested
        with pytest.raises(WaitAbandoned), stop.abandoning():  # no wait begun once a stop was asked for
            pytest.fail("a wait was begun after the request")
        with pytest.raises(StopAtOnce) as second:
            signal.raise_signal(signal.SIGINT)
        assert second.value.signal == signal.SIGINT and signal.getsignal(signal.SIGINT) is before
    with StopSignals(announce=False) as stop:
        stop.training()
        with pytest.raises(WaitAbandoned), stop.abandoning():  # a signal during a wait breaks it off
            signal.raise_signal(signal.SIGINT)
        assert stop.signal == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")  # also under `nohup ... &`, where SIGINT is ignored
def test_a_second_signal_held_by_a_shelter_gives_the_handlers_back_as_it_stops() -> None:
    """The stop at once at the end of a `sheltered` section gives the handlers back like any other,
    so that a third signal (a hung clean-up) gets the default one."""
    before = signal.getsignal(signal.SIGINT)
    with StopSignals(announce=False) as stop:
        stop.training()
        with pytest.raises(StopAtOnce), stop.sheltered():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")  # also under `nohup ... &`, where SIGINT is ignored
def test_an_ignored_signal_stays_ignored() -> None:
    """SIGINT in a background job (`cmd &`) is ignored: training must not start answering it."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with StopSignals(announce=False):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.default_int_handler)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(tmp_path: Path, step: int, stage: int, stage_step: int, signum, interrupted: bool = True,
         checkpoint: bool = True):
    """The parts of `loop._Run` that `endings` reads."""
    if checkpoint:
        (tmp_path / "checkpoint.pt").write_bytes(b"")
    stages = [SimpleNamespace(name="warmup"), SimpleNamespace(name="joint")]
    return SimpleNamespace(job=SimpleNamespace(run_dir=tmp_path, recipe=SimpleNamespace(stages=stages), max_steps=9),
                           progress=SimpleNamespace(step=step, stage=stage, stage_step=stage_step, epoch=2),
                           stop=SimpleNamespace(signal=signum), interrupted=interrupted)


def test_the_interrupted_line_names_the_stage_boundary_or_step_and_the_checkpoint(tmp_path: Path) -> None:
    latest = tmp_path / "checkpoint.pt"
    mid = endings.interrupted(_run(tmp_path, 7, 1, 3, signal.SIGINT))
    assert str(mid) == (f"interrupted by SIGINT at step 7 of stage 'joint'; checkpoint written to {latest}; "
                        "resume with --resume")
    assert mid.signal == signal.SIGINT and mid.exit_code == 130 and mid.at_boundary
    end = endings.interrupted(_run(tmp_path, 4, 1, 0, signal.SIGTERM, interrupted=False))  # stage 1 just began
    assert "at step 4, the end of stage 'warmup';" in str(end) and end.exit_code == 143 and not end.at_boundary
    other = endings.interrupted(_run(tmp_path, 5, 1, 1, None))  # DDP: another rank got the signal
    assert str(other).startswith("interrupted by a signal to another rank at step 5 of stage 'joint'")
    assert other.signal == signal.SIGTERM
    first = endings.interrupted(_run(tmp_path / "none", 0, 0, 0, signal.SIGINT, checkpoint=False))
    assert str(first) == "interrupted by SIGINT before the first step; no checkpoint was written"


def test_the_divergence_and_late_signal_lines(tmp_path: Path) -> None:
    latest = tmp_path / "checkpoint.pt"
    run = _run(tmp_path, 12, 1, 3, signal.SIGINT)
    message = endings.divergence_message(run, "joint", {"loss": float("nan"), "colour": 1.23456, "skipped_videos": 2.0})
    assert message == ("non-finite loss at step 13 (stage 'joint', epoch 2): loss=nan, colour=1.235; training "
                       f"stopped before the update, the last good checkpoint is {latest} (resume with --resume, "
                       "perhaps with a lower lr)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert endings.divergence_message(_run(empty, 0, 0, 0, None, checkpoint=False), "warmup", {"loss": 1.0}).endswith(
        "training stopped before the update, no checkpoint was written yet")
    assert endings.ended_anyway(run, True, None) == (
        f"SIGINT came after the run's last step had begun: the run is complete; checkpoint written to {latest}")
    assert endings.ended_anyway(run, False, tmp_path / "e.safetensors") == (
        "SIGINT came after the run's last step had begun: it stopped there at max_steps (9) as asked "
        f"(--resume continues); checkpoint written to {latest}; exported {tmp_path / 'e.safetensors'}")
    assert str(stopped_at_once(signal.SIGTERM, latest)) == (
        f"interrupted by SIGTERM and stopped at once; the last checkpoint, {latest}, is intact (resume with --resume)")
    assert str(stopped_at_once(signal.SIGINT, empty / "checkpoint.pt")).endswith("; no checkpoint was written")


# ----------------------------------------------------------------------------------------------
# What feeds the steps: samples per video raised to fill a batch, stage lengths, the stop agreement


def _ctx(rank: int = 0, world: int = 1):
    return DistContext(rank, world, rank, torch.device("cpu"))


def _sized(batch: int, samples_per_video: int, stages: tuple = ()):
    recipe = load_recipe("uvc-cpu")
    return recipe.replace(data=dataclasses.replace(recipe.data, batch_size=batch, samples_per_video=samples_per_video),
                          stages=stages or recipe.stages)


@pytest.mark.parametrize("videos, per_video, batch, world, expected", [
    (3, 1, 8, 1, 3),  # 3 samples < a batch of 8: ceil(8 / 3) = 3 of each video
    (1, 1, 8, 2, 8),  # each of 2 processes needs 4: 8 samples of the one video, 4 a process
    (5, 1, 6, 2, 1),  # 5 samples padded to 3 a process, a batch of 3 each: enough already
    (2, 4, 8, 1, 4),  # exactly one batch: enough
    (4, 1, 16, 4, 4),  # 1 sample a process, batches of 4: ceil(16 / 4) = 4 of each video
])
def test_samples_per_video_are_raised_only_where_an_epoch_would_not_fill_a_batch(
        videos: int, per_video: int, batch: int, world: int, expected: int) -> None:
    for rank in range(world):
        filled = filling_a_batch(_sized(batch, per_video), videos, _ctx(rank, world))
        assert filled.data.samples_per_video == expected
        per_rank = -(-videos * expected // world)  # padded shards, as the sampler deals them
        assert per_rank >= batch // world


@pytest.mark.parametrize("videos, per_video, batch, world, per_epoch", [
    (10, 2, 4, 1, 5),  # 20 samples, batches of 4
    (10, 2, 4, 2, 5),  # 10 samples a process, batches of 2
    (7, 1, 2, 2, 4),  # 7 padded to 4 a process, batches of 1
    (10, 1, 3, 1, 3),  # 10 samples: 3 whole batches, the last sample dropped
])
def test_stage_lengths_count_whole_batches_of_this_process(videos: int, per_video: int, batch: int, world: int,
                                                           per_epoch: int) -> None:
    recipe = _sized(batch, per_video, (StageConfig("warmup", epochs=3), StageConfig("joint", steps=5)))
    assert stage_lengths(recipe, videos, _ctx(0, world)) == [3 * per_epoch, 5]


def test_a_batch_not_divisible_by_the_processes_is_refused_before_the_data_is_read() -> None:
    with pytest.raises(VidcorrError, match="batch_size 8 is not divisible by 3 processes"):
        loader(_sized(8, 1), "crop_pair", None, 0, _ctx(0, 3))


def test_one_rank_of_four_signalled_stops_them_all(monkeypatch) -> None:
    """Under DDP the ranks agree by a mean of their flags: any flag above 0 stops every rank."""
    seen = []
    monkeypatch.setattr(feed, "all_reduce_mean", lambda flag, ctx: seen.append(flag.item()) or torch.tensor([0.25]))
    run = SimpleNamespace(stop=SimpleNamespace(requested=False), ctx=_ctx(1, 4), interrupted=False)
    assert feed._stop_agreed(run) is True and run.interrupted is True and seen == [0.0]
    monkeypatch.setattr(feed, "all_reduce_mean", lambda flag, ctx: torch.tensor([0.0]))
    run.interrupted = True
    assert feed._stop_agreed(run) is False and run.interrupted is False


def test_a_worker_failure_without_a_signal_is_raised_and_with_one_ends_the_batches() -> None:
    """"DataLoader worker exited unexpectedly" is a failure, unless a signal to the whole process
    group ended the workers too: then the run stops at the boundary."""
    class Dying:
        num_workers = 0

        def __iter__(self):
            yield {"x": 1}
            raise RuntimeError("DataLoader worker (pid(s) 123) exited unexpectedly")

    stop = StopSignals(announce=False)
    stop.training()
    run = SimpleNamespace(stop=stop, ctx=_ctx(), interrupted=False)
    got = feed.batches(Dying(), run)
    assert next(got) == {"x": 1}
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        next(got)
    run = SimpleNamespace(stop=StopSignals(announce=False), ctx=_ctx(), interrupted=False)
    run.stop.training()
    got = feed.batches(Dying(), run)
    assert next(got) == {"x": 1}
    run.stop.signal = 15  # SIGTERM to the group: noted by the handler, the workers gone with it
    run.stop.abandoning = _entered  # the request came during the wait, after it began
    assert next(got) is None and run.interrupted
    assert list(got) == []


def _entered():
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------
# Recipe files: names, extends lookup, loops, drop_stages, the CPU counterpart


def test_a_recipe_is_named_by_its_own_file_never_by_its_parents_name(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text('extends = "uvc-cpu"\nname = "parent-name"\n')
    (tmp_path / "child.toml").write_text('extends = "parent.toml"\n')
    assert load_recipe(tmp_path / "parent.toml").name == "parent-name"
    assert load_recipe(tmp_path / "child.toml").name == "child"


def test_extends_loops_of_two_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(InputError, match="b.toml: unreadable recipe: 'extends' loops back to") as error:
        load_recipe(tmp_path / "a.toml")
    assert error.value.path == tmp_path / "a.toml"  # the file given, with the chain to the loop


def test_an_extends_path_is_looked_up_beside_the_file_only(tmp_path: Path) -> None:
    """docs/training.md: a shipped name, or a path relative to the file; "uvc-cpu.toml" is a path."""
    path = tmp_path / "p.toml"
    path.write_text('extends = "uvc-cpu.toml"\n')
    with pytest.raises(InputError, match=r"extends = 'uvc-cpu\.toml': .*uvc-cpu\.toml is missing$") as error:
        load_recipe(path)
    assert error.value.path == path and str(tmp_path / "uvc-cpu.toml") in str(error.value)
    path.write_text('extends = "uvc-cpu"\n')  # a bare name: the shipped one
    assert load_recipe(path).stages == load_recipe("uvc-cpu").stages


def test_drop_stages_needs_extends(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('drop_stages = ["warmup"]\n[stages.joint]\nsteps = 2\n')
    with pytest.raises(InputError, match="'drop_stages' needs 'extends'") as error:
        load_recipe(path)
    assert error.value.path == path


def test_a_recipe_path_without_the_toml_suffix_is_taken_as_a_path(tmp_path: Path) -> None:
    plain = tmp_path / "myrecipe"
    plain.write_text('extends = "uvc-cpu"\nseed = 4\n')
    assert recipe_path(plain) == plain and load_recipe(plain).seed == 4
    assert recipe_path("uvc-cpu") == CONFIG_DIR / "uvc-cpu.toml"
    assert recipe_path(tmp_path / "new.toml") == tmp_path / "new.toml"


def test_only_a_shipped_paper_recipe_has_a_cpu_counterpart(tmp_path: Path) -> None:
    assert cpu_counterpart(load_recipe("cycletime")) == "cycletime-cpu"
    assert cpu_counterpart(load_recipe("uvc-cpu")) is None  # no uvc-cpu-cpu
    own = tmp_path / "cycletime.toml"  # one's own file named like the paper recipe
    own.write_text('extends = "cycletime"\n')
    assert cpu_counterpart(load_recipe(own)) is None


# ----------------------------------------------------------------------------------------------
# Loader workers


def test_a_workers_excepthook_hides_only_a_broken_hand_over() -> None:
    """Silent only for EOFError / ConnectionError raised in the resource-sharer's `_serve`; any other
    error, also an EOFError from elsewhere, reaches the worker's former hook."""
    def raised(error: BaseException):
        try:
            raise error
        except BaseException as caught:  # noqa: BLE001 - its traceback, from this frame
            return caught.__traceback__

    seen = []
    hook = lambda kind, error, tb: seen.append(kind)  # noqa: E731
    for error in (EOFError("Ran out of input"), ConnectionResetError(), ValueError("bad video")):
        _quiet_broken_hand_over(hook, type(error), error, raised(error))
    _quiet_broken_hand_over(hook, EOFError, EOFError(), None)
    assert seen == [EOFError, ConnectionResetError, ValueError, EOFError]


def test_a_resume_purges_the_tensorboard_events_after_its_checkpoints_step(tmp_path: Path) -> None:
    """Curves must not double back: a run killed at step 8 whose checkpoint is step 5 keeps steps
    1-5 of its first session (the checkpoint's own step included) and drops 6-8."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    first = SummaryWriter(str(tmp_path / "tensorboard"))
    for step in range(1, 9):
        first.add_scalar("train/lr", float(step), step)
    first.close()
    resumed = RunLog(tmp_path, _ctx(), Progress(step=5), every=1, progress_bar=False)
    resumed.writer.add_scalar("train/lr", 60.0, 6)
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/lr")] == [(s, float(s)) for s in range(1, 6)] + [(6, 60.0)]


def test_two_runs_open_at_once_keep_their_info_lines_until_the_last_closes(tmp_path: Path, monkeypatch) -> None:
    """From Python the package logger inherits the root's WARNING; while a train.log is open INFO
    lines reach it anyway. The first of two runs to close must not put WARNING back under the other."""
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    package = logging.getLogger("vidcorr")
    monkeypatch.setattr(package, "level", logging.NOTSET)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    log = logging.getLogger("vidcorr.train.loop")
    with TextLog(tmp_path / "a", enabled=True) as outer:
        outer.open("a", resumed=False)
        with TextLog(tmp_path / "b", enabled=True) as inner:
            inner.open("b", resumed=False)
            log.info("both")
        log.info("outer only")
    assert package.level == logging.NOTSET and package.propagate  # put back once both closed
    lines = [line.split(": ", 1)[1] for line in (tmp_path / "a" / "train.log").read_text().splitlines()[1:]]
    assert lines == ["both", "outer only"]


def test_a_discarded_run_log_removes_only_what_its_writer_added(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    earlier = tmp_path / "kept" / "tensorboard" / "events.out.tfevents.1.earlier"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier session's events")
    run = RunLog(tmp_path / "kept", _ctx(), Progress(step=3), every=1, progress_bar=False)
    assert len(list(earlier.parent.iterdir())) == 2
    run.discard()
    assert list(earlier.parent.iterdir()) == [earlier]
    fresh = RunLog(tmp_path / "fresh", _ctx(), Progress(), every=1, progress_bar=False)
    assert (tmp_path / "fresh" / "tensorboard").is_dir()
    fresh.discard()  # a fresh run that ended before its first checkpoint: no folder left
    assert not (tmp_path / "fresh").exists()


def test_a_stages_loader_gives_the_counted_batches_in_the_stages_own_order() -> None:
    """An epoch is `stage_lengths`' whole batches (the last partial one dropped, as the step count
    assumes), and each stage draws its own order, from (seed, stage): a joint stage repeating the
    warm-up's order would see the videos in the same sequence again."""
    index = VideoIndex([VideoInfo(f"/nowhere/v{i}.mp4", 60, 25.0, 64, 64) for i in range(10)], ["/nowhere"])
    recipe = _sized(3, 1, (StageConfig("warmup", epochs=1), StageConfig("joint", epochs=1))).replace(seed=7)
    recipe = recipe.replace(data=dataclasses.replace(recipe.data, workers=0))
    orders = []
    for stage in (0, 1):
        batches, sampler, per_rank = loader(recipe, "crop_pair", index, stage, _ctx())
        assert per_rank == 3 and len(batches) == 3 == stage_lengths(recipe, 10, _ctx())[stage]
        orders.append(list(sampler))
        assert orders[-1] == list(ShardedSampler(10, 1, 0, seed=(7, stage)))
    assert orders[0] != orders[1]
