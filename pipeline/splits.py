"""The official HMDB51 split files: which clip is in which class and subset.

A clip's class and label come from the split file that lists it, never from its name (hundreds of HMDB51
clip names contain another class's name, e.g. ``..._kiss_...`` inside ``hug``).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lsvit.pipeline.errors import LsvitError

DEFAULT_SPLITS_DIRNAME = "testTrainMulti_7030_splits"
SUBSETS = ("train", "test", "unused")
FLAGS = {"1": "train", "2": "test", "0": "unused"}
SPLITS = (1, 2, 3)
_FILE_RE = re.compile(r"(?P<cls>.+)_test_split(?P<n>[0-9]+)\.txt", re.DOTALL)


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc; U+2028 and friends are allowed
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # how Python spells bytes of a file name that are not UTF-8


def shown(name: str) -> str:
    """A name as messages print it: quoted, with undecodable bytes as ``\\xNN`` and unprintable characters
    (controls, U+2028, ...) escaped, so that a message stays one readable line."""
    try:
        text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that is no escaped byte
        text = name
    return "'" + "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text) + "'"


def unsafe_reason(name: str, what: str = "clip name") -> str | None:
    """Why a class or clip name cannot be joined to a folder safely, or None when it can.

    The rule for every dataset: no path separators, not ``.`` or ``..`` (nor any name starting with
    ``..``), no control characters, valid UTF-8; spaces and other Unicode (U+2028 included) are allowed.

    Args:
        name: The name as written in the split file (or the split file's name, for a class).
        what: What the name is, for the message: ``"clip name"`` or ``"class name"``.

    Returns:
        A short reason, or None for a plain name.
    """
    if not name.strip():
        return f"empty {what}"
    if _SURROGATE.search(name):
        return f"{what} {shown(name)} is not valid UTF-8"
    if "/" in name or "\\" in name:
        return f"{what} {shown(name)} contains a path separator"
    if name in (".", "..") or name.startswith(".."):
        return f"{what} {shown(name)} refers to a parent or current folder"
    if _CONTROL.search(name):
        return f"{what} {shown(name)} contains a NUL or control character"
    return None


def links_outside(root: Path, entries: Iterable[ClipEntry]) -> list[tuple[str, Path]]:
    """Clips that symlinks (the clip's own or its class folder's) lead outside the data root.

    Extract follows such links (the data root is the user's; split-file names alone can never leave it)
    and reports them. Costs one ``lstat`` per clip and one ``realpath`` per class folder and per link.

    Args:
        root: The data root.
        entries: Clips of the split (those with a ``problem`` are skipped: they are never read).

    Returns:
        ``(relative path, where it really is)`` of every such clip.
    """
    real_root, out, classes = root.resolve(), [], {}
    for e in entries:
        if e.problem:
            continue
        try:
            if e.cls not in classes:
                classes[e.cls] = (root / e.cls).resolve()
            path = root / e.rel_path
            real = path.resolve() if path.is_symlink() else classes[e.cls] / e.name
        except (OSError, RuntimeError):
            continue  # the worker records why the clip cannot be read
        if not real.is_relative_to(real_root):
            out.append((e.rel_path, real))
    return out


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
            f"the official {DEFAULT_SPLITS_DIRNAME} files>"
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


def _split_lines(path: Path) -> list[str]:
    """The lines of a split file as the official ones are written: UTF-8 (a BOM is dropped), ``\\n`` or
    ``\\r\\n`` line ends; other Unicode line separators (U+2028, ...) stay inside their line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: cannot read split file ({e}); fix or replace it") from e
    return [line.removesuffix("\r") for line in text.split("\n")]


def _parse_file(path: Path, cls: str, label: int) -> list[ClipEntry]:
    clips: list[ClipEntry] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(_split_lines(path), start=1):
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
