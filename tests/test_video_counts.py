"""How many frames a video holds, as the training index counts them (`count_frames`, the header
counts of `open_frames`, `vidcorr.data.video_probe.probe`): exactly the frames decoding yields, or the
index samples frames that do not exist and drops the video on the first such draw."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import pytest

from vidcorr.data.video_probe import probe
from vidcorr.io import video, video_opencv, video_pyav
from vidcorr.io.container_size import avi_video_frames
from vidcorr.io.video import count_frames, open_frames, read_frames_at

from video_helpers import write_held_avi, write_test_video

BACKENDS = ["pyav", "opencv"]


def _counts(path: Path, backend: str, monkeypatch) -> tuple[int, int, int | None, int]:
    """(frames decoded, count_frames, the header count open_frames reports, the index's probe)."""
    decoded = sum(1 for _ in open_frames(path, backend=backend))
    counted, header = count_frames(path, backend=backend), open_frames(path, backend=backend).num_frames
    with monkeypatch.context() as patch:
        if backend == "opencv":
            patch.setattr(video, "_import_av", lambda: None)  # the index probes with OpenCV
        probed = probe(path).num_frames
    return decoded, counted, header, probed


@pytest.mark.parametrize("backend", BACKENDS)
def test_intact_avis_are_counted_as_they_decode(tmp_path, backend, monkeypatch):
    """An AVI stream header's length also counts the frames skipped before a late start (168 for 48
    frames starting at 5 s) and a held last frame's empty chunks, and FFmpeg's count adds one for an
    AAC track (49): both backends reported those as the video's frames."""
    files = {"late.avi": dict(first_pts=120), "aac.avi": dict(audio_seconds=5.0, audio_codec="aac"),
             "pcm.avi": dict(audio_seconds=5.0), "plain.avi": {}}
    for name, options in files.items():
        write_test_video(tmp_path / name, 48, codec="mpeg4", **options)
    write_held_avi(tmp_path / "held.avi", audio=True)
    for name in [*files, "held.avi"]:
        path = tmp_path / name
        assert _counts(path, backend, monkeypatch) == (48, 48, 48, 48), name
        assert len(read_frames_at(path, [47], backend=backend)) == 1
    monkeypatch.setattr(video_opencv, "opencv_decode",  # an intact AVI is counted from its chunks
                        lambda path: pytest.fail(f"{path.name} decoded to count it"))
    assert count_frames(tmp_path / "late.avi", backend="opencv") == 48


@pytest.mark.parametrize("backend", BACKENDS)
def test_reading_frames_at_indices_does_not_count_an_avis_chunks(tmp_path, backend, monkeypatch):
    """Counting an AVI's frames walks every chunk of the file (0.25 s for an hour): `open_frames` did
    it for every training draw and evaluation open, though reading frames at indices never needs
    the count. It is worked out when `num_frames` is first asked for, once."""
    path = tmp_path / "late.avi"
    write_test_video(path, 12, codec="mpeg4", first_pts=30)
    walks = []

    def counted(avi: Path) -> int | None:
        walks.append(avi)
        return avi_video_frames(avi)

    monkeypatch.setattr(video_pyav, "avi_video_frames", counted)
    monkeypatch.setattr(video_opencv, "avi_video_frames", counted)
    assert len(read_frames_at(path, [3, 11], backend=backend)) == 2
    source = open_frames(path, backend=backend)
    assert len(source.read_at([5])) == 1 and not walks
    assert source.num_frames == len(source) == 12 and len(walks) == 1  # asked twice, walked once


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def test_avi_frames_are_counted_in_every_riff_of_an_opendml_file(tmp_path):
    """An AVI over 1 GiB (OpenDML) continues its "movi" list in "AVIX" RIFF chunks, and a muxer may
    group chunks in "rec " lists: all of them hold frames. Only the first video stream's non-empty
    chunks count: the audio stream is 00 here, the video 01, with a 1-byte odd-sized frame."""
    streams = _list(b"hdrl", _chunk(b"avih", bytes(56)),
                    _list(b"strl", _chunk(b"strh", b"auds" + bytes(52))),
                    _list(b"strl", _chunk(b"strh", b"vids" + bytes(52)), _chunk(b"strf", bytes(40))))
    frame, empty, sound = _chunk(b"01dc", b"x"), _chunk(b"01dc", b""), _chunk(b"00wb", bytes(8))
    first = _chunk(b"RIFF", b"AVI " + streams + _list(b"movi", frame, sound, empty, _list(b"rec ", frame, frame))
                   + _chunk(b"idx1", bytes(16)))
    second = _chunk(b"RIFF", b"AVIX" + _list(b"movi", _chunk(b"ix01", bytes(24)), frame, sound,
                                             _chunk(b"01db", bytes(6))))
    path = tmp_path / "opendml.avi"
    path.write_bytes(first + second)
    assert avi_video_frames(path) == 5
    path.write_bytes(first + second + bytes(7))  # trailing bytes after the RIFF chunks
    assert avi_video_frames(path) == 5
    audio_only = tmp_path / "audio.avi"
    audio_stream = _list(b"strl", _chunk(b"strh", b"auds" + bytes(52)))
    audio_only.write_bytes(_chunk(b"RIFF", b"AVI " + _list(b"hdrl", audio_stream)))
    assert avi_video_frames(audio_only) is None


def _copy_from(source, target, first: int) -> None:
    """``source`` remuxed from frame ``first`` on as ``ffmpeg -ss T -i source -c copy target`` does:
    from the key frame before it (here frame 0), timestamps moved back by ``first`` frames, so that
    the MP4 muxer writes an edit list hiding the frames before ``first`` (kept to decode the rest)."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        out = writer.add_stream_from_template(stream)
        shift = round(first / stream.average_rate / stream.time_base)
        for packet in reader.demux(stream):
            if packet.size:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, out
                writer.mux(packet)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_an_edit_list_hides_are_not_counted(tmp_path, backend, monkeypatch):
    """A video cut with ``ffmpeg -ss 30 -c copy`` keeps the frames since the key frame before the cut,
    hidden by its edit list: 96 samples, 48 frames decoded. Both backends' `count_frames` and header
    counts said 96, so the training index sampled frames past the 48th and dropped the video as
    unreadable on the first such draw. An intact MP4's header count is still trusted (no decoding)."""
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    write_test_video(whole, 96)
    _copy_from(whole, cut, 48)
    frames = sum(1 for _ in open_frames(cut, backend=backend))
    assert frames == 48
    assert count_frames(cut, backend=backend) == frames
    assert open_frames(cut, backend=backend).num_frames in (None, frames)
    assert len(read_frames_at(cut, [47], backend=backend)) == 1
    if backend == "opencv":
        monkeypatch.setattr(video, "_import_av", lambda: None)  # the index probes with OpenCV
    assert probe(cut).num_frames == frames
    monkeypatch.setattr(video_opencv, "opencv_decode",  # an intact MP4 is counted from its header
                        lambda path: pytest.fail(f"{path.name} decoded to count it"))
    assert count_frames(whole, backend=backend) == open_frames(whole, backend=backend).num_frames == 96
