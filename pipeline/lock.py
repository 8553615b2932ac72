"""One writer at a time: a lock file in the folder being written, held with ``flock``.

The kernel releases an ``flock`` when the process holding it exits, however it exits (``kill -9`` and
power cuts included), so a lock left behind by a killed run never blocks a rerun. While a run holds the
lock, the file names it (pid, host, command, start time), and a second run into the same folder stops with
a one-line error that says who holds it. The (then empty) file stays after a run: deleting a lock file
while another process may be opening it would let two runs hold two different files.
"""

import contextlib
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lsvit.pipeline.atomic import write_failed
from lsvit.pipeline.errors import LsvitError

log = logging.getLogger(__name__)


class LockedError(LsvitError):
    """The folder is being written by another run."""


def _holder_text(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its name into the lock file"


def _read(fd: int) -> str:
    try:
        return _holder_text(os.pread(fd, 4096, 0))
    except OSError:
        return "a process whose lock file cannot be read"


def holder(folder: Path, name: str) -> str | None:
    """Who holds the lock ``folder/name`` now, without taking it or creating anything; None when free.

    Args:
        folder: The locked folder.
        name: The lock file's name.
    """
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: nobody ever wrote here, or it is unreadable to us
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _read(fd)
    except OSError:
        return None  # a file system without flock: nothing can be said
    finally:
        os.close(fd)  # also releases the shared lock


@contextlib.contextmanager
def hold(folder: Path, name: str, what: str) -> Iterator[None]:
    """Holds the lock ``folder/name`` for the duration of the block.

    Args:
        folder: The folder whose writers exclude each other (it must exist).
        name: The lock file's name; writers of different files in one folder use different names.
        what: The protected work, for the error message, e.g. ``"extract --part 0/1"``.

    Raises:
        LockedError: Another live process holds the lock; the message names it.
        WriteError: The lock file cannot be created.
    """
    path = folder / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise write_failed(path, e, "rerun") from e
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise LockedError(
                f"{folder} is in use by another {what} run ({_read(fd)}); wait for it to finish or stop it, "
                "then rerun (a killed run releases its lock by itself)"
            ) from e
        except OSError as e:  # e.g. a network file system without flock support
            log.warning(
                f"cannot lock {path} ({e.strerror}): a second run into {folder} would not be detected"
            )
        held = True
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": since}
        with contextlib.suppress(OSError):  # the name is for messages only; a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        if held:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)
