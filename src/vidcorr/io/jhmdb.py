"""JHMDB reader: frames, 15 joint positions per frame, train/test splits (METHODS.md §6.2).

Layout (the official J-HMDB release)::

    ROOT/Rename_Images/<class>/<video>/00001.png ...               frames, 1-based names
    ROOT/joint_positions/<class>/<video>/joint_positions.mat        pos_img: (2, 15, T), MATLAB 1-based
    <class>_test_split<n>.txt                                       "<video>.avi 1|2" (1 = train, 2 = test)

Split files are looked for in the folder given (``splits``, which must hold the split's files), else
ROOT and ROOT/splits; when these hold none every video found is used (and the caller should say so). Joint coordinates are returned
0-based (``pos_img - 1``, as UVC / CRW / STT do) in pixels of the original frame, with pixel
centres at integer positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from vidcorr.errors import InputError
from vidcorr.io.roots import misplaced_root_hint, names_held
from vidcorr.io.images import list_frame_files
from vidcorr.io.text import read_text

# Joint order of joint_positions.mat (J-HMDB README); index = channel.
JOINT_NAMES: tuple[str, ...] = (
    "neck", "belly", "face", "right_shoulder", "left_shoulder", "right_hip", "left_hip",
    "right_elbow", "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist",
    "right_ankle", "left_ankle",
)
# The skeleton UVC (jhmdb branch), CRW and STT draw (child, parent): the parent array `pa` of
# their `vis_pose`, without its self-loop on the belly.
SKELETON_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (2, 0), (3, 0), (4, 0), (5, 1), (6, 1), (7, 3), (8, 4),
    (9, 5), (10, 6), (11, 7), (12, 8), (13, 9), (14, 10),
)
NUM_JOINTS = len(JOINT_NAMES)
TRAIN, TEST = 1, 2
_SPLIT_NAME = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d+)\.txt$")


@dataclass(frozen=True)
class JhmdbVideo:
    """One clip: ``name`` is "<class>/<video>"; frames and joints files as found on disk."""

    name: str
    frames_dir: Path
    joints_file: Path

    def frame_files(self) -> list[Path]:
        """PNG frames in natural order (00001.png, 00002.png, ...)."""
        return list_frame_files(self.frames_dir)

    def joints(self) -> np.ndarray:
        """(T, 15, 2) float64 joint positions, 0-based pixels; T checked against the frames."""
        joints = read_joints(self.joints_file)
        n_frames = len(self.frame_files())
        if joints.shape[0] != n_frames:
            raise InputError(self.joints_file, f"pos_img has {joints.shape[0]} frames but "
                             f"{self.frames_dir} has {n_frames} frame images")
        return joints


def read_joints(path: str | Path) -> np.ndarray:
    """joint_positions.mat -> (T, 15, 2) float64 (x, y), 0-based (MATLAB ``pos_img - 1``)."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise InputError(path, "joint positions file not found") from None
    # MatReadError (a file of a few bytes: "appears to be truncated") is no ValueError: a traceback.
    except (ValueError, TypeError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise InputError(path, f"cannot read MATLAB file: {err}") from None
    if "pos_img" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(path, f"no 'pos_img' variable (found: {', '.join(keys) or 'none'})")
    pos = np.asarray(mat["pos_img"])
    if pos.ndim != 3 or pos.shape[:2] != (2, NUM_JOINTS) or pos.shape[2] == 0:
        raise InputError(path, f"pos_img has shape {pos.shape}; expected (2, {NUM_JOINTS}, T) with T > 0")
    if not np.issubdtype(pos.dtype, np.number) or not np.all(np.isfinite(pos)):
        raise InputError(path, "pos_img holds non-numeric or non-finite values")
    return pos.astype(np.float64).transpose(2, 1, 0) - 1.0


def read_split_file(path: str | Path) -> dict[str, int]:
    """``<class>_test_split<n>.txt`` -> {video name without .avi: 1 (train) | 2 (test)}."""
    path = Path(path)
    videos: dict[str, int] = {}
    for lineno, line in enumerate(read_text(path, "split file").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("1", "2"):
            raise InputError(path, f"line {lineno}: expected '<video>.avi 1|2', got {line.strip()!r}")
        videos[parts[0].removesuffix(".avi")] = int(parts[1])
    if not videos:
        raise InputError(path, "split file lists no videos")
    return videos


def is_jhmdb_root(folder: Path) -> bool:
    """Whether ``folder`` has JHMDB's two folders (frames and joints)."""
    return (folder / "Rename_Images").is_dir() and (folder / "joint_positions").is_dir()


class JhmdbDataset:
    """The videos of one JHMDB split (or every video when no split files exist).

    Args:
        root: JHMDB root holding Rename_Images/ and joint_positions/.
        split: split number n of ``<class>_test_split<n>.txt`` (1, 2 or 3); default: that of the split
            files given as a list (which must agree with it when given), else 1.
        subset: "test" (label 2, the propagation benchmark) or "train" (label 1).
        splits: a folder with the split files, or a list of split files; default: ROOT, ROOT/splits.
        videos: keep only these "<class>/<video>" names, in this order.
    Attributes: ``videos`` (list of `JhmdbVideo`), ``split_files`` (the files used, may be empty).
    """

    def __init__(self, root: str | Path, split: int | None = None, subset: str = "test",
                 splits: str | Path | list[Path] | None = None, videos: list[str] | None = None):
        self.root = Path(root)
        present = [sub for sub in ("Rename_Images", "joint_positions") if (self.root / sub).is_dir()]
        if not present:  # not "ROOT/Rename_Images: missing" for a ROOT that is Rename_Images itself
            raise InputError(self.root, "not a JHMDB root (Rename_Images/, joint_positions/)"
                             + misplaced_root_hint(self.root, is_jhmdb_root))
        for sub in ("Rename_Images", "joint_positions"):
            if sub not in present:
                raise InputError(self.root / sub, "missing: a JHMDB root holds Rename_Images/ and joint_positions/")
        if subset not in ("test", "train"):
            raise ValueError(f"subset must be 'test' or 'train', got {subset!r}")
        split = _split_number(split, splits)
        self.split, self.subset = split, subset
        self.split_files = _find_split_files(self.root, split, splits)
        found = self._videos_on_disk()
        listed = self._listed(found) if self.split_files else found
        if videos is not None:
            unknown = [v for v in videos if v not in listed]
            if unknown:
                where = (f"not in the split {split} {subset} set, which lists" if self.split_files else
                         "not under Rename_Images/ (without split files every video there is used), which holds")
                raise InputError(self.root,
                                 f"unknown video(s) {', '.join(unknown)}: {where} {names_held(list(listed))}")
            listed = {v: listed[v] for v in videos}
        if not listed:
            raise InputError(self.root, f"no {subset} videos found" if videos is not None or not self.split_files
                             else self._none_marked())
        self.videos: list[JhmdbVideo] = list(listed.values())

    def __len__(self) -> int:
        return len(self.videos)

    def describe(self) -> str:
        """Where the video list came from, for logs and results files."""
        if not self.split_files:
            return f"all {len(self)} videos found (no *_test_split{self.split}.txt split files)"
        return f"split {self.split} {self.subset} set from {len(self.split_files)} split file(s), {len(self)} videos"

    def _videos_on_disk(self) -> dict[str, JhmdbVideo]:
        found = {}
        for frames_dir in sorted(p for p in (self.root / "Rename_Images").glob("*/*") if p.is_dir()):
            name = f"{frames_dir.parent.name}/{frames_dir.name}"
            joints = self.root / "joint_positions" / name / "joint_positions.mat"
            if not joints.is_file():
                raise InputError(joints, f"joint positions of video {name} not found")
            found[name] = JhmdbVideo(name, frames_dir, joints)
        return found

    def _none_marked(self) -> str:
        """Why split files that were read left no video of the subset: what they mark instead (a file of
        1s reads like "split 1", but 1 is JHMDB's train label and 2 its test label)."""
        wanted, other = (TEST, TRAIN) if self.subset == "test" else (TRAIN, TEST)
        marked = sum(1 for path in self.split_files for label in read_split_file(path).values() if label == other)
        return (f"no {self.subset} videos: the split {self.split} file(s) mark {marked} video{'s' * (marked != 1)} "
                f"as {other} ({'train' if other == TRAIN else 'test'}) and none as {wanted} ({self.subset}): "
                + ", ".join(str(path) for path in self.split_files))

    def _listed(self, found: dict[str, JhmdbVideo]) -> dict[str, JhmdbVideo]:
        wanted = TEST if self.subset == "test" else TRAIN
        listed = {}
        for path in self.split_files:
            cls = _SPLIT_NAME.match(path.name).group("cls")
            for video, label in read_split_file(path).items():
                if label != wanted:
                    continue
                name = f"{cls}/{video}"
                if name not in found:
                    raise InputError(path, f"lists video {video} but {self.root / 'Rename_Images' / name} "
                                     "(with its joint_positions.mat) is missing")
                listed[name] = found[name]
        return listed


def _split_number(split: int | None, splits: str | Path | list[Path] | None) -> int:
    """The split evaluated: that of split files given by name (``--split-file``; one number for all of
    them, ``split`` agreeing), else ``split`` or 1. The files' own number was ignored: a
    ``..._test_split1.txt`` read with ``--split 2`` was recorded as "split 2 test set"."""
    if not isinstance(splits, list):
        return 1 if split is None else split
    numbers = {Path(p): int(m["n"]) for p in splits if (m := _SPLIT_NAME.match(Path(p).name))}
    if len(set(numbers.values())) > 1:
        listed = ", ".join(f"{p.name} (split {n})" for p, n in numbers.items())
        raise InputError(next(iter(numbers)), f"split files of different splits given together: {listed}")
    for path, number in numbers.items():
        if split is not None and number != split:
            raise InputError(path, f"is a split {number} file, but --split {split} was asked for")
    return next(iter(numbers.values()), 1 if split is None else split)


def _find_split_files(root: Path, split: int, splits: str | Path | list[Path] | None) -> list[Path]:
    if isinstance(splits, list):
        for path in splits:
            if not Path(path).is_file():
                raise InputError(path, "split file not found")
            if not _SPLIT_NAME.match(Path(path).name):
                raise InputError(path, "split files are named <class>_test_split<n>.txt")
        return [Path(p) for p in splits]
    if splits is not None:
        return _split_files_in(Path(splits), split)
    return sorted(p for folder in (root, root / "splits") if folder.is_dir()
                  for p in folder.glob(f"*_test_split{split}.txt"))


def _split_files_in(folder: Path, split: int) -> list[Path]:
    """The split files of a folder given as --splits: at least one, since every video found is used
    only where no split file was asked for (an --splits folder without them evaluated all videos,
    one INFO line saying so, as if it had not been given)."""
    if not folder.is_dir():
        raise InputError(folder, "splits folder not found")
    files = sorted(folder.glob(f"*_test_split{split}.txt"))
    if not files:
        others = sorted({int(m["n"]) for p in folder.iterdir() if (m := _SPLIT_NAME.match(p.name))})
        held = f" (it holds split {', '.join(map(str, others))}: --split N picks one)" if others else ""
        raise InputError(folder, f"no <class>_test_split{split}.txt files in the --splits folder{held}")
    return files
