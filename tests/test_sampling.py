import itertools
import random

import pytest

from lsvit.pipeline.sampling import num_padded, sample_indices


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (100, 4, [12, 37, 62, 87]),
        (3, 5, [0, 1, 2, 2, 2]),
        (1, 3, [0, 0, 0]),
        (16, 16, list(range(16))),
        (408, 16, [12, 38, 63, 89, 114, 140, 165, 191, 216, 242, 267, 293, 318, 344, 369, 395]),
        (17, 16, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16]),
        (10, 1, [5]),
        (1, 1, [0]),
    ],
)
def test_sample_indices_literal(n: int, k: int, expected: list[int]) -> None:
    assert sample_indices(n, k) == expected


@pytest.mark.parametrize(("n", "k", "expected"), [(3, 5, 2), (5, 5, 0), (100, 16, 0), (1, 16, 15)])
def test_num_padded(n: int, k: int, expected: int) -> None:
    assert num_padded(n, k) == expected


@pytest.mark.parametrize(("n", "k"), [(0, 4), (-1, 4), (4, 0), (4, -3), (2.5, 4), (True, 4), (4, "16")])
def test_invalid_raises_naming_value(n, k) -> None:
    with pytest.raises(ValueError, match=repr(n) if n != 4 else repr(k)):
        sample_indices(n, k)
    with pytest.raises(ValueError):
        num_padded(n, k)


def test_properties_random() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        n, k = rng.randint(1, 500), rng.randint(1, 64)
        idx = sample_indices(n, k)
        assert len(idx) == k
        assert all(0 <= i < n for i in idx)
        assert all(a <= b for a, b in itertools.pairwise(idx))
        pad = num_padded(n, k)
        if n >= k:
            assert len(set(idx)) == k and pad == 0
        else:
            assert idx[:n] == list(range(n)) and idx[n:] == [n - 1] * pad
        # the tail padding is exactly num_padded: that many trailing repeats of the last real index
        assert idx.count(idx[-1]) == pad + 1
