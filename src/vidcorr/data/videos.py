"""The video index: which training videos exist, and their frame count, frame rate and size.

Sources are folder trees (searched recursively for video files and for folders of frames), single
video files, or list files with one entry a line: a path relative to the list's folder or absolute, optionally
followed by a frame count (the "folder nframes" lists of CRW / TimeCycle, METHODS.md §8.1), which
spares counting the frames of video files and is checked against a frame folder's listing.
Kinetics' ``train_256/<class>/<id>.mp4`` is just a folder tree and needs nothing special.

Probing a video opens its container and decodes one frame (through `vidcorr.io.video`, so it
validates the file and works with PyAV or OpenCV); the frame count comes from the container's
metadata and is only counted when the container does not record it or its record may hold frames
that are never shown (an MP4 edit list's: `vidcorr.io.video.FrameSource.num_frames`); the packets
read to count them give the mean frame rate too. The results are cached in one JSON file keyed by
absolute path and revalidated by (mtime, size) (a frame folder's failure, one listed by older rules
and a file's rate found by older rules are probed again: `_still_valid`), so re-indexing 10^5
videos costs a ``stat`` each, not the ~10 h first pass CRW users hit (METHODS.md §9, videowalk
issue #3). The cache lives under the run dir or ``~/.cache/vidcorr``, never next to the user's data.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vidcorr.errors import InputError
from vidcorr.io.atomic import write_text_atomic
from vidcorr.io.images import FRAME_LISTING_VERSION, IMAGE_SUFFIXES, natural_key
from vidcorr.io.text import read_text
from vidcorr.io.video import count_frames, open_frames

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi")
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
MIN_FRAMES = 2  # a training pair needs two distinct frames


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


@dataclass
class VideoIndex:
    """The videos found in ``sources`` and those left out (``skipped``: (path, problem))."""

    videos: list[VideoInfo]
    sources: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> VideoInfo:
        return self.videos[i]

    def describe(self) -> dict[str, Any]:
        """Plain-JSON summary for logs, checkpoints and weights sidecars."""
        return {
            "sources": self.sources,
            "videos": len(self.videos),
            "frames": sum(v.num_frames for v in self.videos),
            "skipped_at_index": len(self.skipped),
        }


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vidcorr`` or ``~/.cache/vidcorr``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidcorr"


# ---------------------------------------------------------------------------------------------
# Listing: sources -> (path, frame-count hint or None)


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _is_frame(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def list_folder(root: Path) -> list[tuple[Path, int | None]]:
    """Video files and frame folders under ``root`` (recursive, symlinks followed), sorted."""
    found: list[tuple[Path, int | None]] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort(key=natural_key)
        here = Path(folder)
        found.extend((here / f, None) for f in sorted(files, key=natural_key) if _is_video(here / f))
        if any(_is_frame(f) for f in files):
            found.append((here, None))
    return found


def list_file(list_path: Path) -> list[tuple[Path, int | None]]:
    """Entries of a list file: ``path`` or ``path nframes`` per line; ``#`` starts a comment.

    Relative paths are taken from the list's folder. Paths may contain spaces; a trailing
    integer is read as the frame count (trusted for video files, checked for frame folders: `probe`).
    """
    lines = read_text(list_path, "list file").splitlines()  # a BOM is not part of the first path
    entries: list[tuple[Path, int | None]] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        # isdecimal: "²" is isdigit but no number int() reads (as `natural_key`)
        hint = int(parts[1]) if len(parts) == 2 and parts[1].isdecimal() else None
        path = Path(parts[0] if hint is not None else line)
        entries.append((path if path.is_absolute() else list_path.parent / path, hint))
    return entries


def list_source(source: str | Path) -> list[tuple[Path, int | None]]:
    """Entries of one source (folder tree, list file or one video file); `InputError` if missing
    or empty."""
    source = Path(source)
    if source.is_dir():
        entries = list_folder(source)
    elif source.is_file() and _is_video(source):
        # One's own single video: read as a list file it failed with "unreadable list file
        # ('utf-8' codec can't decode ...)", which said nothing of what to do.
        entries = [(source, None)]
    elif source.is_file():
        entries = list_file(source)
    else:
        raise InputError(source, "no such data folder or list file")
    if not entries:
        kinds = "/".join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        raise InputError(source, f"no videos found (looked for {kinds} files, recursively)")
    return entries


# ---------------------------------------------------------------------------------------------
# Probing, with a (mtime, size)-validated cache


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


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable video metadata cache %s (%s)", path, error)
        return {}
    return data.get("videos", {}) if data.get("format") == CACHE_FORMAT else {}


def _save_cache(path: Path, entries: dict[str, dict[str, Any]]) -> None:
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


def _probe_entry(path: Path, hint: int | None, cached: dict[str, Any] | None) -> dict[str, Any]:
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


def _usable(path: Path, record: dict[str, Any]) -> VideoInfo | tuple[str, str]:
    if "error" in record:
        return str(path), record["error"]
    info = VideoInfo(**{f.name: record[f.name] for f in fields(VideoInfo)})
    if info.num_frames < MIN_FRAMES:
        return str(path), f"has {info.num_frames} frame(s); a pair needs {MIN_FRAMES}"
    return info


def build_index(
    sources: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    workers: int = 4,
) -> VideoIndex:
    """Index every video of ``sources`` (folder trees and/or list files).

    cache_dir: where the metadata cache lives (default `default_cache_dir()`).
    workers: probing threads (decoders release the GIL while parsing containers).
    Unreadable or too-short videos are left out with a warning and listed in
    ``VideoIndex.skipped``. A video that several sources (or entries) name is indexed once, with
    a warning (`_drop_duplicates`). Raises `InputError` naming the source for a missing source, one
    without videos, or one whose videos are all unusable.
    """
    if not sources:
        raise InputError(None, "no training data given")
    cache_path = Path(cache_dir or default_cache_dir()) / CACHE_NAME
    cache = _load_cache(cache_path)
    # abspath, not resolve: a Kinetics tree of symlinks keeps its own (class/id) names. Resolved
    # paths only find the videos that overlapping sources name twice.
    listed = [(Path(s), [(Path(os.path.abspath(p)), h) for p, h in list_source(s)]) for s in sources]
    per_source, entries = _drop_duplicates(listed, [os.fspath(s) for s in sources])
    with ThreadPoolExecutor(max(1, workers)) as pool:
        records = list(pool.map(lambda e: _probe_entry(e[0], e[1], cache.get(str(e[0]))), entries))
    records_by_path = {str(path): record for (path, _), record in zip(entries, records)}
    cache.update(records_by_path)
    _save_cache(cache_path, cache)
    index = VideoIndex([], [str(s) for s in sources])
    for (path, _), record in zip(entries, records):
        usable = _usable(path, record)
        if isinstance(usable, VideoInfo):
            index.videos.append(usable)
        else:
            log.warning("skipping %s: %s", *usable)
            index.skipped.append(usable)
    for source, source_entries in per_source:
        _warn_overridden_counts(source, source_entries, records_by_path)
    _check_sources_usable(per_source, index)
    return index


Entries = list[tuple[Path, int | None]]


def _drop_duplicates(per_source: list[tuple[Path, Entries]], labels: Sequence[str]
                     ) -> tuple[list[tuple[Path, Entries]], Entries]:
    """(``per_source`` with each repeat under its first entry's path, the entries without repeats),
    with one warning naming the repeats: entries whose resolved path an earlier entry has.

    ``--data vids --data vids/bear.mp4`` indexed bear twice and sampled it twice as often, silently.
    A repeat stays in its source's list (under the kept path) so that the source still counts as
    usable; the first entry's frame-count hint is the one used. ``realpath`` costs a few ``lstat``s
    an entry, answered from the kernel's cache after the listing. ``labels``: the sources as given
    (``./vids``, which ``Path`` shortens to ``vids``).
    """
    first: dict[str, tuple[Path, int]] = {}  # resolved path -> (kept path, its source's number)
    unique: Entries = []
    repeats: dict[tuple[int, int], list[str]] = {}  # (source, earlier source) -> repeated videos
    result = []
    for number, (source, entries) in enumerate(per_source):
        kept_entries = []
        for path, hint in entries:
            resolved = os.path.realpath(path)
            if resolved not in first:
                first[resolved] = (path, number)
                unique.append((path, hint))
                kept_entries.append((path, hint))
                continue
            kept, kept_number = first[resolved]
            repeats.setdefault((number, kept_number), []).append(
                str(path) if kept == path else f"{path} (= {kept})")
            kept_entries.append((kept, hint))
        result.append((source, kept_entries))
    if repeats:
        log.warning("the data sources overlap; each video is indexed once: %s",
                    "; ".join(_repeats_line(labels, *key, videos) for key, videos in repeats.items()))
    return result, unique


def _repeats_line(labels: Sequence[str], number: int, earlier: int, videos: list[str]) -> str:
    def name(i: int) -> str:
        return f"source {i + 1} ({labels[i]})"
    where = "itself" if number == earlier else name(earlier)
    more = f" and {len(videos) - 3} more" if len(videos) > 3 else ""
    return f"{name(number)} repeats {len(videos)} video(s) of {where}: {', '.join(videos[:3])}{more}"


def _warn_overridden_counts(source: Path, entries: list[tuple[Path, int | None]],
                            records: dict[str, dict[str, Any]]) -> None:
    """One warning per list file whose frame counts for frame folders disagree with their listings.

    The listing wins (`probe`); the warning comes at every indexing, cached or not, so that a
    stale list is noticed (a wrong count used to drop the folder mid-training instead).
    """
    wrong = [(path, hint, records[str(path)]["num_frames"]) for path, hint in entries
             if hint and "error" not in records[str(path)] and records[str(path)]["num_frames"] != hint]
    if wrong:
        shown = "; ".join(f"{path} lists {hint}, has {count}" for path, hint, count in wrong[:3])
        more = f"; and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        log.warning("%s: %d frame folder(s) hold another number of frames than this list says; "
                    "using the folders' own counts (%s%s)", source, len(wrong), shown, more)


def _check_sources_usable(per_source: Iterable[tuple[Path, list]], index: VideoIndex) -> None:
    usable = {v.path for v in index.videos}
    for source, entries in per_source:
        if not any(str(path) in usable for path, _ in entries):
            problems = "; ".join(f"{Path(p).name}: {why}" for p, why in index.skipped[:3])
            raise InputError(source, f"none of its {len(entries)} video(s) is usable ({problems})")
