"""LS-ViT training: the timm-registered model, the streaming loader, the loop and prediction."""

from trainer import lsvit as lsvit  # importing registers the lsvit_* and vit_frameavg_* models with timm
