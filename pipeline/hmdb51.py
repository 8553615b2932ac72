"""The official HMDB51 split files: ``<class>_test_split<N>.txt``, one per class and split.

Each line is ``<clip>.avi <flag>`` (1 train, 2 test, 0 unused in that split). The class list is every class
named by a split file, sorted, so labels are the same for the three splits.
"""

import re
from pathlib import Path

from lsvit.pipeline.splits import ClipEntry, SplitError, SplitSpec, read_lines, shown, unsafe_reason

DEFAULT_SPLITS_DIRNAME = "testTrainMulti_7030_splits"
SUBSETS = ("train", "test", "unused")
FLAGS = {"1": "train", "2": "test", "0": "unused"}
SPLITS = (1, 2, 3)
_FILE_RE = re.compile(r"(?P<cls>.+)_test_split(?P<n>[0-9]+)\.txt", re.DOTALL)


def find_splits_dir(data_root: Path | None, splits_dir: Path | None = None) -> Path:
    """Locates the folder of ``<class>_test_split<N>.txt`` files.

    Args:
        data_root: The HMDB51 tree ``<data-root>/<class>/<clip>.avi`` (None: ``splits_dir`` must be given).
        splits_dir: An explicit folder; when given it is used as is (it must exist).

    Returns:
        The splits folder.

    Raises:
        SplitError: If no such folder exists.
    """
    if splits_dir is not None or data_root is None:
        _check_splits_dir(splits_dir)
        return splits_dir
    default = data_root / DEFAULT_SPLITS_DIRNAME
    if default.is_dir():
        return default
    if not data_root.is_dir():
        state = "is not a folder" if data_root.exists() else "does not exist"
        raise SplitError(
            f"data root {data_root} {state}; pass --data-root <HMDB51 folder> "
            f"(run `lsvit-pipeline synth` to make a synthetic one)"
        )
    found = sorted(p.parent for p in data_root.rglob("*_test_split1.txt"))
    if not found:
        raise SplitError(
            f"no split files (*_test_split1.txt) under {data_root}; pass --splits-dir <folder of "
            f"the official {DEFAULT_SPLITS_DIRNAME} files, or test_train_splits.rar>"
        )
    return found[0]


def _check_splits_dir(splits_dir: Path) -> None:
    if not splits_dir.is_dir():
        state = "is not a folder" if splits_dir.exists() else "does not exist"
        raise SplitError(
            f"splits folder {splits_dir} {state}; pass --splits-dir <folder of <class>_test_split<N>.txt files>"
        )


def _split_files(splits_dir: Path) -> dict[str, dict[int, Path]]:
    _check_splits_dir(splits_dir)
    files: dict[str, dict[int, Path]] = {}
    for p in splits_dir.iterdir():
        m = _FILE_RE.fullmatch(p.name)
        if m and p.is_file():
            problem = unsafe_reason(m["cls"], "class name")
            if problem:
                raise SplitError(
                    f"split file {shown(p.name)} in {splits_dir}: {problem}; rename or remove that file"
                )
            files.setdefault(m["cls"], {})[int(m["n"])] = p
    if not files:
        raise SplitError(
            f"no <class>_test_split<N>.txt files in {splits_dir}; pass --splits-dir <folder of "
            f"the official {DEFAULT_SPLITS_DIRNAME} files>"
        )
    return files


_LINE_RE = re.compile(r"(?P<name>.*?)[ \t]+(?P<flag>[^ \t]+)")


def _parse_file(path: Path, cls: str, label: int) -> list[ClipEntry]:
    clips: list[ClipEntry] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(read_lines(path), start=1):
        line = raw.rstrip(" \t")  # the official files end every line with a space
        if not line.strip(" \t"):
            continue
        m = _LINE_RE.fullmatch(line)  # one run of spaces or tabs separates the name from the flag
        if not m:
            raise SplitError(
                f"{path}:{lineno}: malformed line {raw!r}; expected '<clip name> <flag>' with "
                f"flag 1 (train), 2 (test) or 0 (unused)"
            )
        name, flag = m["name"].lstrip(" \t"), m["flag"]
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
    return SplitSpec(split=split, classes=classes, clips=clips, subsets=SUBSETS)
