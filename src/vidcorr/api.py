"""The scripting API: a first-frame mask, keypoints or box carried through a video in a few lines.

    import vidcorr

    encoder = vidcorr.encoder_for("crw")  # the shipped default weights, cut at the crw protocol's layer
    for frame, mask in vidcorr.propagate_masks("clip.mp4", "first.png", encoder=encoder):
        ...                               # frame: RGB uint8 (H, W, 3); mask: object ids uint8 (H, W)

    tracker = vidcorr.mask_tracker(encoder=encoder)  # frames one at a time (a camera, a tool)
    mask0 = tracker.step(frame0, "first.png")        # starts the video from this mask (ids, a path, a PIL image)
    mask1 = tracker.step(frame1)

    for frame, points, visible in vidcorr.propagate_keypoints("clip.mp4", "first.json"):
        ...                               # points (J, 2) pixels, NaN where lost; visible (J,)
    for frame, (x, y, w, h) in vidcorr.track_box("clip.mp4", (120, 80, 64, 48), tracker="dcf"):
        ...
    for frame, labels in vidcorr.propagate_labels("clip.mp4", probabilities):  # (K, H, W) floats
        ...                               # labels (K, H, W) float32, soft, at the frame's size
    matches = vidcorr.match_frames("a.jpg", "b.jpg")  # what `vidcorr match` draws: points_a, points_b, mutual

The command line (`vidcorr propagate`) runs the same code and loads its models the same way
(`vidcorr.encoders.resolve_encoder`). One thing it does that these functions do not: `vidcorr.bound_cpu_memory()`
(`vidcorr.runtime`), which keeps a long video's peak CPU memory flat (glibc's default lets it creep
~10 % over the first few hundred frames) at some CPU time. It sets the malloc of the whole process
(and an environment variable PyTorch reads), which a library should not do behind its caller's
back: call it once, first, when you propagate long videos on a CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from vidcorr.encoders import resolve_encoder
from vidcorr.errors import InputError, shown_value
from vidcorr.correspond import Matches
from vidcorr.masks import MaskTracker, check_first_mask, propagate_mask, read_first_mask
from vidcorr.models.external import check_own_module
from vidcorr.presets import DEFAULT_PRESET, PropagationPreset, customised_preset
from vidcorr.propagate import Propagator
from vidcorr.soft_labels import check_first_labels, propagate_soft_labels, read_labels_file
# bound_cpu_memory: exported (`vidcorr.bound_cpu_memory`), never called here
from vidcorr.runtime import bound_cpu_memory, checked_device  # noqa: F401
from vidcorr.track_uvc import TrackOptions, mask_propagator, track_options

log = logging.getLogger(__name__)

PresetLike = str | PropagationPreset


def encoder_for(
    preset: PresetLike = DEFAULT_PRESET, weights: str | Path | None = None, features: str | None = None
) -> nn.Module:
    """The encoder a preset propagates with: weights (default: the shipped default weights) cut at
    the preset's layer, or an untrained floor (``features="lab-pixels" | "random-resnet18"``).
    preset: as `propagate_masks`."""
    return resolve_encoder(customised_preset(preset), weights, features)[0]


def propagate_masks(
    video: str | Path | Iterable[np.ndarray],
    first_mask: str | Path | np.ndarray | Image.Image,
    *,
    encoder: nn.Module | None = None,
    preset: PresetLike = DEFAULT_PRESET,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    size: int | None = None,
    track: bool | TrackOptions = False,
    **knobs: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, mask)`` for every frame of a video, the first included.

    video: a video file or folder of frames, or RGB uint8 frames (H, W, 3) in order (float, uint16,
    gray, RGBA and torch frames are converted: `vidcorr.io.frames.as_rgb_frame`; BGR is not
    detected). first_mask: the first frame's object ids (H, W) 0..254 (255 = void; numpy, torch or
    nested lists), or an indexed / 0-255 binary PNG as a path or a PIL image (read by
    `vidcorr.io.masks.read_mask`'s rules: a grayscale mask's 255 is object 1). preset: a name
    (``"crw"``, the default, ``"uvc"``, ``"timecycle"``, ``"stt"``) or a `PropagationPreset`; None
    is a ValueError, not the default.
    encoder: default `encoder_for(preset)`. size (input short side; timecycle's stays square) and knobs (``k``,
    ``temperature``, ``radius``, ``n_previous``, ``window_first``) change the preset. track: UVC-track
    (UVC's "ours-track", `vidcorr.track_uvc`: each object carried box to box), True for the
    official settings or a `TrackOptions`. Frames are read and dropped as they are propagated:
    memory does not grow with the video (for a flat peak on long videos on a CPU, call
    `vidcorr.bound_cpu_memory()` first, as the command line does: it changes the whole process's
    malloc, so it is left to the caller). Bad input raises `InputError` naming the file here, not
    at the first frame.
    """
    first_mask, mask_path = read_first_mask(first_mask)
    with _opened(video, exclude=[mask_path] if mask_path else []) as (first_frame, frames):
        first_mask = check_first_mask(first_mask, first_frame.shape[:2], mask_path)
        propagator = _propagator(encoder, preset, device, batch_size, size, knobs, track)
        return _warning_if_coarse(propagate_mask(propagator, frames, first_mask), propagator, video)


def propagate_labels(
    video: str | Path | Iterable[np.ndarray],
    first_labels: str | Path | np.ndarray | torch.Tensor | Any,
    *,
    encoder: nn.Module | None = None,
    preset: PresetLike = DEFAULT_PRESET,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    size: int | None = None,
    **knobs: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, labels)`` for every frame, the first included: any per-pixel labels carried
    through the video, not only object ids (class probabilities, a soft matte, a heat map, ...).

    first_labels: the first frame's labels (K, H, W) or (H, W) (one channel), any real numbers, as
    numpy, torch or nested lists, or the path of a ``.npy`` file of them (``np.save``, as
    ``vidcorr propagate --labels`` takes them). labels: (K, H, W) float32 at the frame's size, frame 0 the given
    ones: the soft labels the preset propagates (each a weighted sum of the context frames' labels
    under the preset's affinity), upsampled bilinearly, with no argmax. Under ``crw`` and ``stt``
    the weights sum to 1, so values stay within the first frame's range; under ``uvc`` (softmax,
    then top-k, not renormalised) they sum to less than 1 and values shrink toward 0; ``timecycle``
    also min-max normalises every propagated frame per channel to [0, 1] (docs/propagation.md).
    Other arguments as `propagate_masks` (UVC-track needs objects: masks only). For a one-hot
    mask under ``crw`` the argmax of these labels is `propagate_masks`' mask.
    """
    path = None
    if isinstance(first_labels, (str, os.PathLike)):  # an InputError naming a missing or unreadable file
        path = Path(first_labels)
        first_labels = read_labels_file(path)
    with _opened(video) as (first_frame, frames):
        labels = check_first_labels(first_labels, first_frame.shape[:2], path)
        propagator = _propagator(encoder, preset, device, batch_size, size, knobs)
        return _warning_if_coarse(propagate_soft_labels(propagator, frames, labels), propagator, video)


def mask_tracker(
    *,
    encoder: nn.Module | None = None,
    preset: PresetLike = DEFAULT_PRESET,
    device: str | torch.device = "cpu",
    size: int | None = None,
    track: bool | TrackOptions = False,
    **knobs: Any,
) -> MaskTracker:
    """A `MaskTracker`: ``step(frame, mask)`` starts a video, ``step(frame)`` gives the next mask.
    Arguments as `propagate_masks` (but ``batch_size``: one encoder call per step)."""
    if "batch_size" in knobs:  # else "unknown preset knob(s) batch_size", as if it were a typo
        raise ValueError("mask_tracker embeds each frame as it is stepped, one encoder call per step: "
                         "batch_size applies to the whole-video functions (propagate_masks, ...) only")
    return MaskTracker(_propagator(encoder, preset, device, 1, size, knobs, track))


def propagate_keypoints(
    video: str | Path | Iterable[np.ndarray],
    keypoints: str | Path | np.ndarray,
    *,
    visible: np.ndarray | list[bool] | None = None,
    encoder: nn.Module | None = None,
    preset: PresetLike = DEFAULT_PRESET,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    size: int | None = None,
    **knobs: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(frame, points (J, 2), visible (J,))`` for every frame, the first included.

    keypoints: the first frame's (J, 2) x, y in 0-based pixels, or a keypoints JSON file
    (docs/keypoints.md; its "visible" list applies). A keypoint without a position on the first
    frame is NaN (``null`` in the file): with ``visible`` not given it is simply not visible; marked
    visible it is an `InputError` naming it. No keypoint visible on the first frame (nothing to
    propagate) is an `InputError` too. visible: (J,) bool, replacing the file's list. The
    yielded points are NaN where a keypoint is lost or not visible. Each keypoint travels as a
    Gaussian heatmap channel and is read back as the preset's codec does
    (`vidcorr.keypoints.codec_for`) on the feature grid the encoder gives for the first frame,
    which is embedded at the call (any module, as for `propagate_masks`). Other arguments as
    `propagate_masks`.
    """
    from vidcorr.keypoints import KeypointSet, check_first_keypoints, codec_for, first_visibility, read_keypoints_json
    from vidcorr.keypoints import propagate_keypoints as propagate

    path = None
    if isinstance(keypoints, (str, os.PathLike)):
        path = Path(keypoints)
        kps = read_keypoints_json(path)
        if visible is not None:
            kps = replace(kps, visible=first_visibility(kps.points, visible, kps.names, path))
    else:
        # Not reshape(-1, 2): that would read (J, 3) [x, y, v] rows as 3J / 2 made-up points.
        points = np.asarray(keypoints, np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"keypoints has shape {points.shape}; expected (J, 2) x, y pixels")
        names = [str(i) for i in range(len(points))]
        kps = KeypointSet(points, first_visibility(points, visible, names), names, [])
    with _opened(video) as (first_frame, frames):
        check_first_keypoints(kps, first_frame.shape[:2], path)
        propagator = _propagator(encoder, preset, device, batch_size, size, knobs)
        stream = propagate(propagator, frames, kps.points, codec_for(propagator.preset.name), kps.visible)
        # The heatmaps are drawn on the grid the encoder gives for the first frame: embedding it now
        # raises a preset that makes cells too fine (`check_heatmap_scale`) here, not when iterated.
        # The coarse-grid warning too, as the other functions and `vidcorr propagate --keypoints` give it.
        return _warning_if_coarse(_then(next(stream), stream), propagator, video)


def _warning_if_coarse(stream: Generator, propagator: Propagator, video: Any) -> Generator:
    """``stream``, with `vidcorr propagate`'s warning when the first frame's feature grid is under 8
    cells on its short side (``size=16``: 2 cells; the results are coarse and mostly wrong), logged
    once the first frame is embedded: from Python such a size gave them without a word."""
    from vidcorr.cli.common import warn_if_coarse_propagator

    try:
        for index, item in enumerate(stream):
            if index == 0:  # the propagator has started: its grid is known
                name = Path(video) if isinstance(video, (str, os.PathLike)) else "the video"
                warn_if_coarse_propagator(name, propagator, option="size=")
            yield item
    finally:
        stream.close()


def _then(first: Any, rest: Generator) -> Generator:
    """``first``, then what ``rest`` yields, as a generator whose ``close()`` closes ``rest`` (and so
    the video it reads): `itertools.chain` has no ``close()``, where every other function here
    returns a generator, and a caller stopping early could not release the file."""
    try:
        yield first
        yield from rest
    finally:
        rest.close()


def track_box(
    video: str | Path | Iterable[np.ndarray],
    box: tuple[float, float, float, float],
    *,
    tracker: str = "localise",
    encoder: nn.Module | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Iterator[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """Yield ``(frame, (x, y, w, h))`` for every frame, the first with the given box (0-based pixels,
    top-left corner and size).

    tracker: ``"localise"`` (UVC's region localisation) or ``"dcf"`` (a correlation filter on the
    features); options replace its settings (`vidcorr.track.LocaliseSettings`,
    `vidcorr.dcf.DCFSettings`). encoder: default `encoder_for("crw")` (the features are layer3).
    """
    from vidcorr.track import check_first_box, corner_box_warning, track_frames, tracker_settings

    try:
        tracker_settings(tracker, **options)  # an unknown tracker or setting: ValueError here, not when iterated
    except ValueError:
        _refuse_propagation_settings(tracker, options)
        raise
    checked_device(device)
    if encoder is not None:
        _check_is_module(encoder)
    with _opened(video) as (first_frame, frames):
        checked = check_first_box(box, first_frame.shape[:2])  # ValueError here rather than at the first frame
        if (warning := corner_box_warning(checked, first_frame.shape[:2])) is not None:
            log.warning("track_box: %s", warning)
        if encoder is None:
            encoder = encoder_for(DEFAULT_PRESET)
        check_own_module(encoder, device)
        return track_frames(encoder, frames, box, tracker, device=device, **options)


def match_frames(
    frame_a: str | Path | np.ndarray,
    frame_b: str | Path | np.ndarray,
    *,
    mask_a: str | Path | np.ndarray | Image.Image | None = None,
    step: int = 2,
    encoder: nn.Module | None = None,
    preset: PresetLike = DEFAULT_PRESET,
    device: str | torch.device = "cpu",
    size: int | None = None,
) -> Matches:
    """What ``vidcorr match A B`` finds: every ``step``-th feature cell of frame A matched into frame
    B, with its forward-backward check (`vidcorr.correspond.match_frames`). -> `Matches`: points_a,
    points_b (M, 2) x, y pixels of A and B, similarity (M,), mutual (M,) bool.

    frame_a, frame_b: image files, or RGB frames (H, W, 3) as the other functions take them; their
    sizes may differ. mask_a: query only A's cells on an object (ids (Ha, Wa) or a mask file, as
    `propagate_masks`' first_mask; 0 and void 255 are not queried). encoder, preset, device, size: as
    `propagate_masks` (the preset's size, layer and normalisation embed the frames).
    `vidcorr.viz.draw_matches(a, b, matches)` draws them as ``vidcorr match`` does.
    """
    from vidcorr.cli.common import warn_if_coarse_propagator
    from vidcorr.correspond import match_frames as match
    from vidcorr.io.frames import as_rgb_frame
    from vidcorr.io.images import read_image

    # files read as `vidcorr match` reads its two images (upright by EXIF, 16-bit gray scaled)
    a, b = (as_rgb_frame(read_image(f) if isinstance(f, (str, os.PathLike)) else f, side)  # type: ignore[arg-type]
            for f, side in ((frame_a, "A"), (frame_b, "B")))
    query, path = None, None
    if mask_a is not None:
        ids, path = read_first_mask(mask_a)
        ids = check_first_mask(ids, a.shape[:2], path)
        query = (ids != 0) & (ids != 255)
    propagator = _propagator(encoder, preset, device, 1, size, {})
    matches = match(propagator, a, b, step=step, mask_a=query)
    if len(matches) == 0:
        raise InputError(path, "no point of frame A to match: the mask covers no feature cell centre")
    warn_if_coarse_propagator("frame A", propagator, option="size=", grid_hw=matches.grid_a, input_hw=matches.input_a)
    return matches


def _refuse_propagation_settings(tracker: str, options: dict[str, Any]) -> None:
    """`InputError` for a keyword of the propagation functions (`propagate_masks`' size, knobs,
    batch_size, track) that is no setting of the tracker (`track_box`), in the command line's words
    (`vidcorr.cli.common.not_for_tracking`): they were "unknown localise setting(s) ['size']", with
    no word on why."""
    import dataclasses

    from vidcorr.cli.common import KNOB_OVERRIDES, not_for_tracking
    from vidcorr.track import TRACKERS, tracker_settings

    if tracker not in TRACKERS:
        return
    # the command line's knob list, so that a new knob is refused here too
    propagation = {"size", *(knob for _, knob in KNOB_OVERRIDES), "batch_size", "track"}
    own = {f.name for f in dataclasses.fields(tracker_settings(tracker))}
    for name in options:
        if name in propagation and name not in own:  # localise's temperature is its own
            raise InputError(None, not_for_tracking(name, (
                f"the {tracker} tracker takes its own settings as keywords ({sorted(own)}; "
                "vidcorr.track.LocaliseSettings, vidcorr.dcf.DCFSettings, docs/tracking.md)")))


@contextmanager
def _opened(video: str | Path | Iterable[np.ndarray],
            exclude: list[Path] | None = None) -> Iterator[tuple[np.ndarray, Iterator[np.ndarray]]]:
    """-> (the first frame, every frame from the first on), reading a path with `open_frames`
    (exclude: first-frame files a frame folder may hold, not frames); frames given as arrays are
    made RGB uint8 (`vidcorr.io.frames.as_rgb_frames`). The video is closed when the block raises
    (a mask of another size, an encoder failing its probe): the exception's traceback holds the
    frames, so its decoder and file stayed open as long as the exception did (in a notebook, which
    keeps the last one, until the next error)."""
    from vidcorr.io.frames import as_rgb_frames
    from vidcorr.io.video import GIVE_FRAMES, open_frames

    if isinstance(video, (str, os.PathLike)):  # os.PathLike: not only pathlib's (it was read as frames)
        video = Path(video)
        # every frame is read: a file cut short is refused before the first is processed (frames
        # given as `open_frames(path).head(n)` read those before a cut)
        stream = iter(open_frames(video, exclude=exclude or [], image_advice=GIVE_FRAMES, every_frame=True))
    else:
        stream = as_rgb_frames(video)
    try:
        first_frame = next(stream, None)
        if first_frame is None:
            raise InputError(None, f"{video if isinstance(video, Path) else 'the video'} has no frames")
        yield first_frame, chain([first_frame], stream)
    except BaseException:
        stream.close()  # a generator: its `finally` closes the decoder (a caller's own iterable is left open)
        raise


def _propagator(encoder, preset, device, batch_size, size, knobs, track=False) -> Propagator:
    if "track" in knobs:  # propagate_labels / propagate_keypoints: else "unknown preset knob(s) track"
        raise ValueError("track (UVC-track) carries each object box to box: it applies to masks only "
                         "(propagate_masks, mask_tracker)")
    track_options(track)  # track="yes": a ValueError here, not inside the first frame
    preset = customised_preset(preset, size=size, **knobs)
    checked_device(device)
    if encoder is None:
        encoder = resolve_encoder(preset)[0]
    _check_is_module(encoder)
    propagator = mask_propagator(encoder, preset, track, device=device, batch_size=batch_size)
    # at the call: channels-last features were propagated from Python as channels and cells, silently
    check_own_module(propagator.encoder, device)
    return propagator


def _check_is_module(encoder: Any) -> None:
    """TypeError unless ``encoder`` is an ``nn.Module``: a weights path or an ``--encoder`` spec
    given here failed later as "'str' object has no attribute 'parameters'"."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module mapping RGB (B, 3, H, W) in [0, 1] to features "
                        f"(B, C, h, w), got {type(encoder).__name__} {shown_value(encoder)}; for weights: "
                        "encoder=vidcorr.encoder_for(preset, weights=PATH); for a factory as --encoder takes "
                        "it: vidcorr.models.external.load_external_encoder('my_models.py:build')[0]")
