"""A training run's folder (``--out``): one run at a time, and writes that fail in one line saying how to resume.

The folder is created (or checked to be a writable folder) before anything else, and held with the
pipeline's ``flock`` lock (``<out>/.lock``, :mod:`lsvit.pipeline.lock`) for the whole run, so a second
``lsvit-train`` into the same ``--out`` stops at once naming the first, and a killed run never blocks the
next. Every file is written atomically (:mod:`lsvit.pipeline.atomic`); a write that fails (a full disk, a
read-only or vanished folder, a file-size limit) stops the run with one line naming the file and how to go
on: ``--resume auto`` once a checkpoint exists, else the same command again. A run that fails before
writing anything leaves no folder behind; ``*.tmp`` files left by a killed run are removed by the next.
"""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lsvit.pipeline import lock
from lsvit.pipeline.atomic import atomic_open, make_dirs, write_failed
from lsvit.pipeline.errors import LsvitError, clip

LOCK = ".lock"
METRICS = "metrics.jsonl"


class RunFolder:
    """The ``--out`` folder of one run, as seen by one rank (only the main rank writes)."""

    def __init__(self, out: Path | str, is_main: bool = True) -> None:
        self.out, self.is_main = Path(out), is_main

    @contextlib.contextmanager
    def hold(self) -> Iterator["RunFolder"]:
        """Creates and locks the folder for the block; removes it again if the block fails before any write.

        Raises:
            WriteError: ``--out`` cannot be created or written.
            LockedError: Another run holds the folder (the message names it).
        """
        if not self.is_main:
            yield self
            return
        created = not self.out.exists()
        make_dirs(self.out, "--out")
        with lock.hold(self.out, LOCK, "lsvit-train"):
            for tmp in self.out.glob(
                "*.tmp"
            ):  # half-written by a killed run; ours to remove while we hold the lock
                tmp.unlink(missing_ok=True)
            try:
                yield self
            except BaseException:
                if created:
                    self._remove_if_unused()
                raise

    def _remove_if_unused(self) -> None:
        # Unlinked while still locked, so a run that opened the lock file meanwhile finds it held.
        with contextlib.suppress(OSError):
            if os.listdir(self.out) == [LOCK]:
                (self.out / LOCK).unlink()
                self.out.rmdir()

    def kept(self) -> str:
        """What a run that stops now leaves to resume from."""
        last = self.out / "last.pt"
        return f"last good checkpoint kept: {last}" if last.is_file() else "no checkpoint was written yet"

    def hint(self) -> str:
        """What to do once a failed write's cause is fixed: resume from the last checkpoint, or rerun."""
        last = self.out / "last.pt"
        if last.is_file():
            return f"continue with `lsvit-train --resume auto --out {self.out}` (the last checkpoint, {last}, is intact)"
        return "rerun the same command"

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """Turns an ``OSError`` raised in the block (e.g. by a plotting or report writer) into a one-line error.

        Args:
            path: The file (or folder of files) the block writes, named in the message unless the error
                names its own file.
        """
        hint = self.hint()
        try:
            yield
        except OSError as e:
            raise write_failed(Path(e.filename) if e.filename else path, e, hint) from e

    def write_text(self, name: str, text: str) -> None:
        """Writes ``<out>/<name>`` atomically (UTF-8)."""
        with atomic_open(self.out / name, "w", self.hint()) as fh:
            fh.write(text)

    def read_metrics(self) -> list[dict]:
        """The rows of ``metrics.jsonl`` so far, one per epoch.

        Raises:
            LsvitError: A line that is not a JSON object with an integer ``epoch``.
        """
        path = self.out / METRICS
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        try:
            rows = [json.loads(x) for x in lines]
            if not all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in rows):
                raise ValueError("a line without an integer epoch")
        except ValueError as e:
            raise LsvitError(
                f"{path} is damaged ({clip(str(e))}); remove its bad lines (one JSON object per epoch), then "
                "--resume auto"
            ) from e
        return rows

    def append_metrics(self, row: dict) -> list[dict]:
        """Appends an epoch's row to ``metrics.jsonl``; rows of that epoch or later (from before a resume) go.

        Returns:
            All rows now in the file.
        """
        rows = [r for r in self.read_metrics() if r["epoch"] < row["epoch"]] + [row]
        self.write_text(METRICS, "".join(json.dumps(r) + "\n" for r in rows))
        return rows
