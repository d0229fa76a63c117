"""Shared fixtures. Real data lives in ../shared/data beside the repository (as in CI)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tracking_helpers import reduced_copy

from vidcorr.cli import main
from vidcorr.io.tracking import read_otb_boxes, read_vot_boxes, write_otb_boxes

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDCORR_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"

# Under pytest-xdist (scripts/test.sh) each worker is one process of several on the same cores: one
# torch thread each, or two workers' thread pools contend (the 2-core suite ran 1.7x faster so).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture
def one_thread():
    """One intra-op thread for training tests: on the 2-core CI box, video decoding threads and a
    second torch thread only contend (a UVC step is several times slower with 2 threads under load).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (CI places ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(DATA)


@pytest.fixture(scope="session")
def davis2016_root() -> Path:
    return _require(DATA / "davis2016")


@pytest.fixture(scope="session")
def davis2017_fixtures() -> Path:
    return _require(DATA / "davis2017-fixtures")


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory, davis2016_root) -> Path:
    """The first 6 frames and masks of car-shadow as a one-sequence DAVIS root."""
    root = tmp_path_factory.mktemp("davis")
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        src = davis2016_root / kind / "480p" / "car-shadow"
        dst = root / kind / "480p" / "car-shadow"
        dst.mkdir(parents=True)
        for f in sorted(src.glob(f"*.{ext}"))[:6]:
            shutil.copy(f, dst / f.name)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("car-shadow\n")
    return root


@pytest.fixture(scope="session")
def two_clips(tmp_path_factory, davis2016_root) -> Path:
    """The first 4 frames and masks of blackswan and car-shadow as a two-sequence DAVIS root."""
    root = tmp_path_factory.mktemp("davis2")
    for seq in ("blackswan", "car-shadow"):
        for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            dst = root / kind / "480p" / seq
            dst.mkdir(parents=True)
            for f in sorted((davis2016_root / kind / "480p" / seq).glob(f"*.{ext}"))[:4]:
                shutil.copy(f, dst / f.name)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("blackswan\ncar-shadow\n")
    return root


SHORT_TRAINING_VIDEOS = ("dog-agility", "rollerblade", "motorbike")  # 25, 35, 43 frames: cheap to decode


@pytest.fixture(scope="session")
def short_list(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A list file of three short shared training videos (`SHORT_TRAINING_VIDEOS`)."""
    listing = tmp_path_factory.mktemp("data") / "short.txt"
    listing.write_text("".join(f"{data_dir / 'videos' / 'davis2016-train' / name}.mp4\n"
                               for name in SHORT_TRAINING_VIDEOS))
    return listing


@dataclass(frozen=True)
class DemoRun:
    out: Path  # its output folder: copy it before changing anything in it
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """One `vidcorr demo --size 96 --features lab-pixels` run, shared by the tests that read its output
    or what it printed: each run costs seconds (40 frames: a 480p overlay video, the DAVIS scoring)."""
    out = tmp_path_factory.mktemp("demo_run") / "demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["demo", "--out", str(out), "--size", "96", "--features", "lab-pixels"])
    return DemoRun(out, code, stdout.getvalue(), stderr.getvalue())


# The test_video_* files' real video.
@pytest.fixture(scope="module")
def real_video(data_dir):
    return data_dir / "videos/davis2016-train/bear.mp4"


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """SIGINT handled as in an interactive shell. A job started with ``&`` from a script (a CI
    runner, nohup) inherits SIGINT ignored, and training rightly leaves an ignored signal alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def otb_root(tmp_path, data_dir):
    """Soccer, first 30 frames, 320x180 (half size), in the OTB layout."""
    src = data_dir / "tracking" / "otb" / "Soccer"
    root = tmp_path / "otb"
    boxes = reduced_copy(sorted((src / "img").glob("*.jpg")), read_otb_boxes(src / "groundtruth_rect.txt"),
                         root / "Soccer" / "img", 2, lambda i: f"{i + 1:04d}.jpg")
    write_otb_boxes(root / "Soccer" / "groundtruth_rect.txt", boxes)
    return root


@pytest.fixture
def vot_root(tmp_path, data_dir):
    """ball1, first 30 frames, 320x180 (quarter size), in the VOT layout with 4-value lines."""
    src = data_dir / "tracking" / "vot2015" / "ball1"
    root = tmp_path / "vot"
    boxes = reduced_copy(sorted(src.glob("*.jpg")), read_vot_boxes(src / "groundtruth.txt"),
                         root / "ball1", 4, lambda i: f"{i + 1:08d}.jpg")
    (root / "ball1" / "groundtruth.txt").write_text("".join(",".join(f"{v:.3f}" for v in b) + "\n" for b in boxes))
    return root
