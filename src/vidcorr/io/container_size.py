"""How long a video file's container says it is, and the checks that decoding got there.

A file cut short (a copy or download that stopped) decodes without an error up to the cut. The PyAV
backend compares where decoding got (`frame_end`) with the container's duration, or with an AVI
video stream header's length (`check_av_not_truncated`); OpenCV gives neither that duration nor an
error, so its backend (`vidcorr.io.video_opencv`) first asks the container's top-level sizes, read
from the file's bytes, whether it was cut (`container_cut_short`). Both end in `refuse_if_cut_short`.
`mp4_video_seconds` reads how long an MP4 shows its video track, to check OpenCV's frame count;
`avi_video_frames` counts an AVI's frames from its chunks, for both backends' header counts;
`mp4_rotation` reads how a player turns an MP4's video track, for a PyAV without `VideoFrame.rotation`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path

from vidcorr.errors import InputError


def frame_end(frame, stream) -> float | None:
    """When ``frame`` stops being shown, seconds: its time plus its duration (else one frame at the
    stream's average rate); None for a frame without a time. A frame held long (a slow frame rate,
    a GIF's last frame) counts as far as it is shown, not from where it starts."""
    if frame.time is None:
        return None
    ticks = getattr(frame, "duration", None)  # PyAV >= 13
    if ticks and frame.time_base is not None:
        return frame.time + float(ticks * frame.time_base)
    rate = stream.average_rate
    return frame.time + (1.0 / float(rate) if rate else 0.0)


def check_av_not_truncated(path: Path, container, end: float | None) -> None:
    """`InputError` when a file stopped decoding its (first) video stream well before the end its
    header gives (end: where the last decoded frame's display ends, seconds).

    A file cut short (a copy or download that stopped) decodes without an error up to the cut
    (FFmpeg only logs "File ended prematurely"): a 40-frame Matroska video was propagated as its
    first 4 frames without a word. An AVI that its RIFF sizes show cut short (`container_cut_short`)
    is measured against its video stream header's length in frames (`_avi_video_seconds`), whatever
    other streams the file holds. Other files are measured against
    the container's duration, and only where they hold this video stream alone, as that duration
    covers all streams and an audio track may outlast the picture. Matroska counts its duration from
    0, the other containers (MP4, MOV, ...) from the stream's first timestamp.
    """
    if end is None:
        return
    import av  # only PyAV containers come here

    if container.format.name == "avi":
        # Only a file its RIFF sizes show cut short: a whole AVI whose last frame is held (empty
        # chunks, as FFmpeg writes a long last packet) decodes to less than its header's length.
        header = _avi_video_seconds(container.streams.video[0])
        if header is not None and container_cut_short(path) == "avi":
            refuse_if_cut_short(path, end, *header)
        return
    if len(container.streams) != 1 or not container.duration:
        return
    duration = container.duration / av.time_base
    from_zero = "matroska" in container.format.name  # "matroska,webm"
    expected = duration if from_zero else duration + (container.start_time or 0) / av.time_base
    refuse_if_cut_short(path, end, expected, duration)


def _avi_video_seconds(stream) -> tuple[float, float] | None:
    """(where the stream's header says it ends, how long it says it is), seconds, of an AVI video
    stream; None where the header gives no length (a recording that stopped before writing it).

    The stream header's length (dwLength, PyAV's ``stream.frames``) counts frames of the stream's
    time base (dwScale / dwRate), skipped frames included. Not the container's duration: for a file
    cut short FFmpeg scales that by the share of the file's bytes left, so that a 96-frame (4 s)
    mpeg4 AVI cut at 50% of its bytes, decoding 22 frames, was refused as "0.92 s of the 2.00 s",
    and cut at 80%, decoding 70 frames (2.92 s), was passed.
    """
    if not stream.frames or stream.time_base is None:
        return None
    start = float((stream.start_time or 0) * stream.time_base)
    duration = float(stream.frames * stream.time_base)
    return start + duration, duration


def refuse_if_cut_short(path: Path, end: float, expected: float, duration: float) -> None:
    """`InputError` when decoding ended (end: where the last frame's display ends, seconds) well before
    the end the header gives (expected, on the same clock); duration: the header's duration, seconds.

    Both backends' truncation checks end here. The slack (1 s or 5% of the duration) leaves variable
    frame rates and rounding alone.
    """
    if expected - end > max(1.0, 0.05 * duration):
        raise InputError(path, f"decoding ended at {end:.2f} s of the {expected:.2f} s its header gives: "
                               "the file is truncated (a copy or download cut short?)")


_MP4_TOP_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide")  # QuickTime files may lack ftyp


def container_format(path: Path) -> str | None:
    """"mp4" (MP4 or MOV), "avi" or "matroska" (Matroska or WebM) from a file's first bytes, else None."""
    with path.open("rb") as file:
        return _format(file.read(16))


def _format(head: bytes) -> str | None:
    if head[4:8] in _MP4_TOP_BOXES:
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return "matroska" if head[:4] == _EBML_MAGIC else None


def container_cut_short(path: Path) -> str | None:
    """"mp4", "avi" or "matroska" when ``path`` is such a file and shorter than its top-level sizes
    say (a box, RIFF chunk or Segment running past the end of the file), else None (other formats,
    sizes left open, as a live WebM's, or a file that does not parse)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(16)
        kind, end = _format(head), None
        if kind == "matroska":
            end = _matroska_segment_end(head + file.read(1 << 12))
        elif kind is not None:
            end = _top_level_end(file, size, kind)
    return kind if end is not None and end > size else None


def cut_short_problem(path: Path) -> str | None:
    """What to say of a file shorter than its container's top-level sizes say (`container_cut_short`):
    "is cut short: ...", for an `InputError` naming it; None for other files (and one that cannot be read)."""
    try:
        kind = container_cut_short(path)
    except OSError:
        return None
    if kind is None:
        return None
    parts = {"mp4": "MP4 boxes run", "avi": "AVI chunks run", "matroska": "Matroska segment runs"}[kind]
    return f"is cut short: its {parts} past the end of the file (a copy or download that did not finish?)"


def refuse_cut_short_container(path: Path) -> None:
    """`InputError` naming ``path`` when `cut_short_problem` has something to say of it: for readers that
    refuse such a file before decoding (`vidcorr.io.video.open_frames` with every_frame, the training
    data's `vidcorr.data.video_probe.probe`)."""
    if (cut := cut_short_problem(path)) is not None:
        raise InputError(path, cut)


def _top_level_end(file, size: int, kind: str) -> int:
    """Where the top-level MP4 boxes or AVI RIFF chunks of ``file`` say it ends, bytes; ``size`` where
    they leave it open (an MP4 box to the end of the file, a RIFF size of 0: not written, as by a
    recording that stopped) or bytes that are not such follow (a tool's trailer): nothing to say."""
    position = 0
    while position + 8 <= size:
        if kind == "mp4":
            name, body, end = _box_header(file, position, size)
            if not all(32 <= c < 127 for c in name) or end < body:  # not a box
                return size
        else:
            name, body, end = _chunk_header(file, position)
            if name != b"RIFF" or end == body:
                return size
            end += (end - body) % 2  # contents padded to an even length
        position = end
    return position


def avi_video_frames(path: Path) -> int | None:
    """Frames an AVI file's first video stream holds, as decoding yields them: its non-empty chunks
    in every RIFF list "movi" (an OpenDML file over 1 GiB continues in "AVIX" ones). None where the
    file does not parse as AVI or has no video stream.

    Not the stream header's length: that counts the empty chunks FFmpeg writes for frames skipped
    before a late start (168 for a 48-frame stream starting at 5 s) and for a held last frame, and
    FFmpeg's own count may add one for an AAC track (49).
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        video, frames = None, 0
        for kind, body, end in _riff_chunks(file, 0, size):
            if kind != b"RIFF":  # trailing bytes
                break
            for kind, inner, stop in _riff_chunks(file, body + 4, end):
                list_type = _list_type(file, kind, inner)
                if list_type == b"hdrl" and video is None:
                    video = _avi_video_stream(file, inner + 4, stop)
                elif list_type == b"movi" and video is not None:
                    frames += _avi_chunks_of(file, inner + 4, stop, video)
    return frames if video is not None else None


def _riff_chunks(file, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, where its contents start, where it ends) of each RIFF chunk from ``start`` to ``end``
    (`_chunk_header`), its contents padded to an even length."""
    position = start
    while position + 8 <= end:
        kind, body, stop = _chunk_header(file, position)
        yield kind, body, min(stop, end)
        position = stop + (stop - body) % 2


def _chunk_header(file, position: int) -> tuple[bytes, int, int]:
    """(id, where its contents start, where its size says they end) of the RIFF chunk at
    ``position``: a four-character id, then the little-endian size of its contents."""
    file.seek(position)
    head = file.read(8)
    return head[:4], position + 8, position + 8 + int.from_bytes(head[4:8], "little")


def _list_type(file, kind: bytes, body: int) -> bytes | None:
    """A LIST chunk's type ("hdrl", "strl", "movi", "rec "), None for other chunks."""
    if kind != b"LIST":
        return None
    file.seek(body)
    return file.read(4)


def _avi_video_stream(file, start: int, end: int) -> int | None:
    """The number of the first video stream ("vids" in its stream header) in an AVI's "hdrl" list:
    its chunks in "movi" are named by it ("00dc", "01db" ...)."""
    streams = [(inner, stop) for kind, inner, stop in _riff_chunks(file, start, end)
               if _list_type(file, kind, inner) == b"strl"]
    for number, (strl, stop) in enumerate(streams):
        header = next((body for kind, body, _ in _riff_chunks(file, strl + 4, stop) if kind == b"strh"), None)
        if header is not None:
            file.seek(header)
            if file.read(4) == b"vids":
                return number
    return None


def _avi_chunks_of(file, start: int, end: int, stream: int) -> int:
    """Non-empty frame chunks ("NNdc" compressed, "NNdb" uncompressed) of stream NN from ``start``
    to ``end`` of a "movi" list, also inside its "rec " groups."""
    names = {b"%02ddc" % stream, b"%02ddb" % stream}
    count = 0
    for kind, body, end_of_chunk in _riff_chunks(file, start, end):
        if _list_type(file, kind, body) == b"rec ":
            count += _avi_chunks_of(file, body + 4, end_of_chunk, stream)
        elif kind in names and end_of_chunk > body:
            count += 1
    return count


def mp4_video_seconds(path: Path) -> float | None:
    """How long an MP4 / MOV file shows its first video track, seconds: the track header's duration
    (its edit list's: samples the list hides are not counted) over the movie's time scale. None where
    the file does not say (no index, as in a file cut before it, or a fragmented file's duration 0)."""
    with path.open("rb") as file:
        moov = _find_box(file, 0, file.seek(0, 2), b"moov")
        if moov is None:
            return None
        scale = duration = None
        for kind, body, end in _boxes(file, *moov):
            if kind == b"mvhd":
                scale = _versioned_field(file, body, version0=(12, 4), version1=(20, 4))
            elif kind == b"trak" and duration is None and _handler(file, body, end) == b"vide":
                header = _find_box(file, body, end, b"tkhd")
                duration = header and _versioned_field(file, header[0], version0=(20, 4), version1=(28, 8))
    unknown = duration in (None, 0, (1 << 32) - 1, (1 << 64) - 1)  # all ones: "not given"
    return None if unknown or not scale else duration / scale


def mp4_rotation(path: Path) -> int:
    """How far a player turns an MP4 / MOV file's first video track to show it: degrees counter-clockwise
    as ``av.VideoFrame.rotation`` gives them (-180, -90, 0 or 90; a phone's portrait video, stored
    landscape, says -90), from the track header's display matrix. 0 for other containers and a file
    without an index. A mirroring matrix gives the angle FFmpeg reads from it (a horizontal mirror: -180)."""
    if container_format(path) != "mp4":
        return 0
    with path.open("rb") as file:
        moov = _find_box(file, 0, file.seek(0, 2), b"moov")
        for kind, body, end in _boxes(file, *moov) if moov else ():
            if kind == b"trak" and _handler(file, body, end) == b"vide":
                header = _find_box(file, body, end, b"tkhd")
                return _matrix_rotation(file, header[0]) if header else 0
    return 0


def _matrix_rotation(file, body: int) -> int:
    """The quarter turn of the display matrix {a, b, u, c, d, v, x, y, w} (16.16 fixed point but u, v,
    w) in the track header whose contents start at ``body``: after 40 bytes (version 0) or 52 (version 1,
    64-bit times). FFmpeg's av_display_rotation_get: -atan2(b, a), each scaled by its column's length."""
    file.seek(body)
    file.seek(body + (52 if file.read(1) == b"\x01" else 40))
    raw = file.read(20)
    if len(raw) < 20:
        return 0
    a, b, _, c, d = struct.unpack(">5i", raw)
    if not (math.hypot(a, c) and math.hypot(b, d)):
        return 0
    degrees = -math.degrees(math.atan2(b / math.hypot(b, d), a / math.hypot(a, c)))
    return 90 * round(degrees / 90)


def _boxes(file, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, where its contents start, where it ends) of each MP4 box from ``start`` to ``end``
    (`_box_header`), up to bytes that are not boxes."""
    position = start
    while position + 8 <= end:
        kind, body, stop = _box_header(file, position, end)
        if stop < body:  # not boxes
            return
        yield kind, body, min(stop, end)
        position = stop


def _box_header(file, position: int, end: int) -> tuple[bytes, int, int]:
    """(type, where its contents start, where its size says it ends) of the MP4 box at ``position``:
    a 32-bit size, then the type; size 1: a 64-bit size follows (where the file's end cuts it off,
    the box is taken as its 16-byte header alone, which runs past that end); 0: the box runs to ``end``."""
    file.seek(position)
    head = file.read(16)
    length, body = int.from_bytes(head[:4], "big"), position + 8
    if length == 1:
        length, body = int.from_bytes(head[8:16], "big") if len(head) == 16 else 16, body + 8
    elif length == 0:
        length = end - position
    return head[4:8], body, position + length


def _find_box(file, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """Where the first ``kind`` box from ``start`` to ``end`` has its contents: (start, end)."""
    return next(((body, stop) for found, body, stop in _boxes(file, start, end) if found == kind), None)


def _handler(file, start: int, end: int) -> bytes | None:
    """A track's handler type ("vide", "soun", ...), from the contents of its trak box."""
    media = _find_box(file, start, end, b"mdia")
    handler = _find_box(file, *media, b"hdlr") if media else None
    if handler is None:
        return None
    file.seek(handler[0] + 8)  # after version, flags and pre_defined
    return file.read(4)


def _versioned_field(file, body: int, version0: tuple[int, int], version1: tuple[int, int]) -> int:
    """The (offset, bytes) field of a box whose layout its version (first byte) chooses: 1 has
    64-bit times. 0 where the file ends first."""
    file.seek(body)
    offset, width = version1 if file.read(1) == b"\x01" else version0
    file.seek(body + offset)
    return int.from_bytes(file.read(width), "big")


_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MATROSKA_SEGMENT = 0x18538067


def _matroska_segment_end(head: bytes) -> int | None:
    """Where a Matroska / WebM file's Segment says it ends, bytes, from the file's first bytes; None
    for a Segment of unknown size (a live stream) or bytes that do not parse."""
    try:
        _, position = _ebml_number(head, 0, marker=True)  # the EBML header ...
        size, position = _ebml_number(head, position)
        element, position = _ebml_number(head, position + size, marker=True)  # ... then the Segment
        size, body = _ebml_number(head, position)
    except IndexError:
        return None
    unknown = (1 << 7 * (body - position)) - 1  # all ones: "unknown size"
    return body + size if element == _MATROSKA_SEGMENT and size != unknown else None


def _ebml_number(data: bytes, position: int, marker: bool = False) -> tuple[int, int]:
    """The EBML variable-length number at ``position`` and the position after it: its first byte's
    leading zeros give its length. Element IDs keep the length marker bit, sizes drop it."""
    length = 9 - data[position].bit_length()
    if length > 8 or position + length > len(data):
        raise IndexError("not an EBML number")
    value = int.from_bytes(data[position:position + length], "big")
    return (value if marker else value & ((1 << 7 * length) - 1)), position + length

