"""What an ``lsvit-train`` checkpoint must hold, checked before anything uses it.

Every loader of checkpoints (predict, eval, export, the demo, ``--resume``, the final test of ``best.pt``)
goes through ``lsvit.trainer.checkpoint.load_checkpoint``, which reads the file here
(:func:`read_checkpoint`: ``weights_only``, never a pickle), checks its fields (:func:`check_fields`) and
compares its tensors with the model its own config builds on the ``meta`` device (:func:`state_mismatch`),
so a damaged, edited or foreign file ends in one line naming the file and the field, before any model is
allocated.
"""

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from lsvit.pipeline.errors import LsvitError, clip, short
from lsvit.trainer.rngstate import rng_problem

_NOT_OURS = "{path} is not an lsvit checkpoint ({why}); pass a best.pt or last.pt written by lsvit-train"
# Fields every reader needs, and those a resumed run needs besides (trainer.train._Run._state).
MODEL_FIELDS = ("model", "config", "classes", "epoch")
RESUME_FIELDS = ("optimizer", "step", "best_epoch", "since_best", "best_confusion", "rng")
MAX_SOURCE_FRAMES = 4096
MAX_MODEL_CONFIG = 1 << 20  # an hf: model's config.json: a few KB


class CheckpointError(LsvitError):
    """A checkpoint that is missing, unreadable or does not fit the run."""


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with a one-line error for every way a file can be wrong.

    Args:
        path: The checkpoint file.
        map_location: Where tensors go.

    Returns:
        The loaded dict (its fields not yet checked).

    Raises:
        CheckpointError: Missing, not a regular file, empty, truncated, not a torch file, holding pickled
            objects (never unpickled; torch's advice to retry with ``weights_only=False`` is not passed on),
            or not a dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a runs/<name>/last.pt or best.pt")
    if not path.is_file():
        raise CheckpointError(_NOT_OURS.format(path=path, why="a folder or device, not a file"))
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({e.strerror or e})") from e
    if size == 0:
        raise CheckpointError(_NOT_OURS.format(path=path, why="an empty file (0 bytes)"))
    try:
        with warnings.catch_warnings():  # its notes on foreign pickles would only precede our one line
            warnings.filterwarnings("ignore", module="torch._weights_only_unpickler")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path} ({e.strerror or e})") from e
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for foreign files
        raise CheckpointError(_NOT_OURS.format(path=path, why=_load_failure(path, e))) from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            _NOT_OURS.format(path=path, why=f"it holds a {type(ckpt).__name__}, not a dict")
        )
    return ckpt


def _load_failure(path: Path, e: Exception) -> str:
    """Why torch could not load a file, in a few words (never torch's weights_only=False advice)."""
    if "weights only load failed" in str(e).lower():
        return "it holds pickled Python objects, which lsvit never unpickles"
    with open(path, "rb") as fh:
        head = fh.read(2)
    return (
        "a damaged or truncated torch file" if head == b"PK" else "not a torch file"
    )  # torch files are zips


def check_fields(ckpt: dict[str, Any], path: Path, resume: bool = False) -> None:
    """Checks the types and ranges of a checkpoint's fields (the model's tensors are checked later).

    Args:
        ckpt: What :func:`read_checkpoint` returned.
        path: The file, for messages.
        resume: Also check what a resumed run restores (optimizer, step, RNG states, selection state).

    Raises:
        CheckpointError: ``X is not an lsvit checkpoint (missing ...)`` or ``checkpoint X: field ...``.
    """
    missing = [k for k in MODEL_FIELDS if k not in ckpt]
    if missing:
        raise CheckpointError(_NOT_OURS.format(path=path, why=f"missing {', '.join(missing)}"))
    _check_tensors(ckpt["model"], "model", path)
    if ckpt.get("ema") is not None:
        _check_tensors(ckpt["ema"], "ema", path)
    bad = _field_problem(ckpt)
    if bad is None and resume:
        missing = [k for k in RESUME_FIELDS if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"checkpoint {path} cannot be resumed: it has no {', '.join(missing)} (a weights-only copy?); "
                "start a new run with --init it instead"
            )
        bad = _resume_problem(ckpt)
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path}: {bad}; the file was damaged or edited: pass another checkpoint"
        )


def _check_tensors(state: Any, name: str, path: Path) -> None:
    if not isinstance(state, dict) or not state:
        raise CheckpointError(
            f"checkpoint {path}: {name} must be a non-empty mapping of tensors, not {short(state, 40)}"
        )
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: {name} entry {short(k, 60)} is not a named tensor")


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _field_problem(ckpt: dict[str, Any]) -> str | None:
    """The first field every reader uses that has the wrong type or range, described; None when all fit."""
    classes, config = ckpt["classes"], ckpt["config"]
    if not isinstance(config, dict):
        return f"config must be a mapping of options, not {short(config, 40)}"
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
        return f"classes must be a non-empty list of class names, not {short(classes, 60)}"
    if len(set(classes)) != len(classes):
        return "classes holds a name twice"
    if not _is_int(ckpt["epoch"]):
        return f"epoch={short(ckpt['epoch'], 40)} must be an integer >= 0"
    if "source_frames" in ckpt and not (
        _is_int(ckpt["source_frames"], 1) and ckpt["source_frames"] <= MAX_SOURCE_FRAMES
    ):
        return (
            f"source_frames={short(ckpt['source_frames'], 40)} must be an integer in 1..{MAX_SOURCE_FRAMES}"
        )
    mc = ckpt.get("model_config")
    if mc is not None and not (isinstance(mc, str) and len(mc) <= MAX_MODEL_CONFIG):
        return (
            f"model_config must be a Hugging Face config as JSON text (at most {MAX_MODEL_CONFIG} characters)"
        )
    return _preprocess_problem(ckpt.get("preprocess"), config)


def _preprocess_problem(pre: Any, config: dict[str, Any]) -> str | None:
    if pre is None:
        return None  # checkpoints from before the entry: Preprocess.from_checkpoint falls back on config
    if not isinstance(pre, dict):
        return f"preprocess must be a mapping, not {short(pre, 40)}"
    for name in ("mean", "std"):
        v = pre.get(name)
        ok = isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)
        if not ok or not all(math.isfinite(x) and (x > 0 if name == "std" else True) for x in v):
            return f"preprocess {name}={short(v, 40)} must be 3 finite numbers" + (
                " > 0" if name == "std" else ""
            )
    for name in ("img_size", "num_frames", "source_frames"):
        v = pre.get(name)
        if not (_is_int(v, 1) and v <= MAX_SOURCE_FRAMES):
            return f"preprocess {name}={short(v, 40)} must be an integer in 1..{MAX_SOURCE_FRAMES}"
        if name in config and config[name] != v:
            return f"preprocess {name}={v} differs from config {name}={short(config[name], 40)}"
    return None


def _resume_problem(ckpt: dict[str, Any]) -> str | None:
    """The first training-state field a resumed run restores that is malformed, described; None when all fit."""
    epoch = ckpt["epoch"]
    if not (isinstance(ckpt["optimizer"], dict) and {"state", "param_groups"} <= set(ckpt["optimizer"])):
        return f"optimizer={short(ckpt['optimizer'], 40)} is not an optimizer state (state, param_groups)"
    if not _is_int(ckpt["step"]):
        return f"step={short(ckpt['step'], 40)} must be an integer >= 0"
    if not (_is_int(ckpt["best_epoch"]) and ckpt["best_epoch"] <= epoch):
        return f"best_epoch={short(ckpt['best_epoch'], 40)} must be an integer in 0..epoch ({epoch})"
    if not (_is_int(ckpt["since_best"]) and ckpt["since_best"] <= epoch):
        return f"since_best={short(ckpt['since_best'], 40)} must be an integer in 0..epoch ({epoch})"
    n = len(ckpt["classes"])
    cm = ckpt["best_confusion"]
    if not (isinstance(cm, torch.Tensor) and tuple(cm.shape) == (n, n) and not cm.is_floating_point()):
        return f"best_confusion must be an integer tensor of shape ({n}, {n}) (one row per class)"
    for name in ("best_val_top1",):
        v = ckpt.get(name)
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1):
            return f"{name}={short(v, 40)} must be a fraction in [0, 1] or null"
    if not isinstance(ckpt.get("best_test") or {}, dict):
        return f"best_test={short(ckpt['best_test'], 40)} must be a mapping of test metrics"
    upe = ckpt.get("updates_per_epoch")
    if upe is not None and not _is_int(upe, 1):
        return f"updates_per_epoch={short(upe, 40)} must be an integer >= 1"
    for name in ("scaler", "scheduler"):
        if ckpt.get(name) is not None and not isinstance(ckpt[name], dict):
            return f"{name}={short(ckpt[name], 40)} must be a mapping"
    rng = ckpt["rng"]
    if not (isinstance(rng, list) and rng):
        return f"rng={short(rng, 40)} must be a non-empty list of RNG states (one per rank)"
    for i, state in enumerate(rng):
        if (why := rng_problem(state)) is not None:
            return f"rng[{i}] {why}"
    return None


def state_mismatch(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], limit: int = 3
) -> str | None:
    """How a saved state dict differs from a model's, in one line; None when names and shapes agree.

    Args:
        expected: The model's ``state_dict()`` (on the ``meta`` device: only shapes matter).
        state: The saved tensors.
        limit: How many names to list per kind of difference.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} is {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, items in (("", shapes), ("missing: ", missing), ("unexpected: ", unexpected)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(label + clip(", ".join(items[:limit]), 300) + more)
    return "; ".join(parts) or None
