"""LS-ViT training: the timm-registered model, the streaming loader, the loop, evaluation and prediction."""
