"""The item loop of every eval runner, for one process or for the ranks of a torchrun group.

`run_items` opens the run record (`vidcorr.evaluate.runs`), does the items not kept from an earlier
session and records each once its outputs are in place. Under torchrun (`vidcorr.evaluate.ranks`)
rank 0 alone opens the folder and the record, every rank does its balanced share and records it
(`vidcorr.evaluate.runs.RANK_RECORD`), and once all ranks stopped, finished or failed, rank 0
merges what they recorded: the folder then holds what a single process leaves after the same
items (a run that finished no item leaves nothing, as `recorded_run` does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from vidcorr.evaluate.ranks import PeerFailed, PeersGone, Ranks, my_share
from vidcorr.evaluate.runs import (RANK_RECORD, RunRecord, merge_rank_records, open_record, recorded_run,
                                   remove_unstarted_run)


def run_items(ranks: Ranks, out_dir: Path, stamp: dict, names: Sequence[str], *, resume: bool,
              done: Callable[[str], bool], work: Callable[[str], dict], desc: str, unit: str = "seq",
              sizes: Sequence[int] | None = None, folders: Sequence[Path] = (),
              before: Callable[[list[str]], None] | None = None) -> RunRecord:
    """Do ``work(name)`` (-> its time, as `RunRecord.finish` keeps it) for every item of ``names``
    not kept by a resume, each recorded as it finishes -> the record (on rank 0: of every rank's items).

    before(kept): first, for the kept items (e.g. their missing overlays); under torchrun for this
    rank's share of them. sizes: each item's cost (frames) for the ranks' shares; default 1 each.
    The other arguments are `recorded_run`'s.
    """
    if not ranks.distributed:
        with recorded_run(out_dir, stamp, names, resume=resume, done=done, folders=folders) as record:
            if before is not None:
                before(record.kept)
            for name in tqdm([n for n in names if n not in record.kept], desc=desc, unit=unit):
                record.finish(name, work(name))
        return record
    return _sharded(ranks, out_dir, stamp, names, resume=resume, done=done, work=work, desc=desc, unit=unit,
                    sizes=sizes or [1] * len(names), folders=folders, before=before)


def _sharded(ranks: Ranks, out_dir: Path, stamp: dict, names: Sequence[str], *, resume: bool,
             done: Callable[[str], bool], work: Callable[[str], dict], desc: str, unit: str,
             sizes: Sequence[int], folders: Sequence[Path], before: Callable[[list[str]], None] | None) -> RunRecord:
    """`run_items` on one rank of several; every rank calls it."""
    start = time.perf_counter()
    opened = ranks.agree(lambda: open_record(out_dir, stamp, names, resume=resume, done=done, folders=folders)
                         if ranks.is_main else None)
    kept = json.loads(ranks.share("kept", json.dumps(opened[0].kept) if opened else None))
    record = opened[0] if opened else RunRecord(out_dir, stamp, [], path=out_dir / RANK_RECORD.format(ranks.rank))
    size = dict(zip(names, sizes))
    failure: BaseException | None = None
    try:
        if before is not None:
            before(my_share(ranks, kept, [size[n] for n in kept]))
        todo = [name for name in names if name not in kept]
        label = f"[rank {ranks.rank}/{ranks.world_size}] {desc}"
        for name in tqdm(my_share(ranks, todo, [size[n] for n in todo]), desc=label, unit=unit):
            ranks.check()
            record.finish(name, work(name))
    except BaseException as error:
        failure = error
        if not isinstance(error, PeerFailed):
            ranks.fail()
    # Every rank, finished or failed, stops here before rank 0 reads the ranks' records.
    outcomes, failure = _stop_together(ranks, failure)
    if ranks.is_main and outcomes is not None:  # None: left without them after SIGTERM, their records kept
        merge_rank_records(record, names)
        if not record.finished:
            remove_unstarted_run(out_dir, opened[1], folders)
    if failure is not None:
        raise failure
    if "failed" in outcomes:
        raise PeerFailed(f"stopped: rank {outcomes.index('failed')} of {ranks.world_size} failed (its error says why)")
    record.ranks, record.wall_seconds = ranks.world_size, time.perf_counter() - start
    return record


def _stop_together(ranks: Ranks, failure: BaseException | None) -> tuple[list[str] | None, BaseException | None]:
    """Every rank's outcome of its items, once all stopped -> (them, this rank's failure). A Ctrl-C
    or SIGTERM while waiting for the slower ranks (a rank that finished its share, or already failed,
    waits here) does not end the wait: it becomes this rank's failure if it had none (the others
    told, `Ranks.fail`), and the wait goes on, so that rank 0 still merges the ranks' records (it had
    left them unmerged, and an unstarted run's folder in place). A second Ctrl-C stops the wait, and
    so do ranks that do not come within `SIGTERM_PATIENCE_SECONDS` of a SIGTERM (outcomes None)."""
    interrupted = isinstance(failure, KeyboardInterrupt)
    while True:
        try:
            return ranks.gather("items", "ok" if failure is None else "failed", heed_failure=False), failure
        except PeersGone as gone:  # only after SIGTERM: this rank's failure is that, as it raised here
            return None, failure or gone
        except KeyboardInterrupt as interrupt:
            if interrupted:
                raise
            interrupted = True
            if failure is None:
                failure = interrupt
                ranks.fail()
