"""Atomic checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain types only."""

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.families import build_video_model, family
from lsvit.trainer.preprocess import IMAGENET_MEAN, IMAGENET_STD

FORMAT_VERSION = 2  # 2: the preprocessing contract ("preprocess"), validation-based selection


class CheckpointError(LsvitError):
    """A checkpoint that is missing, unreadable or does not fit the run."""


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as tensors and plain types."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),  # (int, tuple[int, ...], float | None)
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` captured (CUDA states only where the devices exist)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Writes a checkpoint atomically: a crash mid-write leaves the previous file intact.

    Args:
        state: Tensors and plain Python types only (so that ``weights_only=True`` can load it).
        path: Destination, e.g. ``runs/NAME/last.pt``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint without unpickling arbitrary objects.

    Args:
        path: A ``last.pt``/``best.pt`` written by ``lsvit-train``.
        map_location: Where tensors go.

    Returns:
        The checkpoint dict (``model``, ``config``, ``classes``, ``epoch``, ...).

    Raises:
        CheckpointError: Missing, unreadable, or not an ``lsvit-train`` checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a runs/<name>/last.pt or best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot load checkpoint {path}: {str(e).splitlines()[0]}") from e
    missing = [
        k for k in ("model", "config", "classes", "epoch") if not (isinstance(ckpt, dict) and k in ckpt)
    ]
    if missing:
        raise CheckpointError(f"{path} is not an lsvit-train checkpoint (missing {', '.join(missing)})")
    return ckpt


def build_model(
    cfg: TrainConfig,
    num_classes: int,
    pretrained: bool = True,
    log: Callable[[str], None] | None = None,
    classes: list[str] | None = None,
    model_config: str | None = None,
) -> torch.nn.Module:
    """Creates the config's model: the one place models are built (training, resume, predict, eval).

    With ``pretrained`` and ``cfg.init``, the weights are mapped on by :func:`lsvit.trainer.transfer.load_init`
    (which refuses an incomplete trunk unless ``cfg.init_partial``) and the report is logged. The model's
    ``pretrained_cfg["mean"/"std"]`` is then the input normalisation in force, as with timm's own pretrained
    models: ``cfg.mean/std`` when given, else what the ``--init`` source says, else ImageNet's (the model's
    default), with a warning when ``--init`` gave no hint or ``--mean/--std`` contradict it.

    Args:
        cfg: The resolved config.
        num_classes: Classes in the shards.
        pretrained: Load ``cfg.init`` (False when the weights come from an lsvit checkpoint anyway).
        log: Where to print the init report and warnings (None: silent, e.g. on DDP ranks other than 0).
        classes: The class names (a Hugging Face head that already names them is kept).
        model_config: A ``tv:``/``hf:`` model's own config kept in a checkpoint (``model_config``), to
            rebuild an ``hf:`` model without its folder (``lsvit.trainer.families``).

    Returns:
        The model on CPU.

    Raises:
        LsvitError: ``model_kwargs`` the model does not accept, or ``--init`` weights that do not fit.
    """
    say = log or (lambda _: None)
    if family(cfg.model) != "timm":  # tv:/hf: models bring their own defaults and weights
        model, default = build_video_model(cfg, num_classes, pretrained, say, classes, model_config)
        model.pretrained_cfg = _normalisation(cfg, None, default, say)
        return model
    kwargs: dict[str, Any] = dict(
        num_classes=num_classes,
        img_size=cfg.img_size,
        num_frames=cfg.num_frames,
        drop_path_rate=cfg.drop_path,
        **cfg.model_kwargs,
    )
    try:
        model = timm.create_model(cfg.model, **kwargs)
    except LsvitError:  # the model's own check of its hyper-parameters: already a clear message
        raise
    except TypeError as e:  # an unknown model_kwargs key
        raise LsvitError(f"cannot build {cfg.model} with model_kwargs={cfg.model_kwargs}: {e}") from e
    hint = None
    if pretrained and cfg.init is not None:
        from lsvit.trainer.transfer import load_init

        report = load_init(model, cfg.init, partial=cfg.init_partial)
        say(report.line())
        hint = report.weights
    pcfg = dict(getattr(model, "pretrained_cfg", None) or {})
    default = (tuple(pcfg.get("mean") or IMAGENET_MEAN), tuple(pcfg.get("std") or IMAGENET_STD))
    model.pretrained_cfg = dict(pcfg, **_normalisation(cfg, hint, default, say))
    return model


def _normalisation(
    cfg: TrainConfig,
    hint: Any,
    default: tuple[tuple[float, ...], tuple[float, ...]],
    say: Callable[[str], None],
) -> dict[str, tuple[float, ...]]:
    """mean/std in force: explicit > the --init source's > the model's own default (LS-ViT: ImageNet's)."""
    given = cfg.mean is not None and cfg.std is not None
    if hint is not None and hint.mean is not None:
        if given and (tuple(cfg.mean), tuple(cfg.std)) != (tuple(hint.mean), tuple(hint.std)):
            say(
                f"warning: --mean/--std {tuple(cfg.mean)}/{tuple(cfg.std)} differ from {hint.mean}/{hint.std} "
                f"({hint.norm_from}); using --mean/--std"
            )
        elif not given:
            say(f"normalisation: mean {hint.mean} std {hint.std} from {hint.norm_from}")
            return {"mean": tuple(hint.mean), "std": tuple(hint.std)}
    elif hint is not None and not given:
        say(
            f"warning: --init {hint.label} says nothing about its input normalisation; using the model's "
            f"default mean {default[0]} std {default[1]}: pass --mean/--std if its weights expect others "
            "(timm's augreg ViTs: 0.5,0.5,0.5)"
        )
    if given:
        return {"mean": tuple(cfg.mean), "std": tuple(cfg.std)}
    return {"mean": default[0], "std": default[1]}


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuilds a trained model from a loaded checkpoint (EMA weights when the run kept an EMA).

    Args:
        ckpt: What :func:`load_checkpoint` returned.

    Returns:
        The model on CPU in eval mode.
    """
    try:
        cfg = TrainConfig(**ckpt["config"])
    except TypeError as e:
        raise CheckpointError(f"checkpoint config does not fit this version of lsvit: {e}") from e
    model = build_model(cfg, len(ckpt["classes"]), pretrained=False, model_config=ckpt.get("model_config"))
    load_weights(model, ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
    return model.eval()


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Loads a state dict strictly, turning a mismatch into a one-line :class:`CheckpointError`.

    Args:
        model: The freshly built model.
        state: Its saved weights.
    """
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint weights do not fit {type(model).__name__} (missing: {', '.join(missing[:5]) or '-'}; "
            f"unexpected: {', '.join(unexpected[:5]) or '-'}); it was written by another version of the model"
        )


def model_config(model: torch.nn.Module) -> str | None:
    """What a checkpoint keeps to rebuild the model beyond its options: an ``hf:`` model's config JSON."""
    config_json = getattr(model, "config_json", None)
    return config_json() if callable(config_json) else None
