"""A user's own dataset: clips in ``<data-root>/<class>/<clip>``, split by a CSV or by a fixed rule.

- With a CSV (``<data-root>/splits.csv``, or ``--splits-dir FILE``): a header naming the columns ``path``,
  ``label`` and ``subset`` (others are ignored), one clip per row. ``path`` is relative to the data root
  and must lie in its class folder, ``<label>/<clip>``; ``subset`` is ``train``, ``val`` or ``test``.
- Without one: every class folder under the data root (sorted, hidden folders skipped) and the video files
  in it, split per class by :func:`stratified_split`: about 30 % of each class's clips to test (HMDB51's
  70/30), whole source videos at a time (``lsvit.pipeline.groups``: ``clip_3.mp4`` and ``clip_4.mp4`` are
  one video's), chosen by a hash of the names, so the split never changes between runs or machines.

Classes are sorted by name (as torchvision's ``ImageFolder`` does); labels index that list. There is one
split, number 1. Names are checked like HMDB51's (``lsvit.pipeline.splits.unsafe_reason``): an unsafe class
name stops the run, an unsafe clip name becomes a recorded failure and is never read.
"""

import csv
import hashlib
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from lsvit.pipeline.groups import source_group
from lsvit.pipeline.splits import ClipEntry, SplitError, SplitSpec, shown, unsafe_reason

CSV_NAME = "splits.csv"
SPLITS = (1,)
SUBSETS = ("train", "val", "test")
COLUMNS = ("path", "label", "subset")
TEST_FRACTION = 0.3
VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".ogv", ".wmv", ".flv", ".3gp", ".ts"}
    | {".mts", ".m2ts", ".y4m"}
)
_MAX_SHOWN = 3


def locate(data_root: Path | None, splits_dir: Path | None = None) -> Path:
    """The CSV to read, or the tree whose class folders are split by rule.

    Args:
        data_root: The dataset tree (None: ``splits_dir`` must be given, as for ``eda --splits-dir``).
        splits_dir: A CSV file, a folder holding ``splits.csv``, or the tree itself.

    Returns:
        A CSV file, or a folder of class folders.

    Raises:
        SplitError: Nothing usable there.
    """
    if splits_dir is not None:
        if splits_dir.is_file():
            return splits_dir
        if (splits_dir / CSV_NAME).is_file():
            return splits_dir / CSV_NAME
        if splits_dir.is_dir() and (data_root is None or splits_dir.resolve() == data_root.resolve()):
            return splits_dir
        state = "does not exist" if not splits_dir.exists() else f"holds no {CSV_NAME}"
        raise SplitError(
            f"--splits-dir {splits_dir} {state}; pass the CSV (columns path,label,subset), or leave "
            "--splits-dir out for a stratified split of --data-root"
        )
    if data_root is None:
        raise SplitError("a folder dataset needs --data-root <folder of class folders> or --splits-dir <CSV>")
    if (data_root / CSV_NAME).is_file():
        return data_root / CSV_NAME
    if not data_root.is_dir():
        state = "is not a folder" if data_root.exists() else "does not exist"
        raise SplitError(f"data root {data_root} {state}; pass --data-root <folder of class folders>")
    return data_root


def load_split(source: Path, split: int = 1) -> SplitSpec:
    """Reads the CSV, or splits the tree's class folders by rule.

    Args:
        source: What :func:`locate` returned.
        split: Must be 1.

    Returns:
        The split (``notes`` say what was skipped and which classes have no test clip).

    Raises:
        SplitError: A malformed CSV, an unsafe class name, or no clips at all.
    """
    if split not in SPLITS:
        raise SplitError(f"split {split!r}: a folder dataset has one split; use --split 1")
    return read_csv(source) if source.is_file() else scan_tree(source)


def _spec(source: Path, rows: list[tuple[str, str, str]], notes: list[str]) -> SplitSpec:
    """The split from ``(class, clip name, subset)`` rows."""
    if not rows:
        raise SplitError(f"{source}: no clips found; see the folder-dataset section of the README")
    classes = sorted({cls for cls, _, _ in rows})
    label = {c: i for i, c in enumerate(classes)}
    clips = [ClipEntry(name, cls, label[cls], subset, unsafe_reason(name)) for cls, name, subset in rows]
    used = {c.subset for c in clips}
    subsets = tuple(s for s in SUBSETS if s != "val" or s in used)
    notes += [f"{source}: no {s} clips" for s in ("train", "test") if s not in used]
    return SplitSpec(split=1, classes=classes, clips=clips, subsets=subsets, notes=tuple(notes))


def read_csv(path: Path) -> SplitSpec:
    """Reads a ``path,label,subset`` CSV (UTF-8, a BOM dropped, any line ends; quoted fields allowed).

    Raises:
        SplitError: Unreadable, no such header, a short row, a bad subset, an unsafe label, a path outside
            its class folder, or a clip listed twice (each names the file and line).
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: cannot read the CSV ({e}); fix or replace it") from e
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if not set(COLUMNS) <= set(header):
            raise SplitError(
                f"{path}:1: the header must name the columns {','.join(COLUMNS)} (found {','.join(header)!r})"
            )
        col = {c: header.index(c) for c in COLUMNS}
        rows: list[tuple[str, str, str]] = []
        seen: dict[str, int] = {}
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) < len(header):
                raise SplitError(f"{path}:{line}: {len(fields)} field(s), the header names {len(header)}")
            rel, cls, subset = (fields[col[c]].strip() for c in COLUMNS)
            if subset.lower() not in SUBSETS:
                raise SplitError(f"{path}:{line}: subset {subset!r}; allowed: {', '.join(SUBSETS)}")
            if problem := unsafe_reason(cls, "class name"):
                raise SplitError(f"{path}:{line}: label: {problem}; fix the label")
            folder, _, name = rel.removeprefix("./").partition("/")
            if folder != cls:
                raise SplitError(
                    f"{path}:{line}: path {shown(rel)} is not in its class folder {shown(cls + '/')}; "
                    "the layout is <data-root>/<label>/<clip>"
                )
            if rel in seen:
                raise SplitError(
                    f"{path}:{line}: {shown(rel)} already listed on line {seen[rel]}; remove one"
                )
            seen[rel] = line
            rows.append((cls, name, subset.lower()))
    except csv.Error as e:
        raise SplitError(f"{path}:{reader.line_num}: not valid CSV ({e})") from e
    return _spec(path, rows, [])


def scan_tree(root: Path) -> SplitSpec:
    """Every video file of every class folder, split by :func:`stratified_split`.

    Folders and files whose names start with ``.`` are skipped, as are files without a video extension
    (:data:`VIDEO_EXTENSIONS`) and folders without video files: the notes say how many.

    Raises:
        SplitError: The root cannot be listed, a class folder's name is unsafe, or there are no clips.
    """
    try:
        folders = sorted(
            (e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name
        )
    except OSError as e:
        raise SplitError(f"cannot list {root} ({e.strerror or e}); pass a readable --data-root") from e
    names: dict[str, list[str]] = {}
    skipped: list[str] = []
    empty: list[str] = []
    for entry in folders:
        if problem := unsafe_reason(entry.name, "class name"):
            raise SplitError(f"class folder in {root}: {problem}; rename that folder")
        try:
            files = sorted(e.name for e in os.scandir(entry.path) if not e.is_dir())
        except OSError as e:
            raise SplitError(f"cannot list {entry.path} ({e.strerror or e}); fix its permissions") from e
        videos = [f for f in files if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS]
        if videos:
            names[entry.name] = videos
            skipped += [f"{entry.name}/{f}" for f in files if f not in videos]
        else:
            empty.append(entry.name)
    notes = []
    if skipped:
        notes.append(
            f"skipped {len(skipped)} file(s) without a video extension or hidden (e.g. "
            f"{', '.join(shown(s) for s in skipped[:_MAX_SHOWN])})"
        )
    if empty:
        notes.append(
            f"skipped {len(empty)} folder(s) without video files: {', '.join(map(shown, empty[:8]))}"
        )
    subset_of = stratified_split(names, TEST_FRACTION, source_group)  # a source video's clips stay together
    alone = [c for c, v in names.items() if all(subset_of[c][n] == "train" for n in v)]
    if alone:
        notes.append(
            f"{len(alone)} class(es) with a single clip or source video have no test clip: "
            f"{', '.join(map(shown, alone[:8]))}"
        )
    rows = [(c, n, subset_of[c][n]) for c, v in names.items() for n in v]
    return _spec(root, rows, notes)


def stratified_split(
    names: Mapping[str, list[str]], test_fraction: float, group: Callable[[str], str] = lambda n: n
) -> dict[str, dict[str, str]]:
    """Splits each class's clips into train and test, whole groups at a time, by a fixed rule.

    Per class, the groups (``group(name)``; by default every clip is its own) are taken in the order of
    ``sha1("<class>/<group>")``, and a group goes to test when that brings the class's test count closer to
    ``test_fraction`` of its clips; at least one group stays in train. Depends only on the names.

    Args:
        names: Class -> clip names.
        test_fraction: Share of each class's clips for test, in [0, 1).
        group: Clip name -> the source video it was cut from (clips of one never straddle the split).

    Returns:
        Class -> clip name -> ``"train"`` or ``"test"``.
    """
    assert 0 <= test_fraction < 1, test_fraction
    out: dict[str, dict[str, str]] = {}
    for cls, clips in names.items():
        groups: dict[str, list[str]] = {}
        for n in clips:
            groups.setdefault(group(n), []).append(n)
        target, taken, left = test_fraction * len(clips), 0, len(groups)
        out[cls] = dict.fromkeys(clips, "train")
        for g in sorted(groups, key=lambda g, c=cls: hashlib.sha1(f"{c}/{g}".encode()).hexdigest()):
            if taken >= target or left == 1:
                break
            if len(groups[g]) < 2 * (target - taken):  # |taken + size - target| < |taken - target|
                out[cls].update(dict.fromkeys(groups[g], "test"))
                taken += len(groups[g])
                left -= 1
    return out
