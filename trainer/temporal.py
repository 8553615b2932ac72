"""Which of a clip's stored frames the model sees: training sampling modes and test views (pure index math).

``lsvit-pipeline extract --frames N`` stores N frames spread uniformly over each video; the model takes
``k = --num-frames`` of them. With N > k training can jitter in time, and testing can average several
temporal views. The clip is cut into k equal segments ``[floor(i*N/k), floor((i+1)*N/k))``:

* ``uniform``: the centre of each segment (``lsvit.pipeline.sampling.sample_indices``); what evaluation
  always uses, and the only choice when N == k.
* ``random``: one random frame per segment (TSN, Wang et al. 2016; mmaction2's ``SampleFrames`` with
  ``clip_len=1, num_clips=k``), drawn anew for every clip and epoch.
* ``stride``: k frames ``stride`` apart from a random start (dense sampling, as I3D/SlowFast/VideoMAE);
  the default stride ``N // k`` spans the clip and jitters the start within the remainder.

A clip with fewer stored frames than k (extract pads short videos, so only when k > N) gives every frame and
repeats the last one, in every mode. Test view ``v`` of ``V`` takes the point ``(2v+1)/(2V)`` of the way
through each segment, so ``V = 1`` is exactly ``uniform`` and the V views interleave evenly.
"""

import re
from collections.abc import Sequence

import numpy as np

from lsvit.pipeline.sampling import sample_indices

FRAME_SAMPLING = ("uniform", "random", "stride")
_VIEWS = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def _padded(n: int, k: int) -> list[int] | None:
    return sample_indices(n, k) if n <= k else None


def random_indices(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """One random frame from each of ``k`` equal segments of ``n`` frames (TSN sampling).

    Args:
        n: Frames stored (>= 1).
        k: Frames wanted (>= 1).
        rng: Random source.

    Returns:
        ``k`` non-decreasing indices in ``[0, n)``.
    """
    if (pad := _padded(n, k)) is not None:
        return pad
    return [int(rng.integers(i * n // k, (i + 1) * n // k)) for i in range(k)]


def stride_indices(n: int, k: int, rng: np.random.Generator, stride: int | None = None) -> list[int]:
    """``k`` frames ``stride`` apart from a random start (dense clip sampling).

    Args:
        n: Frames stored (>= 1).
        k: Frames wanted (>= 1).
        rng: Random source.
        stride: Frames between picks; None: ``max(1, n // k)``. A span longer than the clip starts at 0
            and repeats the last frame.

    Returns:
        ``k`` non-decreasing indices in ``[0, n)``.
    """
    stride = max(1, n // k) if stride is None else stride
    span = (k - 1) * stride + 1
    start = int(rng.integers(0, n - span + 1)) if span <= n else 0
    return [min(start + i * stride, n - 1) for i in range(k)]


def train_indices(
    mode: str, n: int, k: int, rng: np.random.Generator, stride: int | None = None
) -> list[int]:
    """The training frames of one clip under ``--frame-sampling``.

    Args:
        mode: ``uniform``, ``random`` or ``stride``.
        n: Frames stored.
        k: Frames wanted.
        rng: Random source (unused for ``uniform``).
        stride: For ``stride``; see :func:`stride_indices`.

    Returns:
        ``k`` indices into the stored frames.

    Raises:
        ValueError: An unknown mode.
    """
    if mode == "uniform":
        return sample_indices(n, k)
    if mode == "random":
        return random_indices(n, k, rng)
    if mode == "stride":
        return stride_indices(n, k, rng, stride)
    raise ValueError(f"frame sampling {mode!r} is not one of {', '.join(FRAME_SAMPLING)}")


def view_indices(n: int, k: int, view: int, views: int) -> list[int]:
    """Temporal test view ``view`` of ``views``: the point ``(2 view + 1) / (2 views)`` of each segment.

    Args:
        n: Frames stored.
        k: Frames wanted.
        view: 0-based view number.
        views: Number of temporal views (1: the segment centres, as ``uniform``).

    Returns:
        ``k`` non-decreasing indices; ``(8, 4, 0, 2) -> [0, 2, 4, 6]``, ``(8, 4, 1, 2) -> [1, 3, 5, 7]``.
    """
    if (pad := _padded(n, k)) is not None:
        return pad
    return [((2 * view + 1) + 2 * views * i) * n // (2 * views * k) for i in range(k)]


def crop_offsets(length: int, size: int, crops: int) -> list[int]:
    """Start offsets of ``crops`` windows of ``size`` along ``length``: ends and evenly between.

    One crop is the centre (the offset albumentations' ``CenterCrop`` uses); three are the two ends and
    the centre (mmaction2's ``ThreeCrop``).

    Args:
        length: The long side after resizing.
        size: Crop size.
        crops: Number of crops (>= 1).

    Returns:
        ``crops`` offsets in ``[0, length - size]``.
    """
    room = max(length - size, 0)
    if crops == 1:
        return [room // 2]
    return [j * room // (crops - 1) for j in range(crops)]


def parse_views(text: str | Sequence[int]) -> tuple[int, int]:
    """Parses ``--test-views TxS`` (temporal views x spatial crops), e.g. ``"2x3"`` -> ``(2, 3)``.

    Raises:
        ValueError: Not two positive integers joined by ``x``.
    """
    if not isinstance(text, str) and len(text) == 2 and all(isinstance(v, int) for v in text):
        t, s = text
    elif isinstance(text, str) and (m := _VIEWS.match(text)):
        t, s = int(m[1]), int(m[2])
    else:
        raise ValueError(f"test views {text!r} must be TxS with positive integers, e.g. 1x1 or 2x3")
    if t < 1 or s < 1:
        raise ValueError(f"test views {text!r} must be TxS with positive integers, e.g. 1x1 or 2x3")
    return t, s
