"""Small text files the readers take in (split lists, annotation lines, tables), read one way.

Decoded by their byte-order mark: UTF-8 with or without one (a file saved by a Windows editor
starts with it, which otherwise became part of its first line: a first name "\ufeffbike-packing"
not found, a first box '\ufeff205' not a number), UTF-16 or UTF-32 with one (Windows PowerShell
5's `>` and `Out-File` write UTF-16: a list file made by `dir -Name > list.txt` was "unreadable").
A file that is none of these (a binary, another encoding) is an `InputError` naming it and asking
for UTF-8, not a raw UnicodeDecodeError.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from vidcorr.errors import InputError

# UTF-32 before UTF-16: the UTF-32 LE mark starts with the UTF-16 LE one. Text never starts with
# U+0000, so a UTF-16 file is not mistaken for UTF-32.
_BOM_ENCODINGS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                  (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def has_wide_text_bom(raw: bytes) -> bool:
    """Whether ``raw`` starts with a UTF-16 or UTF-32 byte-order mark, which `decode_text` reads by
    (such text holds NUL bytes, as binary files do)."""
    return raw.startswith(tuple(bom for bom, _ in _BOM_ENCODINGS))


def decode_text(raw: bytes) -> str:
    """``raw`` decoded by its byte-order mark (UTF-32 / UTF-16, the mark dropped), else as UTF-8
    with or without one; UnicodeDecodeError if it is not such text."""
    encoding = next((name for bom, name in _BOM_ENCODINGS if raw.startswith(bom)), "utf-8-sig")
    return raw.decode(encoding)


def read_text(path: Path, what: str) -> str:
    """The text of ``path``; `InputError` naming it, "<what> not found" or "unreadable <what> (...)"."""
    try:
        return decode_text(path.read_bytes())
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except OSError as error:
        raise InputError(path, f"unreadable {what} ({error})") from None
    except UnicodeDecodeError as error:
        raise InputError(path, f"unreadable {what}: not UTF-8 or UTF-16 text ({error}); save it as "
                               "UTF-8") from None
