"""Helpers for the export, ONNX-predict and web-demo tests: tiny checkpoints, the shared real clips, running
a console script in-process, a free port."""

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers_hostile import run_main

from lsvit.pipeline.synth import CLASSES
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.config import TrainConfig

TINY = dict(patch_size=16, embed_dim=32, depth=1, num_heads=2)


def _shared_videos() -> Path | None:
    # ../shared/data/videos beside the repository (CI, the main checkout) or further up (a worktree).
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data" / "videos").is_dir():
            return parent / "shared" / "data" / "videos"
    return None


VIDEOS = _shared_videos()
REAL = sorted(VIDEOS.glob("*")) if VIDEOS else []
HMDB_CLIP = VIDEOS / "hmdb51__April_09_brush_hair_u_nm_np1_ba_goo_0.avi" if VIDEOS else None
needs_videos = pytest.mark.skipif(not REAL, reason="no shared/data/videos found above the tests")


def make_checkpoint(
    path: Path,
    model: str = "lsvit_tiny_patch16_224",
    classes: list[str] = CLASSES,
    num_frames: int = 8,
    img_size: int = 32,
    seed: int = 0,
    **config,
) -> Path:
    """Saves a tiny model the way lsvit-train does, its weights jittered so that SMIF and LMI (which start
    as the identity) take part in every output.

    Returns:
        ``path``.
    """
    cfg = TrainConfig(model=model, model_kwargs=TINY, img_size=img_size, num_frames=num_frames, **config)
    torch.manual_seed(seed)
    net = ck.build_model(cfg, len(classes))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = {"model": net.state_dict(), "config": cfg.to_dict(), "classes": list(classes), "epoch": 3}
    ck.save_checkpoint({**state, "source_frames": 16}, path)
    return path


def run_cli(main: Callable[[], None], args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """:func:`helpers_hostile.run_main` with the argument order of the deploy tests."""
    return run_main(main, monkeypatch, capsys, *args)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
