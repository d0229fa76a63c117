"""Reading frames from video files and frame folders, streaming; writing mp4 videos.

Frames are always RGB ``uint8`` arrays of shape (H, W, 3). A `FrameSource` decodes lazily, one
frame at a time, and can be iterated again (each pass reopens the file), so memory does not grow
with video length unless the caller asks for all frames (`FrameSource.read_all`).

Backends: a folder of ``*.jpg|*.jpeg|*.png`` (`vidcorr.io.images`; natural sort: 2.jpg <
10.jpg), PyAV (preferred for video files; `vidcorr.io.video_pyav`), and OpenCV when PyAV is not
installed (e.g. a GPU machine with OpenCV only; `vidcorr.io.video_opencv`). Both are imported
lazily. Frames come upright, as a player shows them: a video's rotation metadata (phone footage is
stored landscape with a display matrix) and a JPEG's EXIF orientation are applied, so a mask drawn
on what the user sees fits the frames.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from vidcorr.errors import InputError, TooFewFrames, VidcorrError
from vidcorr.io.atomic import atomic_file
from vidcorr.io.container_size import refuse_cut_short_container
from vidcorr.io.images import IMAGE_SUFFIXES, is_frame_file, list_frame_files, read_image, shared_size
from vidcorr.io.video_opencv import opencv_count, opencv_decode, opencv_metadata, write_opencv
from vidcorr.io.video_pyav import pyav_count, pyav_decode, pyav_metadata, pyav_times, write_pyav

log = logging.getLogger(__name__)

BACKENDS = ("auto", "pyav", "opencv")
GIVE_FRAMES = "give the folder of frames (or a video file)"  # `open_frames`' image_advice for a video to propagate

# A decoder yields one callable per frame; calling it converts that frame to RGB uint8. Frames
# that are skipped are never converted (`read_frames_at`). A callable is valid only until the
# next frame is pulled (OpenCV retrieves the frame it last grabbed).
LazyFrame = Callable[[], np.ndarray]
Decoder = Callable[[], Iterator[LazyFrame]]
FrameCount = Callable[[], int | None]  # a header's frame count, worked out when first asked for
# `FrameSource.frame_times`, worked out when asked for: of the first N frames (`FrameSource.head`), or all (None)
FrameTimes = Callable[[int | None], list[float] | None]


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
        with PyAV (demuxing only), in the order frames decode, also where its timestamps start
        again (joined MPEG-TS files); None for a frame folder, the OpenCV backend, or a file whose
        packets lack timestamps or all share one (`vidcorr.io.frame_times`)."""
        return self._times(None) if self._times is not None else None

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

    def head(self, n: int) -> FrameSource:
        """The first ``n`` frames (all of them if fewer) as a `FrameSource` of their own: iterated,
        counted, timed and named (``files``) as the first ``n`` of this one. A quick look at a long
        video (`propagate --max-frames`) decodes only those, and reads the timestamps of the packets
        their times need, not every packet's (`vidcorr.io.frame_times.shown_times`)."""
        if n < 1:
            raise ValueError(f"{self.path}: head needs at least one frame, got {n}")
        decode = self._decode

        def first() -> Iterator[LazyFrame]:
            with contextlib.closing(decode()) as frames:  # the decoder is closed where we stop pulling
                for index, lazy in enumerate(frames):
                    if index == n:
                        return
                    yield lazy

        def count() -> int | None:
            total = self.num_frames
            return None if total is None else min(n, total)

        def times(wanted: int | None) -> list[float] | None:  # the packets of the first n frames, not all
            return self._times(n if wanted is None else min(n, wanted))

        return FrameSource(self.path, first, self.size, self.fps, count, self.backend,
                           None if self.files is None else self.files[:n], None if self._times is None else times)

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


def _video_source(path: Path, backend: str) -> FrameSource:
    decode, metadata = {"pyav": (pyav_decode, pyav_metadata),
                        "opencv": (opencv_decode, opencv_metadata)}[backend]
    fps, num_frames = metadata(path)
    with contextlib.closing(decode(path)) as frames:
        first = next(frames, None)
        if first is None:
            raise InputError(path, "contains no decodable video frames")
        size = first().shape[:2]
    times = (lambda first: pyav_times(path, first)) if backend == "pyav" else None
    return FrameSource(path, lambda: decode(path), size, fps, num_frames, backend, times=times)


def open_frames(path: str | Path, fps: float | None = None, backend: str = "auto",
                exclude: Sequence[str | Path] = (), image_advice: str | None = None,
                every_frame: bool = False) -> FrameSource:
    """Open a video file or a folder of frames for streaming.

    fps: frame rate to report for a folder (videos report their own).
    backend: "auto" (PyAV if installed, else OpenCV), "pyav" or "opencv"; ignored for folders.
    exclude: files a folder holds that are not frames (the first-frame mask kept beside them):
    left out, with a log line for each one the folder holds.
    image_advice: refuse an image file (by suffix) with "is one image: <image_advice>", for
    commands given a video by a user: PyAV opens an image as a video of one frame, so they went
    on to "propagate 1 frames". None (training, whose videos are found by suffix) leaves it be.
    every_frame: the caller reads every frame (`propagate` without --max-frames, the API's
    propagation): a video file shorter than its container's top-level sizes say (`refuse_cut_short_container`,
    read from box / chunk headers: a fraction of a millisecond) is refused here. Decoding refuses
    such a file only where it reaches the cut, after the frames before it were processed (minutes);
    a reader of a prefix (`FrameSource.head`) or of given frames (`read_at`) leaves it False, and the
    frames before the cut serve it.
    Raises `InputError` naming the file for a missing path, a folder without images or with
    frames of different sizes, and an unreadable, corrupt, cut-short (every_frame) or empty video.
    """
    path = Path(path)
    if path.is_dir():
        return _folder_source(path, fps, [Path(p) for p in exclude])
    if not path.is_file():
        raise InputError(path, "no such video file or frame folder")
    if image_advice is not None and path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(path, f"is one image: {image_advice}")
    if every_frame:
        refuse_cut_short_container(path)
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
    return pyav_count(path) if _video_backend(backend) == "pyav" else opencv_count(path)


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
            write_pyav(tmp, first, checked, fps, times)
        else:
            write_opencv(tmp, first, checked, fps)
    return path
