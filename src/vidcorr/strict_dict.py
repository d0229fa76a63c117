"""Frozen config dataclasses to and from plain dicts (JSON sidecars, TOML tables, checkpoints),
refusing unknown keys."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="DictConfig")


def dataclass_from_dict(cls: type[T], data: dict[str, Any], label: str) -> T:
    """``cls(**data)``; missing keys take the defaults, unknown keys raise ValueError naming them
    (``label`` says whose keys, e.g. "encoder config")."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {label} keys {unknown}; known: {sorted(known)}")
    return cls(**data)


def plain(value: Any) -> Any:
    """Nested dicts, lists and tuples as dicts and lists: what JSON, TOML and ``weights_only``
    checkpoints hold."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class DictConfig:
    """Mixin for a frozen config dataclass: `to_dict` gives plain containers (tuples as lists) and
    `from_dict` is its inverse. ``LABEL`` names the config in errors ("unknown UVC config keys")."""

    LABEL: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Missing keys take the defaults, unknown keys raise ValueError naming them."""
        return dataclass_from_dict(cls, data, cls.LABEL)
