"""The numbers the docs copy from a record equal the record, to the digits shown.

README's results table is a copy of docs/results.md (which scripts/results.sh generates), and so is
docs/uvc.md's table of the four UVC rounds; docs/benchmarks.md's speed / accuracy and allocator
tables come from docs/benchmarks/*.json; weights/MODEL_CARD.md quotes the shipped files' sha256,
size and training time. A copied digit that drifts from its record (a table regenerated, a file
re-exported) fails here. Each test also counts what it compared, so a table renamed or moved out of
reach fails instead of passing with nothing checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "benchmarks"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row in text (separator rows left out)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines()
            if line.lstrip().startswith("|") and not re.fullmatch(r"\|[\s|:-]+\|?", line.strip())]


def section(text: str, start: str, end: str) -> str:
    assert start in text, f"the docs no longer hold {start!r}"
    after = text.split(start, 1)[1]
    assert end in after, f"the docs no longer hold {end!r} after {start!r}"
    return after.split(end, 1)[0]


def results_md() -> dict[str, dict[str, str]]:
    """docs/results.md as {model key: {column header: cell}}; the key is the weights' file stem or the floor's name."""
    rows = table_rows((ROOT / "docs" / "results.md").read_text())
    header = rows[0][1:]
    table = {}
    for row in rows[1:]:
        shipped = re.search(r"weights/(\w+)\.safetensors", row[0])
        key = shipped.group(1) if shipped else ("random-resnet18" if "random" in row[0] else "lab-pixels")
        table[key] = dict(zip(header, row[1:]))
    assert len(table) == 8 and all(len(cells) == 11 for cells in table.values())
    return table


def plain(cell: str) -> str:
    return cell.replace("**", "").strip()


def test_readme_results_table_is_docs_results_md():
    readme = section((ROOT / "README.md").read_text(), "## Results", "Read with care")
    rows = table_rows(readme)
    generated = results_md()
    compared = 0
    for row in rows[1:]:
        named = re.search(r"`(\w+)`", row[0])
        key = named.group(1) if named else ("random-resnet18" if "random" in row[0] else "lab-pixels")
        for header, cell in zip(rows[0][1:], row[1:]):
            column = header.replace("DAVIS-2016", "DAVIS-16").replace(", 480p", "")
            assert plain(cell) == generated[key][column], f"README {key} / {header}: {cell} vs docs/results.md"
            compared += 1
    assert compared == 8 * 8


UVC_ROUNDS_TASKS = {  # docs/uvc.md's row name -> docs/results.md's column
    "DAVIS J&F (J / F), `crw`": "DAVIS-16 J&F (J / F), `crw`",
    "DAVIS J&F (J / F), `uvc`": "DAVIS-16 J&F (J / F), `uvc`",
    "DAVIS J&F (J / F), `uvc` at temperature 20": "DAVIS-16 J&F (J / F), `uvc` at temperature 20",
    "DAVIS J&F (J / F), `timecycle`": "DAVIS-16 J&F (J / F), `timecycle`",
    "DAVIS J&F (J / F), `stt`": "DAVIS-16 J&F (J / F), `stt`",
    "JHMDB PCK@0.1 / @0.2": "JHMDB PCK@0.1 / @0.2, `crw`",
    "OTB AUC / P@20, localise": "OTB AUC / P@20, localise",
    "OTB AUC / P@20, DCF": "OTB AUC / P@20, DCF",
    "VOT AUC / P@20, localise": "VOT AUC / P@20, localise",
    "VOT AUC / P@20, DCF": "VOT AUC / P@20, DCF",
}


def test_uvc_rounds_table_is_docs_results_md():
    text = section((ROOT / "docs" / "uvc.md").read_text(), "## Fine-tuning the shipped weights", "Under `crw`")
    rows = [row for row in table_rows(text) if row[0] == "task" or row[0] in UVC_ROUNDS_TASKS]
    models = [re.search(r"`(\w+)`", header).group(1) for header in rows[0][1:]]
    assert models == ["uvc_r18", "uvc_r18_ft", "uvc_r18_ft2", "uvc_r18_ft3"]
    generated = results_md()
    for row in rows[1:]:
        for model, cell in zip(models, row[1:]):
            assert plain(cell) == generated[model][UVC_ROUNDS_TASKS[row[0]]], f"docs/uvc.md {model} / {row[0]}"
    assert len(rows) - 1 == len(UVC_ROUNDS_TASKS)


def close(shown: str, value: float) -> bool:
    """shown (as written, commas allowed) is value rounded to its own digits; half a unit either way
    so that a value exactly on .5 may be written rounded up or down."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown.replace(",", "")) - value) <= 0.5 * 10 ** -decimals + 1e-9


def numbers(cell: str) -> list[str]:
    return NUMBER.findall(plain(cell).split("(")[0])


SPEED_ROWS = {  # docs/benchmarks.md's speed / accuracy row, by its first cell's start -> its record
    "`protocol`": "propagation-cpu-crw-protocol.json",
    "`context10` ": "propagation-cpu-crw-context10.json",
    "`context5` ": "propagation-cpu-crw-context5.json",
    "`window-first` ": "propagation-cpu-crw-window-first.json",
    "`context10-window-first` ": "propagation-cpu-crw-context10-window-first.json",
    "`context5-window-first` ": "propagation-cpu-crw-context5-window-first.json",
    "`context5-window-first`, **two torch threads**": "propagation-cpu-crw-context5-window-first-2threads.json",
    "`context5-window-first`, `random-resnet18` floor":
        "propagation-cpu-crw-context5-window-first-random-resnet18.json",
}


def test_speed_accuracy_table_is_its_records():
    text = section((ROOT / "docs" / "benchmarks.md").read_text(), "### Faster than the protocol", "The two-thread row")
    rows = [row for row in table_rows(text) if row[0] != "variant"]
    checked = set()
    for row in rows:
        name = max((key for key in SPEED_ROWS if (row[0] + " ").startswith(key)), key=len)
        run = json.loads((BENCH / SPEED_ROWS[name]).read_text())["throughput"]
        frames = run["frames"]
        shown = [numbers(cell)[0] for cell in row[3:8]]  # frames/s, features, affinity, peak RSS, J&F
        records = [frames / run["seconds"], 1000 * run["feature_seconds"] / frames,
                   1000 * run["propagation_seconds"] / frames, run["peak_rss_mib"], run["J&F-Mean"]]
        for column, value, record in zip(("frames/s", "features", "affinity", "peak RSS", "J&F"), shown, records):
            assert close(value, record), \
                f"docs/benchmarks.md {row[0]} {column}: {value} vs {record} ({SPEED_ROWS[name]})"
        checked.add(name)
    assert checked == set(SPEED_ROWS)


ALLOCATOR_ROWS = {  # docs/benchmarks.md's allocator A/B row, by its first cell's start -> its record
    "glibc default": "allocator-cpu-crw-default.json",
    "huge pages only": "allocator-cpu-crw-thp-only.json",
    "64 KiB threshold only": "allocator-cpu-crw-mmap-only.json",
    "both: `bound_cpu_memory`": "allocator-cpu-crw-bounded.json",
    "idle machine, glibc default": "allocator-cpu-crw-default-idle.json",
    "idle machine, `bound_cpu_memory`": "allocator-cpu-crw-bounded-idle.json",
}


def test_allocator_table_is_its_records():
    text = section((ROOT / "docs" / "benchmarks.md").read_text(), "A/B on 25 frames at 480p", "So the CLI's setting")
    rows = [row for row in table_rows(text) if row[0] != "allocator"]
    checked = set()
    for row in rows:
        name = next(key for key in ALLOCATOR_ROWS if row[0].startswith(key))
        run = json.loads((BENCH / ALLOCATOR_ROWS[name]).read_text())["memory"]["25"]
        records = [run["peak_rss_mib"], run["user_seconds"], run["system_seconds"], run["minor_page_faults"] / 1e6]
        for column, cell, record in zip(("peak RSS", "user", "system", "page faults"), row[1:5], records):
            assert close(numbers(cell)[0], record), f"docs/benchmarks.md {row[0]} {column}: {cell} vs {record}"
        checked.add(name)
    assert checked == set(ALLOCATOR_ROWS)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SHIPPED = sorted((ROOT / "weights").glob("*.safetensors"))


def card_sections() -> dict[str, str]:
    """weights/MODEL_CARD.md's sections by the file stem their heading names."""
    parts = re.split(r"^## `(\w+)\.safetensors`", (ROOT / "weights" / "MODEL_CARD.md").read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_model_card_covers_every_shipped_file():
    assert SHIPPED and sorted(card_sections()) == sorted(p.stem for p in SHIPPED)


def test_model_card_sha256_prefixes_are_the_shipped_files():
    """Every sha256 the card quotes starts the hash of a file in weights/, except the MoCo teacher's,
    which the card says is not shipped."""
    card = (ROOT / "weights" / "MODEL_CARD.md").read_text()
    hashes = {sha256(path) for path in SHIPPED}
    quoted = re.findall(r"`([0-9a-f]{16,})…`", card)
    unshipped = [h for h in quoted if not any(full.startswith(h) for full in hashes)]
    assert len(quoted) >= 7
    assert len(unshipped) == 1 and "not shipped" in card.split(unshipped[0])[0][-200:], unshipped


@pytest.mark.parametrize("name", ["uvc_r18", "cycletime_r18", "stt_r18"])
def test_model_card_export_size_is_the_file(name):
    size = re.search(r"fp16 export: ([\d.]+) MB", card_sections()[name])
    assert size, f"MODEL_CARD's {name} section no longer gives its size"
    assert close(size.group(1), (ROOT / "weights" / f"{name}.safetensors").stat().st_size / 1e6)


def test_model_card_training_seconds_are_the_sidecars():
    checked = 0
    for name, text in card_sections().items():
        sidecar = json.loads((ROOT / "weights" / f"{name}.json").read_text())
        for shown in re.findall(r"\(([\d,]+) s\) for the \d+ steps", text):
            assert close(shown, sidecar["meta"]["wall_time_s"]), f"MODEL_CARD {name}: {shown} s"
            checked += 1
    assert checked == 4  # the four UVC rounds
