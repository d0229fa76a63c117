"""What every benchmark records beside its numbers: the machine, and the --json file it writes."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> str:
    """The processor (or architecture) and core count, e.g. ``"x86_64, 2 cores"``."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_json(path: Path, report: dict) -> None:
    """Write ``report`` to ``path`` (parents created) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
