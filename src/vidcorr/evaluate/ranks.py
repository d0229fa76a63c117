"""The eval commands under ``torchrun``: the ranks' shares of a run's items and how they agree.

``torchrun --nproc_per_node=N -m vidcorr eval ...`` starts N processes; each joins the process group
(`vidcorr.train.distributed.init_distributed`: gloo, ``cuda:LOCAL_RANK`` for ``--device cuda``),
takes a balanced share of the items (`balanced_shares`) and writes their outputs itself; rank 0
alone opens the output folder and scores. A plain call is rank 0 of 1 (``Ranks()``: no process
group, its methods no more than a plain call) and runs exactly as before.

Why the ranks coordinate through the process group's key-value store rather than collectives:
ranks finish their shares minutes or hours apart, and a collective waiting that long hits the
process group's timeout; a store polled in a loop waits as long as the work takes and, in the same loop, sees a
peer that failed (`Ranks.fail`) and stops (`PeerFailed`) instead of waiting for ever. Every rank
runs each step that can refuse input (`Ranks.agree`): the lowest rank that failed raises its own
error (printed once, by that rank) and the others raise `PeerFailed`, so all exit non-zero at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from vidcorr.errors import VidcorrError, said_already
from vidcorr.io.atomic import seconds_since_sigterm, sigterm_cleans_up
from vidcorr.runtime import RankRole
# Costs no import time: `vidcorr.train` loads its names on first use, and torch.distributed is torch's own.
from vidcorr.train.distributed import environment_int, init_distributed

log = logging.getLogger(__name__)

T = TypeVar("T")
_POLL_SECONDS = 0.05


# How long the ranks wait for each other once SIGTERM came (then each leaves without the others):
# torchrun sends it to the survivors when a rank died outright (out of memory, SIGKILL), which never
# comes, and SIGKILLs them 30 s later; when it passes on its own SIGTERM every rank stops within a frame.
SIGTERM_PATIENCE_SECONDS = 10.0
GONE = "gone"  # a rank's "exit" once it left without the others (`PeersGone`): who comes later skips the barrier


class PeerFailed(VidcorrError):
    """Another rank failed (and printed why): this one stops too, without repeating the message."""


class PeersGone(VidcorrError):
    """After SIGTERM, other ranks did not come within `SIGTERM_PATIENCE_SECONDS`: this one leaves
    without them (nothing merged, no barrier)."""


@dataclass
class Ranks(RankRole):
    """This process's place among the eval ranks. ``store``: the process group's key-value store,
    None for a single process. ``device``: what this rank runs on (for a single process the
    --device as given, unchanged)."""

    rank: int = 0
    world_size: int = 1
    device: str | torch.device = "cpu"
    store: Any = None
    _steps: int = field(default=0, repr=False)
    _gone: bool = field(default=False, repr=False)  # PeersGone was raised: the later waits end at once

    def _key(self, name: str) -> str:
        # a restarted torchrun group (--max-restarts) shares the agent's store: keys of the attempt
        return f"vidcorr-eval/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{name}"

    def fail(self) -> None:
        """Tell the other ranks that this one failed: they stop at their next check."""
        if self.distributed:
            self.store.set(self._key("failed"), str(self.rank))

    def failed_rank(self) -> int | None:
        if self.distributed and self.store.check([self._key("failed")]):
            return int(self.store.get(self._key("failed")))
        return None

    def check(self) -> None:
        """`PeerFailed` when another rank failed: called between items and between frames."""
        self._stop_if_failed(self.failed_rank())

    def _stop_if_failed(self, failed: int | None) -> None:
        if failed is not None and failed != self.rank:
            raise PeerFailed(f"stopped: rank {failed} of {self.world_size} failed (its error says why)")

    def checked(self, items: Iterable[T]) -> Iterable[T]:
        """``items`` with `check` before each: a rank stops within a frame of a peer's failure
        (a single process: ``items`` themselves)."""
        return self._checked(items) if self.distributed else items

    def _checked(self, items: Iterable[T]) -> Iterator[T]:
        for item in items:
            self.check()
            yield item

    def gather(self, tag: str, value: str, *, heed_failure: bool = True) -> list[str]:
        """Every rank's ``value`` for ``tag`` (called by all ranks, once per tag), in rank order.

        heed_failure: raise `PeerFailed` while waiting once a peer failed; False where every rank,
        failed or not, comes (the end of the items, the exit). `PeersGone` where they do not come
        within `SIGTERM_PATIENCE_SECONDS` of a SIGTERM to this rank."""
        if not self.distributed:
            return [value]
        self.store.set(self._key(f"{tag}/{self.rank}"), value)
        keys = [self._key(f"{tag}/{rank}") for rank in range(self.world_size)]
        while True:
            # A failure is read before the keys, so that a peer that came here and then failed (rank 0
            # raising the error of a step that both ranks failed, `agree`) is seen to have come: read
            # after them, its failure made this rank raise its own error too, printed twice (seen under load).
            failed = self.failed_rank() if heed_failure else None
            if self.store.check(keys):
                return [self.store.get(key).decode() for key in keys]
            self._stop_if_failed(failed)
            since = seconds_since_sigterm()
            if self._gone or (since is not None and since > SIGTERM_PATIENCE_SECONDS):
                self._leave_without([r for r, key in enumerate(keys) if not self.store.check([key])])
            time.sleep(_POLL_SECONDS)

    def left(self, tag: str) -> None:
        """Say, as this rank's value for ``tag``, that it left without the others (`PeersGone`): one
        that comes later must not wait for it at the group's barrier, where gloo failed with
        "Connection reset by peer" once this process was gone."""
        if self.distributed:
            self.store.set(self._key(f"{tag}/{self.rank}"), GONE)

    def _leave_without(self, missing: list[int]) -> None:
        if not self._gone:
            self._gone = True
            log.warning("rank %d: rank(s) %s of %d did not stop within %g s of SIGTERM (killed outright, or still "
                        "at work): leaving without them; the finished items' records are kept for --resume", self.rank,
                        ", ".join(map(str, missing)), self.world_size, SIGTERM_PATIENCE_SECONDS)
        raise PeersGone(f"rank(s) {missing} did not come")

    def agree(self, step: Callable[[], T]) -> T:
        """Run ``step`` on every rank -> this rank's result, once all ranks succeeded. If any
        raised, the lowest of them raises its error and the others `PeerFailed`."""
        if not self.distributed:
            return step()
        self._steps += 1
        error: Exception | None = None
        try:
            result = step()
        except Exception as raised:
            error = raised
        try:
            outcomes = self.gather(f"agree{self._steps}", "ok" if error is None else "failed")
        except PeerFailed:
            if error is not None:  # two failures at once: each rank tells its own
                raise error from None
            raise
        if error is None and "failed" not in outcomes:
            return result
        first = outcomes.index("failed")
        if first == self.rank:
            raise error
        raise PeerFailed(f"stopped: rank {first} of {self.world_size} failed (its error says why)")

    def share(self, tag: str, value: str | None) -> str:
        """Rank 0's ``value`` (text), on every rank."""
        return self.gather(tag, value if self.is_main else "")[0]


def balanced_shares(sizes: Sequence[int], parts: int) -> list[list[int]]:
    """Split items of ``sizes`` (e.g. frame counts) into ``parts`` shares of about equal sums, so that
    the ranks finish together: longest first, each to the least loaded share (ties: the lower
    share, then the earlier item: deterministic). -> each share's item indices, ascending."""
    loads, shares = [0] * parts, [[] for _ in range(parts)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        part = min(range(parts), key=lambda p: (loads[p], p))
        shares[part].append(index)
        loads[part] += sizes[index]
    return [sorted(share) for share in shares]


def my_share(ranks: Ranks, names: Sequence[str], sizes: Sequence[int]) -> list[str]:
    """This rank's items of ``names`` (`balanced_shares` by ``sizes``), in the order of ``names``."""
    return [names[i] for i in balanced_shares(sizes, ranks.world_size)[ranks.rank]]


def threads_per_rank(local_world_size: int) -> int:
    """CPU threads for each of ``local_world_size`` ranks on this machine: OMP_NUM_THREADS when set
    (a per-process setting; torchrun sets it to 1 when unset), else torch's default for the machine
    divided between the local ranks, at least 1, so that N ranks do not oversubscribe the cores."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, torch.get_num_threads() // max(1, local_world_size))


def join(device: str | None) -> Ranks:
    """This process's `Ranks`: under torchrun (WORLD_SIZE > 1) join the process group on this rank's
    device (`init_distributed`) with its share of the CPU threads (`threads_per_rank`); else rank 0
    of 1 on ``device`` as given, without a process group."""
    if environment_int("WORLD_SIZE", 1, 1) == 1:
        return Ranks(device=device or "cpu")
    import torch.distributed as dist

    # gloo on CUDA too: the ranks exchange no tensors, only the store's keys and a final barrier,
    # and NCCL refuses two ranks on one GPU (a way to overlap one rank's decoding with another's model)
    ctx = init_distributed(device, backend="gloo")
    threads = threads_per_rank(environment_int("LOCAL_WORLD_SIZE", ctx.world_size, 1))
    torch.set_num_threads(threads)
    if ctx.rank != 0:  # rank 0 tells what the run does; the others only their errors and progress
        logging.getLogger("vidcorr").setLevel(logging.WARNING)
    log.info("eval over %d ranks (%s): rank 0 on %s, %d CPU thread(s) per rank", ctx.world_size,
             dist.get_backend(), ctx.device, threads)
    # The group's own store (private in torch): one rendezvous, as the process group made it.
    store = dist.distributed_c10d._get_default_store()
    return Ranks(ctx.rank, ctx.world_size, ctx.device, store)


@contextlib.contextmanager
def eval_ranks(device: str | None, command: str) -> Iterator[Ranks]:
    """`join`, and at the end wait for every rank before any leaves the group: under torchrun a
    rank that exits non-zero gets the others killed, maybe halfway through cleaning up after the
    same error. A rank whose peer failed raises `PeerFailed` here (exit non-zero).

    SIGTERM unwinds the block as Ctrl-C does (`sigterm_cleans_up`; exit 143): torchrun sends it to
    every rank when it is stopped itself, and to the others when one rank exits non-zero; Python's
    default had each rank die at once, leaving the hidden folder of the item it was writing. A
    Ctrl-C or SIGTERM that stopped several ranks is said once, by the lowest of them.
    command: "eval davis", for SIGTERM's line."""
    ranks = join(device)
    # From here: a SIGTERM while the ranks meet (torchrun ending them after another rank's setup
    # error) finds nothing written, and Python's default ends the rank silently (docs/metrics.md).
    with sigterm_cleans_up(command, one_output=False):
        if not ranks.distributed:
            yield ranks
            return
        ended = False  # this rank's part is done: what is left is waiting for the others
        try:
            yield ranks
            ended = True
            # Inside the try: a Ctrl-C or SIGTERM here (rank 0 still scoring) went past the barrier
            # below, and rank 0's barrier then failed with gloo's "Connection reset by peer" (exit 1).
            outcomes = ranks.gather("exit", "ok", heed_failure=False)
        except BaseException as error:
            if not isinstance(error, PeerFailed) and not ended:  # a rank stopped while waiting failed nothing
                ranks.fail()
            interrupted = isinstance(error, KeyboardInterrupt)
            try:
                outcomes = ranks.gather("exit", "interrupted" if interrupted else "failed", heed_failure=False)
            except PeersGone:  # after SIGTERM: no barrier either, that would wait for them too
                outcomes = None
                ranks.left("exit")
            _leave_group(ranks, synchronise=outcomes is not None and GONE not in outcomes)
            if outcomes is not None and interrupted and outcomes.index("interrupted") < ranks.rank:
                said_already(error)  # a lower rank says it: one line, not one per rank
            raise
        failed = ranks.failed_rank()  # asked before leaving: rank 0 may hold the store
        _leave_group(ranks, synchronise=GONE not in outcomes)
        if failed is not None:
            raise PeerFailed(f"stopped: rank {failed} of {ranks.world_size} failed (its error says why)")


def _leave_group(ranks: Ranks, synchronise: bool) -> None:
    """`shutdown`, with the group's barrier when ``synchronise``. After a SIGTERM, a rank that came
    to the end may since have been killed outright (the out-of-memory killer: torchrun then sends
    SIGTERM to the rest), and gloo's barrier fails with "Connection reset by peer": a traceback and
    exit 1 in place of the SIGTERM's clean stop. This rank then leaves without it, as it leaves
    ranks that never came (`PeersGone`)."""
    from vidcorr.train.distributed import shutdown

    try:
        shutdown(synchronise=synchronise)
    except RuntimeError as error:
        if seconds_since_sigterm() is None:
            raise
        log.warning("rank %d: another rank left the group before its end (killed outright?): leaving without "
                    "it (%s)", ranks.rank, str(error).split(". ")[0])
        shutdown(synchronise=False)
