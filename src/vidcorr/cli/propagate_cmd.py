"""`vidcorr propagate INPUT (--mask FIRST.png | --keypoints FIRST.json | --box x,y,w,h | --labels
FIRST.npy) --out DIR`: carry a first-frame annotation through a video.

INPUT is a video file (decoded with PyAV, or OpenCV where PyAV is missing) or a folder of frames.
A mask gives one indexed PNG per frame in DIR/masks/; keypoints give DIR/keypoints.json with every
frame's coordinates (format in docs/keypoints.md); a box gives DIR/boxes.json (0-based x, y, w, h
per frame, tracked with UVC's region localisation or a DCF head, docs/tracking.md); soft labels
(K, H, W) give one .npy per frame in DIR/labels/ (`vidcorr.soft_labels`; float32, or float16 with
--labels-dtype). All write an overlay video DIR/overlay.mp4 unless --no-video, each frame captioned
with its 0-based number; the folder appears only when everything succeeded. A run stopped by Ctrl-C,
SIGTERM or a kill keeps its results so far in DIR.partial, which --resume continues
(`vidcorr.cli.propagate_resume`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from vidcorr.cli import _StartTerminated
from vidcorr.cli.common import (
    accept_negative_values,
    add_model_arguments,
    load_model,
    model_label,
    positive_float,
    preset_label,
    refuse_propagation_flags,
    resolve_preset,
    warn_if_coarse_propagator,
)
from vidcorr.cli.propagate_annotations import DEFAULT_TRACKER, Annotation, annotation_files, annotation_for
from vidcorr.errors import InputError, VidcorrError, said_already

DEFAULT_FPS = 24.0
INTERRUPT_EXIT = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "propagate", help="propagate a first-frame mask, keypoints, a box or soft labels through a video or "
                          "frame folder",
        description="Propagate the first-frame annotation of INPUT (mp4/mkv/webm or a folder of "
                    "frames) with a trained model and write per-frame results plus an overlay video.",
    )
    p.add_argument("input", type=Path, help="video file or folder of frames")
    first = p.add_mutually_exclusive_group(required=True)
    first.add_argument("--mask", type=Path,
                       help="first-frame mask: palette PNG of object ids (255 = void) or a 0/255 binary PNG")
    first.add_argument("--keypoints", type=Path, metavar="FIRST.json",
                       help='first-frame keypoints: {"keypoints": [[x, y], ...], "names": [...], '
                            '"edges": [[i, j], ...], "visible": [...]} in pixels (docs/keypoints.md)')
    first.add_argument("--box", type=_box, metavar="x,y,w,h",
                       help="first-frame box in 0-based pixels (top-left corner, width, height; not x1,y1,x2,y2 "
                            "corners); commas or spaces between the numbers (quoted with spaces: --box '120 80 64 48')")
    first.add_argument("--labels", type=Path, metavar="FIRST.npy",
                       help="first-frame soft labels: a .npy array (K, H, W) or (H, W) of any real values "
                            "(probabilities, a matte, a heat map); writes DIR/labels/<frame>.npy")
    p.add_argument("--labels-dtype", choices=("float32", "float16"), default="float32",
                   help="with --labels: the .npy files' type; float16 halves their size (K x 0.8 MB per 480p "
                        "frame), about 3 significant digits (default: float32)")
    p.add_argument("--tracker", choices=("localise", "dcf"),  # default None: given without --box is refused
                   help="with --box: UVC region localisation or a DCF head on the features "
                        f"(default: {DEFAULT_TRACKER})")
    p.add_argument("--track", action="store_true",
                   help="with --mask: UVC-track (UVC's 'ours-track'): each object is carried only from its box "
                        "to the box it is localised to in the next frame; meant for --preset uvc: with crw it "
                        "lowered J&F on our data (docs/uvc.md)")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    p.add_argument("--fps", type=positive_float,
                   help="overlay video frame rate, constant (default: each frame at its input frame's time, "
                        f"a variable frame rate included; a frame folder: {DEFAULT_FPS:g})")
    p.add_argument("--no-video", action="store_true", help="skip the overlay video")
    p.add_argument("--max-frames", type=_frame_limit, metavar="N",
                   help="propagate through the first N frames only (N >= 2): a quick look at a long video "
                        "(default: every frame)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run stopped by Ctrl-C, SIGTERM or a kill from what it kept in OUT.partial "
                        "(saved every minute and on a stop): the same command plus --resume; the results are "
                        "those of an uninterrupted run. Not with --box")
    add_model_arguments(p)
    accept_negative_values(p)  # "--box -30,-20,60,60", a box partly left of the frame, reaches `_box`
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from vidcorr.cli.propagate_resume import (STATE, StateSaver, check_partial, check_stamp, input_record,
                                              run_stamp)
    from vidcorr.io.atomic import NOT_EMPTY, check_output_path, partial_path, resumable_dir, sigterm_cleans_up
    from vidcorr.io.video import GIVE_FRAMES, open_frames, write_video
    from vidcorr.presets import preset_knobs
    from vidcorr.track_uvc import mask_propagator

    if args.track and args.mask is None:
        raise VidcorrError("--track (UVC-track) carries masks: it needs --mask")
    if args.labels is None and args.labels_dtype != "float32":
        raise VidcorrError("--labels-dtype sets the type of --labels' outputs: it needs --labels")
    if args.tracker is not None and args.box is None:  # it was ignored without a word
        raise VidcorrError("--tracker chooses how a box is tracked: it needs --box")
    if args.fps is not None and args.no_video:  # likewise
        raise VidcorrError("--fps sets the overlay video's frame rate: it does nothing with --no-video")
    if args.box is not None:  # the tracker ignored them, and the summary still named the preset
        refuse_propagation_flags(args, "a box is tracked from the model's features with the tracker's own "
                                       "settings (`vidcorr eval otb|vot --set NAME=VALUE` tunes them, "
                                       "docs/tracking.md)")
    if args.resume and args.box is not None:
        raise VidcorrError("--resume continues masks, keypoints and soft labels, not --box: a box's tracker keeps "
                           "its state inside its frame loop, which is not saved (a box is tracked on crops, many "
                           "times faster than a mask is propagated); run the command again without --resume")
    # before the frames are read and the model loaded; with --resume a full OUT is most likely the run
    # finished (a stop as it was put in place says "written in full"): "remove it" would lose it
    check_output_path(args.out, folder=True, empty=True, not_empty=(
        f"output folder exists and is not empty: nothing to resume (a finished run's results are kept in it, a "
        f"stopped run's in {partial_path(args.out).name}); keep them, or choose another --out to run again"
        if args.resume else NOT_EMPTY))
    saved = check_partial(args.out, args.resume)  # a stopped run's state, refused or required as --resume says
    with _kept_as_it_was(partial_path(args.out) if saved is not None else None):
        # A video cut short is refused at once when every frame is to be read; --max-frames may ask only
        # for frames before the cut, and decoding refuses the cut if it gets there.
        source = open_frames(args.input, exclude=annotation_files(args), image_advice=GIVE_FRAMES,
                             every_frame=args.max_frames is None)
        whole_input = input_record(source, args.max_frames)  # what a resume must find again
        if args.max_frames is not None:  # before the bar's total, the frame names and the overlay's times are read
            source = source.head(args.max_frames)
        annotation = annotation_for(args, source, _frame_names(source))  # checked before the model is loaded
        preset = resolve_preset(args)
        if args.box is None:
            _advise_on_size(args.input, source.size, preset)
        encoder, info = load_model(args, preset)
        fps = args.fps or source.fps or DEFAULT_FPS
        # Each overlay frame at its input frame's time: one rate misses a variable-frame-rate video's
        # timing. --fps asks for a constant rate; a frame folder (and the OpenCV backend) has no times.
        times = None if args.fps or args.no_video else source.frame_times()
        total = _frames_in_all(source, times)
        stamp = run_stamp(args, whole_input, info, preset_knobs(preset), annotation.outputs)
        if saved is not None:  # exit 2 with nothing changed when it is another run, or one whose results are gone
            check_stamp(partial_path(args.out), saved, stamp)
            _check_kept(partial_path(args.out), saved["frames_done"], annotation)
    start, before = time.perf_counter(), saved["elapsed"] if saved else 0.0
    n = saved["frames_done"] if saved else 0  # frames done, the stopped sessions' included
    saver: StateSaver | None = None
    writing = ""  # the final overlay pass's, for a stop's line: every frame done, the video not yet written
    # SIGTERM (kill, timeout) unwinds as Ctrl-C does: the state is saved and DIR.partial kept, or removed
    # when nothing was saved; _ctrl_c_says_how_far inside it, so that SIGTERM's line too says how far it
    # got and what was kept (one line, exit 143)
    with sigterm_cleans_up("propagate"), _ctrl_c_once(), \
            _ctrl_c_says_how_far(args.out, lambda: (n, total), lambda: before + time.perf_counter() - start,
                                 # n before the saver: the frames a resumed run's state on disk covers
                                 lambda: saver.saved_frames if saver else n, lambda: writing), \
            resumable_dir(args.out, STATE, resumed=saved is not None) as tmp, logging_redirect_tqdm():
        propagator = mask_propagator(encoder, preset, args.track, device=args.device, batch_size=args.batch_size)
        if saved is not None:
            _take_up(saved, tmp, propagator, annotation)
        saver = StateSaver(tmp, stamp, annotation.records, elapsed_before=before,
                           saved_frames=saved["frames_done"] if saved else 0)
        # a resumed run's video is drawn from the results at the end: the frames before the stop have no
        # overlay in this session, and one encoder pass over all of them is the uninterrupted run's video
        redraw = saved is not None and not args.no_video
        overlays = annotation.write(propagator, source, tmp, not (args.no_video or redraw))
        files = [path.name for path in source.files] if source.files is not None else None
        warned = len(saved["propagator"]["cuts"]["flagged"]) if saved else 0  # of propagator.cuts.flagged

        def counted():
            nonlocal n, warned
            # minutes a video on a CPU (0.4 frames/s at 480p): without a bar nothing showed until the end
            # smoothing 0.05: the ETA of a long video follows the mean rate, not the last few frames
            # (on a shared CPU tqdm's default 0.3 swung from 52 to 19 minutes left within 33 s)
            with tqdm(total=total, initial=n, desc="propagate", unit="frame", leave=False, smoothing=0.05) as bar:
                for t, frame in overlays:  # a resumed run goes from frame 0 to the first after the stop
                    if saved is not None and t == saved["frames_done"]:
                        # the first frame after the stop waited for the context frames' re-embedding (~10 s
                        # at 480p), which the rate took for one frame's time ("16:02 left" with 4 minutes to
                        # go, for 5 frames): counted without a time, the bar's clock from here
                        bar.initial = bar.n = bar.last_print_n = n = t + 1
                        bar.unpause()
                    elif t >= n:
                        bar.update(t + 1 - n)
                        n = t + 1
                    if t == 0:  # the first frame is embedded: its feature grid is known
                        warn_if_coarse_propagator(args.input, propagator)
                    for cut in propagator.cuts.flagged[warned:]:  # a box's tracker flags none
                        log.warning(_cut_warning(args.input, cut, files))
                    # max: a resumed run's frame 0 comes before its watch is restored (none flagged yet),
                    # and the cuts the stopped sessions warned of must not be warned of again after it
                    warned = max(warned, len(propagator.cuts.flagged))
                    # a batch's end: where a resume can start (a box's tracker is not resumed: --box)
                    if args.box is None and t > 0 and t % propagator.batch_size == 0:
                        saver.take(propagator.state())
                        saver.maybe_save()
                    yield t, frame

        try:
            if args.no_video or redraw:
                for _ in counted():
                    pass
            if redraw:
                writing = ", while writing overlay.mp4"
                write_video(tmp / "overlay.mp4", _numbered(enumerate(
                    annotation.redraw(tmp, t, frame, propagator) for t, frame in enumerate(source)), files), fps,
                    times=times)
            elif not args.no_video:  # each frame numbered from 0, as a video's result files are
                write_video(tmp / "overlay.mp4", _numbered(counted(), files), fps, times=times)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the last state taken is what a resume continues
            saver.save()
            raise
        if n < 2:  # counted, not the header's count: inside the block, so nothing is left written
            raise InputError(args.input, "holds 1 frame: no frame to propagate the first-frame annotation to "
                                         "(give the whole video or folder of frames)")
    elapsed = saver.elapsed()  # every session's, for a resumed run
    model = model_label(info)
    # a box's tracker embeds its crops with the preset's feature layer (uvc: layer4), so it is named too
    how = (f"tracker {args.tracker or DEFAULT_TRACKER}, " if args.box is not None else "") + \
        f"preset {preset_label(preset.name, args)}" + (" + UVC-track" if args.track else "")
    which = f"the first {n} frames (--max-frames)" if args.max_frames == n else f"{n} frames"  # else all there were
    print(f"propagated {which} of {args.input} with {model}, {how}, in {elapsed:.1f}s ({n / elapsed:.2f} frames/s)")
    print(f"wrote {args.out / annotation.outputs}" + ("" if args.no_video else f" and {args.out / 'overlay.mp4'}"))
    return 0


# `vidcorr.cli` holds its start-up SIGTERM handler until `sigterm_cleans_up` replaces it: SIGTERM as the
# frames open and the model loads (seconds) ended the command at its default, exit 143 and not a word
run.takes_over_sigterm = True


def _numbered(overlays: Iterator[tuple[int, np.ndarray]], files: list[str] | None) -> Iterator[np.ndarray]:
    """Each overlay frame captioned with its number from 0, as a video's result files are named
    (masks/00017.png: frame 17); a folder's frame also by its file, after which its results are named."""
    from vidcorr.viz import caption, frame_caption

    for t, frame in overlays:
        yield caption(frame, frame_caption("", t, files[t] if files else None))


def _take_up(saved: dict, partial: Path, propagator, annotation: Annotation) -> None:
    """Set a resumed run going from its ``saved`` state: the temporary files a kill left in
    ``partial`` deleted (a result file half written), the propagator and the records as they were."""
    from vidcorr.io.atomic import remove_atomic_leftovers

    remove_atomic_leftovers([partial, *(path for path in partial.iterdir() if path.is_dir())])
    propagator.resume(saved["propagator"])
    annotation.records[:] = saved["records"]


def _check_kept(partial: Path, frames_done: int, annotation: Annotation) -> None:
    """`InputError` naming the first result file of frames 0 .. frames_done - 1 missing from
    ``partial``: a resume writes only the frames after its stop, so a file deleted there was missing
    from the finished folder without a word (--no-video), or failed the final overlay pass with a
    traceback after every frame was propagated, that session's work lost."""
    if annotation.frame_file is None:
        return
    missing = [path for t in range(frames_done) if not (path := annotation.frame_file(partial, t)).is_file()]
    if missing:
        raise InputError(missing[0], f"missing: the stopped run wrote it, one of the results of frames 0 to "
                                     f"{frames_done - 1} ({len(missing)} gone), which a resume does not write "
                                     f"again; delete {partial} and run the command without --resume")


def _cut_warning(path: Path, t: int, files: list[str] | None) -> str:
    """The warning for frame t (0-based, as the overlay captions it), flagged by the propagator's
    `vidcorr.propagate.ShotCutDetector`: the labels after a cut follow whatever in the new shot looks
    like the old one's objects (people and red cars after the cut in docs/propagation.md's trailer), unsaid."""
    which = f"frame {t}" + (f" ({files[t]})" if files else "")
    return (f"{path}: {which} looks like a shot cut (its best matches to the frames before it are far weaker "
            "than before): the labels after it may follow other objects")


@contextlib.contextmanager
def _ctrl_c_once() -> Iterator[None]:
    """Ctrl-C in the block raises KeyboardInterrupt once: another, pressed while the first unwinds
    (generators closed, the state saved), is ignored, as `sigterm_cleans_up` ignores a second SIGTERM.
    Pressed twice 6 to 15 ms apart on a long video, the second interrupted the clean-up: a traceback
    from a generator's close or "vidcorr: interrupted" in place of the line saying what was kept, and
    during the save the state not written. Left alone where SIGINT is not Python's (ignored in a
    background job) and off the main thread."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _kept_as_it_was(partial: Path | None) -> Iterator[None]:
    """Ctrl-C before a resumed run starts (the frames opened, the model loaded: seconds) leaves
    ``partial`` untouched: say so, and exit 130; "vidcorr: interrupted" alone left users wondering
    whether the stopped run's work was lost. None (a fresh run: nothing written yet): as it is."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        if partial is None:
            raise
        # SIGTERM here is the command line's start-up handler's, held until `sigterm_cleans_up` takes over
        sigterm = isinstance(interrupt, _StartTerminated)
        print(f"vidcorr propagate: {'stopped by SIGTERM' if sigterm else 'interrupted'} before resuming; {partial} "
              "kept as it was: add --resume to continue", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM if sigterm else INTERRUPT_EXIT) from None


@contextlib.contextmanager
def _ctrl_c_says_how_far(out: Path, progress: Callable[[], tuple[int, int | None]], elapsed: Callable[[], float],
                         saved: Callable[[], int], during: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C or SIGTERM in the block: one line with the frames done of how many, the time spent and
    what became of them, then exit 130 (Ctrl-C) or, through the `sigterm_cleans_up` block around it,
    143 (SIGTERM, marked as said: no second line). "vidcorr: interrupted" alone left a user who
    stopped a long video at frame 700 of 768 looking for the 700 masks; SIGTERM's line said only
    "stopped by SIGTERM". ``progress()``: (frames done, frames in all or None); ``elapsed()``: the
    seconds spent, a resumed run's stopped sessions' included, as the frames done and the summary line
    count them (this session's alone read as 72 frames in 0:47 when they took 1:45); ``saved()``: the
    frames the state kept in OUT.partial covers (0: none, nothing kept); ``during()``: what was under
    way after the frames, for the line (a resumed run's final overlay pass read as stopped for nothing)."""
    from vidcorr.io.atomic import by_sigterm, partial_path

    try:
        yield
    except KeyboardInterrupt as interrupt:
        done, total = progress()
        of = f"{done} of {total} frames" if total else f"{done} frames"
        minutes, seconds = divmod(round(elapsed()), 60)
        if out.is_dir() and any(not entry.name.startswith(".") for entry in out.iterdir()):
            what = f"{out} was written in full"  # the interrupt came as the finished result was put in place
        elif saved() and (partial := partial_path(out)).is_dir():
            what = f"kept in {partial} (frames 0 to {saved() - 1}): add --resume to continue"
        else:
            what = (f"nothing written: {out} appears only once every frame is done (nothing saved to resume "
                    "from: the same command starts again from the first frame)")
        how = "stopped by SIGTERM" if by_sigterm(interrupt) else "interrupted"
        print(f"vidcorr propagate: {how} after {of}{during()} ({minutes}:{seconds:02d}); {what}", file=sys.stderr)
        if by_sigterm(interrupt):
            raise said_already(interrupt)  # sigterm_cleans_up exits 143 without a line of its own
        raise SystemExit(INTERRUPT_EXIT) from None


def _frames_in_all(source, times: list[float] | None) -> int | None:
    """The frames to propagate, for the bar's total and ETA: the header's count, else the number of
    frame times (a Matroska / WebM file's header gives no count; its packets do, read for the
    overlay's times or here: demuxing only, seconds for an hour of video), else None (OpenCV)."""
    if source.num_frames is None:
        times = times if times is not None else source.frame_times()
        if times is not None:
            source.num_frames = len(times)  # counted once: the output names' width asks for it too
    return source.num_frames


def _advise_on_size(path: Path, size: tuple[int, int], preset) -> None:
    """A native-size preset on frames larger than 480p works, but slowly: say so, and what to do."""
    from vidcorr.presets import PROTOCOL_SHORT_SIDE

    height, width = size
    if preset.size.mode != "native" or min(size) <= PROTOCOL_SHORT_SIDE:
        return
    pixels = (min(size) / PROTOCOL_SHORT_SIDE) ** 2  # against the same video resized to 480p
    log.warning("%s: frames are %dx%d and preset '%s' propagates at native size: %.1fx the pixels of the "
                "same video at 480p, and its dense first-frame affinity grows with their square (%.0fx). "
                "--size %d propagates at 480p and still writes full-size results.",
                path, width, height, preset.name, pixels, pixels * pixels, PROTOCOL_SHORT_SIDE)


class _Numbered:
    """A video's output names: frame numbers from 0, zero-padded to ``width`` digits (names[17] == "00017")."""

    def __init__(self, width: int):
        self.width = width

    def __getitem__(self, t: int) -> str:
        return f"{t:0{self.width}d}"


def _frame_names(source) -> list[str] | _Numbered | None:
    """Output names: the frame files' stems for a folder (those decoded, so names and frames pair
    up; no two alike, `vidcorr.io.images.refuse_same_numbers`), frame numbers for a video: 00000,
    00001, ... in 5 digits, more where its frames reach 100,000 (an hour at 30 frames/s), so that the
    names still sort in frame order (100000.png came before 10001.png); None (5 digits) where its
    count is unknown (the OpenCV backend)."""
    if source.files is not None:
        return [path.stem for path in source.files]
    total = _frames_in_all(source, None)
    return None if total is None else _Numbered(max(5, len(str(total - 1))))


# --------------------------------------------------------------------------- argument types



def _frame_limit(text: str) -> int:
    """argparse type of --max-frames: an integer >= 2 (the annotated frame and one to carry it to)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a number of frames >= 2 (the annotated first frame and at "
                                         f"least one more), got {text!r}")
    return value


def _box(text: str) -> tuple[float, float, float, float]:
    # Commas, spaces or both, brackets allowed: a box pasted from an OTB ground-truth line
    # ("120 80 64 48", tabs) or a printed Python tuple "(120, 80, 64, 48)" was refused.
    try:
        values = tuple(float(v) for v in re.split(r"[,\s]+", text.strip("()[] \t")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 numbers x,y,w,h, got {text!r}") from None
    # a VOT groundtruth.txt line: its corners' box, as `eval vot` starts from
    if len(values) == 8 and np.isfinite(values).all():
        from vidcorr.io.tracking import polygon_to_box

        box = ",".join(f"{v:g}" for v in polygon_to_box(np.array(values)))
        raise argparse.ArgumentTypeError(f"expected 4 numbers x,y,w,h, got 8: {text!r}; a VOT polygon "
                                         f"(x1,y1,...,x4,y4)? the box its corners span is --box {box}")
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 numbers x,y,w,h, got {len(values)}: {text!r}")
    if not (values[2] > 0 and values[3] > 0):
        raise argparse.ArgumentTypeError(f"expected x,y,w,h with positive w and h, got {text!r}")
    return values
