"""TensorBoard event files of a run, in its folder next to ``metrics.jsonl`` (``tensorboard --logdir runs``).

Written by rank 0 with ``torch.utils.tensorboard.SummaryWriter``; the step axis is the optimizer update:

- per update: ``train/loss`` (the update's mean loss over its micro-batches, rank 0's clips) and ``train/lr``;
- per epoch, at the epoch's last update: ``train/epoch_loss`` (all ranks), ``val/*`` and ``test/*`` (loss,
  top1, top5, mean_class_acc), ``val/best_top1``, ``perf/clips_per_s``, ``perf/epoch_s`` and ``epoch``;
- at the start: the run header and the resolved config as text.

The updates' losses stay on the device and are read once per epoch (no host sync per update); the file is
flushed at every epoch's end. A run (new or resumed) opens its writer with ``purge_step`` = its first
update, so events that a killed run wrote after its last checkpoint are hidden and no step appears twice.
"""

import json
import math
from pathlib import Path
from typing import Any

import torch

# metrics.jsonl key -> TensorBoard tag, per epoch (lr is logged per update instead).
EPOCH_TAGS = {
    "train_loss": "train/epoch_loss",
    "train_clips_per_s": "perf/clips_per_s",
    "epoch_s": "perf/epoch_s",
    "best_val_top1": "val/best_top1",
    "epoch": "epoch",
}
_SUBSET_METRICS = ("loss", "top1", "top5", "mean_class_acc")


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one metrics.jsonl row (missing and NaN values left out)."""
    tags = dict(EPOCH_TAGS)
    tags.update({f"{s}_{m}": f"{s}/{m}" for s in ("val", "test") for m in _SUBSET_METRICS})
    out = {}
    for key, tag in tags.items():
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[tag] = float(value)
    return out


class EventLog:
    """A run's TensorBoard writer (create it on rank 0 only)."""

    def __init__(self, folder: Path, first_step: int) -> None:
        """Opens a new event file in ``folder``.

        Args:
            folder: The run folder.
            first_step: The first update this invocation will log (the checkpoint's update + 1).
        """
        self._pending: list[tuple[int, torch.Tensor, float]] = []
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # a dependency of lsvit, but an environment may lack it: say so, go on
            self.writer, self.missing = None, f"no TensorBoard events: {e}; pip install 'tensorboard>=2.21'"
            return
        self.writer, self.missing = SummaryWriter(log_dir=str(folder), purge_step=first_step), None

    def text(self, tag: str, lines: list[str] | dict, step: int) -> None:
        """Logs the header (lines) or a config (a dict) as preformatted text."""
        if self.writer is None:
            return
        body = json.dumps(lines, indent=2, default=str) if isinstance(lines, dict) else "\n".join(lines)
        self.writer.add_text(tag, "    " + body.replace("\n", "\n    "), step)  # markdown code block

    def update(self, step: int, loss: torch.Tensor, lr: float) -> None:
        """Records one optimizer update; written at the epoch's end.

        Args:
            step: The update's number (1 for the run's first).
            loss: Its mean loss, a 0-dim tensor (may stay on the device).
            lr: The rate it applied (the schedule's, at full scale).
        """
        if self.writer is not None:
            self._pending.append((step, loss.detach().float().reshape(()), lr))

    def epoch(self, step: int, row: dict[str, Any]) -> None:
        """Writes the epoch's updates and its metrics, then flushes.

        Args:
            step: The epoch's last update.
            row: Its metrics.jsonl record.
        """
        if self.writer is None:
            return
        if self._pending:
            losses = torch.stack([p[1] for p in self._pending]).cpu().tolist()  # one device sync per epoch
            for (s, _, lr), loss in zip(self._pending, losses, strict=True):
                if math.isfinite(loss):
                    self.writer.add_scalar("train/loss", loss, s)
                self.writer.add_scalar("train/lr", lr, s)
            self._pending.clear()
        for tag, value in epoch_scalars(row).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
