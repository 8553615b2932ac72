"""From a raw shard sample to the uint8 frames a batch holds: which frames, then which pixels.

Training: ``--frame-sampling`` picks ``num_frames`` of the stored frames (:mod:`lsvit.trainer.temporal`),
then the clip augmentation runs. Evaluation: the uniform frames and a resize + centre crop (``1x1``), or
``--test-views TxS``: T temporal views times S spatial crops, each a full clip, stacked as
``(T*S, num_frames, H, W, 3)`` in the order ``(t0 s0, t0 s1, ..., t1 s0, ...)``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import albumentations as A
import numpy as np

from lsvit.trainer.augment import AugConfig, eval_transform, jpeg_reduction, train_transform
from lsvit.trainer.samples import decode_clip, pick_jpegs
from lsvit.trainer.temporal import crop_offsets, train_indices, view_indices


@dataclass
class CropViews:
    """Resize the short side to ``img_size``, then ``crops`` square windows along the long side.

    One crop equals :func:`lsvit.trainer.augment.eval_transform`; three are mmaction2's ``ThreeCrop``.
    """

    img_size: int
    crops: int

    def __post_init__(self) -> None:
        self.resize = A.Compose([A.SmallestMaxSize(max_size=self.img_size)])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (crops, T, img_size, img_size, 3) uint8."""
        x = self.resize(images=frames)["images"]  # (T, h, w, 3), min(h, w) == img_size
        h, w, size = x.shape[1], x.shape[2], self.img_size
        out = []
        for o in crop_offsets(max(h, w), size, self.crops):
            y0, x0 = (o, (w - size) // 2) if h > w else ((h - size) // 2, o)
            out.append(x[:, y0 : y0 + size, x0 : x0 + size])
        return np.ascontiguousarray(np.stack(out))


def make_prepare(
    *,
    train: bool,
    img_size: int,
    num_frames: int,
    aug: AugConfig,
    seed: int,
    sampling: str = "uniform",
    stride: int | None = None,
    views: tuple[int, int] = (1, 1),
    encoded: bool = False,
) -> Callable[[dict], tuple[np.ndarray | list[bytes], int]]:
    """The per-sample function of one loader worker.

    Args:
        train: Training (sampling mode + augmentation) or evaluation (uniform + views).
        img_size: Output height and width.
        num_frames: Frames per view.
        aug: Training augmentation ranges.
        seed: Seeds the frame choice and the augmentation (per epoch, rank and worker).
        sampling: ``--frame-sampling`` (training only).
        stride: ``--frame-stride`` (``stride`` sampling only).
        views: ``(temporal views, spatial crops)`` (evaluation only).
        encoded: Pick the frames but leave them encoded (``--decode cuda``): ``sample -> (JPEG bytes of
            the T (training, 1x1) or T_views * T frames, label)``; the device decodes and augments them
            (:class:`lsvit.trainer.jpegclips.DeviceFrames`).

    Returns:
        ``sample -> (frames, label)``: frames ``(T, H, W, 3)`` for training and 1x1 evaluation, else
        ``(views, T, H, W, 3)``.
    """
    if encoded:
        if train:
            rng = np.random.default_rng(seed)
            return lambda s: pick_jpegs(
                s, num_frames, lambda n: train_indices(sampling, n, num_frames, rng, stride)
            )
        temporal = views[0]
        return lambda s: pick_jpegs(
            s,
            num_frames,
            lambda n: [i for v in range(temporal) for i in view_indices(n, num_frames, v, temporal)],
        )
    reduction = partial(jpeg_reduction, img_size=img_size, aug=aug if train else None)
    if train:
        rng = np.random.default_rng(seed)
        t = train_transform(aug, img_size, seed=seed % 2**31)

        def pick(n: int) -> list[int]:
            return train_indices(sampling, n, num_frames, rng, stride)

        return lambda s: _apply(t, decode_clip(s, num_frames, reduction, pick))
    if views == (1, 1):
        t1 = eval_transform(img_size)
        return lambda s: _apply(t1, decode_clip(s, num_frames, reduction))
    temporal, spatial = views
    crops = CropViews(img_size, spatial)

    def pick_views(n: int) -> list[int]:
        return [i for v in range(temporal) for i in view_indices(n, num_frames, v, temporal)]

    def prepare(s: dict) -> tuple[np.ndarray, int]:
        frames, label = decode_clip(s, num_frames, reduction, pick_views)  # (T_v * k, H, W, 3)
        x = crops(frames)  # (S, T_v * k, h, w, 3)
        x = x.reshape(spatial, temporal, num_frames, *x.shape[2:]).swapaxes(0, 1)  # (T_v, S, k, h, w, 3)
        return np.ascontiguousarray(x.reshape(temporal * spatial, *x.shape[2:])), label  # (V, k, h, w, 3)

    return prepare


def _apply(t: Callable[[np.ndarray], np.ndarray], decoded: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    frames, label = decoded
    return t(frames), label
