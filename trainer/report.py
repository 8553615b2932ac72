"""The reports of a run or an evaluation: curves, confusion matrix, per-class accuracy and results.json.

``lsvit-train`` and ``lsvit-eval`` write the same evaluation report through :func:`write_eval_report`:
``results.json`` (the metrics, which checkpoint, subset and views, the preprocessing contract),
``confusion.png`` and ``per_class.csv``.
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


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch (train, validation, test) as a PNG.

    Args:
        rows: The metrics.jsonl records.
        path: Output PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "val"), ("test_loss", "test")):
        if all(r.get(key) is not None for r in rows):
            ax1.plot(ep, [r[key] for r in rows], "o-", label=label)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for key, label in (("val_top1", "val top-1"), ("test_top1", "test top-1"), ("test_top5", "test top-5")):
        if all(r.get(key) is not None for r in rows):
            ax2.plot(ep, [r[key] for r in rows], "o-", label=label)
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy (test never selects)", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(
    cm: np.ndarray, classes: list[str], path: Path, title: str = "confusion (row-normalised)"
) -> None:
    """Row-normalised confusion matrix as a PNG with class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, n, out=np.zeros(cm.shape, dtype=float), where=n > 0)
    size = max(5.0, 0.22 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def write_eval_report(
    out: Path,
    result: EvalResult,
    classes: list[str],
    info: dict[str, Any],
    console: Console | None = None,
    title: str = "per-class test accuracy",
) -> dict[str, Any]:
    """Writes ``results.json``, ``confusion.png`` and ``per_class.csv`` for one evaluation.

    Args:
        out: Folder (created).
        result: The evaluation.
        classes: Class names in label order.
        info: What was evaluated (checkpoint, subset, views, epoch, preprocess, ...), merged into
            results.json next to ``metrics``.
        console: Prints the per-class table when given.
        title: Title of the confusion plot and the table.

    Returns:
        The results.json content.
    """
    out.mkdir(parents=True, exist_ok=True)
    data = {**info, "metrics": _clean(result.metrics(prefix=""))}
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    plot_confusion(result.confusion, classes, out / "confusion.png", title=f"{title} (row-normalised)")
    write_per_class(result.confusion, classes, out / "per_class.csv", console, title=title)
    return data
