"""When each frame of a video file is shown, for writing a video that keeps that timing.

A variable-frame-rate file (phone footage slows down in low light; screen recordings only store
frames that change) has no one frame rate: its container's rate is a mean, or a nominal figure the
frames do not follow. An overlay written at a constant rate ran ahead of or behind its input where
the rate changed, so `vidcorr propagate` writes each overlay frame at its input frame's time
(`shown_times`, PyAV only: the OpenCV backend reads timestamps only by decoding every frame, and its
writer takes a constant rate anyway).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from statistics import median

# The written video's clock: fine enough for any common rate (NTSC's 1001/30000 s is 2002 ticks),
# and coarse enough for MPEG-4 part 2 (the fallback codec), whose time base is at most 1/65535.
TIME_BASE = Fraction(1, 60000)


def shown_packets(container, stream) -> Iterator:
    """``stream``'s packets that decode to a shown frame, in file order (demuxing only).

    Packets an MP4's edit list hides are demuxed flagged "discard", decoded, and dropped; an older
    PyAV without `Packet.is_discard` yields them. Empty packets (a held frame's) show nothing new.
    """
    for packet in container.demux(stream):
        if packet.size and not getattr(packet, "is_discard", False):
            yield packet


def shown_times(container, first: int | None = None) -> list[float] | None:
    """Display time of each frame of ``container``'s first video stream, seconds from its first
    frame (T,), in the order frames decode (`display_times`; demuxing only: about 100x faster than
    decoding); None where a packet has no timestamp (raw streams, some AVI files) or no two differ.

    first: the times of the first ``first`` frames only (`vidcorr.io.video.FrameSource.head`), the
    same as the whole stream's cut to them, read from the packets they need (`_Settled`): up to
    where no later packet can be shown before them and one time differs, so a quick look at the
    start of an hour-long video does not demux all of it. Where their times depend on the rest (a
    restart of the timestamps among them: later parts follow the median step of the whole stream;
    packets without a decoding time) every packet is read. A packet past them without a timestamp,
    which made the whole stream's times None, is not seen.
    """
    stream = container.streams.video[0]
    stamps = []
    settled = None if first is None else _Settled(first)
    for packet in shown_packets(container, stream):
        if packet.pts is None:
            return None
        dts = None if packet.dts is None else packet.dts * packet.time_base
        stamps.append((packet.pts * packet.time_base, dts))
        if settled is not None and settled.add(*stamps[-1]):
            break
    times = display_times(stamps)
    return times if first is None or times is None else times[:first]


class _Settled:
    """Whether the packets read so far, in file order, fix the display times of the first ``first``
    frames (`shown_times`). In one part of the stream (`display_times`) decoding times increase and
    a frame is never shown before it is decoded (pts >= dts), so once a packet's dts reaches the
    ``first``-th smallest pts read, no later packet of the part sorts before those, and the part's
    start (its smallest pts) is among them; a later part comes after all of them. Their times
    are the whole stream's once two pts differ (else there is no timing: None), and need the rest
    where the timestamps start again (a later part's offset is the median step of the whole stream)."""

    def __init__(self, first: int):
        self.first, self.smallest = first, []  # a max-heap (negated) of the `first` smallest pts
        self.low = self.high = self.last_dts = None
        self.one_part = True

    def add(self, pts: Fraction, dts: Fraction | None) -> bool:
        """Take the next packet's (pts, dts), seconds -> whether the first frames' times are now fixed."""
        if dts is not None and self.last_dts is not None and dts < self.last_dts:
            self.one_part = False  # for good: the rest decides the later parts' offset
        self.last_dts = dts if dts is not None else self.last_dts
        self.low = pts if self.low is None else min(self.low, pts)
        self.high = pts if self.high is None else max(self.high, pts)
        if len(self.smallest) < self.first:
            heapq.heappush(self.smallest, -pts)
        elif pts < -self.smallest[0]:
            heapq.heapreplace(self.smallest, -pts)
        return (self.one_part and dts is not None and len(self.smallest) == self.first
                and -self.smallest[0] <= dts and self.high > self.low)


def display_times(stamps: Sequence[tuple[Fraction, Fraction | None]]) -> list[float] | None:
    """Each frame's display time, seconds from the first, in the order frames decode, from its
    packet's (pts, dts) in seconds, in file order; None where no two frames differ in time.

    Decode order is not display order (B-frames), so packets are sorted by pts, but not all of them
    at once: a stream's timestamps can start again (MPEG-TS files joined with ``cat``, a recorder
    restarting), and one sort interleaved the second part's frames with the first's, each shown at
    another frame's time. Decoding timestamps increase within a part, so a dts below the packet
    before's starts a new part; a packet without dts stays in the part it follows (Matroska stores
    pts only: FFmpeg derives each packet's dts from them, but not for the first few of a stream
    with B-frames, before it knows their delay). Each part is sorted alone and follows the one
    before one frame step later (the median step of the stream).
    """
    parts: list[list[Fraction]] = []
    last_dts = None
    for pts, dts in stamps:
        if not parts or (dts is not None and last_dts is not None and dts < last_dts):
            parts.append([])
        parts[-1].append(pts)
        last_dts = dts if dts is not None else last_dts
    parts = [sorted(part) for part in parts]
    steps = [later - earlier for part in parts for earlier, later in zip(part, part[1:]) if later > earlier]
    if not steps:  # one frame, or all at one time: no timing to keep
        return None
    step, times = median(steps), []
    for part in parts:
        shift = -part[0] if not times else times[-1] + step - part[0]
        times.extend(pts + shift for pts in part)
    return [float(t) for t in times]


def frame_ticks(times: Sequence[float] | None, fps: float) -> Iterator[int]:
    """Endless presentation timestamps in `TIME_BASE` ticks: ``times`` (seconds) first, then on
    at ``fps`` from the last one (a video decoding to more frames than it has packets), always
    increasing (an encoder refuses a repeated timestamp, and two packets of one time do occur)."""
    last = None
    for seconds in _then_steady(times or (), 1 / fps):
        tick = round(seconds / TIME_BASE)
        last = tick if last is None else max(tick, last + 1)
        yield last


def _then_steady(times: Iterable[float], period: float) -> Iterator[float]:
    """``times``, then every ``period`` seconds after the last one (from 0 when there are none)."""
    now = -period
    for now in times:
        yield now
    while True:
        now += period
        yield now
