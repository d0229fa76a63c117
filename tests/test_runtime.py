"""vidcorr.runtime: the CPU allocator settings the command line applies before propagating."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from api_helpers import _crw_small
from synthetic import PatchEncoder
from test_propagate import _texture_video

import vidcorr
import vidcorr.cli as cli
from vidcorr.runtime import bound_cpu_memory

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's")

# After a 1 MiB block is freed, does the next 1 MiB block come from mmap (hblks = 1) or the heap?
# glibc's default raises its mmap threshold to the freed size, so the second one lands on the heap.
PROBE = """
import ctypes, sys
from vidcorr.runtime import bound_cpu_memory
if sys.argv[1] == "bounded":
    print("applied", bound_cpu_memory())
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks  # Python itself holds a few mmapped blocks
block = libc.malloc(1 << 20)
print("mmapped", libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _probe(mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "VIDCORR_DEFAULT_MALLOC"))}
    return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True, env=env).stdout


@glibc_only
def test_bounded_heap_serves_large_blocks_by_mmap_every_time() -> None:
    assert "mmapped 0" in _probe("default")  # the creep: the second block reuses the heap
    out = _probe("bounded")
    assert "applied True" in out and "mmapped 1" in out


@glibc_only
def test_a_users_own_malloc_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    assert bound_cpu_memory() is False
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


def test_opting_out_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDCORR_DEFAULT_MALLOC", "1")
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert bound_cpu_memory() is False
    assert "THP_MEM_ALLOC_ENABLE" not in os.environ


def test_propagating_commands_bound_memory_training_does_not(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(cli, "bound_cpu_memory", lambda: calls.append(True))
    missing = str(tmp_path / "missing.mp4")
    assert cli.main(["propagate", missing, "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o")]) == 2
    assert calls == [True]
    assert cli.main(["train", "uvc", "--data", str(tmp_path / "none"), "--recipe", "uvc-cpu",
                     "--autoencoder", str(tmp_path / "ae.safetensors")]) == 2
    assert calls == [True]


def test_the_api_leaves_the_processs_allocator_to_its_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """bound_cpu_memory changes the whole process's malloc: the API offers it (vidcorr.bound_cpu_memory),
    never calls it, where the command line does."""
    assert vidcorr.bound_cpu_memory is bound_cpu_memory and "bound_cpu_memory" in dir(vidcorr)
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)  # what bound_cpu_memory sets first
    monkeypatch.delenv("VIDCORR_DEFAULT_MALLOC", raising=False)
    frames, masks = _texture_video(n_frames=4)
    assert len(list(vidcorr.propagate_masks(frames, masks[0], encoder=PatchEncoder(), preset=_crw_small()))) == 4
    assert "THP_MEM_ALLOC_ENABLE" not in os.environ
