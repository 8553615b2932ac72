"""Mixup and CutMix for clips with timm's ``Mixup``, and the matching loss.

timm's ``Mixup`` works on image batches (B, C, H, W): CutMix cuts one box ``x[:, :, y0:y1, x0:x1]`` out of
the last two dimensions. A clip batch (B, T, C, H, W) viewed as (B, T*C, H, W) therefore gets one box and
one lambda per clip (or per batch, in the default ``batch`` mode), the same for all its frames: the pasted
region moves with the clip's time axis instead of flickering between frames. Mixup blends whole clips.
Label smoothing is folded into the soft targets, which ``SoftTargetCrossEntropy`` scores.
"""

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from lsvit.trainer.config import TrainConfig


class ClipMixup:
    """Mixup/CutMix of (B, T, C, H, W) clips with per-clip boxes shared by all frames."""

    def __init__(self, cfg: TrainConfig, num_classes: int) -> None:
        """Builds timm's ``Mixup`` from ``--mixup``, ``--cutmix``, ``--mixup-prob``, ``--mixup-switch-prob``,
        ``--mixup-mode`` and ``--label-smoothing``.

        Args:
            cfg: The resolved config (mixup or cutmix > 0).
            num_classes: Classes of the soft targets.
        """
        self.mix = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mixup_prob,
            switch_prob=cfg.mixup_switch_prob,
            mode=cfg.mixup_mode,
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixes a batch.

        Args:
            clips: (B, T, C, H, W) normalised float clips, B even.
            labels: (B,) class indices.

        Returns:
            ``(mixed clips (B, T, C, H, W), soft targets (B, num_classes))``.
        """
        B, T, C, H, W = clips.shape
        flat = clips.reshape(B, T * C, H, W)  # (B, T*C, H, W): timm's box spans all frames and channels
        flat, target = self.mix(flat, labels)
        return flat.view(B, T, C, H, W), target


def build_loss(cfg: TrainConfig, num_classes: int) -> tuple[torch.nn.Module, ClipMixup | None]:
    """The training loss and, when mixing is on, the batch mixer whose soft targets it takes.

    Returns:
        ``(SoftTargetCrossEntropy, ClipMixup)`` with mixup/cutmix, else
        ``(CrossEntropyLoss(label_smoothing), None)``.
    """
    if cfg.mixup > 0 or cfg.cutmix > 0:
        return SoftTargetCrossEntropy(), ClipMixup(cfg, num_classes)
    return torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), None
