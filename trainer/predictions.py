"""What ``lsvit-predict`` writes: a table per clip, one JSON object per clip, or a CSV/JSONL file.

``--output preds.csv`` has a row per clip: ``path``, the top-1 ``class`` and its ``probability``, then
``class_2, probability_2`` ... up to ``--top-k``, and ``error`` (empty, or why the clip could not be
predicted: such a row has no classes). ``--output preds.jsonl`` has one object per clip, as ``--json``
prints them: ``{"video", "class", "probability", "top": [{"class", "probability"}, ...]}``, or
``{"video", "error"}``. The file is written as ``<name>.tmp`` and renamed when all clips are done.
"""

import csv
import json
import os
from pathlib import Path
from typing import Any, TextIO

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.inference import Prediction

FORMATS = (".csv", ".jsonl")


def record(pred: Prediction, k: int) -> dict[str, Any]:
    """The JSON object of one prediction (what ``--json`` prints and a ``.jsonl`` file holds)."""
    top = [{"class": c, "probability": round(p, 6)} for c, p in pred.top(k)]
    return {"video": pred.video, "class": top[0]["class"], "probability": top[0]["probability"], "top": top}


def csv_header(k: int) -> list[str]:
    """``path, class, probability, class_2, probability_2, ..., class_k, probability_k, error``."""
    ranks = [f"{name}_{r}" for r in range(2, k + 1) for name in ("class", "probability")]
    return ["path", "class", "probability", *ranks, "error"]


def csv_row(pred: Prediction, k: int) -> list[str]:
    """One prediction's CSV row (see :func:`csv_header`)."""
    cells = [pred.video]
    for c, p in pred.top(k):
        cells += [c, f"{p:.6f}"]
    cells += [""] * (len(csv_header(k)) - 1 - len(cells))
    return [*cells, ""]


def check_output(path: Path) -> None:
    """Refuses an ``--output`` whose suffix names no format.

    Raises:
        LsvitError: Neither ``.csv`` nor ``.jsonl``.
    """
    if Path(path).suffix.lower() not in FORMATS:
        raise LsvitError(f"--output {path} must end in .csv or .jsonl (the format follows the suffix)")


class PredictionFile:
    """A ``.csv`` or ``.jsonl`` file of predictions, one row per clip, renamed into place by :meth:`close`."""

    def __init__(self, path: Path, k: int) -> None:
        """Opens ``<path>.tmp``.

        Args:
            path: The file to write; its suffix picks the format.
            k: Classes per clip (``--top-k``, at most the model's classes).

        Raises:
            LsvitError: Another suffix, or a file that cannot be written.
        """
        check_output(path)
        self.path, self.k, self.rows = Path(path), k, 0
        self.format = self.path.suffix.lower()
        self.tmp = self.path.with_name(f"{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file: TextIO = self.tmp.open("w", newline="", encoding="utf-8")
        except OSError as e:
            raise LsvitError(f"cannot write --output {path} ({e.strerror or e}); pass a writable path") from e
        self.csv = csv.writer(self.file) if self.format == ".csv" else None
        if self.csv is not None:
            self.csv.writerow(csv_header(k))

    def add(self, pred: Prediction | None, video: str = "", error: str = "") -> None:
        """Adds a clip's prediction, or (``pred`` None) the ``error`` that stopped it."""
        if self.csv is not None:
            row = (
                csv_row(pred, self.k) if pred is not None else [video] + [""] * (len(csv_header(self.k)) - 2)
            )
            self.csv.writerow([*row[:-1], error])
        else:
            obj = record(pred, self.k) if pred is not None else {"video": video, "error": error}
            self.file.write(json.dumps(obj) + "\n")
        self.rows += 1

    def close(self, keep: bool = True) -> None:
        """Closes the file and renames it into place (``keep``) or removes it."""
        self.file.close()
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
