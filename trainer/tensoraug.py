"""Clip augmentation on tensors, on whatever device the frames are on (the GPU for ``--decode cuda``).

The same operations and ranges as the albumentations path (:mod:`lsvit.trainer.augment`), with one set of
random parameters per clip applied to all its frames: random resized crop (torchvision's sampling rule),
Gaussian blur, horizontal flip, brightness/contrast (``x * alpha + beta * 255``), a hue/saturation shift in
OpenCV's HSV units (hue 0-180, saturation 0-255; grey pixels stay grey) and an RGB shift. Parameters are
drawn on the CPU from a ``torch.Generator`` (no device sync, reproducible from one seed per batch); the
pixel work runs where the frames are. Evaluation is the resize of the short side plus centre (or ``crops``)
windows of :class:`lsvit.trainer.clips.CropViews`. Resizes are bilinear with OpenCV's pixel-centre
convention after a power-of-two box filter where they shrink 2x or more (the CPU path decodes the JPEG at
1/2, 1/4 or 1/8 there), so evaluation frames match the CPU path's within a level or two.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from lsvit.trainer.augment import AugConfig
from lsvit.trainer.temporal import crop_offsets


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=gen)) < p


def crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], gen: torch.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random resized crop (torchvision's ``RandomResizedCrop.get_params``).

    Ten tries at a random area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``; then the
    whole frame clamped to the ratio range, centred.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(gen, *scale)
        aspect = math.exp(_uniform(gen, *log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=gen))
            left = int(torch.randint(0, width - w + 1, (), generator=gen))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass
class ClipParams:
    """The random draws of one training clip (shared by all its frames)."""

    box: tuple[int, int, int, int]
    blur_sigma: float | None
    flip: bool
    alpha: float | None  # contrast factor; None: brightness/contrast off
    beta: float
    hue: float | None  # OpenCV hue units (0-180 is the full circle); None: hue/saturation off
    sat: float
    rgb: tuple[float, float, float] | None


def draw_params(aug: AugConfig, height: int, width: int, gen: torch.Generator) -> ClipParams:
    """Draws one clip's parameters, in the order the albumentations path applies the operations."""
    box = crop_box(height, width, aug.scale, aug.ratio, gen)
    blur = _uniform(gen, *aug.blur_sigma) if _chance(gen, aug.p_blur) else None
    flip = _chance(gen, aug.hflip)
    alpha = beta = hue = sat = None
    if _chance(gen, aug.p_brightness_contrast):
        alpha = 1.0 + _uniform(gen, -aug.contrast, aug.contrast)
        beta = _uniform(gen, -aug.brightness, aug.brightness)
    if _chance(gen, aug.p_hue_saturation):
        hue, sat = _uniform(gen, -aug.hue, aug.hue), _uniform(gen, -aug.saturation, aug.saturation)
    rgb = None
    if _chance(gen, aug.p_rgb_shift):
        rgb = tuple(_uniform(gen, -aug.rgb_shift, aug.rgb_shift) for _ in range(3))
    return ClipParams(box, blur, flip, alpha, beta or 0.0, hue, sat or 0.0, rgb)  # type: ignore[arg-type]


def reduce(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Box-filters float (N, 3, h, w) frames by the largest power of two (<= 8) that keeps them at least
    ``height`` x ``width``: what the CPU path gets by decoding the JPEG at 1/2, 1/4 or 1/8 (sizes round up)."""
    h, w = x.shape[-2:]
    f = 1
    while f < 8 and h / (2 * f) >= height and w / (2 * f) >= width:
        f *= 2
    return F.avg_pool2d(x, f, ceil_mode=True) if f > 1 else x


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of float (N, 3, h, w) frames (OpenCV's pixel centres), after :func:`reduce`."""
    x = reduce(x, *size)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _shift_hsv(x: torch.Tensor, hue: float, sat: float) -> torch.Tensor:
    """Shifts hue (OpenCV units, 180 = full circle) and saturation (0-255 units) of float 0-255 RGB frames."""
    rgb = x / 255.0
    maxc, argmax = rgb.max(dim=1)
    minc = rgb.min(dim=1).values
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    r, g, b = rgb.unbind(1)
    d = delta.clamp_min(1e-12)
    h = torch.where(argmax == 0, (g - b) / d, torch.where(argmax == 1, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
    h = torch.where(delta > 0, h / 6.0 % 1.0, torch.zeros_like(h))
    h = (h + hue / 180.0) % 1.0
    s = torch.where(s > 0, (s + sat / 255.0).clamp(0, 1), s)  # grey pixels stay grey
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = maxc * (1 - s), maxc * (1 - s * f), maxc * (1 - s * (1 - f))
    i = i.long() % 6
    table = torch.stack(
        [
            torch.stack(c, dim=1)
            for c in ((maxc, t, p), (q, maxc, p), (p, maxc, t), (p, q, maxc), (t, p, maxc), (maxc, p, q))
        ]
    )  # (6, N, 3, H, W)
    out = torch.gather(table, 0, i.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)).squeeze(0)
    return out * 255.0


def augment_clip(frames: torch.Tensor, p: ClipParams, img_size: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (T, 3, img_size, img_size), the same parameters for every frame."""
    top, left, h, w = p.box
    x = resize(frames[:, :, top : top + h, left : left + w].float(), (img_size, img_size))
    if p.blur_sigma is not None and p.blur_sigma > 0:
        x = TF.gaussian_blur(
            x, [2 * max(1, round(3 * p.blur_sigma)) + 1] * 2, [p.blur_sigma] * 2
        )  # +-3 sigma
    if p.flip:
        x = x.flip(-1)
    if p.alpha is not None:
        x = x * p.alpha + p.beta * 255.0
    if p.hue is not None:
        x = _shift_hsv(x.clamp(0, 255), p.hue, p.sat)
    if p.rgb is not None:
        x = x + torch.tensor(p.rgb, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.clamp_(0, 255).round_().to(torch.uint8)


def eval_views(frames: torch.Tensor, img_size: int, crops: int = 1) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (crops, T, 3, img_size, img_size): short side resized, windows along the long.

    One crop is the centre crop of :func:`lsvit.trainer.augment.eval_transform`; three are mmaction2's
    ``ThreeCrop`` (as :class:`lsvit.trainer.clips.CropViews`).
    """
    x = reduce(frames.float(), img_size, img_size)  # the sizes below follow from the reduced frame, as on CPU
    height, width = x.shape[-2:]
    short = min(height, width)
    size = (max(img_size, round(height * img_size / short)), max(img_size, round(width * img_size / short)))
    x = resize(x, size)
    h, w = x.shape[-2:]
    out = []
    for o in crop_offsets(max(h, w), img_size, crops):
        y0, x0 = (o, (w - img_size) // 2) if h > w else ((h - img_size) // 2, o)
        out.append(x[:, :, y0 : y0 + img_size, x0 : x0 + img_size])
    return torch.stack(out).clamp_(0, 255).round_().to(torch.uint8)
