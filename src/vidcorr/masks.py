"""Mask propagation: a first-frame index map (object ids, 255 = void) carried through a video.

The one loop shared by `vidcorr propagate`, `vidcorr demo` and the DAVIS benchmark: it pairs each
frame with its predicted index map, keeping only the frames the propagator has pulled but whose
prediction is not out yet (at most one encoder batch), so memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from vidcorr.labels import VOID, decode_label_map, one_hot_labels
from vidcorr.propagate import Propagator


def propagate_mask(
    propagator: Propagator, frames: Iterable[np.ndarray], first_mask: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, labels)`` for every frame, the first included.

    frames: RGB uint8 (H, W, 3); first_mask: (H, W) uint8 ids, 255 = void. labels: (H, W) uint8
    ids; frame 0 gets the given mask with void turned into background.
    """
    first = np.where(first_mask == VOID, 0, first_mask).astype(np.uint8)
    pending: deque[np.ndarray] = deque()

    def remembered(stream: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in stream:
            pending.append(frame)
            yield frame

    soft_stream = propagator.run(remembered(frames), one_hot_labels(first_mask, int(first.max()) + 1))
    emitted_first = False
    for soft in soft_stream:
        if not emitted_first:  # frame 0 has been pulled by now: it is the first pending frame
            emitted_first = True
            yield pending.popleft(), first
        index = decode_label_map(soft, propagator.preset, propagator.input_hw, propagator.original_hw)
        yield pending.popleft(), index.to("cpu").numpy().astype(np.uint8)
    if not emitted_first and pending:  # a one-frame video: nothing to propagate
        yield pending.popleft(), first
