"""Frozen config dataclasses from plain dicts (JSON sidecars, TOML tables), refusing unknown keys."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any], label: str) -> T:
    """``cls(**data)``; missing keys take the defaults, unknown keys raise ValueError naming them
    (``label`` says whose keys, e.g. "encoder config")."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {label} keys {unknown}; known: {sorted(known)}")
    return cls(**data)
