"""The resolved training configuration: dataclass defaults < ``--config`` file < command-line flags."""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsvit.pipeline.errors import LsvitError

BALANCE = ("none", "oversample", "undersample", "hybrid")
AMP = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cuda", "mps", "cpu")
MODEL_PATTERNS = ("lsvit_*", "vit_frameavg_*")
# timm.create_model kwargs that the trainer sets from its own options (and the option to use instead).
_RESERVED_KWARGS = {
    "num_classes": "the shards' classes",
    "img_size": "img_size",
    "num_frames": "num_frames",
    "drop_path_rate": "drop_path",
    "pretrained": "init",
    "pretrained_cfg_overlay": "init",
}


class ConfigError(LsvitError, ValueError):
    """A training option with a bad value, or a config file that cannot be used."""


def available_models() -> list[str]:
    """Names of the registered LS-ViT models and their frame-averaged plain-ViT baselines.

    Returns:
        Sorted timm model names matching ``lsvit_*`` or ``vit_frameavg_*``.
    """
    import timm  # importing timm registers the models (see lsvit/__init__.py)

    return sorted({n for pat in MODEL_PATTERNS for n in timm.list_models(pat)})


@dataclass
class TrainConfig:
    """Every option of ``lsvit-train``; the same keys are accepted in a ``--config`` YAML/JSON file."""

    shards: str = "shards"
    split: int | None = None  # None: the only split under `shards`
    model: str = "lsvit_tiny_patch16_224"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm.create_model kwargs (depth, ...)
    init: str | None = None  # plain timm ViT checkpoint to start from
    epochs: int = 30
    batch_size: int = 8
    accum_steps: int = 1
    lr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    clip_grad: float | None = 1.0  # max gradient norm; None disables clipping
    img_size: int = 224
    num_frames: int = 16
    balance: str = "hybrid"
    amp: str = "auto"
    device: str = "auto"
    workers: int | None = None
    seed: int = 0
    out: str = "runs/lsvit"
    resume: str | None = None  # a checkpoint path, or "auto" = <out>/last.pt
    patience: int | None = None
    ema: bool = False
    ema_decay: float = 0.9998
    eda: str | None = None  # eda.json whose suggested augmentation ranges are used
    aug: dict[str, Any] = field(default_factory=dict)  # AugConfig overrides (applied after eda)

    def __post_init__(self) -> None:
        self.shards, self.out = str(self.shards), str(self.out)
        self.init = None if self.init is None else str(self.init)
        self.resume = None if self.resume is None else str(self.resume)
        if self.split is not None and self.split not in (1, 2, 3):
            raise ConfigError(f"split={self.split!r} is not an official split; allowed: 1, 2, 3")
        _choice("balance", self.balance, BALANCE)
        _choice("amp", self.amp, AMP)
        _choice("device", self.device, DEVICES)
        models = available_models()
        if self.model not in models:
            raise ConfigError(f"model={self.model!r} is not registered; allowed: {', '.join(models)}")
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"model_kwargs={self.model_kwargs!r} must be a mapping such as {{depth: 4}}")
        if reserved := sorted(set(self.model_kwargs) & set(_RESERVED_KWARGS)):
            raise ConfigError(
                f"model_kwargs may not set {', '.join(reserved)}; use the options "
                f"{', '.join(_RESERVED_KWARGS[k] for k in reserved)} instead"
            )
        if not isinstance(self.aug, dict):
            raise ConfigError(f"aug={self.aug!r} must be a mapping of augmentation settings")
        self.eda = None if self.eda is None else str(self.eda)
        from lsvit.trainer.augment import aug_from_eda  # albumentations: only once a config is built

        aug_from_eda(None, self.aug)  # validates the override keys and ranges
        if not isinstance(self.ema, bool):
            raise ConfigError(f"ema={self.ema!r} must be true or false")
        for name in ("epochs", "batch_size", "accum_steps", "img_size", "num_frames"):
            _at_least(name, getattr(self, name), 1)
        # YAML reads "5e-4" (no dot) as a string, so float options accept numeric strings.
        for name, low, high in (
            ("lr", 0, None),
            ("ema_decay", 0, 1),
            ("min_lr", None, None),
            ("weight_decay", None, None),
            ("warmup_epochs", None, None),
            ("label_smoothing", None, 1),
            ("drop_path", None, 1),
        ):
            setattr(self, name, _real(name, getattr(self, name), low, high))
        if self.clip_grad is not None:
            self.clip_grad = _real("clip_grad", self.clip_grad, 0, None)
        if self.workers is not None:
            _at_least("workers", self.workers, 0)
        if self.patience is not None:
            _at_least("patience", self.patience, 1)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready types (what config.json and checkpoints hold)."""
        return dataclasses.asdict(self)

    @property
    def resume_path(self) -> Path | None:
        """The checkpoint to resume from, with ``auto`` resolved to ``<out>/last.pt``."""
        if self.resume is None:
            return None
        return Path(self.out) / "last.pt" if self.resume == "auto" else Path(self.resume)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of: {', '.join(allowed)}")


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")


def _real(name: str, value: Any, low_open: float | None, high_open: float | None) -> float:
    """Checks a float option: >= 0, or in (low_open, high_open) where those bounds are given."""
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    lo_ok = x > low_open if low_open is not None else x >= 0
    hi_ok = x < high_open if high_open is not None else x < math.inf
    if not (lo_ok and hi_ok):
        lo = f"> {low_open}" if low_open is not None else ">= 0"
        hi = f" and < {high_open}" if high_open is not None else ""
        raise ConfigError(f"{name}={value!r} must be a finite number {lo}{hi}")
    return x


def config_keys() -> list[str]:
    """The option names a config file may hold."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def load_config_file(path: Path) -> dict[str, Any]:
    """Reads a YAML or JSON config file (JSON is valid YAML, so one parser serves both).

    Args:
        path: The file given to ``--config``.

    Returns:
        The option mapping, keys checked against :class:`TrainConfig` (``-`` may stand for ``_``).

    Raises:
        ConfigError: The file is missing, unparsable, not a mapping, or holds unknown keys.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}; pass an existing --config") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of option: value, not {type(data).__name__}"
        )
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(config_keys()))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(config_keys())}"
        )
    return data


def resolve_config(file: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Builds the validated config from the defaults, an optional file and explicit overrides.

    Args:
        file: Optional YAML/JSON config file.
        overrides: Options given explicitly (on the command line or through ``LSVIT_*`` variables);
            they win over the file.

    Returns:
        The validated :class:`TrainConfig`.

    Raises:
        ConfigError: Unknown keys or invalid values.
    """
    values = load_config_file(file) if file is not None else {}
    values.update(overrides or {})
    unknown = sorted(set(values) - set(config_keys()))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(config_keys())}")
    try:
        return TrainConfig(**values)
    except TypeError as e:  # e.g. a list where a number belongs: name the offending values
        raise ConfigError(f"invalid option value in {values!r}: {e}") from e


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Writes the resolved config as JSON (the run folder's config.json)."""
    path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
