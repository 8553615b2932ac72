"""What every dataset format shares: a split's clips and subsets, and the checks of class and clip names.

A dataset format (``lsvit.pipeline.hmdb51``, ``lsvit.pipeline.ucf101``, ``lsvit.pipeline.folder``; chosen
through ``lsvit.pipeline.datasets``) reads its split definition into a :class:`SplitSpec` of
:class:`ClipEntry` lines; names are checked by :func:`unsafe_reason` for all of them alike, so a name that
would leave its class folder is never read, whatever the format. A clip's class and label come from the
split definition (its split file, list or CSV line), never from a substring of its name.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lsvit.pipeline.errors import LsvitError

SUBSETS = ("train", "val", "test", "unused")  # every subset any dataset has, in shard-plan order


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
    """All clips of one split, in class order then file order.

    ``subsets`` are the subsets the dataset's split defines (HMDB51: train, test, unused; UCF101: train,
    test; a folder dataset: train, val when its CSV has any, test); ``notes`` are what the reader noticed
    and the user should hear (files it skipped, ...): extract and eda print them.
    """

    split: int
    classes: list[str]
    clips: list[ClipEntry] = field(repr=False)
    subsets: tuple[str, ...] = ("train", "test", "unused")
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, dict[str, int]]:
        """Clips per subset and class; every subset of the split and every class is present (0 allowed).

        Returns:
            ``{subset: {class: n}}`` for each of ``subsets``.
        """
        out = {s: dict.fromkeys(self.classes, 0) for s in self.subsets}
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


def read_lines(path: Path) -> list[str]:
    """The lines of a split file as the official ones are written: UTF-8 (a BOM is dropped), ``\\n`` or
    ``\\r\\n`` line ends; other Unicode line separators (U+2028, ...) stay inside their line.

    Raises:
        SplitError: The file cannot be read or is not UTF-8.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SplitError(f"{path}: cannot read split file ({e}); fix or replace it") from e
    return [line.removesuffix("\r") for line in text.split("\n")]
