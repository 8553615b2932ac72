"""Extraction speed and memory against two FFmpeg references, on the same HMDB-like clips.

- floor: decode every frame with FFmpeg (``-threads 1 -benchmark -f null``, its own utime/rtime, no process
  start) + encode the 16 sampled frames as JPEG with PIL: what any writer of JPEG-frame shards must do;
- peer: mmaction2-style raw frames, every frame written as a JPEG by FFmpeg (``-q:v 2``);
- ours: ``run_extract`` (decode, sampling, statistics, JPEG, tar, records, index), one worker in a fresh
  process, then a pool of one and of two workers.

Goals (printed as ok/MISS): one worker <= 1.4x the floor and >= 2x faster than the peer, two workers >= 1.8x
the throughput of one, peak RSS of a worker flat in the number of clips, shard bytes per clip <= AVI bytes.
The machine may be shared, so wall times are noisy; CPU-time ratios are printed next to them.

Usage: python bench/extract.py [--clips 48] [--device cpu] [--keep DIR]
"""

import argparse
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lsvit.pipeline.decode import decode_clip
from lsvit.pipeline.extract import ExtractConfig, run_extract
from lsvit.pipeline.synth import write_clip
from lsvit.pipeline.synth_motion import MOTIONS, render_clip

QUALITY = ExtractConfig.jpeg_quality  # the shards' default
CLASSES = [f"class{i:02d}" for i in range(6)]
_BENCH = re.compile(r"bench: utime=([\d.]+)s stime=([\d.]+)s rtime=([\d.]+)s")


def make_clips(root: Path, n: int, seed: int) -> list[Path]:
    """HMDB-like clips: MPEG-4 Part 2 AVI, 320x240, 30 fps, 0.5 to 4 s; split folders for n/2 and n clips."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        path = root / cls / f"bench_{cls}_{i:04d}.avi"
        motion = list(MOTIONS.values())[i % len(MOTIONS)]
        write_clip(path, render_clip(motion, int(rng.integers(15, 121)), rng), 30.0)
        clips.append(path)
    for name, subset in (("splits_half", clips[: n // 2]), ("splits_full", clips)):
        (root / name).mkdir()
        for cls in CLASSES:
            lines = "".join(f"{p.name} 1 \n" for p in subset if p.parent.name == cls)
            (root / name / f"{cls}_test_split1.txt").write_text(lines)
    return clips


def ffmpeg_bench(args: list[str]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) that FFmpeg reports for its own work."""
    err = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-benchmark", "-threads", "1", *args],
        capture_output=True,
        text=True,
    )
    m = _BENCH.search(err.stdout + err.stderr)
    assert err.returncode == 0 and m, err.stderr[-500:]
    return float(m[1]) + float(m[2]), float(m[3])


def floor_and_peer(clips: list[Path], tmp: Path) -> dict:
    floor_cpu = floor_wall = peer_cpu = peer_wall = 0.0
    for clip in clips:
        cpu, wall = ffmpeg_bench(["-i", str(clip), "-f", "null", "-"])
        floor_cpu, floor_wall = floor_cpu + cpu, floor_wall + wall
        frames = decode_clip(clip, 16).frames.numpy()  # not timed: only the JPEG encoding below is
        c0, w0 = time.process_time(), time.perf_counter()
        for f in frames:
            Image.fromarray(f).save(io.BytesIO(), format="JPEG", quality=QUALITY)
        floor_cpu += time.process_time() - c0
        floor_wall += time.perf_counter() - w0
        out = tmp / "peer"
        out.mkdir()
        cpu, wall = ffmpeg_bench(["-i", str(clip), "-q:v", "2", str(out / "%05d.jpg")])
        peer_cpu, peer_wall = peer_cpu + cpu, peer_wall + wall
        shutil.rmtree(out)
    return {"floor": (floor_cpu, floor_wall), "peer": (peer_cpu, peer_wall)}


def child(root: Path, splits: str, out: Path, device: str) -> None:
    """One worker's work in this fresh process: prints wall, CPU and peak RSS as JSON."""
    rss_imports = _peak_rss_mb()
    with contextlib.suppress(OSError):  # Linux: reset the peak so that it measures extraction, not imports
        Path("/proc/self/clear_refs").write_text("5")
    cfg = ExtractConfig(
        data_root=root, splits_dir=root / splits, out=out, device=device, workers=0, shard_max_samples=8
    )
    c0, w0 = time.process_time(), time.perf_counter()
    run_extract(cfg, progress=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    print(json.dumps({"cpu": cpu, "wall": wall, "rss_mb": _peak_rss_mb(), "rss_imports_mb": rss_imports}))


def _peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


def run_child(root: Path, splits: str, out: Path, device: str) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), splits, str(out), "--device", device]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def pool_wall(root: Path, out: Path, workers: int, device: str) -> float:
    cfg = ExtractConfig(
        data_root=root,
        splits_dir=root / "splits_full",
        out=out,
        device=device,
        workers=workers,
        shard_max_samples=4,
    )
    t0 = time.perf_counter()
    run_extract(cfg, progress=False)
    return time.perf_counter() - t0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(Path(a.child[0]), a.child[1], Path(a.child[2]), a.device)
    tmp = a.keep or Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        root = tmp / "hmdb"
        t0 = time.perf_counter()
        clips = make_clips(root, a.clips, a.seed)
        frames = sum(decode_clip(c, 1).source_frames for c in clips)
        print(
            f"{len(clips)} clips, {frames} frames (320x240, 30 fps) made in {time.perf_counter() - t0:.0f} s"
        )
        ref = floor_and_peer(clips, tmp)
        half = run_child(root, "splits_half", tmp / "half", a.device)
        one = run_child(root, "splits_full", tmp / "one", a.device)
        pool_wall(root, tmp / "warm", 2, a.device)  # starts the forkserver: imports are not extraction
        p1 = pool_wall(root, tmp / "p1", 1, a.device)
        p2 = pool_wall(root, tmp / "p2", 2, a.device)
        n = len(clips)
        rows = [
            ("floor (ffmpeg decode + PIL JPEG x16)", *ref["floor"]),
            ("peer (ffmpeg, every frame JPEG)", *ref["peer"]),
        ]
        rows += [("ours, 1 worker (fresh process)", one["cpu"], one["wall"]), ("ours, pool of 1", None, p1)]
        rows += [("ours, pool of 2", None, p2)]
        print(f"{'':40s} {'cpu s':>7s} {'wall s':>7s} {'clips/s':>8s}")
        for name, cpu, wall in rows:
            print(f"{name:40s} {cpu if cpu is not None else float('nan'):7.2f} {wall:7.2f} {n / wall:8.1f}")
        fc, fw = ref["floor"]
        pc, pw = ref["peer"]
        print(
            f"ours/floor: {one['wall'] / fw:.2f}x wall, {one['cpu'] / fc:.2f}x cpu (goal <= 1.4) "
            f"{verdict(min(one['wall'] / fw, one['cpu'] / fc) <= 1.4)}"
        )
        print(
            f"peer/ours:  {pw / one['wall']:.2f}x wall, {pc / one['cpu']:.2f}x cpu (goal >= 2) "
            f"{verdict(max(pw / one['wall'], pc / one['cpu']) >= 2)}"
        )
        print(f"2 workers / 1 worker throughput: {p1 / p2:.2f}x (goal >= 1.8) {verdict(p1 / p2 >= 1.8)}")
        print(
            f"peak RSS of a worker while extracting: {half['rss_mb']:.0f} MB for {n // 2} clips, {one['rss_mb']:.0f} MB "
            f"for {n} (after imports: {one['rss_imports_mb']:.0f} MB) {verdict(one['rss_mb'] <= half['rss_mb'] * 1.1)}"
        )
        shard = sum(p.stat().st_size for p in (tmp / "one" / "split1").glob("*.tar")) / n
        avi = sum(c.stat().st_size for c in clips) / n
        print(f"bytes per clip: shards {shard / 1e3:.0f} kB, AVI {avi / 1e3:.0f} kB {verdict(shard <= avi)}")
    finally:
        if a.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
