"""Test-set evaluation (reduced over DDP ranks) and the run's reports: curves, confusion matrix, per class."""

import csv
import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from lsvit.trainer.distributed import Dist, gather_objects


@dataclass
class EvalResult:
    """Test metrics of one evaluation; ``confusion[true, pred]`` counts clips."""

    loss: float
    top1: float
    top5: float
    mean_class_acc: float
    n: int
    confusion: np.ndarray

    def metrics(self) -> dict[str, float]:
        """The scalar metrics for metrics.jsonl."""
        return {
            "test_loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_acc": self.mean_class_acc,
            "test_clips": self.n,
        }


def confusion_matrix(labels: list[int], preds: list[int], num_classes: int) -> np.ndarray:
    """Counts ``(true, predicted)`` pairs.

    Args:
        labels: True class indices.
        preds: Predicted class indices, same length.
        num_classes: Matrix size.

    Returns:
        ``(num_classes, num_classes)`` int64 array; row = true class.
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for classes without test clips."""
    n = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.diag(cm) / n, np.nan)


def summarize(
    labels: list[int], preds: list[int], top5_hits: list[bool], losses: list[float], num_classes: int
) -> EvalResult:
    """Metrics from per-clip results.

    Args:
        labels: True class per clip.
        preds: Top-1 prediction per clip.
        top5_hits: Whether the true class is among the top 5 (top ``num_classes`` if fewer).
        losses: Cross-entropy per clip.
        num_classes: Number of classes.

    Returns:
        Loss, top-1, top-5, mean per-class accuracy (over classes with clips) and the confusion matrix.
    """
    cm = confusion_matrix(labels, preds, num_classes)
    n = len(labels)
    acc = per_class_accuracy(cm)
    return EvalResult(
        loss=float(np.mean(losses)) if n else math.nan,
        top1=float(np.trace(cm) / n) if n else math.nan,
        top5=float(np.mean(top5_hits)) if n else math.nan,
        mean_class_acc=float(np.nanmean(acc)) if n else math.nan,
        n=n,
        confusion=cm,
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: Iterable,
    steps: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    num_classes: int,
    ctx: Dist,
) -> EvalResult:
    """Runs the model over the test loader; every rank gets the same result.

    Clips are identified by key, so a clip that a rank saw twice (padding to equal batch counts) is
    counted once.

    Args:
        model: The model (or its EMA copy), switched to eval mode here.
        loader: Yields ``(frames uint8, labels, keys)``.
        steps: Batches per rank (for the progress bar).
        prepare: Moves uint8 frames to the device and normalises them.
        autocast: Returns the autocast context used in training.
        num_classes: Number of classes.
        ctx: Process context.

    Returns:
        The reduced :class:`EvalResult`.
    """
    model.eval()
    k = min(5, num_classes)
    rows: dict[str, tuple[int, int, bool, float]] = {}
    for frames, labels, keys in tqdm(loader, total=steps, desc="eval", leave=False, disable=not ctx.is_main):
        labels = labels.to(ctx.device)
        with autocast():
            logits = model(prepare(frames))
        logits = logits.float()
        loss = F.cross_entropy(logits, labels, reduction="none")
        top = logits.topk(k, dim=1).indices
        hits = (top == labels[:, None]).any(dim=1)
        cols = (labels.tolist(), top[:, 0].tolist(), hits.tolist(), loss.tolist())
        for key, *row in zip(keys, *cols, strict=True):
            rows.setdefault(key, tuple(row))  # a padded repeat of a clip keeps its first result
    merged: dict[str, tuple[int, int, bool, float]] = {}
    for part in gather_objects(rows, ctx):
        for key, row in part.items():
            merged.setdefault(key, row)
    ordered = [merged[k] for k in sorted(merged)]  # rank-independent order: identical floats on every rank
    cols = list(zip(*ordered, strict=True)) if ordered else [[], [], [], []]
    return summarize(list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), num_classes)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch (train and test) as a PNG.

    Args:
        rows: The metrics.jsonl records.
        path: Output PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(ep, [r["test_loss"] for r in rows], "o-", label="test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for key, label in (("top1", "test top-1"), ("top5", "test top-5"), ("mean_class_acc", "test mean class")):
        ax2.plot(ep, [r[key] for r in rows], "o-", label=label)
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
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


def write_per_class(cm: np.ndarray, classes: list[str], path: Path, console: Console | None = None) -> None:
    """Writes per_class.csv and prints the same table with rich.

    Args:
        cm: Confusion matrix.
        classes: Class names in label order.
        path: Output CSV.
        console: Where to print the table (None: do not print).
    """
    rows = per_class_rows(cm, classes)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["class", "clips", "correct", "accuracy"])
        w.writeheader()
        w.writerows(rows)
    if console is not None:
        table = Table(title="per-class test accuracy (best epoch)")
        for col in ("class", "clips", "correct", "accuracy"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for r in rows:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
            table.add_row(r["class"], str(r["clips"]), str(r["correct"]), acc)
        console.print(table)
