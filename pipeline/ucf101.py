"""The official UCF101 lists (``ucfTrainTestlist/`` of UCF101TrainTestSplits-RecognitionTask.zip).

- ``classInd.txt``: ``<index> <Class>``, 1-based, in case-insensitive alphabetical order (``Hammering`` = 35
  before ``HammerThrow`` = 36), so labels come from it, never from a sort of the class folders.
- ``trainlist0N.txt``: ``<ClassFolder>/v_<Class>_gGG_cCC.avi <index>``; ``testlist0N.txt``: the same
  paths without a label. The class is the folder part: the folder ``HandstandPushups`` holds files named
  ``v_HandStandPushups_*``.
- A group ``gGG`` of a class is cut from one source video; the official lists never put one group in
  both train and test. Lists that do (edited by hand) are read, with a note that accuracy will be inflated.

Lines are read like HMDB51's split files (UTF-8, a BOM dropped, ``\\r\\n`` or ``\\n``), names are checked by
the same :func:`lsvit.pipeline.splits.unsafe_reason`.
"""

import re
from pathlib import Path

from lsvit.pipeline.splits import ClipEntry, SplitError, SplitSpec, read_lines, shown, unsafe_reason

DEFAULT_SPLITS_DIRNAME = "ucfTrainTestlist"
CLASS_FILE = "classInd.txt"
SPLITS = (1, 2, 3)
SUBSETS = ("train", "test")
_CLASS_LINE = re.compile(r"(?P<index>[0-9]+)[ \t]+(?P<cls>.*)")
_LABELLED = re.compile(r"(?P<path>.*?)[ \t]+(?P<label>[^ \t]+)")
_GROUP = re.compile(r"_g(?P<g>[0-9]+)_c[0-9]+\.[A-Za-z0-9]+$")
_MAX_SHOWN = 3


def find_lists_dir(data_root: Path | None, splits_dir: Path | None = None) -> Path:
    """Locates the folder holding ``classInd.txt`` and the train/test lists.

    Tried in order: ``splits_dir``; ``<data-root>/ucfTrainTestlist``; ``ucfTrainTestlist`` next to the data
    root (the zip and the video archive are often unpacked side by side); the first ``classInd.txt`` under
    the data root.

    Args:
        data_root: The UCF101 tree ``<data-root>/<Class>/v_*.avi`` (None: ``splits_dir`` must be given).
        splits_dir: An explicit folder; when given it must hold ``classInd.txt``.

    Returns:
        The lists folder.

    Raises:
        SplitError: No such folder.
    """
    if splits_dir is not None or data_root is None:
        if not (splits_dir / CLASS_FILE).is_file():
            state = "does not exist" if not splits_dir.exists() else f"has no {CLASS_FILE}"
            raise SplitError(
                f"splits folder {splits_dir} {state}; pass --splits-dir <the {DEFAULT_SPLITS_DIRNAME} folder "
                "with classInd.txt, trainlist0N.txt and testlist0N.txt>"
            )
        return splits_dir
    tries = [data_root / DEFAULT_SPLITS_DIRNAME, data_root.parent / DEFAULT_SPLITS_DIRNAME]
    for d in tries:
        if (d / CLASS_FILE).is_file():
            return d
    if not data_root.is_dir():
        state = "is not a folder" if data_root.exists() else "does not exist"
        raise SplitError(f"data root {data_root} {state}; pass --data-root <UCF101 folder of class folders>")
    found = sorted(p.parent for p in data_root.rglob(CLASS_FILE))
    if not found:
        raise SplitError(
            f"no {CLASS_FILE} in {tries[0]}, {tries[1]} or under {data_root}; pass --splits-dir <the "
            f"{DEFAULT_SPLITS_DIRNAME} folder of UCF101TrainTestSplits-RecognitionTask.zip>"
        )
    return found[0]


def load_classes(lists_dir: Path) -> list[str]:
    """The classes of ``classInd.txt`` in label order (its 1-based index minus one).

    Raises:
        SplitError: A malformed line, an index out of order, a duplicate or unsafe class name.
    """
    path = lists_dir / CLASS_FILE
    classes: list[str] = []
    for lineno, raw in enumerate(read_lines(path), start=1):
        line = raw.strip(" \t")
        if not line:
            continue
        m = _CLASS_LINE.fullmatch(line)
        if not m:
            raise SplitError(f"{path}:{lineno}: malformed line {raw!r}; expected '<index> <ClassName>'")
        cls = m["cls"]
        if problem := unsafe_reason(cls, "class name"):
            raise SplitError(f"{path}:{lineno}: {problem}; fix {CLASS_FILE}")
        if int(m["index"]) != len(classes) + 1:
            raise SplitError(
                f"{path}:{lineno}: index {m['index']} out of order; the indices must run 1, 2, ... "
                f"(expected {len(classes) + 1})"
            )
        if cls in classes:
            raise SplitError(
                f"{path}:{lineno}: class {shown(cls)} already has index {classes.index(cls) + 1}"
            )
        classes.append(cls)
    if not classes:
        raise SplitError(f"{path} lists no classes; restore the official {CLASS_FILE}")
    return classes


def _read_list(path: Path, subset: str, index: dict[str, int], seen: dict[str, str]) -> list[ClipEntry]:
    clips: list[ClipEntry] = []
    for lineno, raw in enumerate(read_lines(path), start=1):
        line = raw.strip(" \t")
        if not line:
            continue
        rel, label = line, None
        m = _LABELLED.fullmatch(line)
        if subset == "train":  # train lines carry the 1-based label; test lines are paths alone
            if not m:
                raise SplitError(
                    f"{path}:{lineno}: malformed line {raw!r}; expected '<Class>/<clip>.avi <index>'"
                )
            rel, label = m["path"], m["label"]
        elif m and m["label"].isdigit():  # unofficial copies label their test lists too: checked alike
            rel, label = m["path"], m["label"]
        folder, sep, name = rel.partition("/")
        if not sep:
            raise SplitError(
                f"{path}:{lineno}: {shown(rel)} has no class folder; expected '<Class>/<clip>.avi'"
            )
        if folder not in index:
            raise SplitError(
                f"{path}:{lineno}: class folder {shown(folder)} is not in {CLASS_FILE}; fix the line or "
                f"restore the official lists"
            )
        if label is not None and label != str(index[folder] + 1):
            raise SplitError(
                f"{path}:{lineno}: label {label!r}, but {CLASS_FILE} gives {folder} index {index[folder] + 1}"
            )
        if rel in seen:
            raise SplitError(f"{path}:{lineno}: clip {shown(rel)} already listed ({seen[rel]}); remove one")
        seen[rel] = f"{path.name}:{lineno}"
        clips.append(ClipEntry(name, folder, index[folder], subset, unsafe_reason(name)))
    return clips


def straddling_groups(clips: list[ClipEntry]) -> list[str]:
    """``<Class>/gGG`` of every group with clips in both train and test (none in the official lists).

    Args:
        clips: The clips of one split.

    Returns:
        The groups, sorted.
    """
    groups: dict[str, set[str]] = {}
    for c in clips:
        if m := _GROUP.search(c.name):
            groups.setdefault(f"{c.cls}/g{int(m['g']):02d}", set()).add(c.subset)
    return sorted(g for g, subsets in groups.items() if len(subsets) > 1)


def load_split(lists_dir: Path, split: int) -> SplitSpec:
    """Reads one official split: ``trainlist0<split>.txt`` and ``testlist0<split>.txt``.

    Args:
        lists_dir: The folder with ``classInd.txt`` and the lists.
        split: 1, 2 or 3.

    Returns:
        The split's classes (``classInd.txt`` order) and clips (train, then test; unsafe names included
        with ``problem`` set).

    Raises:
        SplitError: A missing or malformed file, a label that contradicts ``classInd.txt``, an unknown
            class folder, or a clip listed twice.
    """
    if split not in SPLITS:
        raise SplitError(f"split {split!r} is not an official UCF101 split; allowed: 1, 2, 3")
    classes = load_classes(lists_dir)
    index = {c: i for i, c in enumerate(classes)}
    clips: list[ClipEntry] = []
    seen: dict[str, str] = {}
    for subset, stem in (("train", "trainlist"), ("test", "testlist")):
        path = lists_dir / f"{stem}{split:02d}.txt"
        if not path.is_file():
            raise SplitError(f"{path} does not exist; restore it or pass the complete --splits-dir")
        clips += _read_list(path, subset, index, seen)
    notes = []
    if straddle := straddling_groups(clips):
        notes.append(
            f"{len(straddle)} source-video group(s) of split {split} have clips in both train and test "
            f"(e.g. {', '.join(straddle[:_MAX_SHOWN])}): test accuracy will be inflated; the official lists "
            "never do this"
        )
    return SplitSpec(split=split, classes=classes, clips=clips, subsets=SUBSETS, notes=tuple(notes))
