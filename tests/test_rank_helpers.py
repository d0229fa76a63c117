"""`forked_ranks`, which the multi-rank tests launch their ranks with: the group's store is served
by the launcher from before any rank starts until all end, as torchrun's agent serves it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from rank_helpers import forked_ranks


def _join(ranks) -> None:
    while not ranks.join():  # each call returns as one rank ends; raises its error if it failed
        pass


def _only_rank_1_comes(rank: int, out: Path) -> None:
    if rank == 1:  # rank 0 ends at once, having bound nothing: the store must be someone else's
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                              timeout=timedelta(seconds=20))
        store.set("came", "rank 1")
        (out / "seen.txt").write_text(store.get("came").decode())


def test_the_store_is_served_by_the_launcher_not_by_rank_0(tmp_path):
    """Rank 0 used to bind MASTER_PORT for the store, a port chosen free beforehand by the test and
    open to anyone until then (under pytest-xdist, another test's group)."""
    with forked_ranks(_only_rank_1_comes, (tmp_path,)) as ranks:
        _join(ranks)
    assert (tmp_path / "seen.txt").read_text() == "rank 1"


def _sum_of_ranks(rank: int, base: int, out: Path) -> None:
    dist.init_process_group("gloo")  # from torchrun's environment variables, as vidcorr's ranks join
    total = torch.tensor([base + rank])
    dist.all_reduce(total)
    (out / f"sum{rank}.txt").write_text(str(int(total)))
    dist.destroy_process_group()


def test_two_groups_at_once_each_meet_in_their_own_store(tmp_path):
    """As two tests' ranks do side by side under pytest-xdist."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with forked_ranks(_sum_of_ranks, (10, tmp_path / "a")) as a, \
            forked_ranks(_sum_of_ranks, (100, tmp_path / "b")) as b:
        _join(a)
        _join(b)
    assert [(tmp_path / group / f"sum{r}.txt").read_text() for group in "ab" for r in (0, 1)] == \
           ["21", "21", "201", "201"]
