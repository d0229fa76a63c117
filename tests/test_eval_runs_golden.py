"""Golden rules of the eval runs' bookkeeping and of a preset's customisation, each against values
worked out by hand: which items a rank takes (`run_items` under torchrun, with a store whose peers
have always come), what a resume keeps, the run record merged from rank files, the messages of a
changed run, the ``timing`` of results.json, and `customised_preset` / `with_overrides` /
`SizePolicy` (METHODS.md §5: TimeCycle square, UVC long side floored to /64, CRW/STT short side)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vidcorr.affinity import TopKConfig
from vidcorr.errors import InputError
from vidcorr.evaluate.ranks import PeerFailed, Ranks, join
from vidcorr.evaluate.runs import (RANK_RECORD, RUN_STAMP, RunRecord, check_output_folder, finished_items,
                                   merge_rank_records, open_record, recorded_items, recorded_run,
                                   remove_unstarted_run, resolved_encoder_spec, write_item_folder)
from vidcorr.evaluate.shards import _stop_together, run_items
from vidcorr.evaluate.timing import peak_rss_mib, rank_timing, run_timing, timed_sequence
from vidcorr.evaluate.vip_results import (INSTANCES, VideoScores, _read_frame_instances, format_vip_table,
                                          missing_instances, score_folder)
from vidcorr.io.masks import write_indexed_png
from vidcorr.io.vip_predictions import write_instance_map
from vidcorr.presets import SizePolicy, customised_preset, get_preset

STAMP = {"command": "eval davis", "preset": {"name": "crw", "n_previous": 20}}


# --- presets: a size given by the user, in the preset's own sizing (METHODS.md §5) ----------------------

def _short_side(height: int, width: int, size: int, multiple: int | None) -> tuple[int, int]:
    """Naive reference: short side to ``size``; the long side scaled, then rounded to the nearest pixel,
    or floored to a multiple of ``multiple`` (at least one)."""
    portrait = height > width
    short, long = (width, height) if portrait else (height, width)
    scaled = long * size / short
    new = max(math.floor(scaled / multiple), 1) * multiple if multiple else math.floor(scaled + 0.5)
    return (new, size) if portrait else (size, new)


@pytest.mark.parametrize("name, want", [
    ("timecycle", SizePolicy("square", 400)),              # TimeCycle's 400 x 400 row stays square
    ("uvc", SizePolicy("short_side", 400, 64)),            # UVC keeps its /64 long side
    ("crw", SizePolicy("short_side", 400)),                # native becomes a short side, no multiple
    ("stt", SizePolicy("short_side", 400))])
def test_a_size_override_keeps_the_presets_own_sizing(name: str, want: SizePolicy) -> None:
    policy = customised_preset(name, size=400).size
    assert policy == want
    want_hw = (400, 400) if name == "timecycle" else _short_side(480, 854, 400, want.long_multiple)
    assert policy.input_size(480, 854) == want_hw


@pytest.mark.parametrize("hw", [(3, 5), (5, 3), (360, 640), (7, 10), (480, 854)])
def test_a_short_side_rounds_the_long_side_to_the_nearest_pixel(hw: tuple[int, int]) -> None:
    """5 * 4 / 3 = 6.67 -> 7 (a floor gave 6): the aspect ratio as close as pixels allow."""
    for size in (4, 100, 240):
        assert SizePolicy("short_side", size).input_size(*hw) == _short_side(*hw, size, None)
        assert SizePolicy("short_side", size, 8).input_size(*hw) == _short_side(*hw, size, 8)
    assert SizePolicy("short_side", 4).input_size(3, 5) == (4, 7)


def test_a_numpy_size_becomes_a_python_int_and_a_fractional_one_is_refused() -> None:
    preset = customised_preset("uvc", size=np.int64(240))
    assert type(preset.size.size) is int and preset.size == SizePolicy("short_side", 240, 64)
    with pytest.raises(ValueError, match=r"size must be a positive whole number of pixels .*got 240\.5"):
        customised_preset("crw", size=240.5)


def test_topk_knobs_change_the_given_topk_and_numpy_numbers_become_python_ones() -> None:
    """temperature beside a whole topk reaches into that topk, not the preset's own."""
    crw = get_preset("crw")
    given = TopKConfig(k=3, temperature=0.2, scope="per_frame", normalisation="softmax_topk")
    preset = crw.with_overrides(topk=given, temperature=0.5)
    assert (preset.topk.k, preset.topk.temperature, preset.topk.scope) == (3, 0.5, "per_frame")
    preset = crw.with_overrides(k=np.int64(4), radius=5, n_previous=np.int32(3))
    assert type(preset.topk.k) is int and type(preset.n_previous) is int
    assert (preset.topk.k, preset.topk.radius, preset.topk.temperature, preset.n_previous) == (4, 5, 0.05, 3)
    assert preset.size == crw.size and preset.feature_layer == crw.feature_layer


def test_a_preset_knob_that_does_not_exist_is_named_with_the_right_hint() -> None:
    crw = get_preset("crw")
    with pytest.raises(ValueError) as error:
        crw.with_overrides(features="layer4")
    assert "unknown preset knob(s) features" in str(error.value)
    assert "encoder=vidcorr.encoder_for(weights=..., features=...)" in str(error.value)
    with pytest.raises(ValueError, match=r"--context is n_previous here: n_previous=5$"):
        crw.with_overrides(context=5)
    with pytest.raises(ValueError) as error:  # notes describe a preset; they are no knob
        crw.with_overrides(notes="mine")
    assert "unknown preset knob(s) notes" in str(error.value) and "notes" not in str(error.value).split("known:")[1]
    with pytest.raises(ValueError, match=r"topk=5: topk is a whole TopKConfig; give k=5"):
        crw.with_overrides(topk=5)


def test_a_preset_name_in_capitals_is_told_the_lower_case_name() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'STT'; choose one of .*did you mean 'stt'\?"):
        get_preset("STT")
    with pytest.raises(ValueError) as error:
        get_preset("sst")
    assert "did you mean" not in str(error.value)


# --- run records: what a resume keeps ------------------------------------------------------------------

def _record(folder: Path, name: str, finished: list[str], timing: dict, stamp: dict = STAMP) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({**stamp, "finished": finished, "timing": timing}))


def test_a_resume_after_a_killed_sharded_run_keeps_the_rank_files_items_with_their_times(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _record(out, RUN_STAMP, ["a"], {"a": {"frames": 2, "seconds": 1.0}})
    _record(out, RANK_RECORD.format(1), ["c"], {"c": {"frames": 3, "seconds": 0.5}})
    _record(out, RANK_RECORD.format(2), ["b"], {"b": {"frames": 5, "seconds": 2.0}},
            stamp={**STAMP, "preset": {"name": "crw", "n_previous": 7}})  # another run's: not trusted
    assert recorded_items(out) == ["a", "c"]
    record, created = open_record(out, STAMP, ["a", "b", "c", "d"], resume=True, done=lambda name: True)
    assert not created and record.kept == ["a", "c"]  # in the order of the items
    assert record.totals() == {"frames": 5, "seconds": 1.5}
    assert sorted(p.name for p in out.iterdir()) == [RUN_STAMP]  # rank files merged, then removed
    assert json.loads((out / RUN_STAMP).read_text())["finished"] == ["a", "c"]


def test_a_half_finished_item_is_redone_and_the_kept_follow_the_items_order(tmp_path: Path) -> None:
    _record(tmp_path, RUN_STAMP, ["c", "a", "b"], {})
    assert finished_items(tmp_path, STAMP, ["a", "b", "c", "d"], done=lambda name: name != "b") == ["a", "c"]


def test_a_record_without_a_command_is_an_eval_davis_run(tmp_path: Path) -> None:
    """Records of the time `eval davis` alone kept one have no command: resumable by it, by no other."""
    _record(tmp_path, RUN_STAMP, ["a"], {}, stamp={"preset": STAMP["preset"]})
    assert finished_items(tmp_path, STAMP, ["a", "b"], done=lambda name: True) == ["a"]
    with pytest.raises(InputError, match=r"holds a run of `eval davis`, not of `eval jhmdb`"):
        finished_items(tmp_path, {**STAMP, "command": "eval jhmdb"}, ["a"], done=lambda name: True)


@pytest.mark.parametrize("before, after, said", [
    ({"tracker": "dcf", "settings": {"a": 1}}, {"tracker": "localise", "settings": {"b": 2}},
     "another tracker (dcf -> localise)"),
    ({"preset": {"name": "crw", "topk": {"k": 10}}}, {"preset": {"name": "stt", "topk": {"k": 10}}},
     "another preset (crw -> stt)"),
    ({"preset": {"name": "uvc", "size": {"mode": "square", "size": 320, "long_multiple": None}, "n_previous": 7,
                 "topk": {"temperature": 1 / math.sqrt(512)}}},
     {"preset": {"name": "uvc", "topk": {"temperature": 0.05}, "n_previous": 20,
                 "size": {"mode": "square", "size": 400, "long_multiple": None}}},
     "other preset knobs (topk.temperature 0.0441942 -> 0.05, n_previous 7 -> 20, size 320x320 -> 400x400)"),
    # each with both values: "another protocol" alone sent users comparing command lines
    ({"protocol": "ope", "max_frames": 5}, {"protocol": "vot-baseline", "max_frames": None},
     "another max_frames (5 -> null), protocol (ope -> vot-baseline)"),
    ({"resolution": "Full-Resolution"}, {}, "another resolution (Full-Resolution -> 480p)"),  # 480p: not stamped
    ({}, {"track": {"min_pixels": 2}}, "another track (off -> on)"),
    ({"model": {"features": "lab-pixels", "trained": False}},
     {"model": {"features": "random-resnet18", "trained": False}}, "another model (lab-pixels -> random-resnet18)"),
    ({"model": {"weights": "/runs/w.safetensors", "sha256": "ab", "steps": 4}},
     {"model": {"weights": "/runs/w.safetensors", "sha256": "cd", "steps": 4}},
     "another model (/runs/w.safetensors, other sha256)"),  # retrained in place
    ({"max_frames": 2}, {}, "another max_frames (2 -> (not recorded))")])  # a key only the earlier record holds
def test_a_changed_run_is_refused_naming_what_changed(tmp_path: Path, before: dict, after: dict, said: str) -> None:
    _record(tmp_path, RUN_STAMP, [], {}, stamp={"command": "eval x", **before})
    with pytest.raises(InputError) as error:
        finished_items(tmp_path, {"command": "eval x", **after}, ["a"], done=lambda name: True)
    assert f"holds a run with {said}: cannot resume it" in str(error.value)


def test_weights_named_by_another_path_resume_by_their_sha256(tmp_path: Path, monkeypatch) -> None:
    """The same weights through a link, or by a relative path where the record holds the absolute one:
    the sha256 decides. A record without one (no sha256 recorded) compares the paths resolved."""
    (tmp_path / "w.safetensors").write_bytes(b"w")
    (tmp_path / "link.safetensors").symlink_to(tmp_path / "w.safetensors")
    monkeypatch.chdir(tmp_path)
    for model, now in (({"weights": str(tmp_path / "w.safetensors"), "sha256": "ab"},
                        {"weights": "link.safetensors", "sha256": "ab"}),
                       ({"weights": str(tmp_path / "w.safetensors")}, {"weights": "w.safetensors"})):
        _record(tmp_path / "out", RUN_STAMP, ["a"], {}, stamp={"command": "eval x", "model": model})
        assert finished_items(tmp_path / "out", {"command": "eval x", "model": now}, ["a"], done=lambda name: True) \
            == ["a"]
    other = {"command": "eval x", "model": {"weights": "link.safetensors", "sha256": "cd"}}
    with pytest.raises(InputError, match=r"another model \(.*/w.safetensors, other sha256\)"):
        finished_items(tmp_path / "out", other, ["a"], done=lambda name: True)


def test_an_encoder_spec_names_its_file_by_the_absolute_path(tmp_path: Path, monkeypatch) -> None:
    """A file spec from anywhere, relative or through a link, reads as one absolute path; a module name
    (found on sys.path, not at a path) and a malformed spec as typed."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    monkeypatch.chdir(tmp_path / "sub")
    absolute = f"{(tmp_path / 'sub').resolve()}/m.py:build"
    for spec in ("m.py:build", "../sub/m.py:build", f"{tmp_path}/link/m.py:build", absolute):
        assert resolved_encoder_spec(spec) == absolute
    for spec in ("my_package.models:build", "m.py", "m.py:"):
        assert resolved_encoder_spec(spec) == spec


def test_resume_into_an_existing_empty_folder_is_allowed(tmp_path: Path) -> None:
    check_output_folder(tmp_path, resume=True, command="eval davis")  # nothing to refuse: no run, no files
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="holds no `eval davis` run to resume"):
        check_output_folder(tmp_path, resume=True, command="eval davis")


def test_an_unstarted_run_removes_only_what_it_made(tmp_path: Path) -> None:
    mine, made = tmp_path / "mine", tmp_path / "made"
    for folder in (mine, made):  # each holding only the record of a run that finished nothing
        folder.mkdir()
        RunRecord(folder, STAMP, []).write()
    remove_unstarted_run(mine, created=False)
    remove_unstarted_run(made, created=True)
    assert mine.is_dir() and not any(mine.iterdir()) and not made.exists()


def test_a_failed_run_with_a_finished_item_keeps_its_record(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with recorded_run(out, STAMP, ["a", "b"], resume=False, done=lambda name: True) as record:
            record.finish("a", {"frames": 1})
            raise RuntimeError("b failed")
    assert json.loads((out / RUN_STAMP).read_text())["finished"] == ["a"]


def test_a_stop_right_after_the_new_item_folder_is_in_place_keeps_it(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C just after the new folder was renamed into place: the new folder stays, the interrupt
    goes on (putting the old one back over it failed: a non-empty folder, and an OSError in its place)."""
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "old.png").write_text("old")
    rename = Path.rename

    def rename_then_stop(self: Path, target: Path) -> Path:
        moved = rename(self, target)
        if self.name == ".seq.partial":
            raise KeyboardInterrupt
        return moved

    def write(folder: Path) -> int:
        folder.mkdir()
        (folder / "new.png").write_text("new")
        return 1

    monkeypatch.setattr(Path, "rename", rename_then_stop)
    with pytest.raises(KeyboardInterrupt):
        write_item_folder(tmp_path, "seq", write)
    assert [p.name for p in (tmp_path / "seq").iterdir()] == ["new.png"]


def test_rank_records_merge_in_the_items_order_after_the_kept(tmp_path: Path) -> None:
    """As a single process records them: kept first, then the rest in the order of the items
    (rank 1 finished "d" before "b"), not the order the ranks wrote them."""
    record = RunRecord(tmp_path, STAMP, ["c"], {"c": {"frames": 1}})
    record.finish("e", {"frames": 2})
    _record(tmp_path, RANK_RECORD.format(1), ["d", "b"], {"d": {"frames": 4}, "b": {"frames": 8}})
    merge_rank_records(record, ["a", "b", "c", "d", "e"])
    assert record.finished == ["c", "b", "d", "e"] and record.totals() == {"frames": 15}
    assert json.loads((tmp_path / RUN_STAMP).read_text())["finished"] == ["c", "b", "d", "e"]
    assert not (tmp_path / RANK_RECORD.format(1)).exists()


# --- sharded runs: a store whose peers have always come -----------------------------------------------

class _PeersCame:
    """A rank's store in which every other rank has already given its value for every tag (``peer``:
    tag -> value, else "ok"); no peer has failed unless ``failed`` is set."""

    def __init__(self, rank: int, peer: dict[str, str] | None = None):
        self.rank, self.peer, self.keys = rank, peer or {}, {}

    def _peer(self, key: str) -> str | None:
        parts = key.split("/")
        if len(parts) == 4 and int(parts[3]) != self.rank:
            return self.peer.get(parts[2], "ok")
        return None

    def set(self, key: str, value: str) -> None:
        self.keys[key] = value.encode()

    def check(self, keys: list[str]) -> bool:
        return all(key in self.keys or self._peer(key) is not None for key in keys)

    def get(self, key: str) -> bytes:
        return self.keys[key] if key in self.keys else self._peer(key).encode()


def _sharded(tmp_path: Path, rank: int, names: list[str], *, sizes=None, kept=(), peer=None) -> tuple:
    out = tmp_path / "out"
    if kept:
        _record(out, RUN_STAMP, list(kept), {name: {"frames": 1} for name in kept})
    out.mkdir(parents=True, exist_ok=True)
    worked, before = [], []
    peer = {"kept": json.dumps(list(kept)), **(peer or {})}

    def work(name: str) -> dict:
        worked.append(name)
        return {"frames": 10, "seconds": 1.0}

    record = run_items(Ranks(rank, 2, "cpu", _PeersCame(rank, peer)), out, STAMP, names, resume=True,
                       done=lambda name: True, work=work, desc="test", sizes=sizes, before=before.extend)
    return out, record, worked, before


def test_a_rank_does_its_balanced_share_of_the_items_not_kept(tmp_path: Path) -> None:
    """Items a, b, c of 1, 1, 5 frames over 2 ranks: c (longest) to rank 0, then a and b to rank 1."""
    _, record, worked, _ = _sharded(tmp_path, 0, ["a", "b", "c"], sizes=[1, 1, 5])
    assert worked == ["c"] and (record.ranks, record.finished) == (2, ["c"]) and record.wall_seconds >= 0
    assert rank_timing(record) == {"ranks": 2, "wall_seconds": round(record.wall_seconds, 3)}
    timing = run_timing(record, "cpu")  # the items' seconds summed, beside this session's wall time
    assert (timing["ranks"], timing["wall_seconds"], timing["frames"], timing["seconds"]) == \
        (2, round(record.wall_seconds, 3), 10, 1.0)
    _, _, worked, _ = _sharded(tmp_path / "1", 1, ["a", "b", "c"], sizes=[1, 1, 5])
    assert worked == ["a", "b"]


def test_a_resumed_sharded_run_shares_only_the_items_not_kept(tmp_path: Path) -> None:
    """Kept a, b: c and d left, one each (equal sizes: the earlier to rank 0); the kept ones' overlays
    (`before`) shared the same way."""
    out, record, worked, before = _sharded(tmp_path, 0, ["a", "b", "c", "d"], kept=["a", "b"])
    assert worked == ["c"] and before == ["a"]
    assert record.kept == ["a", "b"] and json.loads((out / RUN_STAMP).read_text())["finished"] == ["a", "b", "c"]
    _, _, worked, before = _sharded(tmp_path / "1", 1, ["a", "b", "c", "d"], kept=["a", "b"])
    assert worked == ["d"] and before == ["b"]


def test_rank_1_keeps_its_items_in_its_own_file_for_rank_0(tmp_path: Path) -> None:
    out, _, worked, _ = _sharded(tmp_path, 1, ["a", "b"])
    assert worked == ["b"] and json.loads((out / RANK_RECORD.format(1)).read_text())["finished"] == ["b"]
    assert not (out / RUN_STAMP).exists()


def test_a_rank_whose_items_went_well_stops_when_a_peer_failed(tmp_path: Path) -> None:
    with pytest.raises(PeerFailed, match="rank 1 of 2 failed"):
        _sharded(tmp_path, 0, ["a", "b"], peer={"items": "failed"})
    assert json.loads((tmp_path / "out" / RUN_STAMP).read_text())["finished"] == ["a"]  # kept for --resume


class _CtrlCTwice(_PeersCame):
    """Rank 0's store at the end of the items: Ctrl-C twice while it waits for its peer."""

    interrupts = 0

    def check(self, keys: list[str]) -> bool:
        if len(keys) == 2 and self.interrupts < 2:
            self.interrupts += 1
            raise KeyboardInterrupt
        return super().check(keys)


def test_a_second_ctrl_c_stops_the_wait_for_the_other_ranks() -> None:
    store = _CtrlCTwice(0)
    with pytest.raises(KeyboardInterrupt):
        _stop_together(Ranks(0, 2, "cpu", store), None)
    assert store.interrupts == 2 and store.keys["vidcorr-eval/0/failed"] == b"0"  # the first told the peers


def test_a_single_process_does_the_items_not_kept_after_before_on_the_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _record(out, RUN_STAMP, ["b"], {"b": {"frames": 1}})
    worked, before = [], []
    record = run_items(Ranks(), out, STAMP, ["a", "b", "c"], resume=True, done=lambda name: True,
                       work=lambda name: worked.append(name) or {"frames": 2}, desc="test", before=before.extend)
    assert (worked, before, record.finished, record.totals()) == (["a", "c"], ["b"], ["b", "a", "c"], {"frames": 5})
    assert rank_timing(record) == {} and "ranks" not in run_timing(record, "cpu")


def test_a_rank_that_failed_is_not_stopped_by_its_own_failure() -> None:
    """`Ranks.fail` tells the peers; the failed rank's own checks go on (it ends with its own error)."""
    store = _PeersCame(0)
    failed = Ranks(0, 2, "cpu", store)
    failed.fail()
    failed.check()
    assert list(failed.checked(["a", "b"])) == ["a", "b"]
    with pytest.raises(PeerFailed, match=r"stopped: rank 0 of 2 failed \(its error says why\)"):
        Ranks(1, 2, "cpu", store).check()


def test_join_outside_torchrun_is_rank_0_of_1_on_the_cpu_by_default(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: no process group to join
    monkeypatch.setattr("vidcorr.train.distributed.init_distributed",
                        lambda *args, **kwargs: pytest.fail("joined a group of 1"))
    ranks = join(None)
    assert (ranks.rank, ranks.world_size, ranks.distributed, ranks.device) == (0, 1, False, "cpu")
    assert join("cuda:1").device == "cuda:1"


# --- timing --------------------------------------------------------------------------------------------

class _Propagator:
    def __init__(self):
        self.timing = {"features": 10.0, "propagation": 4.0}  # an earlier sequence's, not this one's


def test_a_sequences_time_counts_only_what_its_propagation_took() -> None:
    propagator = _Propagator()

    def propagate() -> int:
        propagator.timing["features"] += 1.5
        propagator.timing["propagation"] += 0.25
        return 7

    time = timed_sequence(propagator, propagate)
    assert (time["frames"], time["feature_seconds"], time["propagation_seconds"]) == (7, 1.5, 0.25)
    assert 0 <= time["seconds"] < 5


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/status is Linux's")
def test_peak_rss_is_mib_of_the_kib_linux_reports() -> None:
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB$", Path("/proc/self/status").read_text(), re.MULTILINE).group(1))
    assert abs(peak_rss_mib() - kib / 1024) <= 1.0


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss's exec behaviour is Linux's")
def test_peak_rss_is_this_process_not_the_one_that_started_it() -> None:
    """Linux carries ru_maxrss across exec: a process started by one that had touched more memory
    reported that one's peak (benchmarks/propagation.py's measurements are children of a process
    that has imported torch)."""
    import resource  # Unix only: at module level it would break collecting this file elsewhere

    ballast = bytearray(768 * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: resident
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # >= 768 MiB + torch's
    child = subprocess.run([sys.executable, "-c", "from vidcorr.evaluate.timing import peak_rss_mib; "
                            "print(peak_rss_mib())"], capture_output=True, text=True, check=True, timeout=60)
    del ballast
    assert float(child.stdout) < parent - 256  # the child imports torch only: ~500 MiB



# --- VIP results -----------------------------------------------------------------------------------------

def test_the_vip_table_aligns_its_columns_and_says_n_a_and_frame_0() -> None:
    results = {"per_video": {"a": {"frames": 3, "mIoU": 0.5, "AP_part": None, "AP_part@0.5": 0.25},
                             "longname12": {"frames": 12, "mIoU": 1.0, "AP_part": 0.375, "AP_part@0.5": None}},
               "skip_first_frame": True, "mIoU": 0.75, "AP_part": None, "AP_part@0.5": 0.125}
    assert format_vip_table(results).split("\n") == [
        "video       frames     mIoU  AP_part  AP_part@0.5",
        "a                3   0.5000      n/a       0.2500",
        "longname12      12   1.0000   0.3750          n/a",
        "",
        "global (2 video(s), frame 0 skipped): mIoU  0.7500  AP_part     n/a  AP_part@0.5  0.1250"]
    results["skip_first_frame"] = False
    assert format_vip_table(results).endswith("frame 0 included): mIoU  0.7500  AP_part     n/a  AP_part@0.5  0.1250")


def test_a_part_instance_map_of_transposed_size_is_refused(tmp_path: Path) -> None:
    """A 5 x 3 map for a 3 x 5 annotation holds as many pixels, but not the frame's."""
    frame = SimpleNamespace(name="f1", instances=Path("gt/f1.png"))
    write_instance_map(tmp_path / INSTANCES / "f1.png", np.zeros((5, 3), np.int64))
    with pytest.raises(InputError, match="part-instance map is 3x5 but its annotation gt/f1.png is 5x3"):
        _read_frame_instances(tmp_path, frame, (3, 5), {}, {"f1": {}})
    write_instance_map(tmp_path / INSTANCES / "f1.png", np.zeros((3, 5), np.int64))
    assert _read_frame_instances(tmp_path, frame, (3, 5), {}, {"f1": {}})[0].shape == (3, 5)


def test_missing_part_instances_are_counted_over_the_videos_that_have_them(tmp_path: Path) -> None:
    def video(name: str, instances: str | None) -> SimpleNamespace:
        return SimpleNamespace(name=name, frames=[SimpleNamespace(instances=instances)])

    dataset = SimpleNamespace(videos=[video("a", "x"), video("b", None), video("c", "x"), video("d", "x")])
    (tmp_path / "a" / "instances").mkdir(parents=True)
    said = missing_instances(dataset, tmp_path)
    assert said.startswith(f"not scored: {tmp_path / 'c' / 'instances'} not found (2 of 3 video(s) lack")
    for name in "cd":
        (tmp_path / name / "instances").mkdir(parents=True)
    assert missing_instances(dataset, tmp_path) is None  # b has no part instances to predict


def test_a_videos_line_holds_its_ap_part_over_thresholds_and_at_half() -> None:
    """One part instance, predicted with IoU 5/8: found at IoU thresholds 0.1..0.6, missed at 0.7..0.9,
    so AP_part (mean over the 9 thresholds) is 6/9 and AP_part@0.5 is 1; two videos' frames add up."""
    scores = VideoScores.empty(3)
    gt, pred = np.zeros((1, 10), np.int64), np.zeros((1, 10), np.int64)
    gt[0, :5], pred[0, :8] = 1, 1
    scores.part_ap.add_frame(gt, {1: 1}, pred, {1: 1}, {1: 0.9})
    scores.frames = 1
    summary = scores.summary()
    assert summary["AP_part"] == pytest.approx(6 / 9) and summary["AP_part@0.5"] == 1.0
    other = VideoScores.empty(3)
    other.frames = 4
    scores.merge(other)
    assert scores.frames == 5


class _NoPartsDataset:
    """Two videos of one 2 x 2 frame each, neither with annotated part instances (as in VIPSeg clips)."""

    num_classes, class_names, layout = 3, ["background", "hair", "face"], "vip"

    def __init__(self):
        self.videos = [SimpleNamespace(name=name, frames=[SimpleNamespace(name="f0", instances=None)])
                       for name in ("p", "q")]

    def __len__(self) -> int:
        return len(self.videos)

    def category_map(self, frame) -> np.ndarray:
        return np.array([[0, 1], [2, 2]], np.uint8)


def test_videos_without_part_instances_are_scored_for_miou_only(tmp_path: Path) -> None:
    """AP_part is scored only where frame 0 has part instances: none here, so no instances/ is read
    and AP_part is null, said so in the protocol; mIoU of perfect class maps is 1."""
    dataset = _NoPartsDataset()
    for video in dataset.videos:
        write_indexed_png(tmp_path / video.name / "f0.png", dataset.category_map(None))
    results = score_folder(dataset, tmp_path, False, instances=True)
    assert results["mIoU"] == 1.0 and results["AP_part"] is None and results["AP_part@0.5"] is None
    assert results["protocol"]["instances"] == "none: AP_part not computed"
    assert results["protocol"]["scored_frames"] == 2 and results["per_video"]["q"]["frames"] == 1
    assert results["per_class"]["IoU"] == {"background": 1.0, "hair": 1.0, "face": 1.0}
