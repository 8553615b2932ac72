"""Atomic checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain types only."""

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import timm
import torch

from lsvit.pipeline.atomic import RESUME_HINT, atomic_open
from lsvit.pipeline.errors import LsvitError, clip, short
from lsvit.trainer.checkpoint_check import CheckpointError, check_fields, read_checkpoint, state_mismatch
from lsvit.trainer.config import TrainConfig, config_keys
from lsvit.trainer.families import build_video_model, family
from lsvit.trainer.preprocess import IMAGENET_MEAN, IMAGENET_STD

FORMAT_VERSION = 2  # 2: the preprocessing contract ("preprocess"), validation-based selection
MAX_PARAMS = 4_000_000_000  # above ViT-G (1.8B): a model_kwargs typo, not a model to train here


def save_checkpoint(state: dict[str, Any], path: Path, hint: str = RESUME_HINT) -> None:
    """Writes a checkpoint atomically: a crash or a full disk mid-write leaves the previous file intact.

    Args:
        state: Tensors and plain Python types only (so that ``weights_only=True`` can load it).
        path: Destination, e.g. ``runs/NAME/last.pt``.
        hint: What the error message tells the user to do once the cause is fixed.

    Raises:
        WriteError: The file could not be written (naming it and the operating system's reason).
    """
    with atomic_open(path, "wb", hint) as fh:
        sink = _Sink(fh)
        try:
            torch.save({"format_version": FORMAT_VERSION, **state}, sink)
        except RuntimeError as e:  # torch's zip writer reports a failed write without its errno
            if sink.error is None:
                raise
            raise sink.error from e


class _Sink:
    """A file's ``write`` that keeps the ``OSError`` which torch's writer turns into a bare RuntimeError."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.error = fh, None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.fh.flush()


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", resume: bool = False
) -> dict[str, Any]:
    """Loads and checks a checkpoint without unpickling arbitrary objects.

    The fields are checked (:mod:`lsvit.trainer.checkpoint_check`), the saved config is validated like
    any config (``model_kwargs`` included), and the saved tensors are compared with the model that config
    builds on the ``meta`` device, so nothing is allocated for a file that does not fit.

    Args:
        path: A ``last.pt``/``best.pt`` written by ``lsvit-train``.
        map_location: Where tensors go.
        resume: Also check the training state a resumed run restores.

    Returns:
        The checkpoint dict (``model``, ``config``, ``classes``, ``epoch``, ...).

    Raises:
        CheckpointError: Missing, unreadable, not an ``lsvit-train`` checkpoint, a field of the wrong type,
            or tensors that do not match its own config.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    check_fields(ckpt, path, resume=resume)
    cfg = saved_config(ckpt, path)
    expected = _meta_state(cfg, ckpt)
    for name in ("model", "ema") if expected is not None else ():
        why = state_mismatch(expected, ckpt[name]) if ckpt.get(name) is not None else None
        if why is not None:
            which = "" if name == "model" else " (its EMA weights)"
            raise CheckpointError(f"checkpoint {path} does not match its own config{which}: {why}")
    return ckpt


def saved_config(ckpt: dict[str, Any], path: Path | str = "checkpoint") -> TrainConfig:
    """A checkpoint's config, validated like any other (``model_kwargs`` against the model's table).

    Raises:
        CheckpointError: Options this version does not know, or values it refuses.
    """
    config = ckpt["config"]
    unknown = sorted(str(k) for k in config if k not in config_keys())
    if unknown:
        raise CheckpointError(
            f"checkpoint {path} was written by another version of lsvit (options {clip(', '.join(unknown))}); "
            "use that version, or start a new run"
        )
    try:
        return TrainConfig(**config)
    except LsvitError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {e}") from e
    except TypeError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid config ({clip(str(e))})") from e


def _meta_state(cfg: TrainConfig, ckpt: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The config's model's state dict on the ``meta`` device (shapes only, nothing allocated).

    None when the model cannot be built there (a family whose constructor needs real tensors): the real
    build then checks the weights as they load.
    """
    try:
        with torch.device("meta"):
            model = build_model(
                cfg, len(ckpt["classes"]), pretrained=False, model_config=ckpt.get("model_config")
            )
    except LsvitError:
        raise
    except Exception:  # any failure only means no shape check before the real build
        return None
    return model.state_dict()


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
    _check_size(cfg, kwargs)
    try:
        model = timm.create_model(cfg.model, **kwargs)
    except LsvitError:  # the model's own check of its hyper-parameters: already a clear message
        raise
    except TypeError as e:  # an unknown model_kwargs key
        raise LsvitError(f"cannot build {cfg.model} with model_kwargs={short(cfg.model_kwargs)}: {e}") from e
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


def _check_size(cfg: TrainConfig, kwargs: dict[str, Any]) -> None:
    """Refuses a model above :data:`MAX_PARAMS`, counted on the ``meta`` device (no memory used)."""
    if torch.get_default_device().type == "meta":
        return  # already the shape-only build
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in timm.create_model(cfg.model, **kwargs).parameters())
    except Exception:  # the real build below reports what is wrong
        return
    if n > MAX_PARAMS:
        raise LsvitError(
            f"{cfg.model} with model_kwargs {short(cfg.model_kwargs)} has {n / 1e9:.1f}B parameters, more "
            f"than the {MAX_PARAMS / 1e9:.0f}B allowed; lower embed_dim or depth"
        )


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
        ckpt: What :func:`load_checkpoint` returned (checked there).

    Returns:
        The model on CPU in eval mode.
    """
    model = build_model(
        saved_config(ckpt), len(ckpt["classes"]), pretrained=False, model_config=ckpt.get("model_config")
    )
    load_weights(model, ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
    return model.eval()


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Loads a state dict strictly, turning a mismatch into a one-line :class:`CheckpointError`.

    Args:
        model: The freshly built model.
        state: Its saved weights.
    """
    why = state_mismatch(model.state_dict(), state)
    if why is not None:
        raise CheckpointError(f"checkpoint weights do not fit {type(model).__name__}: {why}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # e.g. a dtype that cannot be copied
        raise CheckpointError(
            f"checkpoint weights do not load into {type(model).__name__} ({clip(str(e))})"
        ) from e


def model_config(model: torch.nn.Module) -> str | None:
    """What a checkpoint keeps to rebuild the model beyond its options: an ``hf:`` model's config JSON."""
    config_json = getattr(model, "config_json", None)
    return config_json() if callable(config_json) else None
