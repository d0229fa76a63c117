"""Frame folders read as videos: natural order, filtering, stray images, 16-bit and EXIF-turned images, mixed
sizes, missing paths."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from vidcorr.errors import InputError, TooFewFrames
from vidcorr.io.images import natural_key
from vidcorr.io.video import FrameSource, count_frames, open_frames, read_frames_at


def test_davis_frame_folder(davis2016_root):
    folder = davis2016_root / "JPEGImages/480p/blackswan"
    source = open_frames(folder, fps=24)
    jpgs = sorted(folder.glob("*.jpg"))
    assert (source.backend, source.size, source.fps) == ("folder", (480, 854), 24)
    assert len(source) == count_frames(folder) == len(jpgs)
    assert open_frames(folder).fps is None
    first = next(iter(source))
    np.testing.assert_array_equal(first, np.asarray(Image.open(jpgs[0]).convert("RGB")))
    third = np.asarray(Image.open(jpgs[3]).convert("RGB"))
    np.testing.assert_array_equal(read_frames_at(folder, [3])[0], third)


def _write_png(path, value, size=(6, 8)):
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def test_folder_natural_sort_and_filtering(tmp_path):
    for index in (10, 2, 1, 33):
        _write_png(tmp_path / f"frame{index}.png", index)
    Image.fromarray(np.full((6, 8, 3), 5, np.uint8)).save(tmp_path / "frame5.JPG", quality=100)
    (tmp_path / "notes.txt").write_text("not a frame")
    _write_png(tmp_path / ".frame0.png", 0)  # hidden files (e.g. macOS ._ files) are skipped
    values = [int(np.median(frame)) for frame in open_frames(tmp_path)]
    assert values == [1, 2, 5, 10, 33]
    assert natural_key("a2.jpg") < natural_key("a10.jpg")


def test_folder_of_16_bit_grayscale_pngs_is_scaled_not_clipped(tmp_path):
    """Pillow's convert("RGB") clips 16-bit values at 255: a mid-gray frame would read as white."""
    for index, level in enumerate((0, 128, 255)):
        Image.fromarray(np.full((6, 8), level * 257, np.uint16)).save(tmp_path / f"{index}.png")
    Image.fromarray(np.full((6, 8, 3), 64, np.uint8)).convert("L").save(tmp_path / "3.png")  # 8-bit
    frames = open_frames(tmp_path).read_all()
    assert frames.dtype == np.uint8 and frames.shape == (4, 6, 8, 3)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 128, 255, 64]
    assert (frames == frames[..., :1]).all()  # gray: R = G = B


def test_exif_orientation_of_jpeg_frames_is_applied(tmp_path):
    stored = np.full((48, 64, 3), 30, np.uint8)
    stored[:8, :16] = 230
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    for index in range(2):
        Image.fromarray(stored).save(tmp_path / f"{index}.jpg", quality=95, exif=exif)
    source = open_frames(tmp_path)
    frames = source.read_all()
    assert source.size == (64, 48) and frames.shape == (2, 64, 48, 3)
    assert np.abs(frames[0].astype(int) - np.rot90(stored, -1)).mean() < 3.0


def test_folder_with_mixed_sizes_names_the_odd_frame(tmp_path):
    _write_png(tmp_path / "00000.png", 1)
    _write_png(tmp_path / "00001.png", 1)
    _write_png(tmp_path / "00002.png", 1, size=(8, 8))
    with pytest.raises(InputError, match=r"8x8 but 00000\.png is 8x6") as info:
        open_frames(tmp_path)
    assert info.value.path.name == "00002.png"


def test_missing_paths_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such video file or frame folder") as info:
        open_frames(tmp_path / "missing.mp4")
    assert info.value.path.name == "missing.mp4"
    with pytest.raises(InputError, match="folder has no frames"):
        open_frames(tmp_path)
    with pytest.raises(InputError):
        count_frames(tmp_path / "missing")


def _davis_copy(davis2016_root, folder, n=8):
    """The first n frames of a real DAVIS sequence (00000.jpg ...) copied to ``folder``."""
    folder.mkdir()
    for path in sorted((davis2016_root / "JPEGImages/480p/car-shadow").glob("*.jpg"))[:n]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.parametrize("strays", [["cover.jpg"], ["mask_00000.png", "preview.jpg"]])
def test_same_size_stray_images_in_a_frame_folder_are_refused_by_name(davis2016_root, tmp_path, strays):
    """cover.jpg beside 00000.jpg ... (same size) was read as a frame without a word."""
    folder = _davis_copy(davis2016_root, tmp_path / "car-shadow")
    for stray in strays:
        shutil.copy(folder / "00003.jpg", folder / stray)  # same size: shared_size cannot catch it
    for read in (open_frames, count_frames):
        with pytest.raises(InputError, match=f"{len(strays)} image\\(s\\) not named like its 8 frames "
                                             r"\(00000\.jpg, \.\.\.\): " + re.escape(", ".join(strays))) as info:
            read(folder)
        assert "move them out of the folder" in str(info.value) and info.value.path == folder
    for stray in strays:
        (folder / stray).unlink()
    assert len(open_frames(folder)) == 8


def test_images_named_in_several_ways_alike_are_refused(tmp_path):
    """img_*.jpg beside flow_x_*.jpg (TSN's layout): no naming most images share, so no strays to name."""
    for t in range(3):
        _write_png(tmp_path / f"img_{t:05d}.png", t)
        _write_png(tmp_path / f"flow_x_{t:05d}.png", t)
    with pytest.raises(InputError, match=r"images named in 2 ways \(3 like flow_x_00000\.png, 3 like img_00000\.png\)"):
        open_frames(tmp_path)


@pytest.mark.parametrize("naming, extra, named", [
    ("{:05d}.jpg", "1.jpg", "00001.jpg and 1.jpg"),               # one number, padded two ways
    ("{:05d}.png", "00002.jpg", "00002.jpg and 00002.png"),       # .jpg and .png may mix, not repeat a frame
    ("frame_{:03d}.png", "Frame_3.png", "Frame_3.png and frame_003.png"),  # nor may letters' case
])
def test_two_images_of_one_frame_number_are_refused_naming_both(tmp_path, naming, extra, named):
    """Frames are ordered by number: 1.jpg beside 00001.jpg tied, and the file listing decided."""
    for t in range(5):
        _write_png(tmp_path / naming.format(t), t)
    _write_png(tmp_path / extra, 9)
    for read in (open_frames, count_frames):
        with pytest.raises(InputError, match=r"1 frame\(s\) named more than once \(" + re.escape(named)) as info:
            read(tmp_path)
        assert "Keep one image per frame" in str(info.value) and info.value.path == tmp_path
    (tmp_path / extra).unlink()
    assert len(open_frames(tmp_path)) == 5


@pytest.mark.parametrize("names", [
    [f"{t}.jpg" for t in range(1, 121)],                        # unpadded: natural order, 2 before 10
    [f"frame_{t:04d}.png" for t in range(1, 13)],
    [f"IMG_{t}.JPG" for t in (998, 999, 1000, 1001)],           # a camera counter's padding runs out
    [f"cam1_{t:03d}.jpg" for t in range(3)] + [f"cam2_{t:03d}.jpg" for t in range(3)],
    ["first.png", "second.png", "third.png"],                   # no numbers: no naming to go by, name order
])
def test_frame_folders_named_alike_still_open_in_natural_order(tmp_path, names):
    for value, name in enumerate(reversed(names)):  # written in reverse: order must come from the names
        _write_png(tmp_path / name, len(names) - 1 - value)
    values = [int(np.median(frame)) for frame in open_frames(tmp_path)]
    expected = sorted(range(len(names)), key=lambda i: natural_key(names[i]))
    assert values == expected and count_frames(tmp_path) == len(names)


@pytest.mark.parametrize("names, order", [
    (["²³.jpg", "a.jpg"], [1, 0]),              # no numbers (superscripts are not digits): name order
    (["1²2.jpg", "1²10.jpg", "1²3.jpg"], [0, 2, 1]),  # numbers around a superscript still count
    (["٢.png", "١٠.png", "١.png"], [2, 0, 1]),   # Arabic-Indic digits are digits: 1, 2, 10
])
def test_frames_named_with_unicode_digit_like_characters_are_ordered_not_crashed_on(tmp_path, names, order):
    """natural_key took "²" (isdigit, not a decimal digit) for a number: int("²") raised a raw
    ValueError, when sorting and when checking two images of one frame number (which reads the stem,
    so "²³.jpg" beside "a.jpg", read in name order before, crashed)."""
    for value, name in enumerate(names):
        _write_png(tmp_path / name, 10 * value)
    values = [int(np.median(frame)) for frame in open_frames(tmp_path)]
    assert values == [10 * i for i in order] and count_frames(tmp_path) == len(names)


def test_an_image_given_as_a_video_is_refused_when_asked(tmp_path):
    """PyAV opens an image as a video of one frame: `propagate frame.png` went on to "propagate 1 frames".
    Only commands given a video by a user ask (image_advice); a missing one is missing, not "one image"."""
    _write_png(tmp_path / "frame.png", 7)
    with pytest.raises(InputError, match=r"frame\.png: is one image: give the frames") as info:
        open_frames(tmp_path / "frame.png", image_advice="give the frames")
    assert info.value.path == tmp_path / "frame.png"
    with pytest.raises(InputError, match=r"gone\.jpg: no such video file or frame folder"):
        open_frames(tmp_path / "gone.jpg", image_advice="give the frames")
    (tmp_path / "clip.jpg").mkdir()  # a folder of frames whatever its name
    _write_png(tmp_path / "clip.jpg" / "00000.png", 3)
    assert len(open_frames(tmp_path / "clip.jpg", image_advice="give the frames")) == 1
    assert open_frames(tmp_path / "frame.png").read_all().shape == (1, 6, 8, 3)  # without: as before


def test_read_at_one_past_the_end_and_head_count(tmp_path):
    """Frames 0..2 of a 3-frame folder: index 3 is one past the end, `TooFewFrames` (not a KeyError
    from the frames found); head(2) is exactly frames 0 and 1, and counts 2."""
    for value in range(3):
        _write_png(tmp_path / f"{value}.png", value)
    source = open_frames(tmp_path)
    assert [int(f[0, 0, 0]) for f in source.read_at([2, 0])] == [2, 0]
    with pytest.raises(TooFewFrames):
        source.read_at([3])
    head = source.head(2)
    assert [int(f[0, 0, 0]) for f in head] == [0, 1] and len(head) == 2
    assert [int(f[0, 0, 0]) for f in source.head(5)] == [0, 1, 2] and len(source.head(5)) == 3


def test_a_frame_of_another_size_mid_stream_is_refused_naming_it(tmp_path):
    """A stream whose resolution changes (a joined MPEG-TS file can): frame 1 is 6 x 5 where the
    first is 6 x 4, refused as it is decoded, by iteration and by read_at alike."""
    def decode():  # a decoder: a generator (closed where reading stops) of lazy frames
        for shape in [(4, 6, 3), (5, 6, 3)]:
            yield lambda shape=shape: np.zeros(shape, np.uint8)

    source = FrameSource(tmp_path / "clip.ts", decode, (4, 6), None, 2, "pyav")
    message = "frame 1 is 6x5 but the first frame is 6x4"
    with pytest.raises(InputError, match=message):
        list(source)
    with pytest.raises(InputError, match=message):
        source.read_at([1])


def test_an_image_with_an_upper_case_suffix_is_refused_too(tmp_path):
    """Cameras write FRAME.JPG: the suffix is compared without case, as frame folders list them."""
    Image.fromarray(np.full((6, 8, 3), 7, np.uint8)).save(tmp_path / "FRAME.JPG", format="JPEG")
    with pytest.raises(InputError, match=r"FRAME\.JPG: is one image: give the frames"):
        open_frames(tmp_path / "FRAME.JPG", image_advice="give the frames")


def test_head_names_its_own_files(tmp_path):
    for value in range(3):
        _write_png(tmp_path / f"{value}.png", value)
    assert [p.name for p in open_frames(tmp_path).head(2).files] == ["0.png", "1.png"]


def test_exclude_leaves_out_only_the_named_file_in_the_folder(tmp_path, caplog):
    """A first-frame mask kept among the frames (here 00002.png) is not a frame: open_frames(exclude=...)
    leaves it out, with a log line; the same name in another folder changes nothing."""
    for name in ("00000.png", "00001.png", "00002.png"):
        _write_png(tmp_path / name, 1)
    with caplog.at_level("INFO"):
        source = open_frames(tmp_path, exclude=[tmp_path / "00002.png"])
    assert [p.name for p in source.files] == ["00000.png", "00001.png"] and len(source) == 2
    assert "left 00002.png out of the frames" in caplog.text
    kept = open_frames(tmp_path, exclude=[tmp_path / "other" / "00002.png"])
    assert [p.name for p in kept.files] == ["00000.png", "00001.png", "00002.png"]
