"""Writing output files: atomically, with the usual permissions, and with a one-line error when it fails.

Every file the pipeline writes goes to ``<name>.tmp`` next to its destination, is flushed to disk and then
renamed into place, so a reader (or a rerun) never sees half a file. Temporary files are opened like any
other file (mode 0666 minus the umask, e.g. 0644), so manifests, indexes and tars of one folder share one
mode. An ``OSError`` while writing (a full disk, a read-only or vanished folder, a file-size limit) becomes a
:class:`WriteError` that names the file and says that a rerun resumes.
"""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from lsvit.pipeline.errors import LsvitError

RESUME_HINT = "rerun the same command: finished work is kept and it resumes"


class WriteError(LsvitError):
    """An output file or folder that could not be written."""


def write_failed(path: Path, e: OSError, hint: str = RESUME_HINT) -> WriteError:
    """The one-line error for an ``OSError`` raised while writing ``path``.

    Args:
        path: The file or folder being written (its final name, not the temporary one).
        e: What the operating system said.
        hint: What to do once the cause is fixed.
    """
    return WriteError(f"cannot write {path} ({e.strerror or e}); free space or fix the folder, then {hint}")


def make_dirs(path: Path, what: str) -> Path:
    """Creates a folder and its parents, or says in one line why it cannot be used.

    Args:
        path: The folder.
        what: How the user named it, e.g. ``--out``.

    Returns:
        ``path``.

    Raises:
        WriteError: ``path`` (or a parent) is a file, or cannot be created or written (``/proc``, read-only).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # a file, a device or a dangling link where a folder should be
        raise WriteError(f"{what} {path}: {path} exists and is not a folder; pass a folder") from e
    except NotADirectoryError as e:
        raise WriteError(f"{what} {path}: a parent of it is a file, not a folder; pass a folder") from e
    except OSError as e:
        raise WriteError(f"{what} {path}: cannot create the folder ({e.strerror or e}); pass another") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise WriteError(f"{what} {path}: the folder is not writable; pass a writable folder")
    return path


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", hint: str = RESUME_HINT) -> Iterator[IO]:
    """Opens ``<path>.tmp`` for writing; on a clean exit it is flushed, synced and renamed to ``path``.

    On any exception the temporary file is removed and nothing is left under ``path``'s name; an
    ``OSError`` is raised as a :class:`WriteError` naming ``path``.

    Args:
        path: Destination.
        mode: ``"wb"`` or ``"w"`` (UTF-8 text).
        hint: What the error message tells the user to do.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open(mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as e:
        raise write_failed(path, e, hint) from e
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: object, lines: bool = False, hint: str = RESUME_HINT) -> None:
    """Writes JSON (or JSON lines from a list) atomically, keys sorted, so reruns are byte-identical.

    Args:
        path: Destination.
        data: A JSON-ready object, or with ``lines`` a sequence of them (one per line).
        lines: Write JSON lines instead of one indented document.
        hint: What the error message tells the user to do.

    Raises:
        WriteError: The file could not be written.
    """
    if lines:
        text = "".join(json.dumps(x, sort_keys=True) + "\n" for x in data)  # type: ignore[union-attr]
    else:
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    with atomic_open(path, "w", hint) as fh:
        fh.write(text)
