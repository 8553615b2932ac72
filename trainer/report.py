"""The report of a run or an evaluation: results.json, per_class.csv and the figures that go with them.

``lsvit-train`` and ``lsvit-eval`` write the same evaluation report through :func:`write_eval_report`:
``results.json`` (the metrics, which checkpoint, epoch, subset and views, the preprocessing contract),
``per_class.csv``, ``confusion.png`` and ``per_class.png`` (figures: :mod:`lsvit.trainer.plots`). The
per-class table is printed only when asked (``--verbose``): the CSV always has it.
"""

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lsvit.trainer.evaluate import EvalResult, per_class_accuracy
from lsvit.trainer.plots import plot_confusion, plot_per_class


def per_class_rows(cm: np.ndarray, classes: list[str]) -> list[dict]:
    """``{"class", "clips", "correct", "accuracy"}`` per class (accuracy None without clips)."""
    acc = per_class_accuracy(cm)
    return [
        {
            "class": c,
            "clips": int(cm[i].sum()),
            "correct": int(cm[i, i]),
            "accuracy": None if math.isnan(acc[i]) else round(float(acc[i]), 4),
        }
        for i, c in enumerate(classes)
    ]


def write_per_class(
    cm: np.ndarray,
    classes: list[str],
    path: Path,
    console: Console | None = None,
    title: str = "per-class test accuracy",
) -> None:
    """Writes per_class.csv and prints the same table with rich.

    Args:
        cm: Confusion matrix.
        classes: Class names in label order.
        path: Output CSV.
        console: Where to print the table (None: do not print).
        title: The printed table's title.
    """
    rows = per_class_rows(cm, classes)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["class", "clips", "correct", "accuracy"])
        w.writeheader()
        w.writerows(rows)
    if console is not None:
        table = Table(title=title)
        for col in ("class", "clips", "correct", "accuracy"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for r in rows:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            table.add_row(r["class"], str(r["clips"]), str(r["correct"]), acc)
        console.print(table)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: NaN (no clips) becomes null."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def described(info: dict[str, Any]) -> str:
    """What an evaluation shows, for titles: e.g. ``best.pt, epoch 12, test, 1x1 views``."""
    parts = [Path(str(info["checkpoint"])).name] if info.get("checkpoint") else []
    if info.get("epoch") is not None:
        parts.append(f"epoch {info['epoch']}")
    parts += [str(info.get("subset", "test")), f"{info.get('views', '1x1')} views"]
    return ", ".join(parts)


def worst_classes(cm: np.ndarray, classes: list[str], k: int = 5) -> str:
    """The ``k`` classes with the lowest accuracy, e.g. ``kiss 0.00, smile 0.10`` (classes with clips only)."""
    acc = per_class_accuracy(cm)
    order = [i for i in np.argsort(np.nan_to_num(acc, nan=np.inf), kind="stable") if not math.isnan(acc[i])]
    return ", ".join(f"{classes[i]} {acc[i]:.2f}" for i in order[:k])


def write_eval_report(
    out: Path,
    result: EvalResult,
    classes: list[str],
    info: dict[str, Any],
    console: Console | None = None,
) -> dict[str, Any]:
    """Writes ``results.json``, ``per_class.csv``, ``confusion.png`` and ``per_class.png`` for one evaluation.

    Args:
        out: Folder (created).
        result: The evaluation.
        classes: Class names in label order.
        info: What was evaluated (``checkpoint``, ``epoch``, ``subset``, ``views``, ``preprocess``, ...),
            merged into results.json next to ``metrics``; the figures' titles say it.
        console: Prints the per-class table when given (``--verbose``).

    Returns:
        The results.json content.
    """
    out.mkdir(parents=True, exist_ok=True)
    data = {**info, "metrics": _clean(result.metrics(prefix=""))}
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    what = described(info)
    plot_confusion(result.confusion, classes, out / "confusion.png", f"confusion ({what}), row-normalised")
    plot_per_class(result.confusion, classes, out / "per_class.png", f"per-class accuracy ({what})")
    write_per_class(result.confusion, classes, out / "per_class.csv", console, f"per-class accuracy ({what})")
    return data
