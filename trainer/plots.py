"""The run's figures: learning curves, the confusion matrix and per-class accuracy (PNG, matplotlib Agg).

Every figure says what it shows: which checkpoint, epoch and subset; the accuracy axes scale to the data
(a model at 0.06 top-1 is not a flat line at the bottom of a 0-1 axis) and carry the chance level, so a
reader sees at once whether a run learnt anything.
"""

import math
from pathlib import Path

import numpy as np

from lsvit.trainer.evaluate import per_class_accuracy


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows: list[dict], key: str) -> list[float] | None:
    """The column ``key`` of the metrics rows, or None when some epoch lacks it."""
    values = [r.get(key) for r in rows]
    return None if any(v is None for v in values) else [float(v) for v in values]


def accuracy_limit(values: list[float], chance: float) -> float:
    """The top of an accuracy axis: a margin above the highest value and the chance line (1 shows whole)."""
    finite = [v for v in values if math.isfinite(v)]
    return min(1.03, max([chance, *finite]) * 1.15 + 0.02)


def plot_curves(rows: list[dict], path: Path, num_classes: int) -> None:
    """Loss, accuracy and learning rate per epoch, with the chance level and best.pt's epoch marked.

    Args:
        rows: The metrics.jsonl records (``epoch``, ``lr``, ``train_loss``, ``val_*``, ``test_*``,
            ``best_epoch``).
        path: Output PNG.
        num_classes: Classes, for the chance levels (1/C top-1, 5/C top-5).
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in rows]
    best = rows[-1].get("best_epoch") if rows else None
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label in (("train_loss", "train"), ("val_loss", "val"), ("test_loss", "test")):
        if (ys := _series(rows, key)) is not None:
            ax_loss.plot(ep, ys, "o-", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    shown: list[float] = []
    for key, label, style in (
        ("val_top1", "val top-1", "o-"),
        ("test_top1", "test top-1", "o-"),
        ("val_top5", "val top-5", "s--"),
        ("test_top5", "test top-5", "s--"),
    ):
        if (ys := _series(rows, key)) is not None:
            ax_acc.plot(ep, ys, style, ms=3, label=label)
            shown += ys
            if key == "val_top1" and best in ep:
                ax_acc.plot([best], [ys[ep.index(best)]], "*", ms=14, color="gold", mec="k", zorder=5)
    chance1, chance5 = 1 / num_classes, min(5, num_classes) / num_classes
    ax_acc.axhline(chance1, color="gray", ls=":", label=f"chance top-1 ({chance1:.3f})")
    if any(_series(rows, k) is not None for k in ("val_top5", "test_top5")) and chance5 < 1:
        ax_acc.axhline(chance5, color="gray", ls="-.", lw=0.8, label=f"chance top-5 ({chance5:.3f})")
        shown.append(chance5)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (validation selects, test never does)")
    ax_acc.set_ylim(0, accuracy_limit(shown, chance1))
    if (lr := _series(rows, "lr")) is not None:
        ax_lr.plot(ep, lr, "o-", ms=3, color="tab:purple")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate (at each epoch's end)")
    for ax in (ax_loss, ax_acc, ax_lr):
        if best is not None:
            ax.axvline(best, color="goldenrod", ls="--", lw=1, label=f"best.pt (epoch {best})")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ep:
            ax.set_xlim(min(ep) - 0.5, max(ep) + 0.5)
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix as a PNG with class names on both axes.

    Args:
        cm: ``cm[true, predicted]`` counts.
        classes: Class names in label order.
        path: Output PNG.
        title: What it shows (checkpoint, epoch, subset, views).
    """
    plt = _pyplot()
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


def plot_per_class(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Per-class accuracy as horizontal bars, worst first, with the chance level and the class mean.

    Args:
        cm: ``cm[true, predicted]`` counts.
        classes: Class names in label order.
        path: Output PNG.
        title: What it shows (checkpoint, epoch, subset, views).
    """
    plt = _pyplot()
    acc = per_class_accuracy(cm)
    order = [i for i in np.argsort(np.nan_to_num(acc, nan=np.inf), kind="stable") if not math.isnan(acc[i])]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.2 * len(order) + 1.5)))
    y = np.arange(len(order))
    values = [float(acc[i]) for i in order]
    ax.barh(y, values, color="tab:blue")
    right = accuracy_limit(values, 1 / len(classes)) * 1.1  # room for the value labels
    for yi, v in zip(y, values, strict=True):
        ax.text(v + right * 0.01, yi, f"{v:.2f}", va="center", fontsize=6)
    ax.set_yticks(y, [f"{classes[i]} ({int(cm[i].sum())})" for i in order], fontsize=7)
    ax.set_ylim(len(order) - 0.5, -0.5)  # worst at the top
    chance = 1 / len(classes)
    ax.axvline(chance, color="gray", ls=":", label=f"chance ({chance:.3f})")
    if order:
        mean = float(np.nanmean(acc))
        ax.axvline(mean, color="tab:red", ls="--", label=f"mean per class ({mean:.3f})")
    missing = len(classes) - len(order)
    note = f"; {missing} class(es) without clips left out" if missing else ""
    ax.set(xlabel=f"accuracy (clips in brackets{note})", xlim=(0, right), title=title)
    ax.legend(fontsize=8, loc="upper right")  # the worst (shortest) bars are at the top
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
