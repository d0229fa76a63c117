"""The affinity core's public functions called from Python with wrong arguments: a ValueError naming
the argument, never a silently wrong answer or an error from inside torch."""

from __future__ import annotations

import pytest
import torch

from vidcorr.affinity import (
    TopKConfig,
    affinity_logits,
    dense_topk,
    locate_in_target,
    softmax_affinity,
    sparse_affinity,
    transport,
    transport_coordinates,
    window_mask,
    window_offsets,
    windowed_topk,
    windowed_topk_frames,
)


def _feats(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def test_softmax_affinity_refuses_an_unknown_axis():
    # "targets" used to normalise over target pixels, "reference" too: any string but "ref" did
    with pytest.raises(ValueError, match="normalise_over"):
        softmax_affinity(_feats(1, 3, 4), _feats(1, 3, 5), normalise_over="reference")


@pytest.mark.parametrize("bad", [_feats(1, 3, 8, 9), _feats(1, 3, 7, 10), _feats(4, 7, 9)])
def test_windowed_topk_refuses_a_key_of_another_shape(bad):
    # a key one row taller than the query gave candidates without a word
    query = _feats(3, 7, 9)
    with pytest.raises(ValueError, match=r"keys\[1\]"):
        windowed_topk_frames(query, [_feats(3, 7, 9), bad[0] if bad.dim() == 4 else bad], 3,
                             radius=2, shape="circle", temperature=0.1, softmax_first=False)
    with pytest.raises(ValueError, match="key"):
        windowed_topk(query, bad[0] if bad.dim() == 4 else bad, 3, radius=2, shape="circle", temperature=0.1,
                      softmax_first=False)


@pytest.mark.parametrize("radius", [None, 2.0])
def test_sparse_affinity_refuses_a_key_of_another_shape(radius):
    # whole-frame keys of another size were offset by the query's N into the label bank: wrong labels
    query = _feats(3, 7, 9)
    cfg = TopKConfig(k=3, temperature=0.1, radius=radius)
    with pytest.raises(ValueError, match=r"keys\[1\]"):
        sparse_affinity(query, [_feats(3, 7, 9), _feats(3, 8, 9)], [True, True], cfg)
    with pytest.raises(ValueError, match=r"query"):
        sparse_affinity(_feats(3, 63), [_feats(3, 63)], [False], cfg)


def test_dense_functions_name_mismatched_features():
    with pytest.raises(ValueError, match="f1.*f2"):
        affinity_logits(_feats(2, 3, 4), _feats(2, 5, 6))  # channels differ
    with pytest.raises(ValueError, match="f1.*f2"):
        affinity_logits(_feats(2, 3, 4), _feats(1, 3, 6))  # batches differ
    with pytest.raises(ValueError, match="f1.*f2"):
        softmax_affinity(_feats(3, 4), _feats(3, 6))  # no batch dimension
    with pytest.raises(ValueError, match="query.*key"):
        dense_topk(_feats(3, 4), _feats(5, 6), 2, temperature=1.0, softmax_first=False)


def test_coordinate_functions_name_a_wrong_size():
    aff = softmax_affinity(_feats(1, 3, 12), _feats(1, 3, 6))  # 12 reference pixels, 6 target ones
    with pytest.raises(ValueError, match="ref_hw"):
        transport_coordinates(aff, (3, 3))
    with pytest.raises(ValueError, match="target_hw"):
        locate_in_target(affinity_logits(_feats(1, 3, 12), _feats(1, 3, 6)), (2, 2))


@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf")])
def test_temperature_must_be_positive_and_finite(temperature):
    # 0 gave NaN affinities, a negative one matched each pixel to its least similar ones
    f1, f2 = _feats(1, 3, 4), _feats(1, 3, 5)
    with pytest.raises(ValueError, match="temperature"):
        softmax_affinity(f1, f2, temperature)
    with pytest.raises(ValueError, match="temperature"):
        dense_topk(f1[0], f2[0], 2, temperature=temperature, softmax_first=True)
    with pytest.raises(ValueError, match="temperature"):
        windowed_topk(_feats(3, 4, 4), _feats(3, 4, 4), 2, radius=1.5, shape="circle", temperature=temperature,
                      softmax_first=False)


@pytest.mark.parametrize("k", [0, -1, 2.5])
def test_k_must_be_a_positive_integer(k):
    # k=0 gave (N2, 0) candidates, k=-1 torch's "selected index k out of range"
    with pytest.raises(ValueError, match="k"):
        dense_topk(_feats(3, 4), _feats(3, 5), k, temperature=1.0, softmax_first=False)
    with pytest.raises(ValueError, match="k"):
        windowed_topk(_feats(3, 4, 4), _feats(3, 4, 4), k, radius=1.5, shape="circle", temperature=1.0,
                      softmax_first=False)


def test_a_tensor_temperature_is_taken_as_is():
    # a learned temperature (a tensor) is not checked: that would synchronise a GPU every step
    f1, f2 = _feats(1, 3, 4), _feats(1, 3, 5)
    tau = torch.tensor(0.5)
    assert torch.allclose(affinity_logits(f1, f2, tau), f1.transpose(1, 2) @ f2 / 0.5)


def test_transport_names_mismatched_values():
    aff = softmax_affinity(_feats(1, 3, 6), _feats(1, 3, 4))  # 6 reference pixels
    with pytest.raises(ValueError, match="values and aff"):
        transport(_feats(1, 2, 5), aff)  # labels of 5 pixels
    with pytest.raises(ValueError, match="values and aff"):
        transport(_feats(2, 6), aff)  # no batch dimension
    # labels in float64 with a float32 affinity: torch said "expected scalar type Double but found Float"
    values = _feats(1, 2, 6).double()
    assert torch.allclose(transport(values, aff), values @ aff.double())


@pytest.mark.parametrize(("radius", "shape", "message"), [
    (2, "hexagon", "unknown window shape 'hexagon'"),
    (2, "Circle", "unknown window shape 'Circle'"),
    (0, "circle", "circular window needs radius > 0"),
    (-1, "square", "window radius must be >= 0"),
])
def test_window_mask_refuses_what_window_offsets_refuses(radius, shape, message):
    # window_mask took any shape but "circle" for a square, and a circle of radius 0 for no window at all
    for build in (lambda: window_mask(4, 5, radius, shape), lambda: window_offsets(radius, shape)):
        with pytest.raises(ValueError, match=message):
            build()


def test_window_mask_agrees_with_window_offsets():
    """Both window definitions, worked out independently: (dy, dx) of every reference cell the mask
    admits for a target in the middle of a 9 x 9 map equals the offset list."""
    for radius, shape in [(2, "circle"), (2.5, "circle"), (2, "square"), (0, "square")]:
        mask = window_mask(9, 9, radius, shape)[:, 4 * 9 + 4]  # column: the target at (4, 4)
        admitted = {(i // 9 - 4, i % 9 - 4) for i in mask.nonzero().flatten().tolist()}
        assert admitted == {tuple(o) for o in window_offsets(radius, shape).tolist()}
