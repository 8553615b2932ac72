"""Resume policy: what a resumed run takes from its checkpoint, what it may change, and what it refuses.

``--resume auto|PATH`` starts from the run's saved config (:func:`with_saved_config`), so nothing needs
repeating. Options that fix what the saved weights and optimizer state mean (:data:`RESUME_FIXED`) must stay;
everything else may change (``epochs``, ``lr``, ``min_lr``, ``warmup_epochs``, ``patience``, ``workers``,
``batch_size``, ``mixup``, ...): a changed schedule option rebuilds the lr schedule from the current update
(``trainer.optim``), and every change is printed and recorded in ``config.json``.
"""

from pathlib import Path
from typing import Any

from lsvit.pipeline.errors import clip
from lsvit.trainer.checkpoint import CheckpointError, load_checkpoint
from lsvit.trainer.config import TrainConfig, config_keys

# Options that fix the shapes or meaning of the saved weights, optimizer groups or selection metric.
RESUME_FIXED = (
    "model",
    "model_kwargs",
    "img_size",
    "num_frames",
    "mean",
    "std",
    "layer_decay",
    "val_fraction",
    "ema",
)
# Options that only matter when a run starts: a resumed run's weights come from its checkpoint.
START_ONLY = ("init", "init_partial")
_NOT_CHANGES = ("resume", "out", *START_ONLY)


def checkpoint_path(values: dict[str, Any]) -> Path:
    """The checkpoint ``resume`` names: ``<out>/last.pt`` for ``auto``, else the given path."""
    resume = values["resume"]
    return Path(values.get("out") or TrainConfig.out) / "last.pt" if resume == "auto" else Path(resume)


def with_saved_config(values: dict[str, Any]) -> dict[str, Any]:
    """The option values of a resumed run: the checkpoint's config, overridden by ``values``.

    Args:
        values: Options from ``--config`` and the command line, holding ``resume``.

    Returns:
        The merged values. ``out`` defaults to the checkpoint's folder for ``--resume PATH``.

    Raises:
        CheckpointError: The checkpoint is missing, unreadable or malformed, or its config is not of this
            version.
    """
    path = checkpoint_path(values)
    saved = dict(load_checkpoint(path, resume=True)["config"])  # checked, config included
    merged = {**saved, **values}
    if "out" not in values and values["resume"] != "auto":
        merged["out"] = str(path.parent)
    return merged


def resume_changes(ckpt: dict[str, Any], cfg: TrainConfig, classes: list[str], path: Path) -> list[str]:
    """Checks a resumed run's options against its checkpoint.

    ``mean``/``std`` left unset (None) are taken from the checkpoint first.

    Args:
        ckpt: The loaded checkpoint.
        cfg: The options in force (updated in place for ``mean``/``std``).
        classes: The classes of the shards it trains on.
        path: The checkpoint file (for messages).

    Returns:
        The allowed changes, as ``name old -> new`` (start-only options excluded).

    Raises:
        CheckpointError: A fixed option changed, or the classes differ; naming each.
    """
    old = ckpt["config"]
    for name in ("mean", "std"):
        if getattr(cfg, name) is None and old.get(name) is not None:
            setattr(cfg, name, list(old[name]))
    bad = [
        f"{k}: {old[k]!r} -> {getattr(cfg, k)!r}"
        for k in RESUME_FIXED
        if k in old and old[k] != getattr(cfg, k)
    ]
    if ckpt["classes"] != classes:
        bad.append("classes differ from the shards' index.json")
    if bad:
        raise CheckpointError(
            f"cannot resume from {path}: {'; '.join(bad)}; keep those options or start a new --out"
        )
    new = cfg.to_dict()
    return [
        f"{k} {old.get(k)!r} -> {new[k]!r}"
        for k in config_keys()
        if k not in (*RESUME_FIXED, *_NOT_CHANGES) and k in old and old[k] != new[k]
    ]


def ignored_on_resume(ckpt: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Start-only options that differ from the checkpoint's: the resumed run ignores them (and says so)."""
    old = ckpt["config"]
    return [k for k in START_ONLY if k in old and old[k] != getattr(cfg, k)]


def restore_state(stepper: Any, ckpt: dict[str, Any], path: Path, rank: int, world_size: int) -> None:
    """Restores the weights, optimizer, scaler, EMA and this rank's RNG states of a checked checkpoint.

    Args:
        stepper: The run's ``trainer.stepper.Stepper``.
        ckpt: The checkpoint (``load_checkpoint(..., resume=True)``).
        path: Its file, for messages.
        rank: This process's rank (its own RNG states when the world size is unchanged, else rank 0's).
        world_size: Ranks now.

    Raises:
        CheckpointError: Saved state that the check of its fields cannot judge alone (an optimizer of
            other parameter groups, RNG states torch refuses).
    """
    from lsvit.trainer.checkpoint import load_weights
    from lsvit.trainer.rngstate import set_rng_state

    rng = ckpt["rng"]
    try:
        stepper.load(ckpt, load_weights)
        set_rng_state(rng[rank] if len(rng) == world_size else rng[0])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"cannot resume from {path}: its training state does not fit the run ({clip(str(e))}); "
            "it was damaged or edited: resume from another checkpoint or start a new --out"
        ) from e
