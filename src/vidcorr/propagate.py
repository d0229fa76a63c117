"""Streaming label propagation with a bounded context memory (DESIGN.md "Memory is bounded by design").

The propagator keeps the first frame and a ring buffer of the last ``n_previous`` frames (features
and soft labels at feature resolution). For every new frame it computes a top-k affinity against
that context (`vidcorr.affinity.sparse_affinity`), transports the context labels, stores the
result and yields it. Frames are pulled from any iterable, embedded in small batches, and dropped
as soon as they are used, so peak memory does not grow with the video length.

Typical use::

    prop = Propagator(encoder, get_preset("crw"))
    for soft in prop.run(frames, one_hot_labels(first_mask)):   # frames 1, 2, ... of the video
        index_map = decode_label_map(soft, prop.preset, prop.input_hw, prop.original_hw)

or one frame at a time, for frames that arrive one by one (a camera, an interactive tool)::

    prop.start(first_frame, one_hot_labels(first_mask))
    soft = prop.step(next_frame)

`vidcorr.masks` wraps both for index maps (`propagate_mask`, `MaskTracker`).
"""

from __future__ import annotations

import itertools
import logging
import numbers
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidcorr.affinity import SparseAffinity, sparse_affinity, transport_sparse
from vidcorr.errors import EncoderOutputError
from vidcorr.labels import downsample_labels, minmax_per_channel
from vidcorr.models.encoder import FrameEncoder, as_given, feature_problem, inference_encoder
from vidcorr.models.external import error_origin
from vidcorr.presets import PropagationPreset, customised_preset

log = logging.getLogger(__name__)
# The least mismatch (1 - cosine) a shot-cut check measures against: float32 rounding's
# order, so that a still shot's repeated frames (mismatch 0) make no tiny change a cut.
_MISMATCH_FLOOR = 1e-6


@dataclass
class ContextFrame:
    """One context frame: features (C, h, w) and soft labels flattened to (h * w, K); ``frame``: the
    video frame the features are of (0: the first frame, also for its prediction into itself), what
    a resumed propagation re-embeds (`Propagator.state`)."""

    feats: Tensor
    labels: Tensor
    frame: int = 0


def frames_to_tensor(frames: Sequence[np.ndarray], size: tuple[int, int], device: torch.device | str) -> Tensor:
    """RGB uint8 frames (H, W, 3) -> (B, 3, h, w) float in [0, 1], resized bilinearly.

    No antialiasing: the reference implementations resize with cv2.resize (INTER_LINEAR).
    """
    batch = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=False)
    return batch


class Propagator:
    """Propagate soft labels from the first frame through a stream of frames.

    encoder: any module mapping RGB (B, 3, H, W) in [0, 1] to features (B, C, h, w) — the encoder
    already truncated to the preset's feature layer; a `FrameEncoder` is used through an inference
    copy (`inference_encoder`: BatchNorm folded, channels-last on CPU), others are called in eval
    mode and left in the mode the caller had them (a copy when on another device). preset:
    the protocol, by name (``"crw"``) or a `PropagationPreset`. batch_size: frames embedded per
    encoder call (memory vs speed; results do not depend on it).
    """

    def __init__(
        self,
        encoder: nn.Module,
        preset: str | PropagationPreset,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        autocast: bool = False,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            # 0 would batch the whole video into one encoder call: memory growing with its length.
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.encoder = inference_encoder(encoder, device)  # BN folded, channels-last on CPU
        self.preset = customised_preset(preset)  # a name is looked up; a misspelt one refused here, not at frame 0
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.autocast = autocast and self.device.type == "cuda"
        self.input_hw: tuple[int, int] | None = None
        self.original_hw: tuple[int, int] | None = None
        self.feature_hw: tuple[int, int] | None = None
        self._first: ContextFrame | None = None
        self._context: deque[ContextFrame] = deque()
        # The object id of each label channel where the labels are a mask's (`vidcorr.masks` makes
        # one channel per id the first mask holds and gives them to `start`); None: channel k is id k.
        self.channel_ids: np.ndarray | None = None
        # Cumulative wall time, for benchmarks: encoder vs affinity + transport.
        self.timing = {"features": 0.0, "propagation": 0.0, "frames": 0}
        # The last propagated frame's `match_score` and the shot-cut
        # watch over it: what a caller reads after each step / yield to catch a cut (docs/propagation.md).
        self.match_score: float | None = None
        self.cuts = ShotCutDetector()
        # The index of the last frame propagated (0 after `start`): what names a yielded frame's
        # results, and where a saved `state` stands. `_resume_state`: given to `resume`, taken by
        # the next `start` into `_resuming`, which the next `follow` restores.
        self.frames_taken = 0
        self._resume_state: dict[str, Any] | None = None
        self._resuming: dict[str, Any] | None = None

    @property
    def context_size(self) -> int:
        """Frames held in memory as context right now: the first frame + the ring buffer."""
        return 1 + len(self._context)

    @torch.inference_mode()
    def embed(self, frames: Sequence[np.ndarray]) -> Tensor:
        """RGB uint8 frames (H, W, 3) -> features (B, C, h, w), L2-normalised if the preset says so."""
        h, w = frames[0].shape[:2]
        expected = self.original_hw or (h, w)
        for frame in frames:  # every frame of the batch: np.stack would fail on a mismatch, cryptically
            _check_rgb_uint8(frame)
            if tuple(frame.shape[:2]) != expected:
                raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]} but the first frame was "
                                 f"{expected[1]}x{expected[0]}")
        start = time.perf_counter()
        batch = frames_to_tensor(frames, self.preset.size.input_size(h, w), self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            feats = run_encoder(self.encoder, batch)
        check_features(self.encoder, feats, len(frames))
        # channels-last out of a CPU encoder (affinity wants NCHW); a module of one's own may return
        # float16 / bfloat16 or features on another device.
        feats = feats.to(self.device, torch.float32).contiguous()
        if self.preset.l2_normalise:
            feats = F.normalize(feats, dim=1)
        self._sync()
        self.timing["features"] += time.perf_counter() - start
        return feats

    @torch.inference_mode()
    def start(self, first_frame: np.ndarray, first_labels: Tensor | np.ndarray | Callable[[tuple[int, int]], Tensor],
              channel_ids: np.ndarray | None = None) -> None:
        """Begin a video: embed its first frame (RGB uint8 (H, W, 3)) and keep its soft labels
        first_labels (K, H, W) at the frame's size (a tensor or an array); forgets any earlier video's context.
        channel_ids: (K,) the object id each label channel stands for, where the labels are a mask's
        (`vidcorr.masks`); kept as ``self.channel_ids`` (None: channel k is id k).

        first_labels may also be a function that takes the first frame's feature grid (h, w) and
        returns them: labels drawn on the grid the encoder gives (keypoint heatmaps,
        `vidcorr.keypoints`), which a module of one's own only tells by running, here without a
        second encoder pass on the first frame.
        """
        # Forget the earlier video before anything can fail: a start that raised (the encoder on this
        # frame, labels of the wrong size) left its first frame and ring buffer, and step() then
        # carried its labels into this video's frames without a word.
        self._first, self._context = None, deque()
        self.match_score, self.cuts = None, ShotCutDetector()
        self.frames_taken = 0
        self._resuming, self._resume_state = self._resume_state, None
        self.original_hw = None  # embed() checks later frames against the first one
        self.channel_ids = None
        if not callable(first_labels):
            first_labels = torch.as_tensor(first_labels)  # numpy labels too
            _check_label_size(first_labels, first_frame)
        if channel_ids is not None and (callable(first_labels) or len(channel_ids) != first_labels.shape[0]):
            raise ValueError(f"channel_ids: one object id per label channel, got {len(channel_ids)} for "
                             + ("labels drawn on the feature grid" if callable(first_labels)
                                else f"{first_labels.shape[0]} channels"))
        self.input_hw = self.preset.size.input_size(*first_frame.shape[:2])
        feats = self.embed([first_frame])[0]
        self.feature_hw = tuple(feats.shape[-2:])
        if callable(first_labels):
            first_labels = first_labels(self.feature_hw)
            _check_label_size(first_labels, first_frame)
        self._first = self._first_memory(feats, first_labels.to(self.device))
        self.original_hw = tuple(first_frame.shape[:2])
        self.channel_ids = channel_ids
        self._context = deque(maxlen=self.preset.n_previous)
        if self.preset.initial_context == "first":
            self._context.append(self._first)
        elif self.preset.initial_context in ("fill", "fill_self"):
            self._context.extend([self._first] * self.preset.n_previous)  # references, not copies
        if self.preset.initial_context == "fill_self":
            self._propagate(feats, a_frame=False)  # its prediction replaces the oldest copy

    @torch.inference_mode()
    def step(self, frame: np.ndarray) -> Tensor:
        """Propagate into the next frame (RGB uint8 (H, W, 3)) -> soft labels (K, h, w) at feature
        resolution. One encoder call per frame: `run` batches frames and is faster on a whole video."""
        if self._first is None:
            raise RuntimeError("Propagator.step before start(): give the first frame and its labels first")
        return self._propagate(self.embed([frame])[0])

    @torch.inference_mode()
    def run(self, frames: Iterable[np.ndarray], first_labels: Tensor | np.ndarray) -> Iterator[Tensor]:
        """Yield soft labels (K, h, w) at feature resolution for every frame after the first.

        frames: the whole video, first frame included (RGB uint8 (H, W, 3)); first_labels: (K, H, W)
        soft labels of the first frame at its original size, a tensor or an array (e.g. `labels.one_hot_labels`).
        """
        first_frame, stream = first_and_rest(frames)
        self.start(first_frame, first_labels)
        for _, soft in self.follow(stream):
            yield soft

    @torch.inference_mode()
    def follow(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, Tensor]]:
        """Yield ``(frame, soft labels (K, h, w))`` for each of these frames (RGB uint8 (H, W, 3)),
        the ones that follow the video begun with `start`. Frames are pulled ``batch_size`` at a
        time and dropped once yielded; each is propagated just before it is yielded."""
        if self._first is None:
            raise RuntimeError("Propagator.follow before start(): give the first frame and its labels first")
        frames = iter(frames)
        if self._resuming is not None:
            state, self._resuming = self._resuming, None
            self._restore(state, frames)
        for batch in _batched(frames, self.batch_size):
            for frame, feats in zip(batch, self.embed(batch)):
                yield frame, self._propagate(feats)

    def _propagate(self, query: Tensor, a_frame: bool = True) -> Tensor:
        """Propagate into the next frame, timed: query features (C, h, w) -> soft labels (K, h, w);
        the frame joins the ring buffer. a_frame: counted as a frame in ``timing`` (False for frame
        0 propagated into itself: its time is the video's, not a frame's)."""
        if tuple(query.shape[-2:]) != self.feature_hw:
            # A module of one's own may give another grid for a frame of the same size; the affinity
            # and the labels are laid out on the first frame's grid.
            raise EncoderOutputError(f"encoder {_encoder_name(self.encoder)} gave a {_grid(query.shape[-2:])} "
                                     f"feature grid for a {_grid(self.input_hw)} input but {_grid(self.feature_hw)} "
                                     f"for the first frame, of the same size: propagation needs one feature grid "
                                     f"for every frame")
        start = time.perf_counter()
        memories = [self._first, *self._context]
        aff = sparse_affinity(query, [m.feats for m in memories], self._windowed(memories), self.preset.topk)
        soft = self._transport(query, memories, aff)  # (h * w, K)
        if a_frame:  # frame 0 propagated into itself (fill_self) is no frame of the video's
            self.frames_taken += 1
            self.match_score = match_score(best_match_cosines(query, memories, aff))
            self.cuts.update(self.match_score)
        if self.preset.normalise_context_labels:
            # TimeCycle rescales every channel, negative ones included (labels of one's own may be)
            soft = minmax_per_channel(soft.T.reshape(-1, *self.feature_hw), positive_only=False)
            soft = soft.flatten(1).T.contiguous()
        if self.preset.n_previous > 0:
            # query is a view into its encoder batch: a copy lets the batch's storage be freed.
            memory = self._context_memory(query.clone(), soft)
            memory.frame = self.frames_taken
            self._context.append(memory)
        self._sync()
        self.timing["propagation"] += time.perf_counter() - start
        self.timing["frames"] += a_frame
        return soft.T.reshape(-1, *self.feature_hw)

    def state(self) -> dict[str, Any]:
        """Where this video stands, to continue it after a stop (`resume`): tensors and plain
        containers (``torch.save``, loaded with ``weights_only=True``). The ring buffer's labels
        (h * w, K) each, by reference: they are never changed once stored, so a state taken at every
        batch costs nothing (save a clone: a label tensor may share its storage). Features are left
        out: ``resume`` embeds the frames again (the first frame's labels come from ``start``)."""
        if self._first is None:
            raise RuntimeError("Propagator.state before start(): no video to describe")
        return {"frames_taken": self.frames_taken, "batch_size": self.batch_size,
                "feature_hw": list(self.feature_hw), "match_score": self.match_score, "cuts": self.cuts.state(),
                "context": [self._slot_state(memory) for memory in self._context]}

    def resume(self, state: Mapping[str, Any]) -> None:
        """Continue the video ``state`` (`state`) was taken from: the next `start` is given its first
        frame and labels as before and `follow` its frames from frame 1 as before; ``follow`` reads
        frames 1 to ``state["frames_taken"]`` again, embeds those the ring buffer holds in the batches
        they were first embedded in (the same features, bitwise, on the same machine: a batch of
        other frames may round otherwise), and yields from the frame after them."""
        if state["batch_size"] != self.batch_size:
            raise ValueError(f"the state was taken with batch_size {state['batch_size']}, this propagator "
                             f"embeds {self.batch_size} frames a batch: its features would round otherwise")
        if state["frames_taken"] % self.batch_size:  # the next batch would not start where the first run's did
            raise ValueError(f"a state can be resumed at a batch's end only: frame {state['frames_taken']} is "
                             f"not a multiple of batch_size {self.batch_size}")
        self._resume_state = dict(state)

    def _restore(self, state: Mapping[str, Any], frames: Iterator[np.ndarray]) -> None:
        """Take ``state`` up after `start`: read frames 1..frames_taken from ``frames``, embed the
        batches holding a frame of the ring buffer, put the buffer, the shot-cut watch and the frame
        count back."""
        if tuple(state["feature_hw"]) != self.feature_hw:
            raise ValueError(f"the state's feature grid {_grid(state['feature_hw'])} is not the first "
                             f"frame's {_grid(self.feature_hw)}: another video or encoder")
        taken = state["frames_taken"]
        wanted = {slot["frame"] for slot in state["context"] if not slot["first"]} - {0}
        feats: dict[int, Tensor] = {0: self._first.feats}
        read = 0
        for batch in _batched(itertools.islice(frames, taken), self.batch_size):
            indices = range(read + 1, read + 1 + len(batch))
            read += len(batch)
            if wanted.intersection(indices):
                feats.update((i, f) for i, f in zip(indices, self.embed(batch)) if i in wanted)
        if read < taken:
            raise ValueError(f"the state was taken at frame {taken}, but the video has {read + 1} frames")
        self._context = deque((self._first if slot["first"] else
                               self._restored_memory(slot, feats[slot["frame"]].clone())
                               for slot in state["context"]), maxlen=self.preset.n_previous)
        self.frames_taken, self.match_score = taken, state["match_score"]
        self.cuts.restore(state["cuts"])

    def _slot_state(self, memory: ContextFrame) -> dict[str, Any]:
        """One ring buffer entry in a `state`: the first frame's memory itself (``fill``,
        ``first``) by that fact alone, else its frame and labels."""
        if memory is self._first:
            return {"first": True, "frame": 0, "labels": None}
        return {"first": False, "frame": memory.frame, "labels": memory.labels}

    def _restored_memory(self, slot: Mapping[str, Any], feats: Tensor) -> ContextFrame:
        """The ring buffer entry `_slot_state` described, with its frame's features (C, h, w) embedded again."""
        return ContextFrame(feats, slot["labels"].to(self.device), slot["frame"])

    def _windowed(self, memories: list[ContextFrame]) -> list[bool]:
        """Whether the local window applies to each context frame (first frame first)."""
        return [self.preset.window_first] + [True] * (len(memories) - 1)

    def _transport(self, query: Tensor, memories: list[ContextFrame], aff: SparseAffinity) -> Tensor:
        """The context labels (h * w, K) the affinity carries into the query frame (C, h, w).
        A hook: `vidcorr.track_uvc.UVCTracker` restricts each object to its box."""
        return transport_sparse(torch.cat([m.labels for m in memories]), aff)

    def _context_memory(self, feats: Tensor, labels: Tensor) -> ContextFrame:
        """What the ring buffer keeps of a propagated frame: features (C, h, w), labels (h * w, K)."""
        return ContextFrame(feats, labels)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _first_memory(self, feats: Tensor, labels: Tensor) -> ContextFrame:
        """The first frame's memory: its features (C, h, w) and labels (K, H, W) at the frame's size."""
        small = downsample_labels(labels.float(), self.feature_hw, self.preset.label_downsample)
        return ContextFrame(feats, small.flatten(1).T.contiguous())


def best_match_cosines(query: Tensor, memories: Sequence[ContextFrame], aff: SparseAffinity) -> Tensor:
    """The cosine between each target cell's features and those of its heaviest-weighted context
    cell -> (h * w,) in [-1, 1].

    query: (C, h, w); memories: the context frames ``aff`` was built from, in its order. The
    affinity keeps weights, not scores, so the best pair's cosine is recomputed: one dot product per
    target cell, C x h * w multiply-adds in all (no matmul: 1 to 2% of the affinity's time).
    """
    n1 = query.shape[1] * query.shape[2]
    q = query.flatten(1)  # (C, N2)
    best = aff.index.gather(1, aff.weights.argmax(dim=1, keepdim=True))[:, 0]  # (N2,) into frame * N1 + pixel
    frame, pixel = best // n1, best % n1
    dots, key_norms = q.new_empty(q.shape[1]), q.new_empty(q.shape[1])
    for f, memory in enumerate(memories):
        cells = (frame == f).nonzero()[:, 0]  # the target cells whose best match lies in this frame
        keys = memory.feats.flatten(1).index_select(1, pixel[cells])  # (C, cells); faster than [:, pixel[cells]]
        dots[cells] = (q.index_select(1, cells) * keys).sum(0)
        key_norms[cells] = keys.norm(dim=0)
    return (dots / (q.norm(dim=0) * key_norms).clamp_min(1e-12)).clamp(-1.0, 1.0)  # rounding gave 1 + 1e-7


def match_score(cosines: Tensor) -> float:
    """A frame's match score from its cells' best-match cosines (N,): the cosine that the best
    matched quarter of the cells reach. A quarter, not the mean: in a shot, background cells
    match well however fast the object moves; after a cut even the best quarter finds no match
    (docs/propagation.md, "Shot cuts": the mean flagged fast motion or missed cuts)."""
    n = cosines.numel()
    return float(cosines.kthvalue(n - max(1, n // 4) + 1).values)


def _check_rgb_uint8(frame: np.ndarray) -> None:
    """ValueError unless the frame is RGB uint8 (H, W, 3): frames_to_tensor divides by 255, so float
    frames in [0, 1] became a black video, propagated without a word (the API converts at its door)."""
    dtype, shape = getattr(frame, "dtype", type(frame).__name__), tuple(getattr(frame, "shape", ()))
    if dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"Propagator takes RGB uint8 frames (H, W, 3), got {dtype} {shape}: convert each with "
                         "vidcorr.io.frames.as_rgb_frame (float in [0, 1] or [0, 255], gray, RGBA, torch)")


def _check_label_size(labels: Tensor, frame: np.ndarray) -> None:
    """ValueError unless labels (K, H, W) are at the frame's (H, W, 3) size."""
    if tuple(labels.shape[-2:]) != tuple(frame.shape[:2]):
        raise ValueError(f"first-frame labels are {labels.shape[-1]}x{labels.shape[-2]} "
                         f"but frames are {frame.shape[1]}x{frame.shape[0]}")


def run_encoder(encoder: nn.Module, batch: Tensor, what: str = "frame(s)") -> object:
    """``encoder(batch)``, batch (B, 3, H, W). A module of one's own that raises here passed its
    probe frames and fails on real input (a size it does not take, a bug some frames reach): an
    `EncoderOutputError` naming it, the input and the line that raised, one line on the command line
    rather than a traceback through our code (``vidcorr -v`` logs the traceback). Our own encoders'
    errors are raised as they are: a bug of ours."""
    try:
        return encoder(batch)
    except Exception as err:
        if isinstance(as_given(encoder), FrameEncoder):
            raise
        log.debug("encoder %s failed on a %s batch", _encoder_name(encoder), tuple(batch.shape), exc_info=True)
        raise EncoderOutputError(f"encoder {_encoder_name(encoder)} failed on {len(batch)} {what} of "
                                 f"{batch.shape[-1]}x{batch.shape[-2]} px: {error_origin(err)}") from err


def check_features(encoder: nn.Module, feats: object, batch: int) -> None:
    """A module of one's own must give (B, C, h, w) float features: say so here, not deep inside
    the affinity with an unpacking error. Finite ones too: NaN features made NaN affinities, and an
    `eval jhmdb` ended with exit 0 and PCK null (every joint lost), `eval davis` with empty masks."""
    if (got := feature_problem(feats, batch)) is not None:
        raise EncoderOutputError(f"encoder {_encoder_name(encoder)} gave {got} for {batch} frame(s); expected "
                                 f"float features ({batch}, C, h, w)")
    # NaN and infinities carry through a sum, which costs a fifth of isfinite().all() (8 ms for four
    # 480p frames of 256 channels on a CPU); the exact test only confirms (a sum can overflow).
    if not bool(torch.isfinite(feats.sum(dtype=torch.float32))) and not bool(torch.isfinite(feats).all()):
        kind = "NaN" if bool(torch.isnan(feats).any()) else "infinite"
        raise EncoderOutputError(f"encoder {_encoder_name(encoder)} gave features holding {kind} values for "
                                 f"{batch} frame(s); matching needs finite features (a division by zero or an "
                                 "overflow in its forward?)")


def _encoder_name(encoder: nn.Module) -> str:
    """The class name of the module as the caller gave it (not our `EvalModeCall` around it)."""
    return type(as_given(encoder)).__name__


def _grid(hw: Sequence[int]) -> str:
    """(h, w) -> 'wxh', the way frame sizes are written in messages."""
    return f"{hw[1]}x{hw[0]}"


def first_and_rest(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """-> (the first frame, an iterator over the frames after it); ValueError if there is none."""
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise ValueError("the video has no frames")
    return first, stream


def _batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class ShotCutDetector:
    """Flags frames that look like a shot cut, from each frame's `match_score`.

    A frame's mismatch is 1 - its score. A cut is a mismatch more than ``ratio`` times the largest
    of the last ``window`` frames' (at least ``warmup`` of them): relative to the video's own level,
    which differs by orders of magnitude between footage and between features (docs/propagation.md,
    "Shot cuts", has the measurements). After a cut the history starts again: the new shot has a
    level of its own, and its next frames were flagged again against the old one's.
    ``flagged``: the frames flagged so far (1 = the first frame after the annotated one).
    """

    def __init__(self, ratio: float = 2.1, window: int = 10, warmup: int = 3):
        self.ratio, self.warmup = ratio, warmup
        self.flagged: list[int] = []
        self._history: deque[float] = deque(maxlen=window)
        self._frame = 0

    def state(self) -> dict[str, Any]:
        """What `restore` takes up: the frames flagged, the mismatch history, the frame count."""
        return {"flagged": list(self.flagged), "history": list(self._history), "frame": self._frame}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.flagged = list(state["flagged"])
        self._history.clear()
        self._history.extend(state["history"])
        self._frame = state["frame"]

    def update(self, score: float) -> bool:
        """Take the next frame's score (cosine in [-1, 1]) -> whether that frame looks like a cut."""
        self._frame += 1
        mismatch = 1.0 - score
        # floored: a still shot's repeated frames match exactly (mismatch 0, or float32 rounding)
        cut = len(self._history) >= self.warmup and mismatch > self.ratio * max(max(self._history), _MISMATCH_FLOOR)
        if cut:
            self.flagged.append(self._frame)
            self._history.clear()
        else:
            self._history.append(mismatch)
        return cut
