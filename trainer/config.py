"""The training configuration: every ``lsvit-train`` option, validated (``trainer.resolve`` builds it)."""

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsvit.pipeline.errors import LsvitError, short
from lsvit.trainer.modelargs import ModelKwargsError, check_model_kwargs

BALANCE = ("none", "oversample", "undersample", "hybrid")
AMP = ("auto", "bf16", "fp16", "off")
FRAME_SAMPLING = ("uniform", "random", "stride")  # trainer.temporal (not imported: it needs numpy)
DECODE = ("auto", "cpu", "cuda")  # trainer.jpegclips (not imported: it needs torch)
MIXUP_MODES = ("batch", "pair", "elem")  # timm.data.Mixup's modes
DEVICES = ("auto", "cuda", "mps", "cpu")
MODEL_PATTERNS = ("lsvit_*", "vit_frameavg_*")
MAX_SEED = 2**32 - 1  # NumPy's seed range
# Upper bounds that catch typos (and hostile configs in checkpoints) before anything is allocated.
MAX_IMG_SIZE, MAX_FRAMES = 4096, 1024
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
    model: str = "lsvit_tiny_patch16_224"  # a timm name, tv:<torchvision video model> or hf:<folder>
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra builder kwargs (depth, ...)
    init: str | None = None  # weights file, HF-layout folder, or timm pretrained name (trainer.pretrained)
    init_partial: bool = False  # train even when --init leaves trunk tensors random (lists them)
    mean: list[float] | None = None  # input normalisation; None: what --init says, else ImageNet's
    std: list[float] | None = None
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
    img_size: int | None = None  # None: the model family's default (trainer.families.default_input)
    num_frames: int | None = None
    balance: str = "hybrid"
    amp: str = "auto"
    device: str = "auto"
    workers: int | None = None
    decode: str = "auto"  # JPEGs: cpu = the loader workers (OpenCV); cuda = nvJPEG + GPU augmentation
    seed: int = 0
    verify_shards: bool = True  # hash local shards against index.json before training (trainer.preflight)
    out: str = "runs/lsvit"
    resume: str | None = None  # a checkpoint path, or "auto" = <out>/last.pt
    patience: int | None = None
    ema: bool = False
    ema_decay: float = 0.9998
    eda: str | None = None  # eda.json whose suggested augmentation ranges are used
    aug: dict[str, Any] = field(default_factory=dict)  # AugConfig overrides (applied after eda)
    val_fraction: float = 0.1  # train clips held out (whole source videos) to pick best.pt; 0: keep last
    frame_sampling: str = "random"  # training: uniform | random (TSN) | stride; evaluation is uniform
    frame_stride: int | None = None  # stride sampling: stored frames between picks (None: stored // used)
    test_views: str = "1x1"  # final test: temporal views x spatial crops, softmax scores averaged
    mixup: float = 0.0  # mixup alpha (0: off), timm.data.Mixup
    cutmix: float = 0.0  # cutmix alpha (0: off)
    mixup_prob: float = 1.0  # probability of mixing a batch when mixup or cutmix is on
    mixup_switch_prob: float = 0.5  # probability of cutmix instead of mixup when both are on
    mixup_mode: str = "batch"  # one lambda per batch, pair or element (clip)
    layer_decay: float | None = None  # layer-wise lr decay (e.g. 0.75); None: off

    def __post_init__(self) -> None:
        self.shards, self.out = str(self.shards), str(self.out)
        self.init = None if self.init is None else str(self.init)
        self.resume = None if self.resume is None else str(self.resume)
        if self.split is not None and self.split not in (1, 2, 3):
            raise ConfigError(f"split={short(self.split)} is not an official split; allowed: 1, 2, 3")
        _choice("balance", self.balance, BALANCE)
        _choice("amp", self.amp, AMP)
        _choice("device", self.device, DEVICES)
        _choice("decode", self.decode, DECODE)
        from lsvit.trainer.families import check_name, default_input

        if problem := check_name(str(self.model), available_models):
            raise ConfigError(f"model={short(self.model)} is not a model lsvit builds; {problem}")
        if self.num_frames is None or self.img_size is None:
            frames, size = default_input(self.model)  # an hf: folder's own config says
            self.num_frames = frames if self.num_frames is None else self.num_frames
            self.img_size = size if self.img_size is None else self.img_size
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(
                f"model_kwargs={short(self.model_kwargs)} must be a mapping such as {{depth: 4}}"
            )
        if reserved := sorted(set(self.model_kwargs) & set(_RESERVED_KWARGS)):
            raise ConfigError(
                f"model_kwargs may not set {', '.join(reserved)}; use the options "
                f"{', '.join(_RESERVED_KWARGS[k] for k in reserved)} instead"
            )
        if not isinstance(self.aug, dict):
            raise ConfigError(f"aug={short(self.aug)} must be a mapping of augmentation settings")
        self.eda = None if self.eda is None else str(self.eda)
        from lsvit.trainer.augment import aug_from_eda  # albumentations: only once a config is built

        aug_from_eda(None, self.aug)  # validates the override keys and ranges
        for name in ("ema", "verify_shards"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={short(getattr(self, name))} must be true or false")
        for name in ("epochs", "batch_size", "accum_steps", "img_size", "num_frames"):
            _at_least(name, getattr(self, name), 1)
        _at_most("img_size", self.img_size, MAX_IMG_SIZE)
        _at_most("num_frames", self.num_frames, MAX_FRAMES)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed={short(self.seed)} must be an integer in 0..{MAX_SEED}")
        try:
            check_model_kwargs(self.model, self.model_kwargs, self.img_size)
        except ModelKwargsError as e:
            raise ConfigError(str(e)) from e
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
        self._check_protocol()

    def _check_protocol(self) -> None:
        """The fine-tuning protocol options: hold-out, frames, views, mixing, layer decay, normalisation."""
        for name in ("mean", "std"):
            setattr(self, name, _channels(name, getattr(self, name)))
        if (self.mean is None) != (self.std is None):
            raise ConfigError(
                "mean and std go together: pass both (e.g. --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5)"
            )
        _choice("frame_sampling", self.frame_sampling, FRAME_SAMPLING)
        _choice("mixup_mode", self.mixup_mode, MIXUP_MODES)
        if self.frame_stride is not None:
            _at_least("frame_stride", self.frame_stride, 1)
            if self.frame_sampling != "stride":
                raise ConfigError(f"frame_stride={self.frame_stride} only applies to frame_sampling=stride")
        if not isinstance(self.init_partial, bool):
            raise ConfigError(f"init_partial={short(self.init_partial)} must be true or false")
        self.val_fraction = _real("val_fraction", self.val_fraction, None, 1)
        for name, high in (
            ("mixup", None),
            ("cutmix", None),
            ("mixup_prob", 1.0001),
            ("mixup_switch_prob", 1.0001),
        ):
            setattr(self, name, _real(name, getattr(self, name), None, high))
        if (self.mixup > 0 or self.cutmix > 0) and self.batch_size % 2:
            raise ConfigError(
                f"batch_size={self.batch_size} must be even with mixup/cutmix (timm pairs clips)"
            )
        if self.layer_decay is not None:
            self.layer_decay = _real("layer_decay", self.layer_decay, 0, 1.0001)
        if self.patience is not None and self.val_fraction == 0:
            raise ConfigError(
                "patience needs a validation hold-out (val_fraction > 0): test never stops a run"
            )
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(self.test_views))
        if not m or int(m[1]) < 1 or int(m[2]) < 1:
            raise ConfigError(
                f"test_views={short(self.test_views)} must be TxS (temporal x spatial), e.g. 1x1 or 2x3"
            )
        self.test_views = f"{int(m[1])}x{int(m[2])}"

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
        raise ConfigError(f"{name}={short(value)} is not allowed; choose one of: {', '.join(allowed)}")


def _channels(name: str, value: Any) -> list[float] | None:
    """``--mean/--std``: three numbers (or one for all channels), as a list or "a,b,c"."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    try:
        out = [float(x) for x in items] if isinstance(items, (list, tuple)) else []
    except (TypeError, ValueError):
        out = []
    out = out * 3 if len(out) == 1 else out
    low = 0.0 if name == "mean" else 1e-6
    if len(out) != 3 or not all(math.isfinite(x) and low <= x <= 1 for x in out):
        raise ConfigError(
            f"{name}={short(value)} must be 3 numbers in [{low:g}, 1] (RGB, 0-1 units), e.g. 0.5,0.5,0.5"
        )
    return out


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={short(value)} must be an integer >= {low}")


def _at_most(name: str, value: int, high: int) -> None:
    if value > high:
        raise ConfigError(f"{name}={short(value)} must be at most {high}")


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
        raise ConfigError(f"{name}={short(value)} must be a finite number {lo}{hi}")
    return x


def config_keys() -> list[str]:
    """The option names a config file may hold."""
    return [f.name for f in dataclasses.fields(TrainConfig)]
