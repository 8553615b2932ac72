"""Extract real clips on two devices (``cuda`` and ``cpu``) and compare what the shards hold, clip by clip.

The clips of ``--videos`` become a one-class HMDB51-style tree; each device's shards are read back with
stock WebDataset. Per clip: the frames that decode and the sampled indices must be equal, and the stored
frames close (NVDEC and swscale convert YUV to RGB with slightly different rounding). Exit status 1 when
a clip differs. Run by ``gpu/check.py``; ``--devices cpu,cpu`` runs it anywhere.

    python gpu/compare_extract.py --videos ../shared/data/videos --work .gpu-check/extract [--devices cuda,cpu]
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import webdataset as wds

from lsvit.pipeline.extract import ExtractConfig, run_extract

TOLERANCE = 3.0  # mean absolute difference per frame, 0-255 levels


def extract(videos: Path, work: Path, devices: list[str]) -> dict[str, dict[str, dict]]:
    """``{device: {key: decoded sample}}`` for the clips of ``videos``."""
    shutil.rmtree(work, ignore_errors=True)
    root = work / "data"
    (root / "real").mkdir(parents=True)
    (root / "splits").mkdir()
    clips = sorted(p for p in videos.iterdir() if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".webm"))
    if not clips:
        sys.exit(f"error: no clips in {videos}; pass --videos DIR")
    for p in clips:
        shutil.copy(p, root / "real" / p.name)
    (root / "splits" / "real_test_split1.txt").write_text("".join(f"{p.name} 1 \n" for p in clips))
    out = {}
    for i, dev in enumerate(devices):
        cfg = ExtractConfig(
            data_root=root, splits_dir=root / "splits", out=work / f"{i}-{dev}", device=dev, workers=0
        )
        done = run_extract(cfg, progress=False)
        if not done["device"].startswith(dev):
            sys.exit(f"error: asked for {dev}, extract decoded on {done['device']}")
        tars = sorted(str(t) for t in (cfg.split_dir).glob("train-*.tar"))
        out[f"{i}-{dev}"] = {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False).decode("rgb8")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--devices", default="cuda,cpu", help="two devices, the first compared with the second")
    a = ap.parse_args(argv)
    devices = a.devices.split(",")
    if len(devices) != 2:
        sys.exit(f"error: --devices {a.devices!r}: need two, e.g. cuda,cpu")
    first, second = extract(a.videos, a.work, devices).values()
    bad = len(set(first) ^ set(second))
    for key, x in sorted(second.items()):
        y = first.get(key)
        if y is None:
            print(f"{key[:44]:44s} missing on {devices[0]}")
            continue
        same = all(x["json"][k] == y["json"][k] for k in ("source_frames", "indices", "width", "height"))
        diff = float(np.mean([np.abs(x[f].astype(np.int16) - y[f]).mean() for f in x if f.endswith(".jpg")]))
        bad += (not same) or diff > TOLERANCE
        print(
            f"{key[:44]:44s} frames {x['json']['source_frames']:4d}  same indices {same}  mean |diff| {diff:.2f}"
        )
    print(f"{len(second)} clips on {devices[0]} vs {devices[1]}: {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
