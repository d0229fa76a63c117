"""scripts/results_table.py: the README's results table, rebuilt from out/results without erasing
committed cells that this machine has no results.json for."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)


def test_missing_results_keep_the_committed_cells(tmp_path):
    crw = tmp_path / "results" / "uvc_r18" / "davis-crw"
    crw.mkdir(parents=True)
    crw.joinpath("results.json").write_text(json.dumps({"J&F-Mean": 0.61, "J-Mean": 0.6, "F-Mean": 0.62}))
    name = results_table.MODELS["uvc_r18"]
    first = results_table.table(tmp_path / "results")
    row = next(line for line in first.splitlines() if line.startswith(f"| {name} |"))
    assert "0.610 (0.600 / 0.620)" in row and row.count("not run") == len(results_table.COLUMNS) - 1
    committed = tmp_path / "results.md"
    committed.write_text("# Results\n\n" + first.replace(row, row.replace("not run", "0.500 / 0.700", 1)) + "\n")
    (crw / "results.json").write_text(json.dumps({"J&F-Mean": 0.65, "J-Mean": 0.6, "F-Mean": 0.7}))
    again = results_table.table(tmp_path / "results", results_table.committed_cells(committed))
    row = next(line for line in again.splitlines() if line.startswith(f"| {name} |"))
    assert "0.650 (0.600 / 0.700)" in row  # a result present here replaces the committed cell
    assert "0.500 / 0.700" in row  # a cell with no result here keeps its committed value
    assert results_table.committed_cells(tmp_path / "missing.md") == {}


def test_a_new_column_keeps_the_other_columns_cells(tmp_path, monkeypatch):
    """Cells are matched to the committed table by column header, not by position."""
    name = results_table.MODELS["uvc_r18"]
    old_columns = [c for c in results_table.COLUMNS if c[1] != "jhmdb"]
    monkeypatch.setattr(results_table, "COLUMNS", old_columns)
    committed = tmp_path / "results.md"
    old = results_table.table(tmp_path / "none").replace(f"| {name} | not run", f"| {name} | 0.610 (0.600 / 0.620)")
    committed.write_text(old + "\n")
    monkeypatch.undo()  # the full column list again: jhmdb is new, in the middle
    row = next(line for line in results_table.table(tmp_path / "none", results_table.committed_cells(committed))
               .splitlines() if line.startswith(f"| {name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells[0] == "0.610 (0.600 / 0.620)" and cells.count("not run") == len(results_table.COLUMNS) - 1



def test_uvc_track_cells_of_the_earlier_version_are_marked(tmp_path):
    """Runs whose recorded track options lack the official Gaussian kernel predate the faithful
    UVC-track: their cells carry a mark and the table says what it means."""
    for model, track in (("uvc_r18", {"mask_bandwidth": 2.5}), ("uvc_r18_ft", {"kernel_sigma": 4.0})):
        folder = tmp_path / "results" / model / "davis-uvc-track"
        folder.mkdir(parents=True)
        folder.joinpath("results.json").write_text(
            json.dumps({"J&F-Mean": 0.4, "J-Mean": 0.4, "F-Mean": 0.4, "track": track}))
    rows = {line.split(" | ")[0][2:]: line for line in results_table.table(tmp_path / "results").splitlines()}
    mark = results_table.EARLIER_TRACK
    assert f"0.400 (0.400 / 0.400) {mark}" in rows[results_table.MODELS["uvc_r18"]]
    assert mark not in rows[results_table.MODELS["uvc_r18_ft"]]


def _script(name: str, *args: str):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=60)


def test_a_missing_results_folder_is_an_error_not_an_empty_table(tmp_path):
    """A mistyped folder printed a table of "not run" (exit 0), which results.sh would have moved over
    docs/results.md; "--help" was taken for the folder too."""
    for args, named in (((str(tmp_path / "reslts"),), "reslts"),
                        ((str(tmp_path), str(tmp_path / "results.md")), "results.md")):
        run = _script("results_table.py", *args)
        assert run.returncode == 2 and named in run.stderr and run.stdout == ""
    run = _script("ablation_table.py", str(tmp_path / "ablatons"))
    assert run.returncode == 2 and "ablatons" in run.stderr and run.stdout == ""
    for script in ("results_table.py", "ablation_table.py"):
        run = _script(script, "--help")
        assert run.returncode == 0 and run.stdout.startswith("usage:") and "not run" not in run.stdout


def test_the_ablation_table_reads_its_runs_folder(tmp_path):
    """The paired difference: full 0.6 / 0.8 per object, -L 0.5 / 0.6 -> -0.15 +- 0.05 (s.e. of (-0.1, -0.2))."""
    for variant, scores in (("full", (0.6, 0.8)), ("L", (0.5, 0.6))):
        (tmp_path / variant).mkdir()
        per_object = {f"seq{i}": {"J&F-Mean": v} for i, v in enumerate(scores)}
        mean = sum(scores) / 2
        (tmp_path / variant / "results.json").write_text(json.dumps(
            {"J&F-Mean": mean, "J-Mean": mean, "F-Mean": mean, "per_object": per_object,
             "model": {"trained": True, "steps": 200}}))
    run = _script("ablation_table.py", str(tmp_path))
    rows = {line.split(" | ")[0][2:]: line for line in run.stdout.splitlines()}
    assert run.returncode == 0
    assert "| 0.5500 | 0.5500 | 0.5500 | -0.1500 ± 0.0500 | 200 |" in rows["−L (no localisation)"]
    assert rows["−O (no orthogonal terms)"].endswith("| not run |")
