"""`eval` under torchrun (2 ranks, gloo, forked here): the same outputs and results as one process,
a run stopped part-way resumed by another world size, and one rank's error ending every rank."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import FAST, sigterm_after_writes, sigterm_default_raises
from jhmdb_helpers import jhmdb_tree
from rank_helpers import run_ranks

import vidcorr.evaluate.ranks as ranks_module
from vidcorr.cli import main
from vidcorr.errors import InputError, VidcorrError
from vidcorr.evaluate import davis
from vidcorr.evaluate.ranks import PeerFailed, Ranks, balanced_shares, threads_per_rank
from vidcorr.evaluate.runs import RANK_RECORD
from vidcorr.evaluate.shards import run_items
from vidcorr.train.distributed import DistContext

SEQUENCES = {"blackswan": 4, "car-shadow": 4, "bmx-trees": 6}  # frames: 2 ranks share them 6 | 4 + 4


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory, davis2016_root) -> Path:
    """The first frames of three sequences as a DAVIS root: unequal lengths, so the shares differ."""
    root = tmp_path_factory.mktemp("davis3")
    for seq, frames in SEQUENCES.items():
        for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            (root / kind / "480p" / seq).mkdir(parents=True)
            for f in sorted((davis2016_root / kind / "480p" / seq).glob(f"*.{ext}"))[:frames]:
                shutil.copy(f, root / kind / "480p" / seq / f.name)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("".join(f"{seq}\n" for seq in SEQUENCES))
    return root


@pytest.fixture(scope="module")
def single(three_clips, tmp_path_factory) -> Path:
    """The single-process run every sharded one is compared with."""
    out = tmp_path_factory.mktemp("single") / "out"
    assert main(["eval", "davis", "--root", str(three_clips), "--out", str(out), *FAST]) == 0
    return out


def _without_timing(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "timing"}


def _same_as_single(out: Path, single: Path, finished: list[str] = list(SEQUENCES)) -> None:
    """``finished``: as a single process records them, the kept ones first, then the rest in order."""
    assert _without_timing(out / "results.json") == _without_timing(single / "results.json")
    assert list(json.loads((out / "results.json").read_text())["per_sequence"]) == list(SEQUENCES)
    assert _without_timing(out / ".run.json") == {**_without_timing(single / ".run.json"), "finished": finished}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single.iterdir())  # no rank records
    for seq in SEQUENCES:
        assert [p.read_bytes() for p in sorted((out / seq).iterdir())] == \
               [p.read_bytes() for p in sorted((single / seq).iterdir())]


def _eval_davis(root: Path, out: Path, tmp_path: Path, *extra: str) -> list[tuple[int, str]]:
    """`eval davis` of ``root`` into ``out`` on 2 forked ranks (`run_ranks`, files in tmp_path/ranks)
    -> each rank's (exit code, stderr)."""
    return run_ranks(["eval", "davis", "--root", str(root), "--out", str(out), *extra, *FAST], tmp_path / "ranks")


def _patch_ranks(monkeypatch, gather, score_davis) -> None:
    """The ranks run with ``gather`` as `Ranks.gather` and ``score_davis`` as the DAVIS scorer: the two
    places the SIGTERM tests time a signal by (where a rank waits; rank 0's scoring at the end)."""
    monkeypatch.setattr(Ranks, "gather", gather)
    monkeypatch.setattr(davis, "score_davis", score_davis)


def test_two_ranks_write_what_one_process_writes(three_clips, single, tmp_path):
    out = tmp_path / "out"
    ranks = _eval_davis(three_clips, out, tmp_path)
    assert [code for code, _ in ranks] == [0, 0]
    _same_as_single(out, single)
    timing = json.loads((out / "results.json").read_text())["timing"]
    assert timing["ranks"] == 2 and timing["frames"] == sum(SEQUENCES.values()) and timing["wall_seconds"] > 0
    assert "ranks" not in json.loads((single / "results.json").read_text())["timing"]
    # each rank propagated its share only: 6 frames on rank 0, 4 + 4 on rank 1
    for rank, share in ((0, 1), (1, 2)):
        assert re.search(rf"\[rank {rank}/2\] propagate \(crw\): 100%\|\S+\| {share}/{share} ", ranks[rank][1])


def test_a_failed_sharded_run_is_resumed_by_one_process(three_clips, single, tmp_path):
    """car-shadow's third frame is truncated (its header reads, so the up-front checks pass): rank 1
    fails on it after blackswan; rank 0 stops too; both exit non-zero and the error is printed once.
    The finished sequences are recorded, nothing half-written is left, and a resume keeps them."""
    broken, out = tmp_path / "broken", tmp_path / "out"
    shutil.copytree(three_clips, broken)
    frame = broken / "JPEGImages" / "480p" / "car-shadow" / "00002.jpg"
    frame.write_bytes(frame.read_bytes()[:3000])
    ranks = _eval_davis(broken, out, tmp_path)
    assert all(code != 0 for code, _ in ranks)
    errors = "".join(err for _, err in ranks)
    assert errors.count(f"{frame}: unreadable image") == 1 and "rank 1 of 2 failed" in ranks[0][1]
    # rank 0 stopped bmx-trees within a frame of the failure, or had finished it: either is recorded truly
    finished = json.loads((out / ".run.json").read_text())["finished"]
    assert finished in (["blackswan"], ["blackswan", "bmx-trees"])
    assert sorted(p.name for p in out.iterdir()) == [".run.json", *finished]
    done = (out / "blackswan" / "00000.png").stat().st_mtime_ns
    assert main(["eval", "davis", "--root", str(three_clips), "--out", str(out), "--resume", *FAST]) == 0
    assert (out / "blackswan" / "00000.png").stat().st_mtime_ns == done
    assert json.loads((out / "results.json").read_text())["timing"]["kept_from_earlier_run"] == finished
    assert _without_timing(out / "results.json") == _without_timing(single / "results.json")


def test_ranks_that_all_fail_before_finishing_a_sequence_leave_no_folder(three_clips, tmp_path):
    """Every sequence's second frame truncated: each rank fails on its first sequence and says why,
    once; with nothing finished rank 0 removes the record and the folder it created."""
    broken, out = tmp_path / "broken", tmp_path / "out"
    shutil.copytree(three_clips, broken)
    frames = [broken / "JPEGImages" / "480p" / seq / "00001.jpg" for seq in SEQUENCES]
    for frame in frames:
        frame.write_bytes(frame.read_bytes()[:3000])
    ranks = _eval_davis(broken, out, tmp_path)
    assert all(code != 0 for code, _ in ranks)
    errors = "".join(err for _, err in ranks)
    assert errors.count("unreadable image") >= 1 and all(errors.count(f"{f}:") <= 1 for f in frames)
    assert not out.exists()


def test_a_single_process_run_is_resumed_by_two_ranks(three_clips, single, tmp_path):
    out = tmp_path / "out"
    assert main(["eval", "davis", "--root", str(three_clips), "--out", str(out), "--sequences", "car-shadow",
                 *FAST]) == 0
    done = (out / "car-shadow" / "00000.png").stat().st_mtime_ns
    ranks = _eval_davis(three_clips, out, tmp_path, "--resume")
    assert [code for code, _ in ranks] == [0, 0]
    assert (out / "car-shadow" / "00000.png").stat().st_mtime_ns == done
    assert json.loads((out / "results.json").read_text())["timing"]["kept_from_earlier_run"] == ["car-shadow"]
    _same_as_single(out, single, ["car-shadow", "blackswan", "bmx-trees"])


def test_a_killed_sharded_run_leaves_rank_records_that_a_resume_keeps(three_clips, single, tmp_path):
    """A run killed (SIGKILL) under torchrun before rank 0 merged: rank 1's items are in its own file."""
    out = tmp_path / "out"
    shutil.copytree(single, out)
    (out / "results.json").unlink()
    (out / "j_per_frame.png").unlink()
    record = json.loads((out / ".run.json").read_text())
    rank1 = {**record, "finished": ["blackswan"], "timing": {"blackswan": record["timing"]["blackswan"]}}
    (out / ".run.rank1.json").write_text(json.dumps(rank1))
    record["finished"] = ["bmx-trees"]
    (out / ".run.json").write_text(json.dumps(record))
    (out / ".run.rank2.json").write_text(json.dumps({**rank1, "year": "2017", "finished": ["car-shadow"]}))  # not ours
    done = {seq: (out / seq / "00000.png").stat().st_mtime_ns for seq in SEQUENCES}
    assert main(["eval", "davis", "--root", str(three_clips), "--out", str(out), "--resume", *FAST]) == 0
    timing = json.loads((out / "results.json").read_text())["timing"]
    assert timing["kept_from_earlier_run"] == ["blackswan", "bmx-trees"]
    assert {seq: (out / seq / "00000.png").stat().st_mtime_ns == done[seq] for seq in SEQUENCES} == \
           {"blackswan": True, "car-shadow": False, "bmx-trees": True}  # another run's record: done again
    _same_as_single(out, single, ["blackswan", "bmx-trees", "car-shadow"])


def test_an_input_error_ends_every_rank_and_is_printed_once(three_clips, single, tmp_path):
    ranks = _eval_davis(three_clips, single, tmp_path)
    assert [code for code, _ in ranks] == [2, 2]
    assert "".join(err for _, err in ranks).count("output folder exists and is not empty") == 1
    assert "output folder exists" in ranks[0][1]


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "vidcorr eval davis: stopped by SIGTERM"),
                                                (signal.SIGINT, 130, "vidcorr: interrupted")])
def test_a_signal_to_every_rank_cleans_up_as_ctrl_c_and_is_said_once(three_clips, tmp_path, monkeypatch,
                                                                     ctrl_c_as_in_a_terminal, signum, code, said):
    """Each rank is signalled halfway through a sequence, rank 1 after finishing blackswan: as torchrun
    passes its own SIGTERM (or the terminal a Ctrl-C) to every rank. SIGTERM killed a rank at once and
    left its hidden .<seq>.partial folder; now it unwinds as Ctrl-C does: no partial folder, the ranks'
    records merged, exit 128 + the signal, and the line that says so printed once, by rank 0."""
    real_write, written = davis.write_indexed_png, []

    def write_then_signal(path, labels, palette=None):  # in each forked rank, its own count
        real_write(path, labels, palette)
        written.append(path)
        if len(written) == (6 if os.environ["RANK"] == "1" else 3):  # rank 1: blackswan (4) + 2 of car-shadow
            (tmp_path / f"at{os.environ['RANK']}").touch()
            while not all((tmp_path / f"at{r}").exists() for r in range(2)):  # both, before either sees a failure
                time.sleep(0.01)
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(davis, "write_indexed_png", write_then_signal)
    out = tmp_path / "out"
    ranks = _eval_davis(three_clips, out, tmp_path)
    assert [c for c, _ in ranks] == [code, code]
    errors = "".join(err for _, err in ranks)
    assert errors.count(said) == 1 and said in ranks[0][1]
    assert errors.count("the sequences finished so far are kept") == 1
    assert sorted(p.name for p in out.iterdir()) == [".run.json", "blackswan"]  # no .partial, no rank record
    assert json.loads((out / ".run.json").read_text())["finished"] == ["blackswan"]


def _tell(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, for another rank that waits for it to exist and then reads
    it: write_text's file exists from its open, and a reader that came between the open and the
    write read "" (int("") failed the rank that was to send the signal)."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "vidcorr eval davis: stopped by SIGTERM"),
                                                (signal.SIGINT, 130, "vidcorr: interrupted")])
@pytest.mark.parametrize("both", [True, False])
def test_a_signal_while_rank_0_scores_and_rank_1_waits_to_leave(three_clips, tmp_path, monkeypatch,
                                                                ctrl_c_as_in_a_terminal, signum, code, said, both):
    """Rank 1 has done its share and waits for rank 0, which scores the run, to leave the group
    together. A signal there (to both ranks, as torchrun passes its own on; or to rank 1 alone) let
    rank 1 go without the others' final barrier: rank 0's barrier then failed with gloo's
    "Connection reset by peer" (exit 1, a traceback), and rank 1, not the lowest, said the line.
    Now rank 1 waits for rank 0: both signalled, both exit 128 + the signal and rank 0 says it once;
    rank 1 alone, rank 0 finishes its results and exits 0 (rank 1 failed nothing)."""
    real_gather, real_score = Ranks.gather, davis.score_davis

    def gather(self, tag, value, *, heed_failure=True):  # rank 1 tells where it waits
        if tag == "exit" and self.rank == 1:
            _tell(tmp_path / "waiting", str(os.getpid()))
        return real_gather(self, tag, value, heed_failure=heed_failure)

    def score_then_signal(*args, **kwargs):  # on rank 0
        while not (tmp_path / "waiting").exists():
            time.sleep(0.01)
        time.sleep(0.2)  # rank 1 is in its waiting loop
        os.kill(int((tmp_path / "waiting").read_text()), signum)
        if both:
            os.kill(os.getpid(), signum)
        return real_score(*args, **kwargs)

    _patch_ranks(monkeypatch, gather, score_then_signal)
    out = tmp_path / "out"
    (code0, err0), (code1, err1) = _eval_davis(three_clips, out, tmp_path)
    assert (code0, code1) == ((code, code) if both else (0, code)), (err0, err1)
    assert "Connection reset" not in err0 + err1
    assert (err0 + err1).count(said) == 1 and said in (err0 if both else err1)
    assert (out / "results.json").is_file() != both
    assert sorted(json.loads((out / ".run.json").read_text())["finished"]) == sorted(SEQUENCES)  # merged first


def test_a_rank_that_left_without_the_others_after_sigterm_is_not_waited_for_at_the_barrier(three_clips, tmp_path,
                                                                                           monkeypatch):
    """SIGTERM to rank 1 alone while it waits for rank 0, which scores for longer than
    SIGTERM_PATIENCE_SECONDS: rank 1 leaves without it (exit 143). Rank 0 then waited for rank 1 at
    the group's barrier, which failed with gloo's "Connection reset by peer" (exit 1, no results);
    now rank 1's leaving is recorded, and rank 0 finishes, writes its results and leaves alone."""
    real_gather, real_score = Ranks.gather, davis.score_davis

    def gather(self, tag, value, *, heed_failure=True):
        if tag == "exit" and self.rank == 1 and not (tmp_path / "waiting").exists():
            _tell(tmp_path / "waiting", str(os.getpid()))
        return real_gather(self, tag, value, heed_failure=heed_failure)

    def signal_then_score(*args, **kwargs):  # on rank 0, until rank 1 has given up waiting and ended
        while not (tmp_path / "waiting").exists():
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(int((tmp_path / "waiting").read_text()), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not (tmp_path / "ranks" / "code1.txt").exists() and time.monotonic() < deadline:  # rank 1 has ended
            time.sleep(0.05)
        return real_score(*args, **kwargs)

    _patch_ranks(monkeypatch, gather, signal_then_score)
    monkeypatch.setattr(ranks_module, "SIGTERM_PATIENCE_SECONDS", 1.0)
    out = tmp_path / "out"
    (code0, err0), (code1, err1) = _eval_davis(three_clips, out, tmp_path)
    assert (code0, code1) == (0, 143), (err0, err1)
    assert "rank(s) 0 of 2 did not stop within 1 s of SIGTERM" in err1 and "stopped by SIGTERM" in err1
    assert "Connection reset" not in err0 and (out / "results.json").is_file()


def test_a_rank_killed_while_it_waits_to_leave_is_left_at_the_barrier_after_sigterm(three_clips, tmp_path,
                                                                                    monkeypatch):
    """Rank 1, its share done, is killed outright (SIGKILL, the out-of-memory killer) while it waits for
    rank 0 to score, and rank 0 gets the SIGTERM torchrun then sends the survivors. Rank 1 had come
    to the end, so rank 0 waited for it at the group's barrier, which gloo ended with "Connection
    closed by peer": a traceback and exit 1. Now it leaves without it: exit 143, SIGTERM's line."""
    real_gather, real_score = Ranks.gather, davis.score_davis

    def gather(self, tag, value, *, heed_failure=True):  # rank 1 comes to the end, then is killed
        if tag == "exit" and self.rank == 1:
            self.store.set(self._key(f"{tag}/{self.rank}"), value)
            (tmp_path / "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_gather(self, tag, value, heed_failure=heed_failure)

    def score_until_sigterm(*args, **kwargs):  # on rank 0
        while not (tmp_path / "killed").exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        return real_score(*args, **kwargs)

    _patch_ranks(monkeypatch, gather, score_until_sigterm)
    out = tmp_path / "out"
    (code0, err0), (code1, _) = _eval_davis(three_clips, out, tmp_path)
    assert (code0, code1) == (143, -signal.SIGKILL), err0
    assert "vidcorr eval davis: stopped by SIGTERM" in err0 and "leaving without it" in err0
    assert sorted(json.loads((out / ".run.json").read_text())["finished"]) == sorted(SEQUENCES)


def test_the_sigterm_to_the_survivors_of_a_killed_rank_cleans_up_and_ends(three_clips, tmp_path, monkeypatch):
    """Rank 1 is killed outright (SIGKILL, as by the out-of-memory killer) inside blackswan, and rank 0
    then gets the SIGTERM torchrun sends the survivors: it removes its own .bmx-trees.partial, waits
    for rank 1 no longer than SIGTERM_PATIENCE_SECONDS (it never comes; torchrun would SIGKILL rank
    0 after 30 s), says so and exits 143. Only what SIGKILL cannot clean up is left."""
    real_write, written = davis.write_indexed_png, []

    def write_then_die(path, labels, palette=None):
        real_write(path, labels, palette)
        written.append(path)
        if os.environ["RANK"] == "1" and len(written) == 2:
            (tmp_path / "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ["RANK"] == "0" and len(written) == 3:
            while not (tmp_path / "killed").exists():
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(davis, "write_indexed_png", write_then_die)
    monkeypatch.setattr(ranks_module, "SIGTERM_PATIENCE_SECONDS", 1.0)
    out = tmp_path / "out"
    (code0, err0), (code1, _) = _eval_davis(three_clips, out, tmp_path)
    assert (code0, code1) == (143, -signal.SIGKILL)
    assert "rank(s) 1 of 2 did not stop within 1 s of SIGTERM" in err0 and "stopped by SIGTERM" in err0
    assert sorted(p.name for p in out.iterdir()) == [".blackswan.partial", ".run.json"]  # rank 1's, killed
    # the record names no sequence: no "finished so far are kept" (test_eval_resume.py: rank files merged)
    assert "finished so far are kept" not in err0 and "none of the sequences was finished" in err0


def test_sigterm_to_a_single_process_eval_cleans_up_as_ctrl_c(three_clips, tmp_path, monkeypatch, capsys):
    """Without torchrun too: SIGTERM in the middle of car-shadow (the second sequence) leaves the
    first recorded, no .car-shadow.partial folder, the resume hint and exit 143."""
    sigterm_after_writes(monkeypatch, davis, 6)
    out = tmp_path / "out"
    with sigterm_default_raises() as unhandled:
        with pytest.raises(SystemExit) as stop:
            main(["eval", "davis", "--root", str(three_clips), "--out", str(out), *FAST])
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    err = capsys.readouterr().err
    assert stop.value.code == 143 and "vidcorr eval davis: stopped by SIGTERM\n" in err
    assert f"the sequences finished so far are kept in {out}" in err
    assert sorted(p.name for p in out.iterdir()) == [".run.json", "blackswan"]


@pytest.fixture(scope="module")
def jhmdb_clips(tmp_path_factory, data_dir) -> Path:
    """The real JHMDB clip's first 5 frames under three video names, as a JHMDB root."""
    return jhmdb_tree(tmp_path_factory.mktemp("jhmdb"), data_dir / "jhmdb", 5, videos=("clip_a", "clip_b", "clip_c"))


def test_eval_jhmdb_on_two_ranks_equals_one_process(jhmdb_clips, tmp_path):
    args = ["eval", "jhmdb", "--root", str(jhmdb_clips), "--features", "lab-pixels", "--size", "96"]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    ranks = run_ranks([*args, "--out", str(tmp_path / "ranks")], tmp_path / "logs")
    assert [code for code, _ in ranks] == [0, 0]
    for name in ("results.json", ".run.json"):
        assert _without_timing(tmp_path / "ranks" / name) == _without_timing(tmp_path / "single" / name)
    assert json.loads((tmp_path / "ranks" / "results.json").read_text())["timing"]["ranks"] == 2
    for video in ("clip_a", "clip_b", "clip_c"):
        path = Path("predictions", "catch", f"{video}.json")
        assert (tmp_path / "ranks" / path).read_bytes() == (tmp_path / "single" / path).read_bytes()
    # an input error found by both ranks: printed once, both exit 2, nothing written
    ranks = run_ranks(["eval", "jhmdb", "--root", str(tmp_path), "--out", str(tmp_path / "bad"), "--features",
                       "lab-pixels"], tmp_path / "logs-bad")
    assert [code for code, _ in ranks] == [2, 2] and "".join(e for _, e in ranks).count("Rename_Images") == 1
    assert not (tmp_path / "bad").exists()


def test_eval_otb_on_two_ranks_equals_one_process(otb_root, tmp_path):
    shutil.copytree(otb_root / "Soccer", otb_root / "Soccer2")
    args = ["eval", "otb", "--root", str(otb_root), "--features", "lab-pixels", "--max-frames", "8"]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    ranks = run_ranks([*args, "--out", str(tmp_path / "ranks")], tmp_path / "logs")
    assert [code for code, _ in ranks] == [0, 0]
    assert _without_timing(tmp_path / "ranks" / ".run.json") == _without_timing(tmp_path / "single" / ".run.json")
    sharded, alone = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("ranks", "single"))
    drop = ("timing", "seconds", "frames_per_second")  # also each sequence's
    strip = lambda r: {k: v for k, v in r.items() if k not in drop and k != "per_sequence"}  # noqa: E731
    assert strip(sharded) == strip(alone) and sharded["timing"]["ranks"] == 2
    assert {n: strip(s) for n, s in sharded["per_sequence"].items()} == \
           {n: strip(s) for n, s in alone["per_sequence"].items()}
    assert list(sharded["per_sequence"]) == list(alone["per_sequence"])
    for seq in ("Soccer", "Soccer2"):
        assert (tmp_path / "ranks" / f"{seq}.txt").read_bytes() == (tmp_path / "single" / f"{seq}.txt").read_bytes()


def test_shares_are_balanced_by_size_and_deterministic(monkeypatch):
    sizes = [50, 10, 80, 40, 30, 70]
    shares = balanced_shares(sizes, 2)
    assert shares == [[2, 3, 4], [0, 1, 5]]  # 80 + 40 + 30 = 150 | 70 + 50 + 10 = 130: longest first
    assert sorted(i for share in shares for i in share) == list(range(len(sizes)))
    assert balanced_shares(sizes, 4) == [[2], [5], [0, 1], [3, 4]] and balanced_shares([5], 3) == [[0], [], []]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("torch.get_num_threads", lambda: 8)
    assert [threads_per_rank(n) for n in (1, 3, 16)] == [8, 2, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # per process, as torchrun sets it: kept
    assert threads_per_rank(4) == 8


def test_a_malformed_torchrun_variable_ends_an_eval_naming_it(three_clips, tmp_path, monkeypatch, capsys):
    """WORLD_SIZE=two was int()'s traceback ("invalid literal for int() with base 10"), WORLD_SIZE=0 a
    single process; LOCAL_WORLD_SIZE=0 divided the CPU threads by zero. Now one line each, as `train` says it."""
    out = tmp_path / "out"
    for value in ("two", "0"):
        monkeypatch.setenv("WORLD_SIZE", value)
        assert main(["eval", "davis", "--root", str(three_clips), "--out", str(out), *FAST]) == 2
        assert capsys.readouterr().err == (f"vidcorr: error: environment variable WORLD_SIZE={value!r}: expected a "
                                           "whole number >= 1 (torchrun sets it; unset it to run in one process)\n")
        assert not out.exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "0")
    monkeypatch.setattr(ranks_module, "init_distributed", lambda device, backend: DistContext(0, 2, 0, device))
    with pytest.raises(VidcorrError, match=r"^environment variable LOCAL_WORLD_SIZE='0': expected a whole number >= 1"):
        ranks_module.join("cpu")


def test_an_eval_rank_joins_and_leaves_its_group_without_importing_the_trainer():
    """`join` and `_leave_group` take the process group's code from `vidcorr.train.distributed`;
    importing it ran `vidcorr.train`'s __init__, which imported the training loop, its data
    pipeline and the models (about 90 modules) into every eval rank. A fresh interpreter, so that
    nothing this session imported counts; its group of 2 is made a group of 1 (no peer, no port)."""
    code = """if True:
        import os, sys
        os.environ.update(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
        import torch.distributed as dist
        joined = dist.init_process_group
        dist.init_process_group = lambda backend, rank, world_size: joined(
            backend, store=dist.HashStore(), rank=0, world_size=1)
        from vidcorr.evaluate.ranks import _leave_group, join
        ranks = join("cpu")
        assert ranks.distributed and dist.is_initialized()
        _leave_group(ranks, synchronise=True)
        assert not dist.is_initialized()
        heavy = ("vidcorr.train", "vidcorr.data", "vidcorr.models")
        print(" ".join(sorted(m for m in sys.modules if m.startswith(heavy))))
    """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["vidcorr.train", "vidcorr.train.distributed"]


class _FailsRightAfterComing:
    """A store for rank 1 of 2 in which rank 0, which failed the same step, comes to the step's
    gather and fails (`Ranks.fail`, as `eval_ranks` does on its way out) right after rank 1's first look."""

    def __init__(self):
        self.keys: dict[str, bytes] = {}
        self.looked = False

    def set(self, key: str, value: str) -> None:
        self.keys[key] = value.encode()

    def get(self, key: str) -> bytes:
        return self.keys[key]

    def check(self, keys: list[str]) -> bool:
        found = all(key in self.keys for key in keys)
        if len(keys) == 2 and not self.looked:  # the step's keys: rank 0 comes, then fails
            self.looked = True
            self.keys[keys[0]] = b"failed"
            self.keys["vidcorr-eval/0/failed"] = b"0"
        return found


def test_a_step_both_ranks_failed_is_said_once_when_the_other_fails_right_after_coming(monkeypatch):
    """Both ranks meet the same input error (a used --out); rank 0 says it. Under load rank 1 saw the
    step's keys incomplete, then rank 0's failure, and took it for a failure while it waited: it said
    its own error too (test_an_input_error_ends_every_rank_and_is_printed_once failed so). Rank 0 had
    come: rank 1 stops without a word."""
    def step():
        raise InputError("out", "output folder exists and is not empty")

    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    store = _FailsRightAfterComing()
    with pytest.raises(PeerFailed, match="rank 0 of 2 failed"):
        Ranks(1, 2, "cpu", store).agree(step)
    assert store.looked


class _PeersArrive:
    """A store for rank 0 of 2 in which rank 1 has answered every step, but comes to the end of its
    items (``items/1``) only after rank 0's first poll there, which a Ctrl-C interrupts."""

    def __init__(self):
        self.keys: dict[str, bytes] = {}
        self.interrupted = False

    def set(self, key: str, value: str) -> None:
        self.keys[key] = value.encode()
        if "/items/" not in key and key.endswith("/0"):  # rank 1 answers as rank 0 does
            self.keys[key[:-1] + "1"] = b"ok"

    def get(self, key: str) -> bytes:
        return self.keys[key]

    def check(self, keys: list[str]) -> bool:
        if any("/items/1" in key for key in keys) and not self.interrupted:
            self.interrupted = True
            self.keys[keys[1]] = b"ok"  # rank 1 finishes while rank 0 is being interrupted
            raise KeyboardInterrupt
        return all(key in self.keys for key in keys)


def test_a_ctrl_c_while_waiting_for_the_other_ranks_still_merges_their_records(tmp_path):
    """Rank 0 finished its share and waits for rank 1 when Ctrl-C comes: it still waits for rank 1 to
    stop and merges its record into .run.json (it had left with the rank file unmerged), then exits
    on the interrupt."""
    out, stamp = tmp_path / "out", {"command": "eval test"}
    store = _PeersArrive()

    def work(name: str) -> dict:  # rank 0 does "a"; rank 1, meanwhile, records "b" in its own file
        record = {**stamp, "finished": ["b"], "timing": {"b": {"frames": 1}}}
        (out / RANK_RECORD.format(1)).write_text(json.dumps(record))
        return {"frames": 1}

    with pytest.raises(KeyboardInterrupt):
        run_items(Ranks(0, 2, "cpu", store), out, stamp, ["a", "b"], resume=False, done=lambda name: True,
                  work=work, desc="test")
    assert store.interrupted and store.keys["vidcorr-eval/0/failed"] == b"0"  # rank 1 told
    assert json.loads((out / ".run.json").read_text())["finished"] == ["a", "b"]
    assert not (out / RANK_RECORD.format(1)).exists()


def test_a_rank_that_failed_waits_out_one_ctrl_c_and_keeps_its_own_error(tmp_path):
    """A rank stopped by a peer's failure, then Ctrl-C'd while the others stop: it still waits and
    merges, raises its own PeerFailed, and does not claim the failure as its own (`Ranks.fail`)."""
    out, stamp = tmp_path / "out", {"command": "eval test"}
    store = _PeersArrive()

    def work(name: str) -> dict:  # rank 1 recorded "b" and failed on its next item
        (out / RANK_RECORD.format(1)).write_text(json.dumps({**stamp, "finished": ["b"]}))
        store.keys["vidcorr-eval/0/failed"] = b"1"
        return {"frames": 1}

    try:
        with pytest.raises(PeerFailed):
            run_items(Ranks(0, 2, "cpu", store), out, stamp, ["a", "b", "c"], resume=False,
                      done=lambda name: True, work=work, desc="test")  # rank 0: "a" and "c"
    except KeyboardInterrupt:  # a failure of this test, not an interrupted session
        raise AssertionError("the first Ctrl-C ended the wait") from None
    assert store.interrupted and store.keys["vidcorr-eval/0/failed"] == b"1"
    assert json.loads((out / ".run.json").read_text())["finished"] == ["a", "b"]
