"""Small text files the readers take in (split lists, annotation lines, tables), read one way.

utf-8-sig: a file saved by a Windows editor starts with a byte-order mark, which otherwise became
part of its first line (a first name "\ufeffbike-packing" not found, a first box '\ufeff205' not a
number). A file that is not text (a binary, another encoding) is an `InputError` naming it, not a
raw UnicodeDecodeError.
"""

from __future__ import annotations

from pathlib import Path

from vidcorr.errors import InputError


def read_text(path: Path, what: str) -> str:
    """The text of ``path``; `InputError` naming it, "<what> not found" or "unreadable <what> (...)"."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"unreadable {what} ({error})") from None
