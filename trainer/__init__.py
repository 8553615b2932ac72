"""LS-ViT training: the timm-registered model, the streaming loader, the loop and prediction."""

from trainer import lsvit as lsvit  # noqa: F401  registers the lsvit_* models with timm
