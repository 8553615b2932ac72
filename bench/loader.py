"""Per-worker cost of the training input pipeline against the floor of only decoding the JPEGs.

Pipeline: shards -> shuffle -> balance repeats -> decode 16 JPEGs -> full training augmentation ->
(B, T, 3, 224, 224) uint8 batches, run by ``make_loader`` with ``workers=0`` (the main process is the one
worker, so this is the time one worker spends per clip). Floor: PIL-decoding the same clips' 16 JPEGs from
bytes already in memory. Goal: pipeline <= 2.5x the floor per clip. Times are CPU time of this process
(one thread: torch and OpenCV are pinned to 1), so other load on a shared machine barely moves them.

Shards come from ``lsvit-pipeline synth`` + ``extract`` (320x240 synthetic HMDB51-shaped clips), made once
under ``--work``; ``--source fake`` writes contract-conformant shards of smooth random frames instead.

    python bench/loader.py [--clips 64] [--rounds 3] [--work /tmp/lsvit-bench-loader] [--source synth|fake]
"""

import argparse
import io
import json
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import webdataset as wds
from PIL import Image

from lsvit.trainer.data import DataConfig, make_loader

GOAL = 2.5


def make_synth_shards(work: Path) -> Path:
    """synth (~1 clip per class, >= 16 frames) + extract split 1 -> ``work/shards``."""
    from lsvit.pipeline.extract import ExtractConfig, run_extract
    from lsvit.pipeline.synth import synthesize

    synthesize(work / "data", scale=0.01, seed=0, workers=None, min_per_class=2, frames_range=(24, 48))
    run_extract(ExtractConfig(data_root=work / "data", out=work / "shards", split=1, device="cpu"))
    return work / "shards"


def make_fake_shards(work: Path, clips: int) -> Path:
    """Contract-conformant shards from smooth random 320x240 frames (one class per 4 clips)."""
    split = work / "shards" / "split1"
    split.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    classes = [f"class{i}" for i in range(max(1, clips // 4))]
    with wds.TarWriter(str(split / "train-000000.tar")) as w:
        for i in range(clips):
            base = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (320, 240))
            key, frames = f"{classes[i % len(classes)]}__clip{i}__{i:08x}", {}
            for t in range(16):
                buf = io.BytesIO()
                Image.fromarray(np.roll(base, 4 * t, axis=1)).save(buf, format="JPEG", quality=90)
                frames[f"f{t:02d}.jpg"] = buf.getvalue()
            label = i % len(classes)
            w.write({"__key__": key, "cls": str(label), "json": json.dumps({"label": label}), **frames})
    index = {"split": 1, "classes": classes, "shards": [{"url": "train-000000.tar", "subset": "train",
             "count": clips}], "counts": {}}  # fmt: skip
    (split / "index.json").write_text(json.dumps(index))
    return work / "shards"


def read_jpegs(split: Path, clips: int) -> list[list[bytes]]:
    """The 16 JPEG members of up to ``clips`` train clips, read into memory (for the floor)."""
    out: dict[str, list[bytes]] = {}
    for shard in sorted(split.glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                if ext.startswith("f") and ext.endswith(".jpg"):
                    out.setdefault(key, []).append(tar.extractfile(m).read())
    return list(out.values())[:clips]


def floor(clips: list[list[bytes]]) -> float:
    """CPU seconds per clip to PIL-decode its JPEGs to RGB arrays."""
    t = time.process_time()
    for jpegs in clips:
        for b in jpegs:
            with Image.open(io.BytesIO(b)) as im:
                np.asarray(im.convert("RGB"))
    return (time.process_time() - t) / len(clips)


def pipeline(shards: Path, batch_size: int) -> tuple[float, int, tuple]:
    """CPU seconds per clip of one training epoch through ``make_loader`` in this process."""
    cfg = DataConfig(shards=shards, split=1, batch_size=batch_size, workers=0, balance="none")
    t = time.process_time()
    loader, steps = make_loader(cfg, "train", train=True)
    shape = None
    for frames, _, _ in loader:
        shape = tuple(frames.shape)
    return (time.process_time() - t) / (steps * batch_size), steps * batch_size, shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lsvit-bench-loader"))
    ap.add_argument("--source", choices=["synth", "fake"], default="synth")
    ap.add_argument("--clips", type=int, default=64, help="clips for the floor (fake: clips written)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="best of N rounds (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one worker = one core, as in the DataLoader workers
    work = args.work / args.source
    shards = work / "shards"
    if not (shards / "split1" / "index.json").is_file():
        shards = make_synth_shards(work) if args.source == "synth" else make_fake_shards(work, args.clips)
    jpegs = read_jpegs(shards / "split1", args.clips)
    with Image.open(io.BytesIO(jpegs[0][0])) as im:
        size = im.size
    f_best = p_best = float("inf")
    for r in range(args.rounds):
        f_best = min(f_best, floor(jpegs))
        p, n, shape = pipeline(shards, args.batch_size)
        p_best = min(p_best, p)
        print(f"round {r + 1}: floor {f_best * 1e3:.1f} ms/clip, pipeline {p * 1e3:.1f} ms/clip ({n} clips)")
    ratio = p_best / f_best
    print(f"source {args.source}: frames {size[0]}x{size[1]}, {len(jpegs[0])} JPEGs/clip, batches {shape}")
    print(f"floor (PIL decode of 16 JPEGs): {f_best * 1e3:.2f} ms/clip")
    print(f"pipeline (shards -> augmented uint8 batch): {p_best * 1e3:.2f} ms/clip")
    print(f"ratio: {ratio:.2f}x (goal <= {GOAL}x) {'OK' if ratio <= GOAL else 'OVER'}")


if __name__ == "__main__":
    main()
