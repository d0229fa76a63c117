"""Recipe files: a shipped recipe by name (``configs/train/NAME.toml``) or a TOML file of one's own
read into a `Recipe`, its ``extends`` chain merged in (parents first, table by table, stages by
name) and, for a file of one's own, recorded by path and digests (`Recipe.file`). The fields are
`vidcorr.train.config`'s; docs/training.md ("Recipes") describes every one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from vidcorr.errors import InputError
from vidcorr.io.text import decode_text
from vidcorr.train.config import Recipe, recipe_from_dict

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "train"


def recipe_path(name_or_path: str | Path) -> Path:
    """``"uvc-cpu"`` -> configs/train/uvc-cpu.toml; a path is returned as is."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return CONFIG_DIR / f"{name_or_path}.toml"


def cpu_counterpart(recipe: Recipe) -> str | None:
    """The shipped ``<name>-cpu`` recipe beside a shipped paper recipe (``cycletime`` ->
    ``cycletime-cpu``, its CPU-sized version), else None (a file of one's own, or a recipe with no
    CPU version)."""
    name = f"{recipe.name}-cpu"
    return name if recipe.file is None and (CONFIG_DIR / f"{name}.toml").is_file() else None


# The top-level keys of a recipe file: `Recipe`'s fields but init (set by --init, kept in checkpoints)
# and file (set when it is read), and the two that `_read_recipe_table` takes out.
_FILE_KEYS = {f.name for f in dataclasses.fields(Recipe)} - {"init", "file"} | {"extends", "drop_stages"}


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read a shipped recipe by name or a TOML file; `InputError` naming the file if bad. A file
    outside configs/train/ is recorded by path and sha256, and by the digest of its `extends` chain
    (`Recipe.file`)."""
    path = recipe_path(name_or_path)
    data, digests, _ = _read_recipe_table(path, chain=())
    if "init" in data:
        raise InputError(path, "unreadable recipe: 'init' is not a recipe field; start from weights with --init")
    if unknown := sorted(set(data) - _FILE_KEYS):  # before `recipe_from_dict`, which would list init
        raise InputError(path, f"unreadable recipe: unknown top-level keys {unknown}; known: {sorted(_FILE_KEYS)}")
    try:
        recipe = recipe_from_dict(data, data.get("name", path.stem))
    except (ValueError, TypeError) as error:
        raise InputError(path, f"unreadable recipe: {error}") from None
    _refuse_non_finite(path, data)  # after the fields' own checks, which name some nan values better
    # The file as named, its folder resolved: a link my/fast.toml to configs/train/uvc.toml is named
    # "fast" (its stem), which no shipped recipe is, so it is recorded as a file of one's own.
    named = path.parent.resolve() / path.name
    if named.parent == CONFIG_DIR:  # shipped, also when given by its path
        return recipe
    return recipe.replace(file={"path": str(named), "sha256": digests[0], "chain_sha256": chain_digest(digests)})


def _refuse_non_finite(path: Path, table: dict[str, Any], where: str = "") -> None:
    """`InputError` naming the key of a TOML ``nan`` or ``inf`` anywhere in ``table``: a [model]
    weight or temperature took it (the method configs check ranges with comparisons nan passes),
    trained to a NaN loss, and a run record holding it is no JSON. ``where``: the table's name."""
    for key, value in table.items():
        name = f"[{where}] {key}" if where else key
        if isinstance(value, dict):
            _refuse_non_finite(path, value, f"{where}.{key}" if where else key)
        elif any(isinstance(v, float) and not math.isfinite(v) for v in _items(value)):
            raise InputError(path, f"unreadable recipe: {name} = {value}: expected a finite number")


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def chain_digest(digests: list[str]) -> str:
    """The sha256 of a recipe file's ``extends`` chain, from each file's sha256 (hex), the named file
    first, then the file it extends, and so on: of their lines, as ``sha256sum my.toml parent.toml
    | cut -c1-64 | sha256sum`` gives it. A changed parent is another recipe, though the named file
    is not: its own sha256 alone did not tell."""
    return hashlib.sha256("".join(f"{digest}\n" for digest in digests).encode()).hexdigest()


# A stage an extends chain drops -> (the file that drops it, the stages that followed it there).
Dropped = dict[str, tuple[Path, tuple[str, ...]]]


def _read_recipe_table(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], list[str], Dropped]:
    """The TOML table of ``path`` with its ``extends`` chain merged in (parents first), the
    sha256 of each file of the chain, ``path``'s first (each file read once for both), and the
    stages the chain drops (``drop_stages``), each with the file that drops it and the stages that
    followed it there."""
    if not path.is_file():
        if path.is_dir():  # `--recipe configs/train` or `--recipe my_recipes/`: "no such recipe" said nothing of why
            held = sorted(p.name for p in path.glob("*.toml"))
            inside = f"; it holds {', '.join(held)}" if held else ""
            raise InputError(path, f"is a folder, not a recipe: a recipe is a shipped recipe's name "
                                   f"({_shipped()}) or a .toml file{inside}")
        raise InputError(path, f"no such recipe ({_shipped()})")
    try:
        raw = path.read_bytes()
        # by byte-order mark (`decode_text`): a Windows editor's BOM was TOML's "Invalid statement",
        # and PowerShell 5's `>` writes UTF-16
        data = tomllib.loads(decode_text(raw))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputError(path, f"unreadable recipe: {error}") from None
    digest = hashlib.sha256(raw).hexdigest()
    parent = data.pop("extends", None)
    dropped = data.pop("drop_stages", [])
    if parent is None:
        if dropped:
            raise InputError(path, "unreadable recipe: 'drop_stages' needs 'extends' (it removes a parent's stages)")
        return data, [digest], {}
    if not isinstance(parent, str):
        raise InputError(path, f"unreadable recipe: 'extends' must be a recipe name or path, got {parent!r}")
    parent_path = _extended_path(path, parent)
    if parent_path.resolve() in {p.resolve() for p in (*chain, path)}:
        raise InputError(path, f"unreadable recipe: 'extends' loops back to {parent_path}")
    base, parents, dropped_before = _read_parent(path, parent, parent_path, chain)
    base.pop("name", None)  # a recipe is named by its own file, never by its parent
    parent_stages = list(base.get("stages", {}))
    base["stages"] = _drop_stages(path, base.get("stages", {}), dropped, data.get("stages", {}))
    _refuse_reordered_stages(path, dropped_before, list(base["stages"]), data.get("stages", {}))
    dropped_here = {name: (path, tuple(parent_stages[parent_stages.index(name) + 1:])) for name in dropped}
    return _merge_tables(base, data), [digest, *parents], {**dropped_before, **dropped_here}


def _read_parent(path: Path, parent: str, parent_path: Path,
                 chain: tuple[Path, ...]) -> tuple[dict[str, Any], list[str], Dropped]:
    """`_read_recipe_table` of the file ``path`` extends, a refusal of that file itself (missing,
    unparseable) said by ``path``, the file that wrote ``extends``: it was named by the parent's
    path alone, the shipped one for a bare name, so that a typo in my.toml read as a broken install.
    A refusal further up the chain names its own file and the one extending it, in turn."""
    try:
        return _read_recipe_table(parent_path, (*chain, path))
    except InputError as error:
        if error.path != parent_path:
            raise
        if parent_path.is_file():  # there, but unreadable: its TOML error, its chain's refusal
            problem = f"{parent_path}: {error.problem}"
        elif parent_path.parent == CONFIG_DIR:  # a bare name, looked for beside this file first
            problem = (f"no file {path.parent / parent_path.name} beside it and no shipped recipe "
                       f"{parent_path.stem!r} ({_shipped()})")
        else:
            problem = f"{parent_path} is {'a folder' if parent_path.is_dir() else 'missing'}"
        raise InputError(path, f"unreadable recipe: extends = {parent!r}: {problem}") from None


def _shipped() -> str:
    return f"shipped recipes: {', '.join(sorted(p.stem for p in CONFIG_DIR.glob('*.toml'))) or 'none'}"


def _refuse_reordered_stages(path: Path, dropped: Dropped, kept: list[str], stages: Any) -> None:
    """`InputError` for a stage table of ``path`` that sets again a stage its chain drops where it would
    now run after a stage that followed it: merged by name, such a stage comes back as a new one after
    the kept ones (a fine-tune of one's own extending uvc-cpu-t20-finetune ran the joint stage, then a
    warm-up). One set again in its place (a chain that dropped the joint stage, extended with a new
    [stages.joint]) is taken. kept: the stages of the chain so far, in order."""
    order = list(kept)
    for name in stages if isinstance(stages, dict) else ():
        if name in order:
            continue
        if name in dropped:
            file, followers = dropped[name]
            if before := [stage for stage in order if stage in followers]:
                raise InputError(path, f"unreadable recipe: [stages.{name}] sets a stage that {file} drops "
                                       f"(drop_stages), so it would run after stage {before[0]!r}, which followed "
                                       f"it; leave the table out, or extend a recipe that keeps stage {name!r}")
        order.append(name)


def _drop_stages(path: Path, stages: dict[str, Any], dropped: Any, kept: dict[str, Any]) -> dict[str, Any]:
    """The parent's stages less those named in ``drop_stages`` (e.g. a fine-tune skips the warm-up)."""
    if not isinstance(dropped, list) or not all(isinstance(name, str) for name in dropped):
        raise InputError(path, f"unreadable recipe: 'drop_stages' must be a list of stage names, got {dropped!r}")
    for name in dropped:
        if name not in stages:
            raise InputError(path, f"unreadable recipe: 'drop_stages' names {name!r}, which the parent does "
                                   f"not have (its stages: {', '.join(stages) or 'none'})")
        if name in kept:
            raise InputError(path, f"unreadable recipe: stage {name!r} is both dropped and set")
    return {name: table for name, table in stages.items() if name not in dropped}


def _extended_path(path: Path, parent: str) -> Path:
    """``extends`` is looked up beside the extending file, then (a bare name) among the shipped ones.
    A name that beside the file is the file itself (``my/uvc-cpu.toml`` extending ``"uvc-cpu"``) is
    the shipped recipe: a file of one's own named like a shipped one can extend it."""
    file_name = parent if parent.endswith(".toml") else f"{parent}.toml"
    beside = path.parent / file_name
    shipped = CONFIG_DIR / file_name
    if beside.is_file() and beside.resolve() == path.resolve() and shipped.is_file():
        return shipped
    if beside.is_file() or parent.endswith(".toml"):
        return beside
    return shipped


# A stage's length is given one way or the other: a child that sets one replaces the parent's other.
_ALTERNATIVES = {"steps": "epochs", "epochs": "steps"}


def _merge_tables(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key (recursively, stages by name, parent order first); values replace.
    A stage given ``steps`` drops its parent's ``epochs`` and vice versa."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_tables(merged[key], value)
        else:
            if key in _ALTERNATIVES and _ALTERNATIVES[key] not in override:
                merged.pop(_ALTERNATIVES[key], None)
            merged[key] = value
    return merged
