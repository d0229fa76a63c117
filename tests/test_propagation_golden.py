"""Golden values and a literal reference for the streaming propagation around the affinity core.

Each test here was written against hand-made mutants of `vidcorr.presets`, `vidcorr.propagate`,
`vidcorr.masks` and the DAVIS mask I/O that the rest of the suite let through (a preset's k, tau,
context length, window shape or first-labels mode changed; frames resized with align_corners or
antialiasing; void pixels voting for the background; ...). Expected values come from METHODS.md
§1.9 / §2.7 / §3.4 / §4.6 / §5 (and docs/propagation.md's sources for the context at the start), or
from plain loops written here, never from the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from naive_reference import bilinear_half_pixel
from synthetic import PatchEncoder
from PIL import Image
from torch import nn

from vidcorr.errors import InputError
from vidcorr.io.davis import DavisDataset
from vidcorr.io.masks import read_mask, write_indexed_png
from vidcorr.labels import channel_map, decode_label_map
from vidcorr.masks import check_first_mask, propagate_mask
from vidcorr.presets import DEFAULT_PRESET, SizePolicy, get_preset
from vidcorr.propagate import Propagator, frames_to_tensor
from vidcorr.track_uvc import UVCTracker

# --------------------------------------------------------------------------- the protocols' numbers

# METHODS.md §5 (one column per protocol), the per-method inference sections named in each row, and
# docs/propagation.md for the context at the start (CRW pads with videoLen copies of frame 0, §3.4;
# TimeCycle with 8 copies, its first target being frame 0 itself, §2.7; UVC's queue starts empty;
# STT's frame 0 is also its first "preceding" frame, precede_frames + with_first, §4.6).
PROTOCOLS = {
    "crw": dict(size=SizePolicy("native"), feature_layer="layer3", l2_normalise=True, temperature=0.05,
                n_previous=20, k=10, scope="joint", normalisation="topk_softmax", radius=12, shape="circle",
                window_first=False, initial_context="fill", label_downsample="bilinear",
                normalise_context_labels=False, output_resize="original", output_minmax=False),
    "uvc": dict(size=SizePolicy("short_side", 480, 64), feature_layer=None, l2_normalise=False, temperature=1.0,
                n_previous=7, k=5, scope="per_frame", normalisation="softmax_topk", radius=None,
                window_first=False, initial_context="empty", label_downsample="nearest",
                normalise_context_labels=False, output_resize="input", output_minmax=True),
    "timecycle": dict(size=SizePolicy("square", 320), feature_layer=None, l2_normalise=True,
                      temperature=1 / math.sqrt(512), n_previous=7, k=5, scope="per_frame",
                      normalisation="softmax_topk", radius=None, window_first=False, initial_context="fill_self",
                      label_downsample="bilinear", normalise_context_labels=True, output_resize="input",
                      output_minmax=False),
    "stt": dict(size=SizePolicy("short_side", 480), feature_layer="layer3", l2_normalise=True, temperature=0.07,
                n_previous=20, k=10, scope="joint", normalisation="topk_softmax", radius=12, shape="square",
                window_first=True, initial_context="first", label_downsample="nearest",
                normalise_context_labels=False, output_resize="original", output_minmax=True),
}
TOPK_KNOBS = ("temperature", "k", "scope", "normalisation", "radius", "shape")


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_preset_holds_its_protocols_numbers(name):
    """A preset is the protocol its numbers are reported under: every knob as METHODS.md gives it."""
    preset, want = get_preset(name), PROTOCOLS[name]
    got = {key: getattr(preset.topk if key in TOPK_KNOBS else preset, key) for key in want}
    assert _close(got, want), (got, want)


def _close(got: dict, want: dict) -> bool:
    """Equal, temperatures within float rounding (1 / sqrt(512) is written two ways)."""
    return all(math.isclose(got[k], v, rel_tol=1e-12) if isinstance(v, float) else got[k] == v for k, v in want.items())


def test_the_default_preset_is_crws_protocol():
    """METHODS.md §5 recommends CRW's protocol as the library default (what LIIR, SFC, STT, VFS use)."""
    assert DEFAULT_PRESET == "crw"


# --------------------------------------------------------------------------- frames into the encoder


@pytest.mark.parametrize("size", [(3, 4), (4, 6), (13, 9)])  # shrink by 5/3 and 2, enlarge
def test_frames_reach_the_encoder_in_0_1_resized_like_cv2(size):
    """Frames become values / 255 (255 -> exactly 1) and are resized as the reference code's
    cv2.resize does: half-pixel centres, not align_corners, and no antialiasing when shrinking."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    frame[0, 0] = 255
    native = frames_to_tensor([frame], (8, 6), "cpu")[0]
    assert native[:, 0, 0].tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(native, torch.from_numpy(frame / 255.0).permute(2, 0, 1).float())
    want = bilinear_half_pixel(frame / 255.0, *size)
    got = frames_to_tensor([frame], size, "cpu")[0].permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


# --------------------------------------------------------------------------- a literal propagation loop


def _cell_labels(labels: np.ndarray, mode: str) -> np.ndarray:
    """(K, 8h, 8w) labels -> (K, h, w) at stride 8: ``nearest`` takes the pixel whose centre is nearest
    each cell's centre (row / column 8i + 4, PIL / scipy imresize), ``bilinear`` (cv2 INTER_LINEAR at a
    factor of 8) the mean of the 2 x 2 pixels around the cell's centre, 8i + 3.5."""
    if mode == "nearest":
        return labels[:, 4::8, 4::8]
    return (labels[:, 3::8, 3::8] + labels[:, 3::8, 4::8] + labels[:, 4::8, 3::8] + labels[:, 4::8, 4::8]) / 4


def _in_window(dy: int, dx: int, proto: dict) -> bool:
    if proto["radius"] is None:
        return True
    if proto["shape"] == "circle":  # CRW: Euclidean distance < radius
        return dy * dy + dx * dx < proto["radius"] ** 2
    return abs(dy) <= proto["radius"] and abs(dx) <= proto["radius"]  # STT: |d| <= neighbor_range / 2


def _reference_run(proto: dict, feats: torch.Tensor, first: np.ndarray) -> list[torch.Tensor]:
    """The protocol as METHODS.md words it, target pixel by target pixel. feats: (T, C, h, w) of every
    frame; first: (K, h, w) frame 0's labels at feature resolution. Context of a target: frame 0 and the
    ``n_previous`` most recent entries of a queue that starts as the protocol pads it; each prediction
    joins the queue."""
    T, C, h, w = feats.shape
    if proto["l2_normalise"]:
        feats = F.normalize(feats, dim=1)
    n, tau, k = proto["n_previous"], proto["temperature"], proto["k"]
    frame0 = (0, torch.from_numpy(first).double())  # (frame index, labels (K, h, w))
    queue = {"empty": [], "first": [frame0], "fill": [frame0] * n, "fill_self": [frame0] * n}[proto["initial_context"]]

    # which reference cells (yy, xx) a target cell (y, x) may match under the window, by loops
    near = torch.tensor([[_in_window(yy - y, xx - x, proto) for yy in range(h) for xx in range(w)]
                         for y in range(h) for x in range(w)])
    flat = feats.flatten(2).double()  # (T, C, h * w)

    def propagate(t: int) -> torch.Tensor:
        context = [frame0] + queue[-n:] if n else [frame0]
        windowed = [proto["window_first"]] + [True] * (len(context) - 1)
        # (target cell, reference cell) scores of each context frame, -inf outside the window
        scores = [(flat[t].T @ flat[i] / tau).masked_fill(~near if use_window else torch.zeros_like(near), -math.inf)
                  for (i, _), use_window in zip(context, windowed)]
        labels = [lab.flatten(1).T for _, lab in context]  # (reference cell, K) of each context frame
        if proto["scope"] == "joint":  # one top-k over every frame's candidates, softmax over the k
            top = torch.cat(scores, 1).topk(k, 1)
            out = torch.einsum("jk,jkc->cj", top.values.softmax(1), torch.cat(labels)[top.indices])
        else:  # each frame: softmax over the frame, top-k of the probabilities as they are; mean
            out = 0
            for s, lab in zip(scores, labels):
                top = s.softmax(1).topk(k, 1)
                out = out + torch.einsum("jk,jkc->cj", top.values, lab[top.indices]) / len(context)
        out = out.view(-1, h, w)
        if proto["normalise_context_labels"]:  # TimeCycle: each channel to [0, 1], stored so
            lo = out.amin(dim=(1, 2), keepdim=True)
            span = out.amax(dim=(1, 2), keepdim=True) - lo
            out = torch.where(span > 0, (out - lo) / span.clamp_min(1e-300), out)
        queue.append((t, out))
        return out

    if proto["initial_context"] == "fill_self":  # TimeCycle's first target is frame 0 itself
        propagate(0)
    return [propagate(t) for t in range(1, T)]


def _textured_video(n_frames: int, h: int, w: int, seed: int) -> list[np.ndarray]:
    """A texture drifting a few pixels a frame, with fresh noise: matches exist but are never exact."""
    rng = np.random.default_rng(seed)
    base = rng.random((h, w + 4 * n_frames, 3))
    return [(np.clip(base[:, 4 * t : 4 * t + w] * 0.8 + rng.random((h, w, 3)) * 0.2, 0, 1) * 255).astype(np.uint8)
            for t in range(n_frames)]


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_preset_propagates_as_its_protocol_says(name):
    """24 frames of a 2 x 28 feature grid, three soft label channels that vary inside each cell: enough
    frames to fill and roll the ring buffer at the protocol's own context length (first + 20 / 7), and a
    grid wide enough for the window (radius 12, circle or square) to matter. Every knob but the input
    size (tiny frames are used as they are) is the preset's own, and the expected soft labels come from
    the literal loop above with METHODS.md's numbers."""
    proto = PROTOCOLS[name]
    frames = _textured_video(24, 16, 224, seed=1)
    rng = np.random.default_rng(2)
    labels = rng.random((3, 16, 224)).astype(np.float32)  # soft labels: every pixel its own values
    encoder = PatchEncoder(channels=8)  # few channels: scores of similar size, so many candidates compete
    with torch.no_grad():
        feats = encoder(frames_to_tensor(frames, (16, 224), "cpu"))
    want = _reference_run(proto, feats, _cell_labels(labels.astype(np.float64), proto["label_downsample"]))
    preset = get_preset(name).with_overrides(size=SizePolicy("native"))
    got = list(Propagator(encoder, preset, batch_size=5).run(frames, torch.from_numpy(labels)))
    assert len(got) == len(want) == 23
    for t, (g, w) in enumerate(zip(got, want), start=1):
        torch.testing.assert_close(g.double(), w, atol=2e-5, rtol=1e-4, msg=f"frame {t}")


@pytest.mark.parametrize("name,after_start,after_30", [
    ("crw", 21, 21),  # frame 0 + 20 copies of it, then the 20 most recent frames
    ("uvc", 1, 8),  # grows from frame 0 alone to first + 7
    ("timecycle", 8, 8),  # first + 7 (6 copies and frame 0 propagated into itself)
    ("stt", 2, 21),  # frame 0 as the first frame and as a preceding one, then first + 20
])
def test_the_context_is_the_first_frame_and_the_protocols_preceding_frames(name, after_start, after_30):
    frame = np.full((8, 8, 3), 100, np.uint8)
    prop = Propagator(PatchEncoder(), get_preset(name).with_overrides(size=SizePolicy("native")))
    prop.start(frame, torch.ones(1, 8, 8))
    assert prop.context_size == after_start
    for _ in range(30):
        prop.step(frame)
    assert prop.context_size == after_30


# --------------------------------------------------------------------------- masks: void and ids


class ConstantEncoder(nn.Module):
    """Every cell has the same features: all scores tie, so a joint top-k over all cells weighs each
    cell equally (stride 8, like `PatchEncoder`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 4, x.shape[2] // 8, x.shape[3] // 8)


def test_void_pixels_of_the_first_mask_vote_for_no_label():
    """A 1 x 6 cell frame: two cells of object 3, one of background, three void (255). With equal
    weights on all six cells (k = 6, no window, frame 0 as the only context), void carries no label
    (METHODS.md: DAVIS 255 is ignored; labels.py gives it an all-zero vector), so every pixel gets
    object 3 (2/6) over background (1/6). Were void read as background it would win with 4/6."""
    mask = np.repeat(np.array([[3, 3, 0, 255, 255, 255]], np.uint8), 8, axis=1).repeat(8, axis=0)
    frames = [np.full((8, 48, 3), 90, np.uint8)] * 3
    preset = get_preset("crw").with_overrides(k=6, radius=None, n_previous=0)
    out = list(propagate_mask(Propagator(ConstantEncoder(), preset), frames, mask))
    first = out[0][1]
    np.testing.assert_array_equal(first, np.where(mask == 255, 0, mask))  # frame 0 as given, void as background
    for _, labels in out[1:]:
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, np.full((8, 48), 3, np.uint8))


def test_uvc_floors_its_long_side_to_a_multiple_of_64():
    """UVC test.py (METHODS.md §1.9): short side 480, long side floored to a multiple of 64 (854 ->
    832); 880 px (13.75 multiples at 480) floors to 832 where rounding gave 896. Either orientation."""
    uvc = get_preset("uvc").size
    assert uvc.input_size(480, 854) == (480, 832)
    assert uvc.input_size(480, 880) == (480, 832)
    assert uvc.input_size(880, 480) == (832, 480)
    assert uvc.input_size(240, 440) == (480, 832)  # 880 at short side 480


# --------------------------------------------------------------------------- DAVIS mask files and folders


def _grey_mask(tmp_path, grey_levels: list[int], grey_pixels: int, object_pixels: int) -> Path:
    """A 0/255 grayscale PNG of 200 pixels: object_pixels of 255, grey_pixels spread over grey_levels,
    the rest 0."""
    values = np.zeros(200, np.uint8)
    values[:object_pixels] = 255
    values[object_pixels : object_pixels + grey_pixels] = np.resize(grey_levels, grey_pixels)
    path = tmp_path / "mask.png"
    Image.fromarray(values.reshape(10, 20), mode="L").save(path)
    return path


def test_a_binary_mask_with_three_grey_levels_on_its_rim_is_refused_as_smoothed(tmp_path):
    """The smoothed-mask rule (`io.masks`): 0 and 255 present, at least 3 other levels, on fewer pixels
    than 255. Exactly 3 levels is smoothed already; 2 is not (ids on a grayscale image)."""
    with pytest.raises(InputError, match="0, 255 and 3 grey levels"):
        read_mask(_grey_mask(tmp_path, [60, 120, 180], grey_pixels=9, object_pixels=80))
    assert set(np.unique(read_mask(_grey_mask(tmp_path, [60, 120], grey_pixels=9, object_pixels=80)))) == {
        0, 60, 120, 255}


def test_grey_levels_on_as_many_pixels_as_255_are_ids_not_a_smoothed_rim(tmp_path):
    """'Fewer pixels than 255' is strict: as many grey pixels as 255 ones reads as ids (255 = void)."""
    ids = read_mask(_grey_mask(tmp_path, [60, 120, 180], grey_pixels=30, object_pixels=30))
    assert set(np.unique(ids)) == {0, 60, 120, 180, 255}
    with pytest.raises(InputError, match="smoothed|anti-aliased"):
        read_mask(_grey_mask(tmp_path, [60, 120, 180], grey_pixels=29, object_pixels=30))


def _davis_tree(root: Path, n_frames: int, n_masks: int, split_text: str = "seq\n") -> Path:
    """A 2017-style DAVIS root of one sequence "seq": n_frames 16 x 8 JPEGs 00000.jpg..., the first
    n_masks palette annotations with object 1 at one pixel, ImageSets/2017/val.txt = split_text."""
    frames, annotations = root / "JPEGImages" / "480p" / "seq", root / "Annotations" / "480p" / "seq"
    frames.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for n in range(n_frames):
        Image.new("RGB", (16, 8), (10 * n, 0, 0)).save(frames / f"{n:05d}.jpg")
    for n in range(n_masks):
        mask = np.zeros((8, 16), np.uint8)
        mask[2, n] = 1
        write_indexed_png(annotations / f"{n:05d}.png", mask)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(split_text)
    return root


def test_split_file_names_lose_surrounding_blanks(tmp_path):
    """An edited split file with trailing blanks and a tab: names are the lines stripped, blank lines skipped."""
    root = _davis_tree(tmp_path / "DAVIS", 3, 3, split_text="seq  \n\n\tother\t\n")
    assert DavisDataset(root).sequences == ["seq", "other"]


def test_a_sequence_needs_three_annotations_for_the_semi_supervised_protocol(tmp_path):
    """Frames 1..T-2 are scored (METHODS.md §6.1, first and last excluded): 3 annotations is the least."""
    DavisDataset(_davis_tree(tmp_path / "a", 4, 3)).check_sequence("seq")
    with pytest.raises(InputError, match="2 annotated frame"):
        DavisDataset(_davis_tree(tmp_path / "b", 4, 2)).check_sequence("seq")


def test_every_scored_annotation_needs_its_frame_the_last_one_too(tmp_path):
    """Annotations 1..T-2 are scored: T-2's frame missing is refused; the last one's (not scored) is not."""
    root = _davis_tree(tmp_path / "DAVIS", 6, 5)
    frames = root / "JPEGImages" / "480p" / "seq"
    (frames / "00004.jpg").unlink()  # the last annotation's frame: not scored
    DavisDataset(root).check_sequence("seq")
    (frames / "00003.jpg").unlink()  # annotation T-2 = 3
    with pytest.raises(InputError, match="frame not found, but its annotation 00003.png is scored"):
        DavisDataset(root).check_sequence("seq")


def test_the_first_annotation_must_be_the_first_frames(tmp_path):
    root = _davis_tree(tmp_path / "DAVIS", 5, 5)
    (root / "Annotations" / "480p" / "seq" / "00000.png").unlink()
    with pytest.raises(InputError, match="first annotation 00001.png is not of the first frame 00000.jpg"):
        DavisDataset(root).check_sequence("seq")


def test_a_first_annotation_of_background_and_void_only_has_nothing_to_propagate(tmp_path):
    """Void (255) is no object: a first mask of 0 and 255 only is refused, not propagated as empty."""
    root = _davis_tree(tmp_path / "DAVIS", 3, 3)
    mask = np.zeros((8, 16), np.uint8)
    mask[:, :4] = 255
    write_indexed_png(root / "Annotations" / "480p" / "seq" / "00000.png", mask)
    with pytest.raises(InputError, match="holds no object id"):
        DavisDataset(root).first_mask("seq")


def test_decoding_min_max_rescales_only_channels_with_a_positive_maximum():
    """UVC's norm_mask and STT's decoding rescale a channel only if its maximum is > 0 (METHODS.md §1.9,
    §4.6). Soft labels of one's own may be negative: channel 0 (-1, -3, -2) stays as it is and loses
    every pixel to channel 1 (0.5, 0.2, 0.1 -> 1, 0.25, 0); rescaled too it would take the last pixel (0.5)."""
    soft = torch.tensor([[[-1.0, -3.0, -2.0]], [[0.5, 0.2, 0.1]]])  # (K=2, h=1, w=3)
    for name in ("uvc", "stt"):
        index = decode_label_map(soft, get_preset(name), (1, 3), (1, 3))
        assert index.tolist() == [[1, 1, 1]], name


def test_pixels_that_only_see_void_become_background_even_without_background_in_the_mask():
    """A first mask of object 3 and void only (no 0 anywhere): channel 0 is still the background, so a
    pixel whose only candidate is void (k = 1 in a window of its own cell, on frame 0 too) carries no
    label, and its all-zero vector decodes to id 0, not to the mask's one object (apart from the pixels
    that bilinear upsampling blends with the object's cell)."""
    mask = np.repeat(np.array([[3, 255, 255]], np.uint8), 8, axis=1).repeat(8, axis=0)
    frames = [np.full((8, 24, 3), 90, np.uint8)] * 2
    preset = get_preset("crw").with_overrides(k=1, radius=0.5, window_first=True, n_previous=0)
    (_, first), (_, second) = propagate_mask(Propagator(ConstantEncoder(), preset), frames, mask)
    np.testing.assert_array_equal(first, np.where(mask == 255, 0, mask))
    # cells (object 3, nothing, nothing) -> crw: bilinear to the frame, argmax (a tie, 0 vs 0, is channel 0)
    object_up = bilinear_half_pixel(np.array([[1.0, 0.0, 0.0]])[..., None], 8, 24)[..., 0]
    np.testing.assert_array_equal(second, np.where(object_up > 0, 3, 0).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.uint16])
def test_a_first_mask_of_any_number_type_may_hold_void(dtype):
    """Ids 0..254 and 255 = void are a mask's whole range, in any dtype: 255 is not 'out of range'."""
    mask = np.array([[0, 1, 254, 255]], dtype)
    np.testing.assert_array_equal(check_first_mask(mask, (1, 4)), np.array([[0, 1, 254, 255]], np.uint8))
    with pytest.raises(InputError, match="0..254"):
        check_first_mask(np.array([[0, 1, 256]], dtype), (1, 3))


def test_a_mask_without_background_still_gets_a_background_channel():
    """Channel 0 is the background even where the first mask has none (two objects filling the frame):
    UVC-track gives a box to every channel >= 1, so each object gets its own, none is taken for the
    background."""
    mask = np.zeros((16, 32), np.uint8)
    mask[:, :16], mask[:, 16:] = 1, 2
    frames = [np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)] * 2
    tracker = UVCTracker(PatchEncoder(), get_preset("uvc").with_overrides(size=SizePolicy("native")))
    _, first = next(propagate_mask(tracker, frames, mask))
    np.testing.assert_array_equal(first, mask)
    assert tracker.channel_ids.tolist() == [0, 1, 2]
    assert sorted(tracker.boxes) == [1, 2] and all(box is not None for box in tracker.boxes.values())


def test_stt_decodes_by_upsampling_to_the_original_frame_not_to_its_input():
    """STT (METHODS.md §4.6): bilinear to the original size, min-max, argmax. Frames of 16 x 48 fed at
    8 x 24 (short side 8): bilinear to 8 x 24, argmax and nearest to 16 x 48 puts the border elsewhere."""
    soft = torch.tensor([[[0.0, 1.0, 0.4]], [[1.0, 0.0, 0.7]]])  # (K=2, 1 x 3 cells)
    preset = get_preset("stt").with_overrides(size=SizePolicy("short_side", 8))
    index = decode_label_map(soft, preset, (8, 24), (16, 48))
    up = bilinear_half_pixel(soft.permute(1, 2, 0).double().numpy(), 16, 48)  # (16, 48, K)
    lo, hi = up.min(axis=(0, 1)), up.max(axis=(0, 1))
    np.testing.assert_array_equal(index.numpy(), ((up - lo) / (hi - lo)).argmax(axis=-1))


class CountingEncoder(PatchEncoder):
    """`PatchEncoder` that records how many frames each call embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return super().forward(x)


def test_frames_are_embedded_batch_size_at_a_time():
    """batch_size bounds the frames held and embedded at once: 1 + 7 frames at batch_size 3 are the first
    frame alone (start), then 3, 3 and the 1 left."""
    frames = _textured_video(8, 16, 16, seed=0)
    encoder = CountingEncoder()
    outputs = list(Propagator(encoder, get_preset("crw"), batch_size=3).run(frames, torch.ones(1, 16, 16)))
    assert len(outputs) == 7 and encoder.calls == [1, 3, 3, 1]


def test_channel_map_gives_ignored_ids_no_channel_even_when_listed():
    """An id equal to ``ignored`` is VOID (no channel) even if ``values`` lists it; ids not listed are VOID
    too; ``ignored=None`` maps every listed id."""
    index = np.array([[0, 5, 255, 7]], np.uint8)
    values = np.array([0, 5, 255], np.uint8)
    assert channel_map(index, values).tolist() == [[0, 1, 255, 255]]
    assert channel_map(index, values, ignored=None).tolist() == [[0, 1, 2, 255]]
