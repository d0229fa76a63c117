"""DAVIS overlay frames (`vidcorr.evaluate.davis_overlays.overlay_frames`) pixel by pixel: the propagated
masks on the left, the annotation matched by file stem on the right (VOID drawn as background, the bare
frame where a frame has none), 8 white pixels between, each captioned with its 0-based frame number.

Expected pixels by hand: a grey-100 frame tinted half-and-half with DAVIS's object-1 colour (128, 0, 0)
is (114, 50, 50) inside the object (outline 1 px on a 120-row frame), 100 elsewhere. Also the OTB reader
(`vidcorr.io.tracking.read_otb_boxes`) on trailing whitespace-only lines."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vidcorr.evaluate.davis_overlays import overlay_frames
from vidcorr.io.tracking import read_otb_boxes
from vidcorr.viz import caption, overlay_mask

H, W, GAP = 120, 160, 8
GREY, TINT = (100, 100, 100), (114, 50, 50)
LEFT_OBJECT = (80, 40)  # inside the propagated object, rows 60:100 x cols 20:60
RIGHT_OBJECT = (80, 120)  # inside the annotated object, rows 60:100 x cols 100:140


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frame = np.full((H, W, 3), 100, np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[60:100, 20:60] = 1
    annotation = np.zeros((H, W), np.uint8)
    annotation[60:100, 100:140] = 1
    return frame, labels, annotation


def _right(drawn: np.ndarray, yx: tuple[int, int]) -> tuple[int, ...]:
    """The pixel at ``yx`` of the right-hand (annotation) panel."""
    return tuple(int(v) for v in drawn[yx[0], W + GAP + yx[1]])


def test_each_frame_shows_the_annotation_of_its_own_stem_or_the_bare_frame(tmp_path):
    """Frame "00001" has an annotation, "00000" and "00002" none: only frame 1's right panel is tinted
    where the annotation has its object; the others show the frame as it is (not the propagated masks)."""
    frame, labels, annotation = _inputs()
    Image.fromarray(annotation).save(tmp_path / "00001.png")
    drawn = list(overlay_frames([(frame, labels)] * 3, ["00000", "00001", "00002"], [tmp_path / "00001.png"]))
    assert [d.shape for d in drawn] == [(H, 2 * W + GAP, 3)] * 3
    for index, image in enumerate(drawn):
        assert tuple(int(v) for v in image[LEFT_OBJECT]) == TINT  # propagated masks on the left, always
        assert (image[:, W:W + GAP] == 255).all()  # the white gap
        assert _right(image, LEFT_OBJECT) == GREY  # the propagated object is never drawn on the right
        assert _right(image, RIGHT_OBJECT) == (TINT if index == 1 else GREY), index


def test_void_pixels_of_the_annotation_are_drawn_as_background(tmp_path):
    """VOID (255, DAVIS's "don't care" border) is no object: drawn as the frame, not tinted with
    palette[255] (224, 224, 192), which would give (162, 162, 146)."""
    frame, labels, annotation = _inputs()
    annotation[10:50, 100:140] = 255
    Image.fromarray(annotation).save(tmp_path / "00000.png")
    (drawn,) = overlay_frames([(frame, labels)], ["00000"], [tmp_path / "00000.png"])
    assert _right(drawn, (30, 120)) == GREY
    assert _right(drawn, RIGHT_OBJECT) == TINT


def test_captions_carry_the_zero_based_frame_number():
    """Without annotations frame t is the masks captioned "frame t" (t from 0), nothing else drawn."""
    frame, labels, _ = _inputs()
    drawn = list(overlay_frames([(frame, labels)] * 2, ["00000", "00001"]))
    tinted = overlay_mask(frame, labels)
    for index, image in enumerate(drawn):
        assert image.shape == (H, W, 3)
        assert np.array_equal(image, caption(tinted, f"frame {index}")), index
    assert not np.array_equal(drawn[0], caption(tinted, "frame 1"))  # the number is visible in the caption


def test_otb_file_ending_in_whitespace_only_lines_is_read(tmp_path):
    """Trailing lines of spaces or tabs (an editor's leftovers) are dropped like empty ones, not
    refused as "empty line inside the annotation file"; boxes 1-based -> 0-based (x, y minus 1)."""
    path = tmp_path / "groundtruth_rect.txt"
    path.write_text("11,21,30,40\n12\t22 31,41\n  \n\t\n")
    assert read_otb_boxes(path).tolist() == [[10.0, 20.0, 30.0, 40.0], [11.0, 21.0, 31.0, 41.0]]
