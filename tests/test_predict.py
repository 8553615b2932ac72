"""lsvit-predict: real clips through a 51-class tiny checkpoint; a bad file does not stop the others."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lsvit.pipeline.synth import CLASSES
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.cli import predict_app
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.predict import Predictor

VIDEOS = Path(__file__).parents[2] / "shared" / "data" / "videos"
REAL = sorted(VIDEOS.glob("*")) if VIDEOS.is_dir() else []
needs_videos = pytest.mark.skipif(not REAL, reason=f"no sample videos in {VIDEOS}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An (untrained) 51-class tiny LS-ViT saved the way lsvit-train saves it."""
    cfg = TrainConfig(
        model="lsvit_tiny_patch16_224",
        model_kwargs=dict(patch_size=16, embed_dim=32, depth=1, num_heads=2),
        img_size=64,
        num_frames=8,
    )
    torch.manual_seed(0)
    model = ck.build_model(cfg, len(CLASSES))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    state = {"model": model.state_dict(), "config": cfg.to_dict(), "classes": CLASSES, "epoch": 1}
    ck.save_checkpoint({**state, "source_frames": 16}, path)
    return path


@needs_videos
def test_real_clips_get_51_probabilities_summing_to_one(checkpoint):
    predictor = Predictor(checkpoint, device="cpu")
    for video in REAL:
        p = predictor.predict(video)
        assert len(p.probs) == 51 and sum(p.probs) == pytest.approx(1.0, abs=1e-5)
        top = p.top(5)
        assert [c for c, _ in top] == sorted(CLASSES, key=lambda c: -p.probs[CLASSES.index(c)])[:5]


@needs_videos
def test_bad_file_gets_one_line_error_and_others_still_predicted(checkpoint, tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    args = ["--checkpoint", str(checkpoint), "--json", "--top-k", "3", str(REAL[0]), str(bad), str(REAL[-1])]
    result = CliRunner().invoke(predict_app, args)
    assert result.exit_code == 1
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["video"] for r in lines] == [str(REAL[0]), str(REAL[-1])]
    assert all(len(r["top"]) == 3 and r["top"][0]["class"] in CLASSES for r in lines)
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and str(bad) in errors[0]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        Predictor(tmp_path / "nope.pt", device="cpu")


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "classes": [], "epoch": 0, "x": object()}, path)
    with pytest.raises(ck.CheckpointError, match=r"is not an lsvit checkpoint .*pickled Python objects") as e:
        ck.load_checkpoint(path)
    assert "weights_only" not in str(e.value)
