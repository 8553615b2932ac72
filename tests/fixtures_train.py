"""Tiny shards for the trainer tests: a few classes of small synthetic clips, extracted once per session.

The clips are made here (not by ``synthesize``, which always renders all 51 classes) so that a test run
stays within seconds: each class has its own background colour plus a moving square, so two short epochs
of a tiny model can learn it. Labels come from the split files, as with the real data.
"""

from pathlib import Path

import numpy as np
import pytest

from lsvit.pipeline.extract import ExtractConfig, run_extract
from lsvit.pipeline.synth import CLASSES, write_clip

TINY_CLASSES = CLASSES[:5]
TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 4
SHARD_MAX = 7  # 40 train clips -> 6 shards, 20 test clips -> 3 shards: uneven over 2 ranks


def _clip(label: int, index: int, rng: np.random.Generator) -> np.ndarray:
    """(20, 48, 64, 3) uint8: a class colour with noise and a square moving in a random direction."""
    t, h, w = 20, 48, 64
    hue = np.array([[230, 40, 40], [40, 200, 40], [40, 40, 230], [220, 220, 40], [200, 40, 200]])[label]
    frames = np.clip(hue + rng.normal(0, 25, (t, h, w, 3)), 0, 255).astype(np.uint8)
    x, y = rng.integers(8, w - 16), rng.integers(8, h - 16)
    dx, dy = rng.integers(-2, 3, 2)
    for i in range(t):
        xi, yi = int(np.clip(x + dx * i, 0, w - 8)), int(np.clip(y + dy * i, 0, h - 8))
        frames[i, yi : yi + 8, xi : xi + 8] = 255 - index * 5
    return frames


def make_tiny_tree(root: Path, seed: int = 0) -> Path:
    """Writes ``root/<class>/<clip>.avi`` and split-1 files for :data:`TINY_CLASSES`.

    Args:
        root: Output folder.
        seed: Clip content seed.

    Returns:
        The splits folder.
    """
    rng = np.random.default_rng(seed)
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for label, cls in enumerate(TINY_CLASSES):
        lines = []
        for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            name = f"clip_{i}_{cls}_u_nm_np1_fr_med_0.avi"
            write_clip(root / cls / name, _clip(label, i, rng))
            lines.append(f"{name} {1 if i < TRAIN_PER_CLASS else 2} \n")
        (splits / f"{cls}_test_split1.txt").write_text("".join(lines))
    return splits


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/shards`` holding ``split1`` (5 classes, 40 train / 20 test clips of 8 frames)."""
    base = tmp_path_factory.mktemp("tiny_train")
    make_tiny_tree(base / "data")
    cfg = ExtractConfig(
        data_root=base / "data", out=base / "shards", split=1, frames=8, device="cpu", workers=0,
        shard_max_samples=SHARD_MAX,
    )  # fmt: skip
    run_extract(cfg, progress=False)
    return base / "shards"
