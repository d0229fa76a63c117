"""Shared by the test_api_* files: a small crw preset (2 context frames, radius 3) for fast runs."""

from __future__ import annotations

from vidcorr.presets import customised_preset


def _crw_small():
    return customised_preset("crw", n_previous=2, radius=3)
