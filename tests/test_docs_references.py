"""Dotted names the docs give (`vidcorr.methods.uvc_config.RECIPES`) exist, in the module that defines them.

A module split leaves its names importable from the old module, so a stale reference still resolves;
but a reader who opens the named file to see a recipe finds only an import there. Package
``__init__`` files are the public API (`vidcorr.propagate_masks`) and may re-export; plain modules
may not be named for what they only import.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOTTED = re.compile(r"\bvidcorr(?:\.[A-Za-z_]\w*)+")


def _references() -> dict[str, list[str]]:
    """{dotted name: ['file:line', ...]} over docs/, configs/ and README.md."""
    files = [*sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "configs").rglob("*.toml")), ROOT / "README.md"]
    found: dict[str, list[str]] = {}
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for match in DOTTED.finditer(line):
                found.setdefault(match.group(0), []).append(f"{path.relative_to(ROOT)}:{n}")
    return found


def _split(dotted: str) -> tuple[ModuleType, list[str]]:
    """The longest importable module prefix of ``dotted`` and the attribute path after it."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:i])), parts[i:]
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"{dotted}: not even 'vidcorr' imports")


def _top_level_names(module: ModuleType) -> set[str]:
    """Names a module's own source binds at top level by def, class or assignment (not by import)."""
    names = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {e.id for t in targets for e in ast.walk(t) if isinstance(e, ast.Name)}
    return names


def test_every_dotted_vidcorr_name_in_the_docs_is_defined_where_it_is_named():
    problems = []
    for dotted, where in _references().items():
        module, rest = _split(dotted)
        if not rest:
            continue
        if not hasattr(module, rest[0]):
            problems.append(f"{dotted} ({', '.join(where)}): {module.__name__} has no {rest[0]}")
        elif not module.__file__.endswith("__init__.py") and rest[0] not in _top_level_names(module):
            home = getattr(getattr(module, rest[0]), "__module__", None)  # a dict or a constant has none
            problems.append(f"{dotted} ({', '.join(where)}): only imported by {module.__name__}"
                            + (f", defined in {home}" if home else ""))
    assert not problems, "\n".join(problems)
