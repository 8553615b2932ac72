"""Evaluation over a loader (reduced over DDP ranks): top-1/top-5, loss, mean class accuracy, confusion.

Multi-view batches (B, V, T, 3, H, W) (``--test-views``) are scored by averaging the V views' softmax
probabilities per clip (mmaction2's ``average_clips="prob"``); single-view batches (B, T, 3, H, W) by the
logits as they are, so ``1x1`` is exactly the single-view evaluation.
"""

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lsvit.pipeline.progress import progress_bar
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

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        """The scalar metrics for metrics.jsonl, e.g. ``test_top1`` or ``val_top1``."""
        values = {
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_acc": self.mean_class_acc,
        }
        return {**{prefix + k: v for k, v in values.items()}, prefix + "clips": self.n}


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


def clip_scores(
    model: torch.nn.Module,
    frames: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of a batch: ``(ranking scores, log-probabilities)``, both (B, num_classes) float32.

    Single view (B, T, 3, H, W): the logits and their log-softmax. Views (B, V, T, 3, H, W): the views'
    softmax probabilities averaged, and their log. Views run one at a time, so memory stays that of one
    view.
    """
    if frames.dim() == 5:
        with autocast():
            logits = model(prepare(frames)).float()
        return logits, F.log_softmax(logits, dim=1)
    probs = None
    for v in range(frames.shape[1]):
        with autocast():
            p = model(prepare(frames[:, v])).float().softmax(dim=1)  # (B, C)
        probs = p if probs is None else probs + p
    probs = probs / frames.shape[1]
    return probs, probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


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
    """Runs the model over an evaluation loader; every rank gets the same result.

    Clips are identified by key, so a clip that a rank saw twice (padding to equal batch counts) is
    counted once.

    Args:
        model: The model (or its EMA copy), switched to eval mode here.
        loader: Yields ``(frames uint8 (B, [V,] T, 3, H, W), labels, keys)``.
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
    for frames, labels, keys in progress_bar(
        loader, total=steps, desc="eval", leave=False, disable=not ctx.is_main
    ):
        labels = labels.to(ctx.device)
        scores, log_probs = clip_scores(model, frames, prepare, autocast)
        loss = F.nll_loss(log_probs, labels, reduction="none")  # = cross_entropy(logits) for one view
        top = scores.topk(k, dim=1).indices
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
