"""The shared drawings: mask overlays and the Pillow line plot behind the evaluations' plots."""

import numpy as np
import pytest
from PIL import Image, ImageFont

from vidcorr import viz
from vidcorr.viz import PALETTE, Curve, caption, frame_caption, line_plot, outline_width, overlay_mask, side_by_side


def test_line_plot_puts_points_where_the_axes_say(tmp_path):
    path = tmp_path / "plot.png"
    top, bottom = Curve("top", [0, 10], [1.0, 1.0], PALETTE[0]), Curve("mid", [0, 10], [0.5, 0.5], PALETTE[3])
    line_plot(path, [top, bottom], title="t", x_label="frame", x_ticks=[0, 5, 10])
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape == (420, 720, 3)
    rows_of = {colour: set(np.nonzero((pixels[:, 56:520] == colour).all(axis=2))[0])
               for colour in (PALETTE[0], PALETTE[3])}
    # plot area: rows 28 (y = 1) to 420 - 44 = 376 (y = 0); the legend lies right of x = 520
    assert rows_of[PALETTE[0]] == {28}
    assert rows_of[PALETTE[3]] == {202}  # halfway: 376 - 0.5 * 348
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # saved atomically, no temp file left


def test_line_plot_grows_for_a_long_legend(tmp_path):
    curves = [Curve(f"object {i}", [0, 1], [0.1, 0.9], PALETTE[i % len(PALETTE)]) for i in range(40)]
    line_plot(tmp_path / "long.png", curves, title="t", x_label="x", x_ticks=[0, 1])
    with Image.open(tmp_path / "long.png") as image:
        assert image.width == 720 and image.height == 28 + 10 + 18 * 40 + 44


def test_line_plot_widens_for_a_long_legend_entry(tmp_path):
    """The VOT EAO plot's "EAO curve [not computed: the curve ends before the interval]" was cut
    at the image's edge."""
    label = "EAO curve [not computed: the curve ends before the interval]"
    line_plot(tmp_path / "wide.png", [Curve(label, [0, 1], [0.1, 0.9], PALETTE[0])], title="t", x_label="x",
              x_ticks=[0, 1])
    pixels = np.asarray(Image.open(tmp_path / "wide.png").convert("L"))
    text_columns = np.nonzero((pixels[28:60, 520:] < 128).any(axis=0))[0]
    assert pixels.shape[1] > 720 and text_columns.max() + 520 < pixels.shape[1] - 4  # room after the text
    short = np.asarray(Image.open(_plot(tmp_path, "short")).convert("L"))
    assert short.shape == (420, 720)  # a short legend keeps the default size


def _plot(tmp_path, label):
    line_plot(tmp_path / f"{label}.png", [Curve(label, [0, 1], [0.1, 0.9], PALETTE[0])], title="t", x_label="x",
              x_ticks=[0, 1])
    return tmp_path / f"{label}.png"


def test_overlay_mask_tints_objects_only():
    frame = np.full((8, 8, 3), 100, np.uint8)
    labels = np.zeros((8, 8), np.int64)
    labels[2:6, 2:6] = 1
    out = overlay_mask(frame, labels)
    assert (out[labels == 0] == 100).all() and not (out[3:5, 3:5] == 100).all()
    with pytest.raises(ValueError, match="8x8 but labels are 4x4"):
        overlay_mask(frame, labels[:4, :4])


def test_side_by_side_places_images_with_a_gap_and_captions():
    left, right = np.full((40, 30, 3), 10, np.uint8), np.full((40, 50, 3), 200, np.uint8)
    out = side_by_side([left, right], ["ours", "truth"], gap=6)
    assert out.shape == (40, 30 + 6 + 50, 3)
    assert (out[25:, :30] == 10).all() and (out[:, 30:36] == 255).all() and (out[25:, 36:] == 200).all()
    assert (out[4:21, 4:20] != 10).any()  # the caption's box
    with pytest.raises(ValueError, match="share a height"):
        side_by_side([left, right[:20]])


def test_line_plot_writes_the_y_label_up_the_left_edge(tmp_path):
    """The success, EAO and per-frame J plots had no y-axis label; it runs up the strip left of the
    tick values, centred on the axes, and the plot area is unchanged."""
    curve = Curve("c", [0, 1], [0.5, 0.5], PALETTE[0])
    line_plot(tmp_path / "plain.png", [curve], title="t", x_label="x", x_ticks=[0, 1])
    line_plot(tmp_path / "labelled.png", [curve], title="t", x_label="x", x_ticks=[0, 1], y_label="success rate")
    plain, labelled = (np.asarray(Image.open(tmp_path / name).convert("L")) for name in ("plain.png", "labelled.png"))
    ink = np.nonzero((labelled[:, :20] < 128).any(axis=1))[0]  # rows with dark pixels in the left strip
    assert not (plain[:, :20] < 128).any() and ink.size > 40  # "success rate" upright: ~60 px tall
    assert abs((ink.min() + ink.max()) / 2 - (28 + 376) / 2) <= 2  # centred on the axes' rows 28..376
    assert (plain[:, 20:] == labelled[:, 20:]).all()


def test_overlay_mask_outlines_objects_in_a_bright_colour_wider_on_larger_frames():
    """A 1-px outline in the tint's own colour (DAVIS's dark red (128, 0, 0)) was lost on a 480p
    frame: it is the colour at full brightness, 2 px wide at 480p (1 px at 240p; the short side counts)."""
    for height, width in ((240, 1), (480, 2)):
        frame = np.full((height, height * 16 // 9, 3), 100, np.uint8)
        labels = np.zeros(frame.shape[:2], np.uint8)
        labels[100:200, 100:200] = 1
        out = overlay_mask(frame, labels)
        row = out[150, 95:160]  # across the object's left edge at column 100
        assert (row[:5] == 100).all()  # the background is untouched
        assert (row[5:5 + width] == (255, 0, 0)).all()  # the outline, inside the edge
        assert (row[5 + width:] == (114, 50, 50)).all()  # the tint: half (128, 0, 0), half the frame
    palette = np.zeros((256, 3), np.uint8)  # an object drawn in black gets a white outline
    out = overlay_mask(np.full((480, 320, 3), 100, np.uint8), labels[:, :320], palette=palette)
    assert (out[150, 100] == 255).all()


def _caption_box(height: int) -> tuple[int, int]:
    """(height, width) in pixels of the black box of a caption on a grey image ``height`` px tall."""
    boxed = (caption(np.full((height, 2 * height, 3), 128, np.uint8), frame_caption("propagated", 17)) == 0).all(axis=2)
    rows, cols = np.flatnonzero(boxed.any(axis=1)), np.flatnonzero(boxed.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_captions_grow_with_the_image_so_they_read_the_same_at_240p_and_1080p():
    """Captions were Pillow's 11-px bitmap font at any size: readable at 480p, tiny at 1080p. They
    take about the same share of the height from 480p to 1080p, and stay legible at 240p."""
    (h240, w240), (h480, w480), (h1080, w1080) = (_caption_box(h) for h in (240, 480, 1080))
    assert h240 >= 14 and h240 <= h480
    assert 0.8 < (h1080 / 1080) / (h480 / 480) < 1.25 and 0.8 < (w1080 / 1080) / (w480 / 480) < 1.25


def test_the_frame_caption_names_the_frame_and_is_drawn_in_the_corner():
    assert frame_caption("propagated", 17) == "propagated · frame 17" and frame_caption("", 0) == "frame 0"
    assert frame_caption("", 2, "00004.jpg") == "frame 2 · 00004.jpg"  # a folder's frame, by its file too
    plain = np.full((480, 640, 3), 128, np.uint8)
    one, two = caption(plain, frame_caption("", 1)), caption(plain, frame_caption("", 2))
    changed = (one != two).any(axis=2)  # only the number differs, inside the top-left box
    assert changed.any() and np.flatnonzero(changed.any(axis=1)).max() < 40
    assert (one[40:] == 128).all() and (one[:, 200:] == 128).all()  # unobtrusive: the rest untouched


def test_captions_on_a_pillow_with_only_the_bitmap_font(monkeypatch):
    """Pillow 10.0 (pyproject allows it) has no size argument: its 11-px bitmap font is used."""
    monkeypatch.setattr(ImageFont, "load_default", lambda: ImageFont.load_default_imagefont())
    assert isinstance(viz.caption_font(1080), ImageFont.ImageFont)
    assert 12 <= _caption_box(1080)[0] <= 20


def test_outline_width_follows_the_short_side_with_halves_rounded_up():
    """1 px below 360p, 2 at 480p, 5 at 1080p as documented (round(4.5) is 4: 1080p had 4 px)."""
    assert [outline_width((h, h * 16 // 9)) for h in (240, 359, 360, 480, 720, 1080)] == [1, 1, 2, 2, 3, 5]
    assert outline_width((1920, 1080)) == 5  # a portrait frame: its short side counts


def test_captions_fall_back_to_the_bitmap_font_on_a_pillow_without_freetype(monkeypatch):
    """Pillow >= 10.1 built without FreeType: load_default(size=...) asks for the scalable font and
    raises ImportError; every overlay caption (propagate, eval, match) then failed. The bitmap font."""
    bitmap = ImageFont.load_default_imagefont()

    def no_freetype(size=None):
        if size is not None:
            raise ImportError("The _imagingft C module is not installed")
        return bitmap

    monkeypatch.setattr(viz.ImageFont, "load_default", no_freetype)
    assert viz.caption_font(480) is bitmap
    out = viz.caption(np.full((120, 160, 3), 100, np.uint8), "frame 3")
    assert (out[:20, :60] != 100).any() and (out[40:] == 100).all()


def test_overlay_mask_repeats_the_palettes_object_colours_past_id_255():
    """Ids past 255 were clipped to colour 255, all alike. The DAVIS palette's 255 object colours
    repeat: id k takes colour 1 + (k - 1) % 255 (256 -> 1, (128, 0, 0); 299 -> 44, (64, 0, 192) by the
    PASCAL bit interleave), as labels_overlay colours label channels; 256 and 1 still meet at an outline."""
    frame = np.full((8, 12, 3), 100, np.uint8)
    labels = np.full((8, 12), 299, np.int64)
    np.testing.assert_array_equal(overlay_mask(frame, labels)[2:6, 2:10], np.full((4, 8, 3), (82, 50, 146)))
    labels[:, :6], labels[:, 6:] = 256, 1
    out = overlay_mask(frame, labels).astype(int)
    assert (out[:, :5] == (114, 50, 50)).all() and (out[:, 6:] == (114, 50, 50)).all()
    assert (out[:, 5] == (255, 0, 0)).all()  # the outline between ids 256 and 1
