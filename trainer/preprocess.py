"""The preprocessing contract of a trained model: what frames it expects, stored in every checkpoint.

Weights are only as good as the input they were trained on: a ViT from timm's augreg weights expects pixels
normalised with mean = std = 0.5, an ImageNet ViT from DeiT with (0.485, 0.456, 0.406) / (0.229, 0.224,
0.225). Training resolves the normalisation once (``--mean/--std``, else what the ``--init`` weights say,
else ImageNet's), writes it into the resolved config and into each checkpoint's ``preprocess`` entry, and
every later tool (predict, ``lsvit-eval``, export) reads it back through :func:`Preprocess.from_checkpoint`:
the one reader of that entry.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm.data.IMAGENET_DEFAULT_MEAN
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SOURCE_FRAMES = 16  # what `lsvit-pipeline extract --frames` writes unless told otherwise


@dataclass(frozen=True)
class Preprocess:
    """How a clip becomes the model's input.

    Attributes:
        mean: Per-channel RGB mean in 0-1 units.
        std: Per-channel RGB std in 0-1 units.
        img_size: Side of the square crop.
        num_frames: Frames per clip fed to the model.
        source_frames: Frames sampled uniformly from a video first (what extract stored per clip); the
            model's frames are taken uniformly from those.
        resize: The evaluation geometry: resize the short side to ``img_size``, centre crop.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    img_size: int
    num_frames: int
    source_frames: int = DEFAULT_SOURCE_FRAMES
    resize: str = "short-side+center-crop"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for checkpoints and reports."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "Preprocess":
        """Reads a checkpoint's contract (checkpoints before it existed used ImageNet's mean/std).

        Args:
            ckpt: A checkpoint loaded with ``lsvit.trainer.checkpoint.load_checkpoint``.

        Returns:
            The contract the model was trained under.
        """
        cfg = ckpt.get("config") or {}
        pre = ckpt.get("preprocess") or {}
        return cls(
            mean=_triple(pre.get("mean") or cfg.get("mean") or IMAGENET_MEAN),
            std=_triple(pre.get("std") or cfg.get("std") or IMAGENET_STD),
            img_size=int(pre.get("img_size") or cfg["img_size"]),
            num_frames=int(pre.get("num_frames") or cfg["num_frames"]),
            source_frames=int(pre.get("source_frames") or ckpt.get("source_frames") or DEFAULT_SOURCE_FRAMES),
            resize=str(pre.get("resize") or cls.resize),
        )

    def normalize(self, frames_uint8: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """uint8 (B, T, 3, H, W) -> normalised float32 on ``device`` (see :func:`normalize`)."""
        return normalize(frames_uint8, self.mean, self.std, device=device)

    def eval_transform(self):
        """The deterministic clip transform: resize the short side, centre crop (albumentations)."""
        from lsvit.trainer.augment import eval_transform  # albumentations only where frames are made

        return eval_transform(self.img_size)


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    v = tuple(float(x) for x in values)
    return (v * 3 if len(v) == 1 else v)[:3]  # type: ignore[return-value]


def normalize(
    frames_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (B, [V,] T, 3, H, W) -> normalised float, computed on the device.

    Send uint8 (4x fewer bytes than float) and convert there. Strides are kept, so channels-last
    batches from the loader stay channels-last.

    Args:
        frames_uint8: Batch from the loader (pinned when CUDA is used).
        mean: Per-channel mean in 0-1 units (the checkpoint's :class:`Preprocess`).
        std: Per-channel std in 0-1 units.
        device: Move there first (non-blocking) when given.
        dtype: Output dtype.

    Returns:
        ``(x / 255 - mean) / std`` as ``dtype``.
    """
    x = frames_uint8.to(device, non_blocking=True) if device is not None else frames_uint8
    m = torch.tensor(mean, dtype=dtype, device=x.device).view(-1, 1, 1) * 255.0
    s = torch.tensor(std, dtype=dtype, device=x.device).view(-1, 1, 1) * 255.0
    return (x.to(dtype) - m) / s
