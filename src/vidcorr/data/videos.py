"""The video index: which training videos exist, and their frame count, frame rate and size.

Sources are folder trees (searched recursively for video files and for folders of frames), single
video files, or list files with one entry a line: a path relative to the list's folder or absolute, optionally
followed by a frame count (the "folder nframes" lists of CRW / TimeCycle, METHODS.md §8.1), which
spares counting the frames of video files and is checked against a frame folder's listing.
Kinetics' ``train_256/<class>/<id>.mp4`` is just a folder tree and needs nothing special.

Each entry is probed once and cached (`vidcorr.data.video_probe`: a ``stat`` each on re-indexing, not
the ~10 h first pass CRW users hit). The cache lives under the run dir or ``~/.cache/vidcorr``,
never next to the user's data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from vidcorr.data.video_probe import CACHE_NAME, VideoInfo, load_cache, probe_entry, save_cache
from vidcorr.errors import InputError
from vidcorr.io.images import IMAGE_SUFFIXES, natural_key
from vidcorr.io.text import has_wide_text_bom, read_text

log = logging.getLogger(__name__)

# .mov / .m4v: phone recordings (an iPhone records .mov), MP4-family containers that decoding reads as MP4s
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


class FrameNeed(NamedTuple):
    """The frames a video must have for a method's samples: ``count``, and what needs them
    (``sample``, for the skip warning: "has 1 frame(s); a pair needs 2")."""

    count: int
    sample: str


PAIR = FrameNeed(2, "a pair")  # UVC / STT: two distinct frames (`vidcorr.data.pairs.FRAME_NEEDS`)


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


def _is_text(path: Path) -> bool:
    """Whether ``path`` starts as text a list file could hold: no NUL bytes in its first 4 KiB, or
    UTF-16 / 32 by its byte-order mark. Videos are binary (every container header holds NULs);
    false also for an unreadable file. Text in another 8-bit encoding (Latin-1) counts: read as a
    list file, it is refused asking for UTF-8 (`read_text`); probed as a video it was "cannot be
    opened as a video (Invalid data ...)", which did not say what was wrong."""
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    # read_text's own marks: UTF-32 BE's (00 00 FE FF) does not start with UTF-16 BE's (FE FF), and
    # such a list file was probed as a video
    return has_wide_text_bom(head) or b"\0" not in head


def list_source(source: str | Path) -> list[tuple[Path, int | None]]:
    """Entries of one source (folder tree, list file or one video file); `InputError` if missing
    or empty."""
    source = Path(source)
    if source.is_dir():
        entries = list_folder(source)
    elif source.is_file() and (_is_video(source) or not _is_text(source)):
        # One's own single video: read as a list file it failed with "unreadable list file
        # ('utf-8' codec can't decode ...)", which said nothing of what to do. Decoding goes by
        # content, so a binary file of any suffix (clip.mpg, .ts, .3gp) is probed as a video.
        entries = [(source, None)]
    elif source.is_file():
        entries = list_file(source)
    else:
        raise InputError(source, "no such data folder or list file")
    if not entries:
        kinds = "/".join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        raise InputError(source, f"no videos found (looked for {kinds} files, recursively)")
    return entries


def _usable(path: Path, record: dict[str, Any], need: FrameNeed) -> VideoInfo | tuple[str, str]:
    if "error" in record:
        return str(path), record["error"]
    info = VideoInfo(**{f.name: record[f.name] for f in fields(VideoInfo)})
    if info.num_frames < need.count:
        return str(path), f"has {info.num_frames} frame(s); {need.sample} needs {need.count}"
    return info


def build_index(
    sources: Sequence[str | Path],
    cache_dir: str | Path | None = None,
    workers: int = 4,
    need: FrameNeed = PAIR,
) -> VideoIndex:
    """Index every video of ``sources`` (folder trees and/or list files).

    cache_dir: where the metadata cache lives (default `default_cache_dir()`).
    workers: probing threads (decoders release the GIL while parsing containers).
    need: the frames a sample takes (`vidcorr.data.pairs.frames_needed`): a video with fewer is
    too short. MoCo and the auto-encoder take one frame a sample, so a still image is a video.
    Unreadable or too-short videos are left out with a warning and listed in
    ``VideoIndex.skipped``. A video that several sources (or entries) name is indexed once, with
    a warning (`_drop_duplicates`). Raises `InputError` naming the source for a missing source, one
    without videos, or one whose videos are all unusable.
    """
    if not sources:
        raise InputError(None, "no training data given")
    cache_path = Path(cache_dir or default_cache_dir()) / CACHE_NAME
    cache = load_cache(cache_path)
    # abspath, not resolve: a Kinetics tree of symlinks keeps its own (class/id) names. Resolved
    # paths only find the videos that overlapping sources name twice.
    listed = [(Path(s), [(Path(os.path.abspath(p)), h) for p, h in list_source(s)]) for s in sources]
    per_source, entries = _drop_duplicates(listed, [os.fspath(s) for s in sources])
    with ThreadPoolExecutor(max(1, workers)) as pool:
        records = list(pool.map(lambda e: probe_entry(e[0], e[1], cache.get(str(e[0]))), entries))
    records_by_path = {str(path): record for (path, _), record in zip(entries, records)}
    cache.update(records_by_path)
    try:
        save_cache(cache_path, cache)
    except OSError as error:  # the default ~/.cache in a read-only home: the cache only spares probing
        log.warning("cannot write the video metadata cache %s (%s): the videos are probed again next "
                    "time (--cache-dir chooses another folder)", cache_path, error.strerror or error)
    index = VideoIndex([], [str(s) for s in sources])
    for (path, _), record in zip(entries, records):
        usable = _usable(path, record, need)
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
            # its own videos' problems: the first three of the whole index named other sources' videos
            own = {str(path) for path, _ in entries}
            problems = "; ".join([f"{Path(p).name}: {why}" for p, why in index.skipped if p in own][:3])
            raise InputError(source, f"none of its {len(entries)} video(s) is usable ({problems})")
