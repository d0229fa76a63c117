"""Probing training videos, with a cache: what `vidcorr.data.videos.build_index` records of each.

Probing a video opens its container and decodes one frame (through `vidcorr.io.video`, so it
validates the file and works with PyAV or OpenCV); the frame count comes from the container's
metadata and is only counted when the container does not record it or its record may hold frames
that are never shown (an MP4 edit list's: `vidcorr.io.video.FrameSource.num_frames`); the packets
read to count them give the mean frame rate too. The results are cached in one JSON file keyed by
absolute path and revalidated by (mtime, size) (a frame folder's failure, one listed by older rules
and a file's rate found by older rules are probed again: `_still_valid`), so re-indexing 10^5
videos costs a ``stat`` each, not the ~10 h first pass CRW users hit (METHODS.md §9, videowalk
issue #3).
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vidcorr.errors import InputError
from vidcorr.io.atomic import write_text_atomic
from vidcorr.io.container_size import refuse_cut_short_container
from vidcorr.io.images import FRAME_LISTING_VERSION
from vidcorr.io.video import count_frames, open_frames

log = logging.getLogger(__name__)

CACHE_NAME = "video-metadata.json"
# /1 counted the frames an MP4 edit list hides, /2 an AVI header's skipped frames, /3 took a list
# file's frame count for a frame folder over its listing. Rules that change only some entries are
# versioned in those entries instead (``listing``, ``rate``), so that the rest are not probed again.
CACHE_FORMAT = "vidcorr-video-metadata/4"
# The version of the rules that give a video file's record its fps (``rate``; none before it was
# recorded): bump it with any change to them. 1: a file whose frames are counted from its packets
# (`probe`) has their mean rate, not its header's.
FILE_RATE_VERSION = 1
# Where a record without ``rate`` holds the header's nominal rate for a mean one: the files whose
# frames were counted from packets because their header gives no count (`probe`). An MP4 counted
# because its edit list hides frames had the header's rate, which is already its samples' mean
# (FFmpeg's average rate: samples over their durations), and an AVI's count is its chunks'.
NOMINAL_RATE_SUFFIXES = (".mkv", ".webm")


@dataclass(frozen=True)
class VideoInfo:
    """One training video (file or frame folder). ``fps`` is None for frame folders; for a video file
    its mean rate where its packets were read to count its frames (`probe`), else its container's.

    ``frames_from_list``: ``num_frames`` is a list file's count for a video file, taken without
    counting (`probe`); a sample drawn past the real end drops the video, and the warning says so.
    """

    path: str
    num_frames: int
    fps: float | None
    height: int
    width: int
    frames_from_list: bool = False




def _stamp(path: Path) -> tuple[list[int], bool]:
    """(mtime and size, whether ``path`` is a folder), from one ``stat``."""
    status = path.stat()
    is_folder = stat.S_ISDIR(status.st_mode)
    return [status.st_mtime_ns, 0 if is_folder else status.st_size], is_folder


def probe(path: Path, frames_hint: int | None = None) -> VideoInfo:
    """Frame count, fps and size of a video file or frame folder; `InputError` if unreadable.

    Decodes only the first frame. A frame folder's count is its listing, whatever the hint says: it
    costs nothing and is always right (`build_index` reports a hint that disagrees). A video file's
    count is the hint when there is one (a list of 10^5 videos is not counted: that is the hint's
    purpose), else the container's, counted from its packets only when it gives none to trust;
    then its fps is the packets' mean rate (`mean_rate`), else the container's.
    """
    source = open_frames(path)
    height, width = (int(n) for n in source.size)
    if source.backend == "folder":
        return VideoInfo(str(path), int(source.num_frames), source.fps, height, width)
    # A header that comes first (an MP4's moov) counts every frame of a file cut short; its first
    # frame decodes, and it failed only at every draw in training. Its top-level sizes show it.
    refuse_cut_short_container(path)
    if frames_hint:
        return VideoInfo(str(path), int(frames_hint), source.fps, height, width, frames_from_list=True)
    if source.num_frames:
        return VideoInfo(str(path), int(source.num_frames), source.fps, height, width)
    # No count to trust (a Matroska / WebM file gives none): the packets are read to count the frames,
    # and their times give the mean rate, which a Matroska header's (nominal) rate need not be.
    times = source.frame_times()
    if times is None:  # the OpenCV backend, or packets without times: counted, the header's rate kept
        return VideoInfo(str(path), int(count_frames(path)), source.fps, height, width)
    return VideoInfo(str(path), len(times), mean_rate(times, source.fps), height, width)


TIMESTAMP_ROUNDING = 1e-3  # seconds: Matroska's timestamps are whole milliseconds (its default scale)


def mean_rate(times: Sequence[float], nominal: float | None) -> float:
    """The frame rate of frames shown at ``times`` (seconds, at least two differing; (T,)): frame steps
    per second from the first to the last, what a gap in seconds is converted with. The ``nominal``
    rate where the times follow it within their rounding: a constant-rate file keeps its exact rate.
    """
    steps, span = len(times) - 1, max(times) - min(times)
    if nominal and abs(span - steps / nominal) <= TIMESTAMP_ROUNDING + 1e-9:  # each end rounded by half
        return nominal
    return steps / span


def problem_with(path: str | Path, error: Exception) -> str:
    """What ``error`` says is wrong with the video ``path``, for a message that names ``path`` already.

    An `InputError` about the video itself gives its problem alone (not the path twice); one about
    a file inside a frame folder keeps that file's name ("00007.png: frame is 456x256 but 00000.png
    is 320x240": the problem alone named no frame). Any other exception gives its type and text.
    """
    if not isinstance(error, InputError):
        return f"{type(error).__name__}: {error}"
    if error.path is None or error.path == Path(path):
        return error.problem
    inside = error.path.is_relative_to(path)
    return f"{error.path.relative_to(path) if inside else error.path}: {error.problem}"


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):  # none yet; `build_index` warns if none can be written
        return {}
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable video metadata cache %s (%s)", path, error)
        return {}
    return data.get("videos", {}) if data.get("format") == CACHE_FORMAT else {}


def save_cache(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Atomic write: concurrent indexers (DDP ranks) never see a half-written cache."""
    write_text_atomic(path, json.dumps({"format": CACHE_FORMAT, "videos": entries}))


def _still_valid(path: Path, cached: dict[str, Any] | None, stamp: list[int], hint: int | None,
                 is_folder: bool) -> bool:
    """Whether ``cached`` may stand for ``path`` (a frame folder where ``is_folder``) without probing
    it again.

    A folder's mtime changes when a frame is added, removed or renamed, not when one is overwritten
    in place, so a frame folder's cached failure ("00005.jpg: frame is 300x200 ...") outlived the
    fix. Such failures are probed again every time rather than keying folders by their files'
    stamps: that would cost a ``stat`` per frame on every indexing (~10^6 for 10^4 folders of ~100
    frames, against one per folder), while failures are rare and a re-probe
    decodes one frame and reads one header per file. A cached success is still trusted: a frame
    broken in place later is dropped at its first draw, with a warning, like any unreadable frame.

    A folder's count is its listing, so one listed by other rules than today's (``listing``,
    `FRAME_LISTING_VERSION`; none before it was recorded) is listed again: a folder holding cover.jpg
    beside its frames, cached before such a stray was refused, kept the count that included it.
    A video file's record is trusted unless its fps followed older rules (`_rate_still_valid`).
    """
    if cached is None or cached.get("stamp") != stamp or cached.get("hint") != hint:
        return False
    if not is_folder:
        return _rate_still_valid(path, cached)
    return "error" not in cached and cached.get("listing") == FRAME_LISTING_VERSION


def _rate_still_valid(path: Path, cached: dict[str, Any]) -> bool:
    """Whether a video file's cached fps follows today's rules (`FILE_RATE_VERSION`). A record from
    before the version was recorded does, unless it is a Matroska / WebM file's whose frames were
    counted (no error, no list's count): the only records the mean rate changed, so an index of
    10^5 MP4s is not probed again for it."""
    if cached.get("rate") == FILE_RATE_VERSION:
        return True
    if "rate" in cached:  # recorded under other rules
        return False
    counted = "error" not in cached and not cached.get("frames_from_list")
    return not (counted and path.suffix.lower() in NOMINAL_RATE_SUFFIXES)


def probe_entry(path: Path, hint: int | None, cached: dict[str, Any] | None) -> dict[str, Any]:
    """Cache record of one entry: VideoInfo fields or {"error": ...}, plus its stamp."""
    try:
        stamp, is_folder = _stamp(path)
    except OSError as error:
        return {"stamp": None, "error": f"cannot stat ({error.strerror})"}
    if _still_valid(path, cached, stamp, hint, is_folder):
        return cached
    try:
        record: dict[str, Any] = asdict(probe(path, hint))
    except Exception as error:  # any decoder failure means "unusable video", never a crash
        record = {"error": problem_with(path, error)}
    # The version of the rules it was listed by (a folder) or its fps was found by (a file)
    rules = {"listing": FRAME_LISTING_VERSION} if is_folder else {"rate": FILE_RATE_VERSION}
    return {**record, "stamp": stamp, "hint": hint, **rules}
