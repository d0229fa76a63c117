"""vidcorr: self-supervised dense correspondence between video frames, and label propagation.

The scripting API (`vidcorr.api`) is importable from here: ``vidcorr.encoder_for``,
``vidcorr.propagate_masks``, ``vidcorr.mask_tracker``,
``vidcorr.propagate_keypoints``, ``vidcorr.track_box``, ``vidcorr.propagate_labels``,
``vidcorr.match_frames`` (what ``vidcorr match`` finds between two frames), and
``vidcorr.bound_cpu_memory`` (`vidcorr.runtime`), the command line's allocator settings, an opt-in
for a process that propagates long videos. It is loaded on first use, so that
``import vidcorr`` and the command line's start-up do not pay for torch until they need it.

The pieces, for a model of one's own: `vidcorr.affinity` (the affinity core, UVC Eq. 1-4, on
(B, C, N) features; windowed and dense top-k), `vidcorr.presets` (the protocols' knobs),
`vidcorr.metrics.davis` (J and F as davis2017-evaluation) and `vidcorr.evaluate.davis.run_davis`
(a DAVIS evaluation of any ``nn.Module``).

Bad input (a missing or malformed file, a mask of another size, an empty mask) raises
``vidcorr.errors.InputError`` naming the file, a ``vidcorr.errors.VidcorrError`` as every error the
command line prints as one line; the module of the exceptions is loaded with ``vidcorr`` (no torch),
so that ``except vidcorr.errors.InputError`` works before any API call.
"""

from vidcorr import errors  # noqa: F401  (the exceptions the API documents; imports pathlib only)

__version__ = "0.1.0"

# The public API, all of it loaded lazily from `vidcorr.api` (so ``from vidcorr import *`` gives it too).
__all__ = ["encoder_for", "propagate_masks", "mask_tracker", "propagate_keypoints", "track_box", "propagate_labels",
           "match_frames", "bound_cpu_memory"]


def __getattr__(name: str):
    if name in __all__:
        from vidcorr import api

        return getattr(api, name)
    raise AttributeError(f"module 'vidcorr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
