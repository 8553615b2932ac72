"""torchrun with 2 CPU ranks (gloo) over an uneven number of shards: trains, evaluates, exits, no hang."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

pytest_plugins = ["fixtures_train"]

TIMEOUT_S = 240


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(tiny_shards, tmp_path):
    index = json.loads((tiny_shards / "split1" / "index.json").read_text())
    train_shards = [s for s in index["shards"] if s["subset"] == "train"]
    assert len(train_shards) % 2 == 1 or len({s["count"] for s in train_shards}) > 1  # uneven over 2 ranks
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            dict(
                model="vit_frameavg_tiny_patch16_224",
                model_kwargs=dict(patch_size=8, embed_dim=32, depth=1, num_heads=2),
                img_size=32,
                num_frames=4,
                batch_size=4,
                accum_steps=2,  # exercises no_sync on the micro-steps
                epochs=1,
                workers=1,
                balance="oversample",
                test_views="1x2",  # the final test of best.pt and last.pt, views split over both ranks
            )
        )
    )
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [
        "-m",
        "lsvit.trainer.cli",
        "--shards",
        str(tiny_shards),
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    cmd += ["--device", "cpu"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish within {TIMEOUT_S}s (hang?): {e.stderr}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1  # rank 0 alone writes
    assert rows[0]["test_clips"] == 20  # every test clip counted once over both ranks
    assert rows[0]["val_clips"] == 5  # the hold-out (one source video per class), unpadded, counted once
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["clips"] == 20 and results["views"] == "1x2"
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["step"] > 0  # both ranks' RNG streams for an exact resume
