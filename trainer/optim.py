"""Optimizer and learning-rate schedule: AdamW with optional layer-wise lr decay, cosine per update.

The schedule is a pure function of the options in force and the position in training: update
``epoch * updates_per_epoch + k``. So a resumed run rebuilds it from its (possibly changed) options instead
of loading the saved scheduler state, which would silently keep the old ``--lr``, ``--epochs``,
``--warmup-epochs`` or ``--min-lr`` (with nothing changed, the rebuilt schedule is the saved one).
"""

import math

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from lsvit.trainer.config import TrainConfig

SCHEDULE_KEYS = ("epochs", "lr", "min_lr", "warmup_epochs")  # options the schedule is built from


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on norms, biases and tokens; layer-wise lr decay when asked.

    With ``cfg.layer_decay`` the parameter groups come from timm's ``param_groups_layer_decay`` over the
    model's ``group_matcher`` (stem, each block, then the head at full rate): each group carries an
    ``lr_scale`` that timm's schedulers apply.

    Args:
        model: The model (not the DDP wrapper).
        cfg: The resolved config.

    Returns:
        The optimizer.
    """
    decay = None if cfg.layer_decay in (None, 1.0) else cfg.layer_decay
    return create_optimizer_v2(
        model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, layer_decay=decay
    )


def apply_options(opt: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    """Puts the current ``--lr`` and ``--weight-decay`` into (restored) optimizer groups.

    Groups without weight decay (norms, biases, tokens) keep 0; the schedule multiplies ``lr`` by each
    group's ``lr_scale`` (layer decay) itself.
    """
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] = cfg.lr
        if group.get("weight_decay", 0.0) > 0.0:
            group["weight_decay"] = cfg.weight_decay


def build_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, updates_per_epoch: int) -> CosineLRScheduler:
    """timm's cosine schedule over updates, with linear warmup from ``min_lr``.

    Args:
        opt: The optimizer (its groups' ``initial_lr`` set by :func:`apply_options` or at creation).
        cfg: The options in force.
        updates_per_epoch: Optimizer updates per epoch.

    Returns:
        The scheduler; call ``step_update(position)`` before the first update.
    """
    return CosineLRScheduler(
        opt,
        t_initial=cfg.epochs * updates_per_epoch,
        lr_min=cfg.min_lr,
        warmup_t=round(cfg.warmup_epochs * updates_per_epoch),
        warmup_lr_init=cfg.min_lr,
        t_in_epochs=False,
    )


def updates_per_epoch(steps: int, accum_steps: int) -> int:
    """Optimizer updates per epoch: every ``accum_steps`` batches, and one for a shorter last group."""
    return math.ceil(steps / accum_steps)


def schedule_changes(old: dict, cfg: TrainConfig, old_upe: int | None, upe: int) -> list[str]:
    """What differs between a checkpoint's schedule and the one in force, as ``name old -> new``.

    Args:
        old: The checkpoint's config.
        cfg: The options in force.
        old_upe: The checkpoint's updates per epoch (None when unknown).
        upe: Updates per epoch now.

    Returns:
        The changes; empty when the schedule is the same.
    """
    out = [f"{k} {old.get(k)} -> {getattr(cfg, k)}" for k in SCHEDULE_KEYS if old.get(k) != getattr(cfg, k)]
    if old_upe is not None and old_upe != upe:
        out.append(f"updates per epoch {old_upe} -> {upe}")
    return out
