"""What a training run shows a person: console log lines, a tqdm bar, TensorBoard scalars and
images (`RunLog`), and the same lines kept in RUN_DIR/train.log (`TextLog`); used by
`vidcorr.train.loop`, silent on ranks > 0."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import platform
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vidcorr.train import checkpoint as ckpt
from vidcorr.train.distributed import DistContext

log = logging.getLogger(__name__)

TEXT_LOG = "train.log"
PACKAGE_LOGGER = "vidcorr"  # every module logs under it (`getLogger(__name__)`)


class RunLog:
    """Console log lines, a tqdm bar and TensorBoard scalars / images; silent on ranks > 0.

    Scalars every ``every`` steps, averaged over those steps: each loss term (``loss/*``), the
    learning rate, throughput (samples/s, i.e. pairs/s for pair methods: the samples of those steps
    over the wall time since the last line, or, for a stage's first line, since its first batch
    arrived, `batch_arrived`) and the number of draws
    that hit an unreadable video so far ("unreadable draws": a broken video counts once each time
    it is drawn, not once). TensorBoard events go to ``run_dir/tensorboard``; on resume events
    after the checkpoint's step are purged so curves do not double back.
    """

    def __init__(self, run_dir: Path, ctx: DistContext, progress: ckpt.Progress, every: int,
                 progress_bar: bool):
        self.ctx, self.every, self.progress_bar = ctx, every, progress_bar
        self.base_wall, self.start = progress.wall_time, time.perf_counter()
        self.run_dir, self.found = run_dir, _tensorboard_output(run_dir)  # before the writer adds any
        self.writer = _summary_writer(run_dir, progress.step + 1) if ctx.is_main else None
        self.bar: tqdm | None = None
        self.stage_end = self.run_end = 0  # the steps (progress.step) the stage and the run end at, for the ETA
        self._starting = False  # a stage's loader is starting: the time until its first batch is not timed
        self._reset_window()

    def _reset_window(self) -> None:
        self.sums: dict[str, float] = {}
        self.count, self.samples, self.window_start = 0, 0, time.perf_counter()

    def wall_time(self) -> float:
        """Seconds trained, including earlier sessions of a resumed run."""
        return self.base_wall + time.perf_counter() - self.start

    def stage_started(self, name: str, total: int, done: int, step: int, run_end: int) -> None:
        """Stage ``name`` of ``total`` steps starts (or resumes) with ``done`` of them done, at the
        run's step ``step``; the run ends at step ``run_end`` (its stages' steps, or --max-steps)."""
        if self.bar is not None:
            self.bar.close()
        self.run_end = run_end
        self.stage_end = min(step + total - done, run_end)
        if self.ctx.is_main and self.progress_bar:
            # The bar counts to where this run stops: to the stage's full length, a --max-steps run
            # ended part-way with the bar at 10/3000 and its time left that of 2990 steps never taken.
            stop = done + self.stage_end - step
            desc = name if stop == total else f"{name} (to {stop} of {total}: --max-steps)"
            self.bar = tqdm(total=stop, initial=done, desc=desc, unit="step", dynamic_ncols=True)
        self._reset_window()
        self._starting = True

    def batch_arrived(self) -> None:
        """A batch is here (the loop calls it for each). The stage's first starts the throughput
        clock: the loader's start-up (its worker processes, their imports, the first batch) made the
        first line's samples/s 0.4 on a tiny CPU run where the next ones said 6."""
        if self._starting:
            self.window_start, self._starting = time.perf_counter(), False

    def step(self, progress: ckpt.Progress, terms: dict[str, float], lr: float, stage: str,
             batch: int) -> None:
        if not self.ctx.is_main:
            return
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count, self.samples = self.count + 1, self.samples + batch
        if self.bar is not None:
            self.bar.update(1)
            # the bar shows the stage's time left itself; the run's, where later stages follow, here
            later = {"run_left": self._time_left(progress.step)[1]} if self.run_end > self.stage_end else {}
            self.bar.set_postfix(loss=f"{terms['loss']:.4f}", **later, refresh=False)
        if progress.step % self.every == 0:
            self._write(progress, lr, stage)

    def _time_left(self, step: int) -> tuple[str, str]:
        """The stage's and the run's time left after ``step``, "M:SS" or "H:MM:SS", at the mean step
        time since the last log line (this stage's: a later one may be slower or faster)."""
        per_step = (time.perf_counter() - self.window_start) / max(self.count, 1)
        return (_duration(per_step * max(self.stage_end - step, 0)),
                _duration(per_step * max(self.run_end - step, 0)))

    def _write(self, progress: ckpt.Progress, lr: float, stage: str) -> None:
        rate = self.samples / max(time.perf_counter() - self.window_start, 1e-9)
        stage_left, run_left = self._time_left(progress.step)
        later = f" in the stage, ~{run_left} in the run" if self.run_end > self.stage_end else ""
        left = f"{stage_left} left{later}"
        means = {k: v / self.count for k, v in self.sums.items() if k != "skipped_videos"}
        # the total first, on its own: among UVC's eight terms in alphabetical order it was hard to find
        listed = " | ".join(filter(None, [f"loss {means['loss']:.4f}" if "loss" in means else "",
                                          " ".join(f"{k} {v:.4f}" for k, v in means.items() if k != "loss")]))
        with logging_redirect_tqdm():
            # the time left before the draws: lines are read by "| N samples/s" and end "| unreadable draws N"
            log.info("step %d | %s epoch %d | %s | lr %.2e | %.1f samples/s | %s | unreadable draws %d",
                     progress.step, stage, progress.epoch, listed, lr, rate, left, progress.skipped_videos)
        if self.writer is not None:
            for name, value in means.items():
                self.writer.add_scalar(f"loss/{name}", value, progress.step)
            self.writer.add_scalar("train/lr", lr, progress.step)
            self.writer.add_scalar("train/samples_per_s", rate, progress.step)
            self.writer.add_scalar("data/unreadable_draws", progress.skipped_videos, progress.step)
        self._reset_window()

    def images(self, step: int, images: dict[str, Tensor]) -> None:
        if self.writer is not None:
            for name, value in images.items():
                self.writer.add_images(f"images/{name}", value, step)

    def hardware(self) -> dict[str, Any]:
        device = self.ctx.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        return {"device": device.type, "device_name": name or platform.machine(),
                "processes": self.ctx.world_size, "cpu_count": os.cpu_count(),
                "torch": torch.__version__, "platform": platform.platform()}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.bar = self.writer = None

    def discard(self) -> None:
        """Close, then remove what this writer added to the run dir: its event files, and the
        folders it made if nothing else is in them (a fresh run that ended before its first
        checkpoint must leave no half-written output)."""
        if self.writer is None:  # other ranks, no tensorboard, or closed: nothing of its own
            return
        self.close()
        for path in sorted(_tensorboard_output(self.run_dir) - self.found, reverse=True):  # files first
            if path.is_file():
                path.unlink()
            elif not any(path.iterdir()):
                path.rmdir()


def _duration(seconds: float) -> str:
    """``seconds`` as "M:SS" (under an hour) or "H:MM:SS", rounded to the second: 75.4 -> "1:15"."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def text_log_handler(path: Path) -> logging.FileHandler:
    """A handler appending INFO lines and up to ``path``, as the console shows them but dated (a run
    spans days). Each line is flushed as written (`logging.StreamHandler`), so a crash keeps them."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    return handler


class _HeldLines(logging.handlers.MemoryHandler):
    """The package's lines logged before a run's train.log is opened, kept in memory (never flushed
    on its own: without a target `flush` keeps them) until `TextLog.open` writes them there."""

    def __init__(self) -> None:
        super().__init__(capacity=sys.maxsize, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
        self.setLevel(logging.INFO)


class _InfoForTheFile(logging.Handler):
    """While a run's train.log is open, the package logger lets INFO records through whatever the
    logging configuration says: called from Python, without `logging.basicConfig(level=INFO)`, it
    inherited the root's WARNING and the file held warnings and the end line only. The records
    then no longer propagate; this handler passes on to the root's handlers what they got before,
    those at the package's former effective level and up, so the console shows what it showed.
    Shared by the runs open at once (``users``); the last one to close puts the settings back."""

    def __init__(self, logger: logging.Logger):
        super().__init__(logger.getEffectiveLevel())
        self.logger, self.users = logger, 0
        self.former_level, self.former_propagate = logger.level, logger.propagate

    def emit(self, record: logging.LogRecord) -> None:
        if not self.former_propagate:
            return
        # As `Logger.callHandlers` propagates: each handler's level, no logger's. With no logging
        # configured at all (a script), the root has no handler and Python's `lastResort` printed
        # the warnings to stderr; the package's own handlers would hide them, so it stands in.
        handlers = logging.getLogger().handlers or [h for h in (logging.lastResort,) if h is not None]
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    @classmethod
    def lower(cls, logger: logging.Logger) -> _InfoForTheFile | None:
        """Let ``logger``'s INFO records through; None where they pass already (the command line)."""
        shared = next((h for h in logger.handlers if isinstance(h, cls)), None)
        if shared is None:
            if logger.getEffectiveLevel() <= logging.INFO:
                return None
            shared = cls(logger)
            logger.addHandler(shared)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        shared.users += 1
        return shared

    def restore(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.logger.removeHandler(self)
            self.logger.setLevel(self.former_level)
            self.logger.propagate = self.former_propagate


@contextlib.contextmanager
def held_lines(enabled: bool = True) -> Iterator[None]:
    """Keep the package's lines from now on for the train.log of the run that follows: `vidcorr
    train` holds them from its start, so that its own notes (the recipe a resume takes from its
    checkpoint, a missing --teacher) reach the file, although the run dir is known only later."""
    if not enabled:
        yield
        return
    held, logger = _HeldLines(), logging.getLogger(PACKAGE_LOGGER)
    logger.addHandler(held)
    try:
        yield
    finally:
        logger.removeHandler(held)  # a no-op once `TextLog` took it
        held.close()


class TextLog:
    """RUN_DIR/train.log: the human-readable lines of a run, for whoever's terminal scrolled away.

    Every record of the package's loggers at INFO and up (start and resume lines, loss lines,
    checkpoint saves, warnings; what the console shows, but tqdm's bars, which are not log records),
    and the line the run ends with (`note`). Appended across resumes, each session opening with a
    dated line naming its command. Lines logged before the run is established (indexing, the resume
    checks) are held in memory and written after that line, so that a refused start or resume
    writes nothing. Only where ``enabled`` (rank 0). From Python too the file holds INFO lines and up,
    whatever the logging configuration lets through to the console (`_InfoForTheFile`).
    """

    def __init__(self, run_dir: Path, enabled: bool):
        self.path, self.enabled = Path(run_dir) / TEXT_LOG, enabled
        self._logger = logging.getLogger(PACKAGE_LOGGER)
        self._held: _HeldLines | None = None
        self._file: logging.FileHandler | None = None
        self._size: int | None = None  # the file's size before this session (None: it did not exist)
        self._info: _InfoForTheFile | None = None

    def __enter__(self) -> TextLog:
        if self.enabled:
            self._info = _InfoForTheFile.lower(self._logger)
            self._held = next((h for h in self._logger.handlers if isinstance(h, _HeldLines)), None)
            if self._held is None:
                self._held = _HeldLines()
                self._logger.addHandler(self._held)
        return self

    def open(self, command: str, resumed: bool) -> None:
        """The run is established (the run dir exists): from now on its lines go to the file."""
        if not self.enabled or self._file is not None:
            return
        self._size = self.path.stat().st_size if self.path.exists() else None
        self._file = text_log_handler(self.path)
        # the time the command began to log, not the open: the held lines below it are older
        held = self._held.buffer if self._held is not None else []
        when = datetime.fromtimestamp(held[0].created if held else time.time()).strftime("%Y-%m-%d %H:%M:%S")
        gap = "\n" if self._size else ""
        self._file.stream.write(f"{gap}===== {when} {'resumed' if resumed else 'started'}: {command}\n")
        self._file.flush()
        if self._held is not None:
            self._logger.removeHandler(self._held)
            self._held.setTarget(self._file)
            self._held.flush()
        self._logger.addHandler(self._file)

    @property
    def writing_to(self) -> Path | None:
        """The file while lines go to it, else None (loader workers append their warnings too)."""
        return self.path if self._file is not None else None

    def note(self, level: int, message: str, name: str = "vidcorr.train.loop") -> None:
        """One line for the file alone: how the run ended, which the command line prints itself."""
        if self._file is not None:
            self._file.handle(logging.LogRecord(name, level, __file__, 0, message, None, None))

    def discard(self) -> None:
        """Take back this session's lines: a fresh run that ended before its first checkpoint
        leaves nothing (the file as it was, or none). Before `RunLog.discard`, which removes the
        run dir it made only if empty."""
        opened = self._file is not None  # never on ranks > 0: the file is rank 0's
        self._close()
        if opened and self._size is None:
            self.path.unlink(missing_ok=True)
        elif opened and self.path.exists():
            os.truncate(self.path, self._size)

    def _close(self) -> None:
        for handler in (self._held, self._file):
            if handler is not None:
                self._logger.removeHandler(handler)
                handler.close()
        if self._info is not None:
            self._info.restore()
        self._held = self._file = self._info = None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()


def _tensorboard_output(run_dir: Path) -> set[Path]:
    """The run dir, its TensorBoard folder and the files in it, as far as they exist."""
    tensorboard = run_dir / "tensorboard"
    found = {path for path in (run_dir, tensorboard) if path.is_dir()}
    return found | set(tensorboard.iterdir()) if tensorboard in found else found


def _summary_writer(run_dir: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional on a bare GPU box
        log.warning("tensorboard is not installed: logging to the console only")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)


def visualise(method: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Images for TensorBoard: the method's ``visualise`` hook (run in eval mode, so batch-norm
    statistics are untouched) or, without one, the batch's images side by side."""
    small = {k: v[:4] for k, v in batch.items()}
    hook = getattr(method, "visualise", None)
    with torch.no_grad():
        if hook is None:
            return {"inputs": _side_by_side(list(small.values()))}
        was_training = method.training
        method.eval()
        try:
            images = hook(small)
        finally:
            method.train(was_training)
    return {k: v.detach().float().clamp(0, 1).cpu() for k, v in images.items()}


def _side_by_side(images: list[Tensor], height: int = 128) -> Tensor:
    """(N, 3, H_i, W_i) each -> (N, 3, height, sum of scaled widths)."""
    scaled = [F.interpolate(x.float(), size=(height, max(1, round(x.shape[-1] * height / x.shape[-2]))),
                            mode="bilinear", align_corners=False, antialias=True) for x in images]
    return torch.cat(scaled, dim=-1).clamp(0, 1).cpu()
