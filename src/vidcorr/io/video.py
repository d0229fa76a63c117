"""Reading frames from video files and frame folders, streaming; writing mp4 videos.

Frames are always RGB ``uint8`` arrays of shape (H, W, 3). A `FrameSource` decodes lazily, one
frame at a time, and can be iterated again (each pass reopens the file), so memory does not grow
with video length unless the caller asks for all frames (`FrameSource.read_all`).

Backends: a folder of ``*.jpg|*.jpeg|*.png`` (`vidcorr.io.images`; natural sort: 2.jpg <
10.jpg), PyAV (preferred for video files), and OpenCV when PyAV is not installed (e.g. a GPU
machine with OpenCV only; `vidcorr.io.video_opencv`). Both are imported lazily. Frames come
upright, as a player shows them: a video's rotation metadata (phone footage is stored landscape
with a display matrix) and a JPEG's EXIF orientation are applied, so a mask drawn on what the user
sees fits the frames.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np

from vidcorr.errors import InputError, TooFewFrames, VidcorrError
from vidcorr.io.atomic import atomic_file
from vidcorr.io.container_size import avi_video_frames, check_av_not_truncated, frame_end
from vidcorr.io.frame_times import TIME_BASE, frame_ticks, shown_packets, shown_times
from vidcorr.io.images import is_frame_file, list_frame_files, read_image, shared_size
from vidcorr.io.video_opencv import opencv_count, opencv_decode, opencv_metadata, write_opencv

log = logging.getLogger(__name__)

BACKENDS = ("auto", "pyav", "opencv")

# A decoder yields one callable per frame; calling it converts that frame to RGB uint8. Frames
# that are skipped are never converted (`read_frames_at`). A callable is valid only until the
# next frame is pulled (OpenCV retrieves the frame it last grabbed).
LazyFrame = Callable[[], np.ndarray]
Decoder = Callable[[], Iterator[LazyFrame]]
FrameCount = Callable[[], int | None]  # a header's frame count, worked out when first asked for
FrameTimes = Callable[[], list[float] | None]  # `FrameSource.frame_times`, worked out when asked for


def _import_av() -> ModuleType | None:
    try:
        import av
    except ImportError:
        return None
    return av


def _video_backend(backend: str) -> str:
    """Resolve ``backend`` to "pyav" or "opencv" for a video file."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        return "pyav" if _import_av() is not None else "opencv"
    if backend == "pyav" and _import_av() is None:
        raise VidcorrError("video backend 'pyav' requested but PyAV is not installed (pip install av)")
    return backend


class FrameSource:
    """Re-iterable stream of RGB uint8 frames (H, W, 3) from one video file or frame folder.

    Attributes:
        path: the video file or folder.
        size: (H, W) of the first frame; every frame has it (`InputError` otherwise).
        fps: frames per second, None for folders unless given to `open_frames`. One rate: a
            variable-frame-rate file's mean or nominal one (`frame_times` gives each frame's time).
        num_frames: frame count from the folder or container metadata, None when unknown or not
            sure to be the frames decoded; ``len()`` raises TypeError then. `count_frames` counts exactly.
            Worked out at first use (an AVI's count walks every chunk of the file: 0.25 s for an
            hour), so `read_at`, which never needs it, does not pay for it at each training draw.
        backend: "folder", "pyav" or "opencv".
        files: a folder's frame files in the order decoded (None for a video file).
    """

    def __init__(self, path: Path, decode: Decoder, size: tuple[int, int], fps: float | None,
                 num_frames: int | None | FrameCount, backend: str, files: list[Path] | None = None,
                 times: FrameTimes | None = None):
        self.path, self.size, self.fps = path, size, fps
        self._num_frames, self.backend = num_frames, backend
        self.files = files
        self._decode, self._times = decode, times

    @property
    def num_frames(self) -> int | None:
        if callable(self._num_frames):  # worked out once, at the first use
            self._num_frames = self._num_frames()
        return self._num_frames

    @num_frames.setter
    def num_frames(self, value: int | None) -> None:  # a caller that knows better (a count it made)
        self._num_frames = value

    def frame_times(self) -> list[float] | None:
        """When each frame is shown, seconds from the first (T,): a video file's own timing, which
        ``fps`` (one rate) misses in a variable-frame-rate file. From the packets' timestamps, read
        with PyAV (demuxing only); None for a frame folder, the OpenCV backend, or a file whose
        packets lack timestamps (`vidcorr.io.frame_times`)."""
        return self._times() if self._times is not None else None

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(f"{self.path}: the number of frames is not known; use count_frames()")
        return self.num_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        with contextlib.closing(self._decode()) as frames:
            for index, lazy in enumerate(frames):
                yield self._checked(index, lazy())

    def _checked(self, index: int, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != self.size:
            raise InputError(self.path, f"frame {index} is {frame.shape[1]}x{frame.shape[0]} "
                                        f"but the first frame is {self.size[1]}x{self.size[0]}")
        return frame

    def read_at(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames at ``indices`` (any order, repeats allowed), each RGB uint8 (H, W, 3).

        Decodes forward once up to the largest index and converts only the wanted frames (no
        seeking, so the result never depends on keyframe placement; folders read just those
        files). `TooFewFrames` (an `InputError`) if the source has fewer frames than requested.
        """
        if any(i < 0 for i in indices):
            raise ValueError(f"{self.path}: frame indices must be non-negative, got {list(indices)}")
        wanted, last, found, count = set(indices), max(indices, default=-1), {}, 0
        with contextlib.closing(self._decode()) as frames:
            for index, lazy in enumerate(frames):
                count = index + 1
                if index in wanted:
                    found[index] = self._checked(index, lazy())
                if index == last:
                    break
        if last >= count:
            raise TooFewFrames(self.path, last, count)
        # A repeated index gets its own copy, so in-place augmentation of one cannot alter another.
        result, used = [], set()
        for i in indices:
            result.append(found[i].copy() if i in used else found[i])
            used.add(i)
        return result

    def read_all(self) -> np.ndarray:
        """Decode every frame into memory: (T, H, W, 3) uint8. Only for short videos."""
        return np.stack(list(self))

    def __repr__(self) -> str:
        return (f"FrameSource({str(self.path)!r}, backend={self.backend!r}, size={self.size}, "
                f"fps={self.fps}, num_frames={self.num_frames})")


def open_frame_files(files: Sequence[Path], fps: float | None = None) -> FrameSource:
    """A `FrameSource` over exactly ``files``, in this order (at least one).

    For a benchmark that names its outputs after a frame list of its own (DAVIS: the ``*.jpg``
    files of a sequence), so that the n-th frame decoded is always the n-th file named: a folder
    also holding other images (a stray ``.png``) or sorted another way would otherwise shift every
    prediction onto the wrong file name.
    """
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("open_frame_files needs at least one file")
    return _files_source(files[0].parent, files, fps)


def _folder_source(folder: Path, fps: float | None, exclude: Sequence[Path] = ()) -> FrameSource:
    in_folder = [Path(p) for p in exclude if Path(p).resolve().parent == folder.resolve() and is_frame_file(Path(p))]
    for path in in_folder:  # else it became a frame (and got a result) of its own
        log.info("%s: left %s out of the frames: it is the first-frame annotation", folder, path.name)
    return _files_source(folder, list_frame_files(folder, exclude=in_folder), fps)


def _files_source(folder: Path, files: list[Path], fps: float | None) -> FrameSource:
    size = shared_size(files)

    def decode() -> Iterator[LazyFrame]:
        for file in files:
            yield lambda file=file: read_image(file)

    return FrameSource(folder, decode, size, fps, len(files), "folder", files)


def _open_av_container(path: Path):
    av = _import_av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise InputError(path, f"cannot be opened as a video ({_ffmpeg_problem(error)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(path, "has no video stream")
    return container


def _pyav_decode(path: Path) -> Iterator[LazyFrame]:
    av = _import_av()
    container = _open_av_container(path)
    try:
        stream = container.streams.video[0]
        # Slice threads only: frame threads deadlock when decoding stops before the end (opening a
        # source reads one frame) in some torchvision builds (PyAV issue 1849), and decoded no faster.
        stream.thread_type = "SLICE"
        end = None  # where the latest decoded frame's display ends, seconds (decode order is not display order)
        for frame in container.decode(stream):
            if (shown_until := frame_end(frame, stream)) is not None:
                end = shown_until if end is None else max(end, shown_until)
            yield lambda frame=frame: _upright(_rgb(frame), getattr(frame, "rotation", 0))
        check_av_not_truncated(path, container, end)
    except av.error.FFmpegError as error:
        raise InputError(path, f"video decoding failed ({_ffmpeg_problem(error)})") from None
    finally:
        container.close()


def _ffmpeg_problem(error: OSError) -> str:
    """What FFmpeg says went wrong, without the "[Errno 1094995529]" and the file name PyAV appends
    (the InputError names the file already: the training log showed every path twice)."""
    return error.strerror or str(error)


_SCALER_THREADS: dict[str, int] = {"threads": 1}  # emptied once if this PyAV has no such argument


def _rgb(frame) -> np.ndarray:
    """An ``av.VideoFrame`` as RGB uint8 (H, W, 3), converted by swscale on the calling thread.

    PyAV's default (``threads=0``, since it scales with ``sws_scale_frame``) gives swscale its own
    thread pool; under Python 3.12 with PyAV 18.1, a DataLoader worker forked after the parent had
    converted a frame (the video index does, to read each video's size) waited on that pool forever,
    so training hung at its first batch. One thread is also faster here: 0.3-1.2 against
    6.7-15.8 ms a frame with the pool on the 456 x 256 training videos (a busy 2-core machine).
    Older PyAV (12.x) has no ``threads`` argument and scales on one thread anyway.
    """
    scaler = dict(_SCALER_THREADS)  # as this call tries it (the index probes from several threads)
    try:
        return frame.to_ndarray(format="rgb24", **scaler)
    except TypeError:
        if not scaler:
            raise
        _SCALER_THREADS.clear()
        return frame.to_ndarray(format="rgb24")


def _upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame turned as a player shows it. rotation: the display matrix's angle in degrees,
    counter-clockwise (``VideoFrame.rotation``; a PyAV without that attribute leaves frames as
    stored). A phone's portrait video is stored landscape with -90: turned clockwise here."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _pyav_metadata(path: Path) -> tuple[float | None, FrameCount]:
    """Frame rate (None when unknown) and the frame count, deferred (`FrameSource.num_frames`)."""
    container = _open_av_container(path)
    with contextlib.closing(container):
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        if container.format.name == "avi":
            # An AVI header's length also counts frames skipped before a late start, so its chunks are
            # counted (`avi_video_frames`): a walk through the whole file, done only when asked for.
            return fps, lambda: avi_video_frames(path)
        count = _pyav_header_count(stream, rate)  # read now: the stream is closed with the container
        return fps, lambda: count


def _pyav_header_count(stream, rate: Fraction | None) -> int | None:
    """The stream's frame count from its header where decoding yields that many frames, else None.

    An MP4's count is its samples, also those its edit list hides (``ffmpeg -ss 30 -c copy`` keeps up
    to a key-frame interval of them before the cut: 96 samples, 48 frames decoded); the stream's
    duration is the edit list's, so the count is trusted only where that duration holds as many
    frames at the average rate. Most other containers give no count.
    """
    if not stream.frames or not stream.duration or not rate:
        return None
    shown = float(stream.duration * stream.time_base * rate)
    return stream.frames if abs(stream.frames - shown) < 0.5 else None


def _pyav_times(path: Path) -> list[float] | None:
    with contextlib.closing(_open_av_container(path)) as container:
        return shown_times(container)


def _video_source(path: Path, backend: str) -> FrameSource:
    decode, metadata = {"pyav": (_pyav_decode, _pyav_metadata),
                        "opencv": (opencv_decode, opencv_metadata)}[backend]
    fps, num_frames = metadata(path)
    with contextlib.closing(decode(path)) as frames:
        first = next(frames, None)
        if first is None:
            raise InputError(path, "contains no decodable video frames")
        size = first().shape[:2]
    times = (lambda: _pyav_times(path)) if backend == "pyav" else None
    return FrameSource(path, lambda: decode(path), size, fps, num_frames, backend, times=times)


def open_frames(path: str | Path, fps: float | None = None, backend: str = "auto",
                exclude: Sequence[str | Path] = ()) -> FrameSource:
    """Open a video file or a folder of frames for streaming.

    fps: frame rate to report for a folder (videos report their own).
    backend: "auto" (PyAV if installed, else OpenCV), "pyav" or "opencv"; ignored for folders.
    exclude: files a folder holds that are not frames (the first-frame mask kept beside them):
    left out, with a log line for each one the folder holds.
    Raises `InputError` naming the file for a missing path, a folder without images or with
    frames of different sizes, and an unreadable, corrupt or empty video.
    """
    path = Path(path)
    if path.is_dir():
        return _folder_source(path, fps, [Path(p) for p in exclude])
    if not path.is_file():
        raise InputError(path, "no such video file or frame folder")
    return _video_source(path, _video_backend(backend))


def count_frames(path: str | Path, backend: str = "auto") -> int:
    """Exact number of frames of a video or frame folder, without decoding images.

    PyAV counts the video packets that are shown (demuxing only, about 100x faster than decoding:
    an MP4's edit list may hide some); OpenCV counts an AVI's video chunks (`avi_video_frames`) and
    trusts an MP4's frame count where its video track is shown long enough to hold that many
    frames, if the file is as long as its container says, and otherwise grabs every frame
    (`InputError` for a truncated file, as when decoding; `vidcorr.io.video_opencv`).
    """
    path = Path(path)
    if path.is_dir():
        return len(list_frame_files(path))
    if not path.is_file():
        raise InputError(path, "no such video file or frame folder")
    if _video_backend(backend) == "pyav":
        container = _open_av_container(path)
        with contextlib.closing(container):  # not those an MP4's edit list hides (`_pyav_header_count`)
            return sum(1 for _ in shown_packets(container, container.streams.video[0]))
    return opencv_count(path)


def read_frames_at(path: str | Path, indices: Sequence[int], backend: str = "auto") -> list[np.ndarray]:
    """Frames at ``indices`` (any order, repeats allowed) as RGB uint8 (H, W, 3) arrays.

    For training samplers. See `FrameSource.read_at`.
    """
    if not indices:
        return []
    return open_frames(path, backend=backend).read_at(indices)


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by one replicated row/column: yuv420p needs even sizes."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else frame


def _checked_frames(path: Path, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    shape = None
    for index, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{path}: frame {index} must be uint8 (H, W, 3) RGB, "
                             f"got {frame.dtype} {frame.shape}")
        if shape is not None and frame.shape != shape:
            raise ValueError(f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but "
                             f"frame 0 is {shape[1]}x{shape[0]}")
        shape = frame.shape
        yield _even(frame)


def _write_pyav(tmp: Path, first: np.ndarray, frames: Iterator[np.ndarray], fps: float,
                times: Sequence[float] | None) -> None:
    av = _import_av()
    try:
        codec = av.codec.Codec("libx264", "w").name
    except ValueError:  # UnknownCodecError
        codec = "mpeg4"  # FFmpeg builds without GPL x264
    with av.open(str(tmp), mode="w") as container:
        # crf 18: overlays have thin mask contours that must survive compression.
        options = {"crf": "18"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = int(first.shape[0] * first.shape[1] * fps * 0.5)  # ~0.5 bit/pixel
        ticks = None
        if times is not None:  # each frame at its own time; fps stays the nominal rate
            stream.codec_context.time_base, ticks = TIME_BASE, frame_ticks(times, fps)
        for frame in itertools.chain((first,), frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if ticks is not None:
                picture.pts, picture.time_base = next(ticks), TIME_BASE
            container.mux(stream.encode(picture))
        container.mux(stream.encode())


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float,
                backend: str = "auto", times: Sequence[float] | None = None) -> Path:
    """Encode RGB uint8 frames (H, W, 3), all one size, to an mp4 at ``path``; returns ``path``.

    PyAV with H.264 (libx264) when available, else MPEG-4 part 2; OpenCV ("mp4v") when PyAV is
    not installed. Odd sizes get one replicated row/column (yuv420p). Written to a temporary
    file in the same folder and renamed at the end: a failure leaves no half-written video.

    times: each frame's display time, seconds from the first (T,) (`FrameSource.frame_times`, a
    variable-frame-rate input's timing); frames beyond them follow at ``fps``. Honoured by PyAV;
    OpenCV's writer has only a constant rate, ``fps``. None: every frame 1 / ``fps`` apart.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    checked = _checked_frames(path, frames)
    first = next(checked, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    with atomic_file(path) as tmp:
        if _video_backend(backend) == "pyav":
            _write_pyav(tmp, first, checked, fps, times)
        else:
            write_opencv(tmp, first, checked, fps)
    return path
