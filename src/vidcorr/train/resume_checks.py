"""Whether a checkpoint's run can go on under what is given now (`vidcorr.train.checkpoint.resume`):
the same method, a recipe that trains the same (field by field, weights records by sha256), the
bf16 autocast it trained under, and the same videos. Each refusal is an `InputError` naming the
checkpoint, what differs and how to resume instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidcorr.errors import InputError
from vidcorr.train.config import Recipe


def check_method(path: Path, stored: Recipe, method: str) -> None:
    """`InputError` naming ``path`` if its checkpoint's ``stored`` recipe trains another method than
    ``method``, with the command that resumes it."""
    if stored.method != method:
        raise InputError(path, f"is a checkpoint of `vidcorr train {stored.method}`, not of `vidcorr train "
                               f"{method}`; resume it with `vidcorr train {stored.method}`")


def check_same_autocast(path: Path, checkpoint: dict[str, Any], stored: Recipe, recipe: Recipe,
                        device_type: str) -> None:
    """bf16 autocast computes in another precision: a resume must keep what the run trained under.
    Checkpoints before 2026-12-06 did not record it: their recipe's [cpu] and [cuda] flags must match."""
    now = recipe.autocast_bf16(device_type)
    if "bf16" in checkpoint:
        if checkpoint["bf16"] != now:
            raise InputError(path, f"was trained {'with' if checkpoint['bf16'] else 'without'} bf16 autocast, but "
                                   f"[{device_type}] bf16 = {str(now).lower()} now; resume with the setting it "
                                   "was trained with (on a GPU: [cuda] bf16, on a CPU: [cpu] bf16)")
        return
    changed = [f"{device}.bf16" for device in ("cpu", "cuda")
               if getattr(stored, device).bf16 != getattr(recipe, device).bf16]
    if changed:
        raise InputError(path, f"was trained with a different recipe ({', '.join(changed)} differ); "
                               "resume with the recipe it was started with")


def check_same_videos(path: Path, stored: dict[str, Any] | None, data: dict[str, Any] | None) -> None:
    """Samples are drawn by index into the video list (sample i comes from video i % N), so other
    videos are another run: a resume on another --data was accepted silently and went on with
    other samples. Counts, not paths, are compared: the same videos moved elsewhere still resume.

    As many videos with another frame total is refused too, with its own message: the frames a
    sample takes are drawn from each video's count, so the resumed run would not be the one that
    stopped (the promise of `--resume`), and the two totals cannot tell the same videos counted
    anew from other videos as many. It is not necessarily other data: the training index's counts
    changed with its format /4 (an AVI starting late, with a held last frame or an AAC track; a
    frame folder whose list file gave a wrong count), so a checkpoint from before that can meet
    the same files with other counts. Accepting that with a warning would hand a reproducibility-
    minded user a run that neither vidcorr version reproduces; the message says what to do instead.
    """
    if not stored or not data:
        return
    if stored.get("videos") != data.get("videos"):
        raise InputError(path, f"was trained on {stored.get('videos')} videos ({stored.get('frames')} frames) "
                               f"but --data now gives {data.get('videos')} ({data.get('frames')} frames); "
                               "resume with the data it was started with")
    if stored.get("frames") != data.get("frames"):
        raise InputError(path, f"was trained on {stored.get('videos')} videos of {stored.get('frames')} frames "
                               f"in all, but the {data.get('videos')} videos of --data now count "
                               f"{data.get('frames')} frames: their files changed, or the same files are "
                               "counted otherwise since a vidcorr update (the training index format /4 "
                               "counts some AVI files and frame folders differently). Frames are drawn from "
                               "these counts, so this run cannot continue exactly: finish it with the "
                               "vidcorr version that started it, or start a new run from its weights "
                               f"(vidcorr train export --checkpoint {path} --out W, then --init W)")


# A recipe's weights records, {"weights": path, "sha256": hex}: `init`, and in [model] UVC's
# `autoencoder` and STT's `teacher` (set from the command line: `vidcorr.cli.train_cmd`).
MODEL_RECORDS = ("autoencoder", "teacher")  # those [model] holds beside the method's config fields
_ABSENT = object()  # a field one of two recipes lacks


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and "sha256" in value and "weights" in value


def _compared(value: Any) -> Any:
    """What a resume compares of a field: a weights record by its sha256 alone (a moved copy of
    the same file continues the run, other bytes under the same path do not)."""
    return value["sha256"] if _is_record(value) else value


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "not recorded"
    if _is_record(value):
        return f"{value['weights']} (sha256 {value['sha256'][:12]})"
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value)  # a path or name as written, unquoted


def _difference(label: str, old: Any, new: Any) -> str:
    return f"{label} {_shown(old)} (checkpoint) vs {_shown(new)} (now)"


def _table_differences(table: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per differing field; a weights record is named by its option (``--teacher``)."""
    return [_difference(f"--{key}" if _is_record(old.get(key)) or _is_record(new.get(key)) else f"[{table}] {key}",
                        old.get(key, _ABSENT), new.get(key, _ABSENT))
            for key in sorted(old.keys() | new.keys())
            if _compared(old.get(key, _ABSENT)) != _compared(new.get(key, _ABSENT))]


def recipe_differences(stored: Recipe, recipe: Recipe) -> list[str]:
    """What keeps ``recipe`` from continuing a run of ``stored`` (`Recipe.trajectory_dict`), field by
    field, e.g. ``[data] crop 96 (checkpoint) vs 80 (now)``; empty when it continues it."""
    old, new = stored.trajectory_dict(), recipe.trajectory_dict()
    shown_old, shown_new = stored.to_dict(), recipe.to_dict()  # `init` in full: path and sha256
    lines = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if key == "stages" and [s["name"] for s in a] == [s["name"] for s in b]:
            lines += [line for x, y in zip(a, b) for line in _table_differences(f"stages.{x['name']}", x, y)]
        elif key == "stages":  # other stages: their fields compare nothing
            lines.append(_difference(key, [s["name"] for s in a], [s["name"] for s in b]))
        elif isinstance(a, dict) and isinstance(b, dict):  # [data], [optim], [model]
            lines += _table_differences(key, a, b)
        elif _compared(a) != _compared(b):
            lines.append(_difference(f"--{key}" if key == "init" else key, shown_old.get(key, _ABSENT),
                                     shown_new.get(key, _ABSENT)))
    return lines


def with_legacy_records(path: Path, checkpoint: dict[str, Any], stored: Recipe, recipe: Recipe,
                        method: nn.Module) -> Recipe:
    """``stored`` with the weights records of [model] that an older checkpoint lacks taken from
    ``recipe`` where they hold the same weights. Older checkpoints recorded STT's teacher by its path
    alone (compared as such) and UVC's auto-encoder not at all: its tensors in the checkpoint are
    compared with those of the auto-encoder given now (`InputError` if they differ)."""
    model = dict(stored.model)
    for key, record in recipe.model.items():
        if not _is_record(record):
            continue
        if model.get(key) == record["weights"]:
            model[key] = record
            continue
        if key in model:  # recorded: `recipe_differences` compares it
            continue
        prefix = f"{key}."
        ours = {k: v.detach().cpu() for k, v in method.state_dict().items() if k.startswith(prefix)}
        if not ours:  # no tensors to compare: refused as "not recorded"
            continue
        theirs = {k: v for k, v in checkpoint["model"].items() if k.startswith(prefix)}
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
            raise InputError(path, f"was trained with another {key} than --{key} {record['weights']} "
                                   f"(the {key} tensors it holds differ; it predates recording the "
                                   f"file); resume with the --{key} it was started with")
        model[key] = record
    return stored.replace(model=model)
