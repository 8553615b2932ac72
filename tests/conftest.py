"""Shared fixtures: tiny HMDB51-like trees made on the fly."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lsvit.pipeline.synth import write_clip

# A layout maps class -> [(clip name, split flag, frames)]; frames 0 writes a zero-byte file, -1 garbage
# bytes and None nothing at all (a clip listed but missing on disk).
Layout = dict[str, list[tuple[str, int, int | None]]]


@pytest.fixture(scope="session")
def make_hmdb(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Layout], Path]:
    """Factory for ``<root>/<class>/<clip>.avi`` trees (32x24 MPEG-4 AVI) with split files for splits 1-3.

    Returns:
        ``make(layout) -> root``; the official-format split folder is ``root/testTrainMulti_7030_splits``.
    """

    def make(layout: Layout) -> Path:
        root = tmp_path_factory.mktemp("hmdb")
        splits = root / "testTrainMulti_7030_splits"
        splits.mkdir()
        rng = np.random.default_rng(0)
        for cls, clips in layout.items():
            (root / cls).mkdir(exist_ok=True)
            for name, _, frames in clips:
                path = root / cls / name
                if frames == 0:
                    path.write_bytes(b"")
                elif frames == -1:
                    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
                elif frames is not None:
                    # A moving gradient: compressible like real video, distinct per clip.
                    base = rng.integers(0, 200, (1, 24, 32, 3))
                    ramp = np.arange(frames)[:, None, None, None] * 3 + np.arange(32)[None, None, :, None]
                    write_clip(path, ((base + ramp) % 256).astype(np.uint8), fps=30.0)
            text = "".join(f"{name} {flag} \n" for name, flag, _ in clips)  # official format: trailing space
            for n in (1, 2, 3):
                (splits / f"{cls}_test_split{n}.txt").write_text(text)
        return root

    return make


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add contention."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
