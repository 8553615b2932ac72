"""Clip augmentation with albumentations: one set of random parameters per clip, applied to all its frames.

Passing the stacked frames as ``images=`` makes albumentations draw the crop, flip and photometric
parameters once per call, so every frame of a clip gets the same geometry and colour shift (motion between
frames is what the model learns; independent per-frame jitter would fake it).
"""

import math
from dataclasses import asdict, dataclass, fields

import albumentations as A
import numpy as np

from lsvit.pipeline.errors import LsvitError


class AugConfigError(LsvitError, ValueError):
    """An augmentation setting is out of range."""


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise AugConfigError(f"{name}={tuple(value)!r}: need two numbers lo <= hi within [{lo}, {hi}]")


@dataclass
class AugConfig:
    """Training augmentation ranges (evaluation always uses resize + centre crop).

    Limits are symmetric: ``brightness=0.2`` draws a brightness shift in [-0.2, 0.2] of the max value;
    ``hue``/``saturation`` are albumentations' HueSaturationValue shift limits, ``rgb_shift`` in 0-255
    levels. Each ``p_*`` is the probability that the op is applied to a clip.
    """

    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    p_brightness_contrast: float = 0.8
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    p_blur: float = 0.2
    hue: float = 10.0
    saturation: float = 20.0
    p_hue_saturation: float = 0.5
    rgb_shift: float = 10.0
    p_rgb_shift: float = 0.3

    def __post_init__(self) -> None:
        self.scale, self.ratio, self.blur_sigma = tuple(self.scale), tuple(self.ratio), tuple(self.blur_sigma)
        _check_range("scale", self.scale, 1e-3, 1.0)
        _check_range("ratio", self.ratio, 1e-2, 100.0)
        _check_range("blur_sigma", self.blur_sigma, 0.0, 20.0)
        for name in ("brightness", "contrast"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AugConfigError(f"{name}={getattr(self, name)!r}: allowed range is [0, 1]")
        for name, hi in (("hue", 180.0), ("saturation", 255.0), ("rgb_shift", 255.0)):
            if not 0.0 <= getattr(self, name) <= hi:
                raise AugConfigError(f"{name}={getattr(self, name)!r}: allowed range is [0, {hi:g}]")
        for f in fields(self):
            if (f.name.startswith("p_") or f.name == "hflip") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise AugConfigError(
                    f"{f.name}={getattr(self, f.name)!r}: a probability, allowed range [0, 1]"
                )

    def to_dict(self) -> dict:
        """Returns the settings as a JSON-ready dict (for run configs)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def aug_from_eda(eda: dict | None = None, overrides: dict | None = None) -> AugConfig:
    """Turns ``eda.json`` content (``lsvit-pipeline eda``) and explicit overrides into an ``AugConfig``.

    Precedence: defaults < ranges derived from ``eda["stats"]`` < ``eda["augmentation"]`` (the ranges
    eda suggests, keyed by ``AugConfig`` field) < ``overrides``. The derivation from ``stats`` is a
    fallback for reports without suggestions: ``stats[name]["overall"]`` (or ``stats[name]``) holds
    ``mean``/``std`` over clips; brightness and contrast limits become the relative spread ``std / mean``
    (clamped to [0.1, 0.4]) so augmentation covers the variation seen between clips, and the blur sigma
    grows with the mean sharpness (Laplacian variance). Unknown keys are an error so a typo is not ignored.

    Args:
        eda: Parsed ``eda.json`` (or None for defaults).
        overrides: Field -> value, applied last (e.g. the ``aug:`` mapping of a training config).

    Returns:
        The validated augmentation config.

    Raises:
        AugConfigError: unknown keys or values out of range.
    """
    values: dict = {}
    eda = eda or {}
    stats = eda.get("stats") or {}

    def overall(name: str) -> dict:
        s = stats.get(name)
        s = s.get("overall", s) if isinstance(s, dict) else None
        return s if isinstance(s, dict) and s.get("mean") and s.get("std") is not None else {}

    for name in ("brightness", "contrast"):
        if s := overall(name):
            values[name] = round(min(0.4, max(0.1, float(s["std"]) / float(s["mean"]))), 3)
    if s := overall("blur"):
        # sharp footage (high Laplacian variance) tolerates stronger blur; keep within a mild range
        values["blur_sigma"] = (0.1, round(min(2.0, max(0.5, math.log10(float(s["mean"]) + 1.0) / 1.5)), 3))
    values.update(eda.get("augmentation") or {})
    values.update(overrides or {})
    known = {f.name for f in fields(AugConfig)}
    if unknown := sorted(set(values) - known):
        raise AugConfigError(f"unknown augmentation setting(s) {unknown}; allowed: {sorted(known)}")
    return AugConfig(**values)


@dataclass
class ClipTransform:
    """A clip transform in two albumentations stages, both drawing their parameters once per clip.

    ``per_frame`` runs with ``images=`` (crop, resize, blur: ops that must not see across frame borders);
    ``pointwise`` runs once on the clip stacked into one tall (T*H, W, 3) image, which is the same as per
    frame for flips and per-pixel colour ops but several times faster than albumentations' per-image loop.
    """

    per_frame: A.Compose
    pointwise: A.Compose | None = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, img_size, img_size, 3) uint8 (C-contiguous)."""
        x = self.per_frame(images=frames)["images"]
        if self.pointwise is not None:
            t, h, w, c = x.shape
            x = self.pointwise(image=np.ascontiguousarray(x).reshape(t * h, w, c))["image"].reshape(
                t, h, w, c
            )
        return np.ascontiguousarray(x)


def train_transform(aug: AugConfig, img_size: int, seed: int | None = None) -> ClipTransform:
    """The training clip transform: random resized crop, blur, flip, then colour ops on the small crop.

    Args:
        aug: Augmentation ranges.
        img_size: Output height and width.
        seed: Seed of the transforms' own random state (albumentations ignores global seeds).

    Returns:
        Call it with frames (T, H, W, 3) uint8.
    """
    per_frame = [
        # crop first: every later op runs on img_size^2 pixels instead of the source frame
        A.RandomResizedCrop(size=(img_size, img_size), scale=aug.scale, ratio=aug.ratio),
        A.GaussianBlur(blur_limit=0, sigma_limit=aug.blur_sigma, p=aug.p_blur),
    ]
    pointwise = [
        A.HorizontalFlip(p=aug.hflip),
        A.RandomBrightnessContrast(aug.brightness, aug.contrast, p=aug.p_brightness_contrast),
        A.HueSaturationValue(aug.hue, aug.saturation, 0, p=aug.p_hue_saturation),
        A.RGBShift(aug.rgb_shift, aug.rgb_shift, aug.rgb_shift, p=aug.p_rgb_shift),
    ]
    second = None if seed is None else seed + 1
    return ClipTransform(A.Compose(per_frame, seed=seed), A.Compose(pointwise, seed=second))


def jpeg_reduction(height: int, width: int, img_size: int, aug: AugConfig | None = None) -> int:
    """The largest JPEG decode scale-down (1, 2, 4 or 8) after which the transform still only shrinks.

    Evaluation resizes the short side to ``img_size``; training resizes a random crop whose smallest side
    is that of the smallest-area crop at the most extreme aspect ratio (``RandomResizedCrop``: side
    ``sqrt(scale * h * w * ratio)`` by ``sqrt(scale * h * w / ratio)``, at most the frame's). Decoding at
    ``1/f`` keeps that side at ``img_size`` pixels or more, so no crop is ever upsampled and the detail
    lost is what the resize would have averaged away anyway.

    Args:
        height: Stored frame height.
        width: Stored frame width.
        img_size: Output height and width of the transform.
        aug: The training augmentation (None: the evaluation transform).

    Returns:
        The scale-down factor for `trainer.samples.decode_clip`.
    """
    side = float(min(height, width))
    if aug is not None:
        area = aug.scale[0] * height * width
        side = min(math.sqrt(area * aug.ratio[0]), math.sqrt(area / aug.ratio[1]), side)
    return next(f for f in (8, 4, 2, 1) if side / f >= img_size or f == 1)


def eval_transform(img_size: int) -> ClipTransform:
    """The deterministic evaluation transform: resize the short side to ``img_size``, centre crop.

    Args:
        img_size: Output height and width.

    Returns:
        Call it with frames (T, H, W, 3) uint8.
    """
    return ClipTransform(A.Compose([A.SmallestMaxSize(max_size=img_size), A.CenterCrop(img_size, img_size)]))
