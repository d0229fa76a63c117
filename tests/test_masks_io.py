"""Mask PNG I/O: palette vs binary 0/255 masks, void, RGB mix-ups, atomic palette writes."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from PIL import Image

import vidcorr.io.masks as masks
from vidcorr.errors import InputError
from vidcorr.io.masks import (DAVIS_PALETTE, mask_size, read_mask, read_mask_and_palette, read_palette,
                              write_indexed_png)
from vidcorr.masks import read_first_mask


def test_palette_is_the_one_of_the_golden_generator(shared_dir):
    spec = importlib.util.spec_from_file_location("make_metric_cases",
                                                  shared_dir / "metric-goldens/make_metric_cases.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    np.testing.assert_array_equal(DAVIS_PALETTE.ravel(), gen.davis_palette())
    assert not DAVIS_PALETTE.flags.writeable


def test_round_trip_keeps_indices_and_palette(tmp_path):
    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every id, 255 (void) included
    path = tmp_path / "sub" / "00000.png"
    write_indexed_png(path, labels)
    np.testing.assert_array_equal(read_mask(path), labels)
    with Image.open(path) as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.array(img.getpalette()[:768], np.uint8), DAVIS_PALETTE.ravel())
    assert [p.name for p in path.parent.iterdir()] == ["00000.png"]  # no temp file left behind


def test_write_rejects_non_label_arrays(tmp_path):
    with pytest.raises(ValueError, match="integer ids"):
        write_indexed_png(tmp_path / "a.png", np.zeros((4, 4), np.float64))
    with pytest.raises(ValueError):
        write_indexed_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert not any(tmp_path.iterdir())


def test_davis2016_binary_mask_reads_as_object_1(davis2016_root):
    path = davis2016_root / "Annotations/480p/blackswan/00000.png"
    with Image.open(path) as img:
        assert img.mode == "L"
    mask = read_mask(path)
    assert mask.dtype == np.uint8 and mask.shape == (480, 854)
    assert set(np.unique(mask)) == {0, 1}


def test_davis2017_palette_mask_keeps_ids_and_void(davis2017_fixtures):
    mask = read_mask(davis2017_fixtures / "Annotations/480p/tennis/00000.png")
    assert set(np.unique(mask)) == {0, 1, 2, 255}


def test_grayscale_with_other_values_reads_ids(tmp_path):
    labels = np.array([[0, 1, 2], [3, 255, 0]], np.uint8)
    Image.fromarray(labels, mode="L").save(tmp_path / "ids.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "ids.png"), labels)  # 255 is void here


def test_one_bit_mask_reads_as_object_1(tmp_path):
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "bits.png"), np.eye(4, dtype=np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_rgb_mask_is_refused_naming_the_file(tmp_path, davis2017_fixtures, mode):
    path = tmp_path / "00000.png"
    Image.open(davis2017_fixtures / "Annotations/480p/tennis/00000.png").convert(mode).save(path)
    with pytest.raises(InputError, match=f"{mode} image, not an indexed") as err:
        read_mask(path)
    assert err.value.path == path and "00000.png" in str(err.value)


def test_jpeg_mask_is_refused_naming_the_file(tmp_path):
    """A 0/255 mask saved as JPEG has values around 250 inside the object and stray ids on its rim:
    read as ids it silently lost its object (255 = void). It must be refused."""
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 10:30] = 255
    path = tmp_path / "first.jpg"
    Image.fromarray(mask).save(path, quality=90)
    with pytest.raises(InputError, match="JPEG") as err:
        read_mask(path)
    assert err.value.path == path


def test_unsupported_mode_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "float.tiff")  # mode F: a depth map's
    with pytest.raises(InputError, match="unsupported PNG mode 'F'"):
        read_mask(tmp_path / "float.tiff")


def _sixteen_bit(path, values: np.ndarray):
    """``values`` saved as a 16-bit grayscale PNG, as OpenCV writes a uint16 array (Pillow: mode 'I;16')."""
    cv2 = pytest.importorskip("cv2")
    assert cv2.imwrite(str(path), values.astype(np.uint16))
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I")  # 'I' in Pillow < 10
    return path


def test_16_bit_masks_are_read_as_the_8_bit_masks_they_hold(tmp_path):
    """A 16-bit grayscale mask (OpenCV's uint16, some annotation tools) was refused as "unsupported PNG
    mode 'I;16'", with nothing on what to do. Its ids are ids whatever the bit depth (the DAVIS code's
    np.array(Image.open(p)) gives the same numbers): values up to 255 read as the same 8-bit grayscale
    mask would, and 0 / 65535, a binary mask at 16 bits (65535 is its white), as object 1."""
    ids = np.zeros((12, 16), np.uint8)
    ids[2:6, 2:8], ids[7:11, 9:15], ids[6, :] = 1, 2, 255  # two objects and a void band
    binary = np.zeros((12, 16), np.uint8)
    binary[3:9, 4:12] = 1
    for name, values, expected in [("ids.png", ids, ids), ("binary255.png", binary * 255, binary),
                                   ("binary65535.png", binary.astype(np.uint16) * 65535, binary),
                                   ("empty.png", np.zeros((12, 16), np.uint16), np.zeros((12, 16), np.uint8))]:
        path = _sixteen_bit(tmp_path / name, values)
        np.testing.assert_array_equal(read_mask(path), expected, err_msg=name)
        assert read_mask(path).dtype == np.uint8 and mask_size(path) == (16, 12), name
    # a PIL image given to the API: the same rules
    with Image.open(tmp_path / "binary65535.png") as img:
        np.testing.assert_array_equal(read_first_mask(img)[0], binary)
    np.testing.assert_array_equal(read_first_mask(Image.fromarray(ids.astype(np.int32)))[0], ids)  # mode 'I'


def test_a_16_bit_masks_pixels_are_converted_once_when_read(tmp_path, monkeypatch):
    """read_mask converted a 16-bit mask's pixels to 8 bits twice: once to check its values when the
    file was opened, once more for the ids."""
    calls = []
    convert = masks._as_8_bit
    monkeypatch.setattr(masks, "_as_8_bit", lambda *args: calls.append(1) or convert(*args))
    path = _sixteen_bit(tmp_path / "ids.png", np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) % 200)
    np.testing.assert_array_equal(read_mask(path), np.arange(12 * 16).reshape(12, 16) % 200)
    assert len(calls) == 1


def test_16_bit_masks_that_hold_no_8_bit_ids_are_refused_with_the_conversion(tmp_path):
    """Values above 255 (instance ids 256.., a binary mask with grey levels at 16 bits) are no vidcorr ids:
    refused by the header check of an annotation folder (mask_size) as by read_mask, saying what to do."""
    big = np.zeros((12, 16), np.uint16)
    big[2:6, 2:8], big[7:11, 9:15] = 1000, 2000
    smooth = np.zeros((12, 16), np.uint16)
    smooth[3:9, 4:12], smooth[3, 4:12] = 65535, 30000
    for name, values, top in [("big.png", big, 2000), ("smooth.png", smooth, 65535)]:
        path = _sixteen_bit(tmp_path / name, values)
        with pytest.raises(InputError, match=rf"16-bit grayscale mask \(mode 'I(;16)?'\) with values 0\.\.{top}: "
                                             r"vidcorr reads ids 0\.\.255.*write_indexed_png\(path, ids\) "
                                             r"\(ids of any integer dtype; 0 background\)") as read_error:
            read_mask(path)
        with pytest.raises(InputError) as size_error:
            mask_size(path)
        assert read_error.value.path == size_error.value.path == path and str(read_error.value) == str(size_error.value)
    ids = np.array(Image.open(tmp_path / "big.png"))  # the conversion the message gives, for ids renumbered
    write_indexed_png(tmp_path / "big.png", np.unique(ids, return_inverse=True)[1].reshape(ids.shape))  # int64
    assert set(np.unique(read_mask(tmp_path / "big.png")).tolist()) == {0, 1, 2}


def test_grayscale_mask_with_alpha_is_refused_with_the_conversion_it_needs(tmp_path):
    """A mask exported from an image editor as grayscale with transparency (GIMP: mode 'LA') was refused
    as "unsupported PNG mode 'LA'" without the one conversion it needs."""
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 10:30] = 255
    path = tmp_path / "first.png"
    Image.fromarray(np.stack([mask, np.full_like(mask, 255)], axis=-1), "LA").save(path)
    with pytest.raises(InputError, match=r"grayscale image with an alpha channel.*convert\('L'\)") as err:
        read_mask(path)
    assert err.value.path == path
    Image.open(path).convert("L").save(path)  # the conversion it names gives the mask
    np.testing.assert_array_equal(read_mask(path), mask == 255)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(InputError, match="not found") as err:
        read_mask(tmp_path / "nope.png")
    assert err.value.path == tmp_path / "nope.png"
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read mask"):
        read_mask(tmp_path / "broken.png")
    with pytest.raises(InputError, match="is a folder, not a mask file") as err:  # was "not found"
        read_mask(tmp_path)
    assert err.value.path == tmp_path


def test_smoothed_binary_mask_is_refused_but_grayscale_ids_with_void_bands_are_read(tmp_path):
    """A resized / anti-aliased 0/255 mask read as ids lost its object (255 = void) without a word."""
    binary = np.zeros((40, 60), np.uint8)
    binary[10:30, 15:45] = 255
    smoothed = tmp_path / "smoothed.png"
    Image.fromarray(binary).resize((90, 60), Image.BILINEAR).save(smoothed)
    with pytest.raises(InputError, match="anti-aliased") as err:
        read_mask(smoothed)
    assert err.value.path == smoothed
    ids = np.zeros((40, 60), np.uint8)  # three objects as grey levels, void bands around them
    ids[5:15, 5:20], ids[20:35, 5:25], ids[10:30, 35:55] = 1, 2, 3
    ids[4, 4:21] = ids[19, 4:26] = ids[9, 34:56] = 255
    Image.fromarray(ids).save(tmp_path / "ids.png")
    assert np.array_equal(read_mask(tmp_path / "ids.png"), ids)


def test_a_smoothed_mask_is_refused_by_the_folder_check_as_when_read(tmp_path):
    """The annotation folder's pre-check (mask_size) passed an anti-aliased 0/255 mask that read_mask
    refuses, so the run failed on it only after the sequences before it had been propagated; a 16-bit
    one too. Built by hand: object 255 (48 px), background 0, a rim of 3 grey levels on 12 px."""
    smooth = np.zeros((10, 12), np.uint8)
    smooth[2:8, 2:10] = 255
    smooth[1, 2:6], smooth[1, 6:10], smooth[8, 2:6] = 64, 128, 192
    ids = smooth.copy()  # the same levels on more pixels than 255: grayscale ids, read as they are
    ids[2:8, 2:10] = 255
    ids[2:8, 2:9] = 128
    for name, values in [("smooth.png", smooth), ("smooth16.png", smooth.astype(np.uint16))]:
        path = tmp_path / name
        Image.fromarray(values).save(path)
        with pytest.raises(InputError,
                           match=r"is a grayscale mask with 0, 255 and 3 grey levels.*anti-aliased") as read:
            read_mask(path)
        with pytest.raises(InputError) as size:
            mask_size(path)
        assert size.value.path == read.value.path == path and str(size.value) == str(read.value), name
    Image.fromarray(ids).save(tmp_path / "ids.png")
    assert mask_size(tmp_path / "ids.png") == (12, 10)
    np.testing.assert_array_equal(read_mask(tmp_path / "ids.png"), ids)


def test_mask_and_palette_in_one_read_are_the_two_reads(tmp_path, davis2016_root, davis2017_fixtures):
    short = Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8), mode="L").convert("P")
    short.putpalette([10, 20, 30, 40, 50, 60])  # two entries: the rest comes from DAVIS
    short.save(tmp_path / "short.png")
    for path in (tmp_path / "short.png", davis2017_fixtures / "Annotations/480p/tennis/00000.png",
                 davis2016_root / "Annotations/480p/blackswan/00000.png"):
        ids, palette = read_mask_and_palette(path)
        np.testing.assert_array_equal(ids, read_mask(path))
        expected = read_palette(path)
        assert (palette is None) == (expected is None) and (palette is None or (palette == expected).all())
    _, colours = read_mask_and_palette(tmp_path / "short.png")
    assert colours[:2].tolist() == [[10, 20, 30], [40, 50, 60]] and (colours[2:] == DAVIS_PALETTE[2:]).all()
    assert read_mask_and_palette(davis2016_root / "Annotations/480p/blackswan/00000.png")[1] is None
    with pytest.raises(InputError, match="mask file not found"):
        read_mask_and_palette(tmp_path / "missing.png")


def test_a_masks_header_check_refuses_what_reading_it_refuses(tmp_path):
    """mask_size (the pre-run check of a split) and read_mask share one opening: the same file gets the
    same error, naming it. A palette PNG cut in its pixels passes the header and is named when read; a
    grayscale one's values decide whether it is read at all, so mask_size decodes it and refuses it too."""
    ids = np.zeros((40, 60), np.uint8)
    ids[10:30, 15:45] = 1
    Image.fromarray(ids).save(tmp_path / "whole_grey.png")
    Image.fromarray(ids).convert("P").save(tmp_path / "whole.png")
    for name in ("whole.png", "whole_grey.png"):  # cut inside the pixels (IDAT): the header before them is whole
        whole = (tmp_path / name).read_bytes()
        (tmp_path / name.replace("whole", "cut")).write_bytes(whole[:-40])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.stack([ids] * 3, axis=2)).save(tmp_path / "rgb.png")
    for name in ("missing.png", "broken.png", "rgb.png", ".", "cut_grey.png"):
        path = tmp_path / name
        with pytest.raises(InputError) as size_error:
            mask_size(path)
        with pytest.raises(InputError) as read_error:
            read_mask(path)
        assert str(size_error.value) == str(read_error.value) and size_error.value.path == path, name
    assert mask_size(tmp_path / "cut.png") == (60, 40)
    with pytest.raises(InputError, match="cannot read mask") as info:
        read_mask(tmp_path / "cut.png")
    assert info.value.path == tmp_path / "cut.png"


def test_labels_that_cannot_be_written_are_refused_naming_the_file(tmp_path):
    """A writer's refusal said what was wrong, not where: one of a sequence's many masks."""
    path = tmp_path / "00003.png"
    for labels, palette, problem in [(np.zeros((4, 6), np.float32), None, r"labels must be integer ids \[H, W\]"),
                                     (np.zeros((4, 6, 3), np.uint8), None, r"labels must be integer ids \[H, W\]"),
                                     (np.zeros((4, 6), np.uint8), np.zeros((16, 3), np.uint8), "palette must be")]:
        with pytest.raises(ValueError, match=f"^{path}: {problem}"):
            write_indexed_png(path, labels, palette)
        assert not path.exists()


def test_integer_labels_of_any_width_are_written_when_their_values_fit_8_bits(tmp_path):
    """int64 ids (an argmax's) were refused as "must be uint8"; ids are ids at any width, and only values
    outside 0..255 cannot be a PNG's indices: those are refused naming the file and the range."""
    ids = np.array([[0, 1, 2], [254, 255, 7]])
    for labels in (ids.astype(np.int64), ids.astype(np.uint16), ids.astype(np.int32),
                   torch.from_numpy(ids), torch.from_numpy(ids).to(torch.int16)):
        path = tmp_path / "ids.png"
        write_indexed_png(path, labels)
        np.testing.assert_array_equal(np.array(Image.open(path)), ids, err_msg=str(labels.dtype))
    path = tmp_path / "00007.png"
    for labels, shown in [(np.array([[0, 256]], np.int64), "0..256 (int64)"),
                          (torch.tensor([[-1, 3]]), "-1..3 (int64)"),
                          (np.array([[0, 70000]], np.uint32), "0..70000 (uint32)")]:
        with pytest.raises(ValueError, match=rf"^{path}: labels must be ids 0\.\.255 .*got values {re.escape(shown)}"):
            write_indexed_png(path, labels)
        assert not path.exists()
    with pytest.raises(ValueError, match=rf"^{path}: labels must be integer ids \[H, W\] .*got float32 \(2, 3\)"):
        write_indexed_png(path, torch.zeros(2, 3))  # soft labels: still refused, not rounded


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_black_and_white_rgb_mask_is_refused_with_the_conversion_it_needs(tmp_path, mode):
    """A mask painted white on black and saved in colour got the advice for DAVIS-coloured masks
    (quantize to the DAVIS palette), which does not fit it; it is told to save it as grayscale."""
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 10:30] = 255
    path = tmp_path / "first.png"
    Image.fromarray(mask).convert(mode).save(path)
    with pytest.raises(InputError, match=f"{mode} image of grey levels only.*convert\\('L'\\)") as err:
        read_mask(path)
    assert err.value.path == path
    Image.open(path).convert("L").save(path)  # the conversion it names gives the mask
    np.testing.assert_array_equal(read_mask(path), mask == 255)
