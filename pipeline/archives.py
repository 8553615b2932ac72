"""Datasets as distributed: an archive given as ``--data-root`` or ``--splits-dir`` is unpacked once, beside it.

HMDB51 comes as ``hmdb51_org.rar``, a RAR holding one RAR per class, and its splits as
``test_train_splits.rar``; UCF101 as ``UCF101.rar`` and a zip of lists. ``extract --data-root
hmdb51_org.rar`` unpacks ``data/hmdb51_org.rar`` into ``data/hmdb51_org/<class>/<clip>.avi`` in one pass:
a member that is itself an archive is opened in memory, so the class RARs never touch the disk. A finished
unpack leaves a stamp (the archive's size and mtime) and later runs reuse the folder; an interrupted one is
redone, keeping the files it already wrote.

libarchive (through libarchive-c) reads RAR5, non-solid RAR4, zip, 7z and tar. It refuses solid RAR4 and
cannot resolve RAR5 file references; such an archive is handed to ``unar`` (Debian's ``unar``) instead.
Only regular files are written, each path checked part by part like clip names
(``lsvit.pipeline.splits.unsafe_reason``): no absolute paths, no ``..``, no links, so an archive can write
nothing outside its folder. Skipped members are counted and named in the stamp and in a note.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from lsvit.pipeline.atomic import atomic_open, make_dirs, write_json_atomic
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.lock import hold
from lsvit.pipeline.splits import shown, unsafe_reason

SUFFIXES = (".rar", ".zip", ".7z", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
STAMP = ".lsvit-unpacked.json"
_MAX_DEPTH = 3  # archives inside archives inside archives
_MAX_SHOWN = 3


class ArchiveError(LsvitError):
    """An archive that cannot be read or unpacked."""


def is_archive(path: Path | None) -> bool:
    """True for an existing file whose name ends in one of :data:`SUFFIXES` (any case)."""
    return path is not None and path.name.lower().endswith(SUFFIXES) and path.is_file()


def _stem(name: str) -> str:
    low = name.lower()
    return name[: -len(next(s for s in sorted(SUFFIXES, key=len, reverse=True) if low.endswith(s)))]


def materialise(path: Path, what: str, progress: bool = True) -> Path:
    """``path`` itself, or for an archive the folder it is unpacked into (unpacking it first if needed).

    The folder is ``<archive's folder>/<archive name without suffix>``; when it holds a single folder
    (``UCF101.rar`` holds ``UCF-101/``), that folder is returned.

    Args:
        path: A folder, a file, or an archive.
        what: The option that named it, for messages (``--data-root``).
        progress: Show a progress bar while unpacking.

    Raises:
        ArchiveError: The archive cannot be read (the message says what to install or do).
        WriteError: The folder beside it cannot be written.
    """
    if not is_archive(path):
        return path
    dest = unpack(path, what, progress)
    inside = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return inside[0] if len(inside) == 1 and inside[0].is_dir() else dest


def materialise_sources(
    data_root: Path, splits_dir: Path | None, progress: bool = True
) -> tuple[Path, Path | None, dict[str, str]]:
    """:func:`materialise` for ``--data-root`` and ``--splits-dir``.

    Returns:
        The data root and splits folder to read, and ``{option: archive}`` for those that were archives.
    """
    archives = {k: str(v) for k, v in (("data_root", data_root), ("splits_dir", splits_dir)) if is_archive(v)}
    if splits_dir is not None:
        splits_dir = materialise(splits_dir, "--splits-dir", progress)
    return materialise(data_root, "--data-root", progress), splits_dir, archives


def unpack(archive: Path, what: str, progress: bool = True) -> Path:
    """Unpacks ``archive`` (and the archives inside it) beside it, once; returns the folder.

    Raises:
        ArchiveError: Unreadable, encrypted, or a format neither libarchive nor unar reads.
        WriteError: The folder cannot be written.
    """
    st = archive.stat()
    stamp = {"archive": archive.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "version": 1}
    dest = archive.parent / _stem(archive.name)
    with contextlib.suppress(OSError, ValueError):
        done = json.loads((dest / STAMP).read_text(encoding="utf-8"))
        if {k: done.get(k) for k in stamp} == stamp:
            return dest
    make_dirs(dest, what)
    with hold(dest, ".unpack.lock", f"unpack of {archive.name}"):
        writer = _Writer(dest, tqdm(desc=f"unpack {archive.name}", unit="file", disable=not progress))
        try:
            _unpack_file(archive, [], writer, 0)
        finally:
            writer.bar.close()
        write_json_atomic(dest / STAMP, stamp | {"files": writer.files, "skipped": writer.skipped})
    if writer.skipped:
        first = "; ".join(f"{shown(p)}: {why}" for p, why in list(writer.skipped.items())[:_MAX_SHOWN])
        tqdm.write(
            f"note: {archive.name}: {len(writer.skipped)} member(s) not unpacked ({first})", file=sys.stderr
        )
    return dest


class _Writer:
    """Writes members under ``dest``: regular files only, each path part checked, atomically."""

    def __init__(self, dest: Path, bar: tqdm) -> None:
        self.dest, self.bar, self.files, self.skipped = dest, bar, 0, {}

    def parts(self, prefix: list[str], name: str) -> list[str] | None:
        """The checked path of a member under ``dest``, or None (recorded as skipped) when unsafe."""
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if (
            prefix and parts[:1] == prefix[-1:]
        ):  # brush_hair.rar holds brush_hair/<clip>: not brush_hair/brush_hair/
            parts = parts[1:]
        where = "/".join([*prefix, *parts])
        problem = next((r for p in parts if (r := unsafe_reason(p, "path part"))), None)
        if name.startswith("/") or problem or not parts:
            self.skipped[where or name] = problem or "absolute path"
            return None
        return [*prefix, *parts]

    def put(self, parts: list[str], blocks: Iterable[bytes], size: int | None) -> None:
        path = self.dest.joinpath(*parts)
        if size is not None and path.is_file() and not path.is_symlink() and path.stat().st_size == size:
            for _ in blocks:  # already written by an interrupted run: the archive must still be read past it
                pass
        else:
            make_dirs(path.parent, "unpack")
            with atomic_open(path, "wb", "rerun: the files already unpacked are kept") as fh:
                for b in blocks:
                    fh.write(b)
        self.files += 1
        self.bar.update(1)


def _libarchive():
    try:
        import libarchive  # libarchive-c; needs the system's libarchive (Debian: libarchive13)
    except (ImportError, OSError) as e:
        raise ArchiveError(
            f"reading archives needs libarchive-c and libarchive ({e}); `pip install libarchive-c` and "
            "`apt-get install libarchive13`, or unpack the archive yourself and pass the folder"
        ) from e
    return libarchive


class _NeedsUnar(Exception):
    """libarchive cannot read this archive (solid RAR4, RAR5 file references, ...)."""


def _unpack_file(path: Path, prefix: list[str], writer: _Writer, depth: int) -> None:
    lib = _libarchive()
    try:
        with lib.file_reader(str(path)) as entries:
            _entries(entries, prefix, writer, depth)
    except (lib.exception.ArchiveError, _NeedsUnar) as e:
        _unar(path, prefix, writer, depth, str(e))


def _unpack_bytes(data: bytes, name: str, prefix: list[str], writer: _Writer, depth: int) -> None:
    lib = _libarchive()
    try:
        with lib.memory_reader(data) as entries:
            _entries(entries, prefix, writer, depth)
    except (lib.exception.ArchiveError, _NeedsUnar) as e:
        with tempfile.TemporaryDirectory(dir=writer.dest, prefix=".unpack-") as tmp:
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            _unar(path, prefix, writer, depth, str(e))


def _entries(entries, prefix: list[str], writer: _Writer, depth: int) -> None:
    for e in entries:
        if e.isdir:
            continue
        parts = writer.parts(prefix, e.pathname)
        if parts is None:
            continue
        if not e.isfile or e.issym or e.islnk:
            writer.skipped["/".join(parts)] = "a link or special file"
        elif e.size is None:  # a RAR5 file reference or hard link: libarchive yields no data for it
            raise _NeedsUnar(f"{e.pathname} is stored as a reference to another member")
        elif parts[-1].lower().endswith(SUFFIXES) and depth < _MAX_DEPTH:
            _unpack_bytes(b"".join(e.get_blocks()), parts[-1], _inner(parts), writer, depth + 1)
        else:
            writer.put(parts, e.get_blocks(), e.size)


def _inner(parts: list[str]) -> list[str]:
    """Where the members of a nested archive ``a/b/X.rar`` go: ``a/b/X/``."""
    return [*parts[:-1], _stem(parts[-1])]


def _unar(path: Path, prefix: list[str], writer: _Writer, depth: int, why: str) -> None:
    """Unpacks with ``unar`` into a private folder, then moves its regular files in like libarchive's."""
    unar = shutil.which("unar")
    if unar is None:
        raise ArchiveError(
            f"libarchive cannot read {path.name} ({why.splitlines()[0]}); install unar (`apt-get install "
            "unar`), which reads solid RAR4 archives, and rerun, or unpack it yourself and pass the folder"
        )
    with tempfile.TemporaryDirectory(dir=writer.dest, prefix=".unar-") as tmp:
        run = subprocess.run(
            [unar, "-q", "-f", "-D", "-o", tmp, str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            said = (run.stdout + run.stderr).strip().splitlines() or ["no message"]
            raise ArchiveError(
                f"cannot unpack {path.name} (encrypted or damaged?): unar says {said[-1]!r}; unpack it yourself "
                "and pass the folder"
            )
        root = Path(tmp).resolve()
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                member = Path(folder) / name
                parts = writer.parts(prefix, str(member.relative_to(root)))
                if parts is None:
                    continue
                real = member.resolve()  # unar writes links and RAR5 references as symlinks
                if not real.is_file() or not real.is_relative_to(root):
                    writer.skipped["/".join(parts)] = "a link or special file"
                elif parts[-1].lower().endswith(SUFFIXES) and depth < _MAX_DEPTH:
                    _unpack_file(real, _inner(parts), writer, depth + 1)
                else:
                    with real.open("rb") as fh:
                        writer.put(parts, iter(lambda fh=fh: fh.read(1 << 20), b""), real.stat().st_size)
