"""The affinity core: one inter-frame affinity that transports labels, features and coordinates.

Every method and every propagation protocol in vidcorr is built on the functions here
(DESIGN.md, "The one idea everything shares"). Notation follows UVC (Li et al., NeurIPS 2019):

* ``f1: (B, C, N1)`` reference features, ``f2: (B, C, N2)`` target features (N = h * w).
* Affinity ``A = softmax(f1^T f2 / tau)`` normalised over the *reference* axis (UVC Eq. 2): column j is a
  distribution over reference pixels for target pixel j. ``c2 = c1 A`` transports anything attached
  to the reference frame (labels, colours, features); ``l12 = l11 A`` transports coordinates (Eq. 3).
* Normalised over the *target* axis instead, row i is a distribution over target pixels for reference
  pixel i; the expected target coordinate of every reference pixel then localises a region
  (UVC §3.2, Eq. 3-4: centre = mean, half-size = 2 x mean absolute deviation).

For propagation the affinity is kept sparse: per target pixel, the top-k reference candidates drawn
from several context frames, either from the whole frame (`dense_topk`, streamed in chunks of target
pixels so memory stays bounded) or from a local window around the pixel (`windowed_topk`, tiled so the
cost grows with the window, not with the frame; `windowed_topk_frames` does several context frames per
matmul where memory allows, as on a GPU). `sparse_affinity` combines the candidates of all
context frames the way a protocol says (METHODS.md §5) and `transport_sparse` applies the result.

The code is split by theme, each module depending only on the ones before it:

* `vidcorr.affinity.dense`: the dense affinity, transport, coordinates and region localisation;
* `vidcorr.affinity.window`: local windows and the per-frame top-k candidates (dense and tiled);
* `vidcorr.affinity.sparse`: the protocol's combination of candidates and the sparse transport.

Import from ``vidcorr.affinity``: every public name is re-exported here.
"""

from vidcorr.affinity.dense import (
    affinity_logits,
    coordinate_grid,
    locate_in_target,
    region_from_coordinates,
    softmax_affinity,
    transport,
    transport_coordinates,
)
from vidcorr.affinity.sparse import (
    Normalisation,
    SparseAffinity,
    TopKConfig,
    TopKScope,
    combine_candidates,
    frame_slots,
    sparse_affinity,
    transport_sparse,
)
from vidcorr.affinity.window import (
    Candidates,
    WindowShape,
    dense_topk,
    topk_log_softmax_,
    unfold_budget,
    window_mask,
    window_offsets,
    windowed_topk,
    windowed_topk_frames,
)

__all__ = [
    # dense
    "affinity_logits",
    "coordinate_grid",
    "locate_in_target",
    "region_from_coordinates",
    "softmax_affinity",
    "transport",
    "transport_coordinates",
    # window
    "Candidates",
    "WindowShape",
    "dense_topk",
    "topk_log_softmax_",
    "unfold_budget",
    "window_mask",
    "window_offsets",
    "windowed_topk",
    "windowed_topk_frames",
    # sparse
    "Normalisation",
    "SparseAffinity",
    "TopKConfig",
    "TopKScope",
    "combine_candidates",
    "frame_slots",
    "sparse_affinity",
    "transport_sparse",
]
