"""Which source frames a clip contributes: pure index math on ints, no video involved."""


def _check(num_frames: int, num_samples: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")


def sample_indices(num_frames: int, num_samples: int) -> list[int]:
    """Picks ``num_samples`` frame indices spread uniformly over a clip of ``num_frames`` frames.

    Rule: the clip is cut into ``num_samples`` equal segments and the centre of each is taken, i.e.
    ``index_i = floor((2 * i + 1) * num_frames / (2 * num_samples))`` for ``i`` in ``0..num_samples-1``
    (exact integer arithmetic, no float rounding). For ``num_frames >= num_samples`` the indices are
    strictly increasing and distinct, e.g. ``(100, 4) -> [12, 37, 62, 87]``. A clip shorter than
    ``num_samples`` gives all its frames and then repeats the last one, e.g. ``(3, 5) -> [0, 1, 2, 2, 2]``.

    Args:
        num_frames: Frames that really decode in the clip (>= 1).
        num_samples: Frames wanted (>= 1).

    Returns:
        ``num_samples`` non-decreasing indices in ``[0, num_frames)``.

    Raises:
        ValueError: If either argument is not an int >= 1.
    """
    _check(num_frames, num_samples)
    if num_frames < num_samples:
        return list(range(num_frames)) + [num_frames - 1] * (num_samples - num_frames)
    return [(2 * i + 1) * num_frames // (2 * num_samples) for i in range(num_samples)]


def num_padded(num_frames: int, num_samples: int) -> int:
    """How many trailing indices of :func:`sample_indices` repeat the last frame.

    Args:
        num_frames: Frames that really decode in the clip (>= 1).
        num_samples: Frames wanted (>= 1).

    Returns:
        ``max(0, num_samples - num_frames)``.

    Raises:
        ValueError: If either argument is not an int >= 1.
    """
    _check(num_frames, num_samples)
    return max(0, num_samples - num_frames)
