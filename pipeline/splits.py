"""The official HMDB51 split files: which clip is in which class and subset.

A clip's class and label come from the split file that lists it, never from its name (hundreds of HMDB51
clip names contain another class's name, e.g. ``..._kiss_...`` inside ``hug``).
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from lsvit.pipeline.errors import LsvitError

DEFAULT_SPLITS_DIRNAME = "testTrainMulti_7030_splits"
SUBSETS = ("train", "test", "unused")
FLAGS = {"1": "train", "2": "test", "0": "unused"}
SPLITS = (1, 2, 3)
_FILE_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d+)\.txt$")


class SplitError(LsvitError, ValueError):
    """A split folder, split file or split line that cannot be used."""


@dataclass(frozen=True)
class ClipEntry:
    """One line of a split file."""

    name: str
    cls: str
    label: int
    subset: str
    problem: str | None = None

    @property
    def rel_path(self) -> str:
        """Path relative to the data root: ``<class>/<name>``."""
        return f"{self.cls}/{self.name}"


@dataclass(frozen=True)
class SplitSpec:
    """All clips of one official split, in class order then file order."""

    split: int
    classes: list[str]
    clips: list[ClipEntry] = field(repr=False)

    def counts(self) -> dict[str, dict[str, int]]:
        """Clips per subset and class; every subset and class is present (0 allowed).

        Returns:
            ``{subset: {class: n}}`` for ``train``, ``test`` and ``unused``.
        """
        out = {s: dict.fromkeys(self.classes, 0) for s in SUBSETS}
        for c in self.clips:
            out[c.subset][c.cls] += 1
        return out


def unsafe_reason(name: str) -> str | None:
    """Why a clip name cannot be joined to its class folder safely, or None when it can.

    Args:
        name: The clip file name as written in the split file.

    Returns:
        A short reason, or None for a plain file name.
    """
    if not name.strip():
        return "empty clip name"
    if "/" in name or "\\" in name:
        return f"clip name {name!r} contains a path separator"
    if name in (".", "..") or name.startswith(".."):
        return f"clip name {name!r} refers to a parent or current folder"
    if any(ord(ch) < 32 for ch in name):
        return f"clip name {name!r} contains a NUL or control character"
    return None


def find_splits_dir(data_root: Path, splits_dir: Path | None = None) -> Path:
    """Locates the folder of ``<class>_test_split<N>.txt`` files.

    Args:
        data_root: The HMDB51 tree ``<data-root>/<class>/<clip>.avi``.
        splits_dir: An explicit folder; when given it is used as is (it must exist).

    Returns:
        The splits folder.

    Raises:
        SplitError: If no such folder exists.
    """
    if splits_dir is not None:
        if not splits_dir.is_dir():
            raise SplitError(
                f"splits folder {splits_dir} does not exist; pass --splits-dir <folder of "
                f"<class>_test_split<N>.txt files>"
            )
        return splits_dir
    default = data_root / DEFAULT_SPLITS_DIRNAME
    if default.is_dir():
        return default
    if not data_root.is_dir():
        raise SplitError(
            f"data root {data_root} does not exist; pass --data-root <HMDB51 folder> "
            f"(run `lsvit-pipeline synth` to make a synthetic one)"
        )
    found = sorted(p.parent for p in data_root.rglob("*_test_split1.txt"))
    if not found:
        raise SplitError(
            f"no split files (*_test_split1.txt) under {data_root}; pass --splits-dir <folder of "
            f"the official {DEFAULT_SPLITS_DIRNAME} files>"
        )
    return found[0]


def _split_files(splits_dir: Path) -> dict[str, dict[int, Path]]:
    if not splits_dir.is_dir():
        raise SplitError(
            f"splits folder {splits_dir} does not exist; pass --splits-dir <folder of "
            f"<class>_test_split<N>.txt files>"
        )
    files: dict[str, dict[int, Path]] = {}
    for p in splits_dir.iterdir():
        m = _FILE_RE.match(p.name)
        if m and p.is_file():
            files.setdefault(m["cls"], {})[int(m["n"])] = p
    if not files:
        raise SplitError(
            f"no <class>_test_split<N>.txt files in {splits_dir}; pass --splits-dir <folder of "
            f"the official {DEFAULT_SPLITS_DIRNAME} files>"
        )
    return files


def _parse_file(path: Path, cls: str, label: int) -> list[ClipEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: cannot read split file ({e}); fix or replace it") from e
    clips: list[ClipEntry] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()  # the official files end every line with a space
        if not line:
            continue
        name, sep, flag = line.rpartition(" ")
        if not sep:
            raise SplitError(
                f"{path}:{lineno}: malformed line {raw!r}; expected '<clip name> <flag>' with "
                f"flag 1 (train), 2 (test) or 0 (unused)"
            )
        if flag not in FLAGS:
            raise SplitError(
                f"{path}:{lineno}: bad flag {flag!r}; allowed flags are 1 (train), 2 (test), 0 (unused)"
            )
        if name in seen:
            raise SplitError(
                f"{path}:{lineno}: clip {name!r} already listed on line {seen[name]}; remove the duplicate"
            )
        seen[name] = lineno
        clips.append(ClipEntry(name, cls, label, FLAGS[flag], unsafe_reason(name)))
    return clips


def load_split(splits_dir: Path, split: int) -> SplitSpec:
    """Reads one official split.

    The class list is every class named by any split file in the folder, sorted, so labels are the same
    for all three splits; each class must have a file for the requested split.

    Args:
        splits_dir: Folder of ``<class>_test_split<N>.txt`` files.
        split: 1, 2 or 3.

    Returns:
        The split's classes and clips (unsafe names included, with ``problem`` set).

    Raises:
        SplitError: Missing folder or file, malformed line, bad flag or duplicate clip in a class.
    """
    if split not in SPLITS:
        raise SplitError(f"split {split!r} is not an official split; allowed: 1, 2, 3")
    files = _split_files(splits_dir)
    classes = sorted(files)
    clips: list[ClipEntry] = []
    for label, cls in enumerate(classes):
        path = files[cls].get(split)
        if path is None:
            raise SplitError(
                f"{splits_dir / f'{cls}_test_split{split}.txt'} does not exist (class {cls!r} "
                f"has other splits); restore it or pass the complete --splits-dir"
            )
        clips.extend(_parse_file(path, cls, label))
    return SplitSpec(split=split, classes=classes, clips=clips)


def load_all_clips(splits_dir: Path) -> dict[str, list[str]]:
    """Distinct clip names per class over the three official splits.

    Args:
        splits_dir: Folder of ``<class>_test_split<N>.txt`` files.

    Returns:
        ``{class: sorted clip names}`` with classes sorted.

    Raises:
        SplitError: As :func:`load_split`.
    """
    names: dict[str, set[str]] = {}
    for split in SPLITS:
        spec = load_split(splits_dir, split)
        for cls in spec.classes:
            names.setdefault(cls, set())
        for c in spec.clips:
            names[c.cls].add(c.name)
    return {cls: sorted(v) for cls, v in sorted(names.items())}
