"""``model_kwargs``: the keyword arguments each model family accepts, and their sane ranges.

``model_kwargs`` reach ``timm.create_model`` from a config file, ``--model-kwargs`` and, for predict, eval,
export and resume, from a checkpoint's saved config. Only the architecture arguments listed here pass:
timm's own loading arguments (``checkpoint_path``, ``pretrained_cfg``, ``features_only``...) would make a
checkpoint open arbitrary files or change what is built, and unbounded sizes would make a 1 KB file
allocate gigabytes. A family missing from :data:`FAMILIES` accepts no ``model_kwargs``; the model's own
builder still checks what it is given (an ``hf:`` config has to have the field, torchvision's builder the
argument).
"""

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from lsvit.pipeline.errors import LsvitError, short


class ModelKwargsError(LsvitError, ValueError):
    """A ``model_kwargs`` key the model does not take, or a value outside its range."""


@dataclass(frozen=True)
class Arg:
    """One keyword argument: its type and, for numbers, its closed range (``high_open``: below ``high``)."""

    kind: type
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    note: str = ""

    def check(self, name: str, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None."""
        if self.kind is bool:
            return None if isinstance(value, bool) else "must be true or false"
        ok_type = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            return f"must be {'an integer' if self.kind is int else 'a number'}{self._range()}"
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if (self.low is not None and value < self.low) or too_high:
            return f"must be{self._range()}" + (f" ({self.note})" if self.note else "")
        return None

    def _range(self) -> str:
        if self.low is None and self.high is None:
            return ""
        return f" in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


_RATE = Arg(float, 0, 1, high_open=True)
# LSViT.__init__'s architecture arguments (trainer.lsvit). The ranges leave room above ViT-g (1408 wide,
# 40 deep); img_size, num_frames, num_classes and drop_path_rate come from the trainer's own options.
LSVIT = {
    "patch_size": Arg(int, 1, 256, note="and at most img_size"),
    "in_chans": Arg(int, 3, 3, note="frames are RGB"),
    "embed_dim": Arg(int, 1, 8192),
    "depth": Arg(int, 1, 128),
    "num_heads": Arg(int, 1, 256),
    "mlp_ratio": Arg(float, 0.25, 16),
    "qkv_bias": Arg(bool),
    "drop_rate": _RATE,
    "pos_drop_rate": _RATE,
    "proj_drop_rate": _RATE,
    "attn_drop_rate": _RATE,
    "smif": Arg(bool),
    "lmi": Arg(bool),
    "smif_window": Arg(int, 3, 31, note="an odd window"),
    "lmi_reduction": Arg(int, 1, 8192),
}
# torchvision's video builders (trainer.tvvideo): their regularisation arguments; which model takes which is
# torchvision's to say (MViT and Swin3D the rates, S3D dropout, the ResNets zero_init_residual).
TORCHVISION = {
    "dropout": _RATE,
    "attention_dropout": _RATE,
    "stochastic_depth_prob": _RATE,
    "zero_init_residual": Arg(bool),
}
# Hugging Face config fields (trainer.hfvideo checks that the config has them): rates only. Sizes come with
# the folder's weights, which would not load into another shape.
HUGGING_FACE = {"*dropout*": _RATE, "*_prob": _RATE, "drop_path_rate": _RATE}
# Model name patterns -> accepted kwargs (a key with "*" is a pattern); the first match wins.
FAMILIES: dict[str, dict[str, Arg]] = {
    "lsvit_*": LSVIT,
    "vit_frameavg_*": LSVIT,
    "tv:*": TORCHVISION,
    "hf:*": HUGGING_FACE,
}


def allowed_kwargs(model: str) -> dict[str, Arg]:
    """The ``model_kwargs`` that ``model`` accepts (empty for a family without a table)."""
    return next((args for pat, args in FAMILIES.items() if fnmatch.fnmatchcase(model, pat)), {})


def _arg(allowed: dict[str, Arg], name: Any) -> Arg | None:
    if not isinstance(name, str):
        return None
    return allowed.get(name) or next(
        (a for pat, a in allowed.items() if "*" in pat and fnmatch.fnmatchcase(name, pat)), None
    )


def check_model_kwargs(model: str, kwargs: dict[str, Any], img_size: int) -> None:
    """Checks ``model_kwargs`` against the model's table.

    Args:
        model: The registered model name.
        kwargs: The ``model_kwargs`` mapping.
        img_size: The crop size (a patch may not be larger).

    Raises:
        ModelKwargsError: An unknown key (naming the allowed ones) or a value out of range (naming the range);
            values are shortened in the message.
    """
    allowed = allowed_kwargs(model)
    unknown = sorted((k for k in kwargs if _arg(allowed, k) is None), key=str)
    if unknown:
        known = ", ".join(allowed) if allowed else "none (this model takes no model_kwargs)"
        names = ", ".join(short(k, 40) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ModelKwargsError(f"model_kwargs {names} not accepted by {model}; allowed: {known}")
    for name, value in kwargs.items():
        why = _arg(allowed, name).check(name, value)
        if why is None and name == "patch_size" and value > img_size:
            why = f"must be at most img_size={img_size}"
        if why is not None:
            raise ModelKwargsError(f"model_kwargs {name}={short(value)} {why}")
