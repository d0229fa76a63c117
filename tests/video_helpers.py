"""Video files written for the decoding tests: any container, codec, rate, start and audio track
(`write_test_video`), an AVI whose last frame is held by empty chunks (`write_held_avi`), and a
variable-frame-rate video (`write_vfr_video`); frames of the shared data's trailer around its shot cut
as a frame folder with a first-frame mask (`write_cut_folder`)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

CUT_CLIP = "videos/clips/track-anything/test-sample13.mp4"  # a film trailer: a shot cut at frame 80
_AUDIO_CODECS = {".webm": "libopus", ".avi": "pcm_s16le"}  # else AAC


def write_test_video(path: Path, n: int, fps: int | Fraction = 24, first_pts: int = 0, codec: str = "libx264",
                     options: dict[str, str] | None = None, audio_seconds: float = 0.0,
                     size: tuple[int, int] = (32, 32), pix_fmt: str = "yuv420p",
                     audio_codec: str | None = None) -> None:
    """n frames of size (width, height) (noise over a grey ramp, so that a cut at x% of the bytes
    loses about x% of the frames) in the container the suffix names, written as it streams (an MP4's
    index at the end unless options ask for "faststart"); timestamps from first_pts (in frames: a
    negative start makes the MP4 muxer hide those frames behind an edit list, as ``ffmpeg -ss 30 -c
    copy`` does); audio_seconds of silence in a second stream (audio_codec, by default PCM in an
    AVI, as cameras write, Opus in a WebM, else AAC)."""
    rng = np.random.default_rng(0)
    width, height = size
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        audio_codec = audio_codec or _AUDIO_CODECS.get(path.suffix, "aac")
        audio = container.add_stream(audio_codec, rate=48000) if audio_seconds else None
        for t in range(n):
            pixels = (4 * t + rng.integers(0, 32, (height, width, 3))) % 256
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = first_pts + t, Fraction(1) / Fraction(fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            step = audio.codec_context.frame_size or 1024
            sample_format = audio.codec_context.format.name  # "fltp", or PCM's "s16"
            samples = np.zeros((1, step), np.int16 if sample_format == "s16" else np.float32)
            for start in range(0, int(48000 * audio_seconds), step):
                silence = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="mono")
                silence.sample_rate, silence.pts, silence.time_base = 48000, start, Fraction(1, 48000)
                container.mux(audio.encode(silence))
            container.mux(audio.encode())


def write_held_avi(path: Path, audio: bool) -> None:
    """48 mpeg4 frames at 24 fps whose last packet is shown 3 s, as ``ffmpeg -c copy`` of a slideshow
    or a static screen recording's end writes it: FFmpeg's AVI muxer pads it with empty chunks, which
    the stream header's length counts and decoding gives no frame for. audio: 5 s of PCM silence."""
    codec = av.CodecContext.create("mpeg4", "w")
    codec.width, codec.height, codec.pix_fmt, codec.time_base = 32, 32, "yuv420p", Fraction(1, 24)
    rng = np.random.default_rng(0)
    packets = []
    for t in range(48):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = t, Fraction(1, 24)
        packets += codec.encode(frame)
    packets += codec.encode(None)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width = stream.height = 32
        sound = container.add_stream("pcm_s16le", rate=48000) if audio else None  # before any muxing
        for i, packet in enumerate(packets):
            packet.stream, packet.time_base = stream, Fraction(1, 24)
            packet.duration = 72 if i == len(packets) - 1 else 1
            container.mux(packet)
        if sound is not None:
            for start in range(0, 48000 * 5, 1024):
                silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
                silence.sample_rate, silence.pts, silence.time_base = 48000, start, Fraction(1, 48000)
                container.mux(sound.encode(silence))
            container.mux(sound.encode())


VFR_TIMES = [0.0, 0.1, 0.2, 0.3, 0.325, 0.35, 0.375, 0.4, 0.6, 0.65]  # 10, 40, 5 and 20 fps stretches


def write_vfr_video(path: Path, frames: np.ndarray, times: list[float] = VFR_TIMES, codec: str = "libx264",
                    nominal_fps: int = 30) -> None:
    """frames (T, H, W, 3) RGB uint8, each shown at its own time (seconds, in a 1 ms time base), as a
    phone or screen recorder writes a variable frame rate; nominal_fps is the rate the stream is
    opened with (a Matroska header gives it as the video's, whatever the frames do)."""
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=nominal_fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        for pixels, seconds in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts, frame.time_base = round(seconds / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_cut_folder(frames: list[np.ndarray], first: int, out: Path) -> tuple[Path, Path]:
    """``frames`` (RGB uint8 (H, W, 3)), frames ``first``, ``first`` + 1, ... of `CUT_CLIP`, as PNGs
    named by their frame number in out/frames, and a first-frame mask of one object (a box on the
    red-clad figure, id 1) in out/mask.png -> (the folder, the mask)."""
    folder = out / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{first + t:05d}.png")
    mask = np.zeros(frames[0].shape[:2], np.uint8)
    mask[40:120, 200:400] = 1
    Image.fromarray(mask).convert("P").save(out / "mask.png")
    return folder, out / "mask.png"
