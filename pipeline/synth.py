"""``lsvit-pipeline synth``: an embedded HMDB51-shaped dataset of synthetic motion clips."""

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchcodec.encoders import VideoEncoder

from lsvit import __version__
from lsvit.pipeline.atomic import atomic_open, make_dirs, write_failed
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.lock import hold
from lsvit.pipeline.progress import progress_bar
from lsvit.pipeline.synth_motion import MOTIONS, render_clip

# Roughly the bit rate of the real HMDB51 DivX clips (~490 kb/s at 320x240).
BIT_RATE = "500k"


def write_clip(path: Path, frames: np.ndarray, fps: float = 30.0) -> None:
    """Encodes frames as MPEG-4 Part 2 in an AVI container (what HMDB51 uses), atomically.

    The clip is written to a hidden temporary file in the same folder and renamed into place, so an
    interrupted run never leaves a half-written clip under its final name.

    Args:
        path: Destination ``.avi`` path; its folder is created if missing.
        frames: ``(T, H, W, 3)`` uint8 RGB frames; H and W must be even (yuv420p).
        fps: Frame rate written to the container.

    Raises:
        ValueError: ``frames`` is not a ``(T, H, W, 3)`` uint8 array.
        WriteError: The clip could not be written (e.g. the disk is full); nothing is left behind.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    path = Path(path)
    make_dirs(path.parent, "clip folder")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    try:
        with tmp.open("wb") as fh:
            VideoEncoder(tensor, frame_rate=fps).to_file_like(
                fh, "avi", codec="mpeg4", pixel_format="yuv420p", extra_options={"b": BIT_RATE}
            )
        tmp.replace(path)
    except OSError as e:
        raise write_failed(path, e) from e
    finally:
        tmp.unlink(missing_ok=True)


# Distinct clips per class over the three official HMDB51 splits (6766 in all): the shape synth copies.
REAL_TOTALS = {
    "brush_hair": 107, "cartwheel": 107, "catch": 102, "chew": 109, "clap": 130, "climb": 108,
    "climb_stairs": 112, "dive": 127, "draw_sword": 103, "dribble": 145, "drink": 164, "eat": 108,
    "fall_floor": 136, "fencing": 116, "flic_flac": 107, "golf": 105, "handstand": 113, "hit": 127,
    "hug": 118, "jump": 151, "kick": 130, "kick_ball": 128, "kiss": 102, "laugh": 128, "pick": 106,
    "pour": 106, "pullup": 104, "punch": 126, "push": 116, "pushup": 103, "ride_bike": 103,
    "ride_horse": 116, "run": 232, "shake_hands": 162, "shoot_ball": 131, "shoot_bow": 112,
    "shoot_gun": 103, "sit": 142, "situp": 105, "smile": 102, "smoke": 109, "somersault": 140,
    "stand": 154, "swing_baseball": 143, "sword": 127, "sword_exercise": 127, "talk": 120, "throw": 102,
    "turn": 240, "walk": 548, "wave": 104,
}  # fmt: skip
CLASSES = sorted(REAL_TOTALS)
assert sorted(MOTIONS) == CLASSES, "every class needs a motion"
SPLITS_DIRNAME = "testTrainMulti_7030_splits"
MARKER = "synth.json"  # in the tree's root: what made it (read by extract, recorded in index.json)
LOCK = ".synth.lock"  # one synth at a time per tree (see lsvit.pipeline.lock)
GENERATOR = "lsvit-pipeline synth"
# Bumped whenever the same settings would render other clips. 1: motions per frame (the first synth);
# 2: motions in normalised clip time, visible objects, flat backgrounds.
MOTIONS_VERSION = 2
FPS = 30.0
# Video-title stems for clip names; some carry the special characters real HMDB51 names contain.
_STEMS = (
    "Amazing_Moves", "Holiday!!!_Video", "#42_Training", "Tom_&_Jerry", "Show_(Part_2)", "A+B_Demo",
    "Intro;Outro", "me@home", "[HD]_Clip", "~Weekend~", "Garden_Party", "Old_Film", "Street_Scene",
    "Family_Trip", "Sports_Day", "Movie_Night", "Backyard", "Gym_Session",
)  # fmt: skip


class SynthError(LsvitError, ValueError):
    """Bad synth settings, or an output folder synth must not write into."""


@dataclass(frozen=True)
class SynthConfig:
    """Validated settings for :func:`synthesize` (see its arguments)."""

    out: Path
    scale: float = 0.1
    seed: int = 0
    workers: int | None = None
    min_per_class: int = 2
    frames_range: tuple[int, int] = (15, 120)

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 1:
            raise SynthError(f"--scale {self.scale} is out of range: use a value in (0, 1], e.g. 0.1")
        if self.seed < 0:
            raise SynthError(f"--seed {self.seed} is negative: use 0 or more")
        if self.workers is not None and self.workers < 0:
            raise SynthError(f"--workers {self.workers} is negative: use 0 or more (0 = in this process)")
        if self.min_per_class < 2:
            raise SynthError(f"min_per_class {self.min_per_class} is too small: use 2 or more")
        lo, hi = self.frames_range
        if not 1 <= lo <= hi:
            raise SynthError(f"frames_range {self.frames_range} is invalid: use (lo, hi) with 1 <= lo <= hi")

    def record(self) -> dict:
        """What decides the tree's content, stored in ``synth.json`` to guard resumes."""
        return {
            "generator": GENERATOR,
            "motions": MOTIONS_VERSION,
            "scale": self.scale,
            "seed": self.seed,
            "min_per_class": self.min_per_class,
            "frames_range": list(self.frames_range),
        }


@dataclass
class SynthSummary:
    """What :func:`synthesize` did."""

    out: Path
    classes: int
    clips: int
    written: int
    seconds: float


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # half up, unlike round()'s half-to-even


def split_sizes(scale: float) -> tuple[int, int]:
    """Train and test clips per class and split: the official 70/30 scaled, at least 1 each."""
    return max(1, _round(70 * scale)), max(1, _round(30 * scale))


def class_counts(scale: float, min_per_class: int = 2) -> dict[str, int]:
    """Clips per class: the real totals scaled, never fewer than one split's train + test."""
    floor = max(min_per_class, sum(split_sizes(scale)))
    return {c: max(floor, _round(n * scale)) for c, n in REAL_TOTALS.items()}


def clip_name(cls: str, index: int) -> str:
    """An HMDB51-style file name for clip ``index`` of ``cls``; unique within the class."""
    stem = _STEMS[(index + CLASSES.index(cls)) % len(_STEMS)]
    return f"{stem}_{index}_{cls}_u_nm_np1_fr_med_{index % 3}.avi"


def split_flags(num_clips: int, train: int, test: int, rng: np.random.Generator) -> list[int]:
    """Flags (1 train, 2 test, 0 unused) for a class's clips in one split, chosen at random."""
    flags = [0] * num_clips
    for rank, i in enumerate(rng.permutation(num_clips)[: train + test]):
        flags[int(i)] = 1 if rank < train else 2
    return flags


def _render_and_write(job: tuple[Path, int, int, int, tuple[int, int]]) -> None:
    path, seed, class_idx, index, (lo, hi) = job
    rng = np.random.default_rng([seed, class_idx, index])
    # ~5% of clips are shorter than the 16 frames a sample needs; the rest are log-uniform up to hi.
    if lo < 16 and rng.random() < 0.05:
        frames = int(rng.integers(lo, 16))
    else:
        frames = int(np.exp(rng.uniform(np.log(max(lo, 16)), np.log(max(hi, 16) + 1))))
    write_clip(path, render_clip(MOTIONS[CLASSES[class_idx]], frames, rng), FPS)


def read_marker(root: Path) -> dict | None:
    """What synthesised the tree at ``root``, from its ``synth.json``; None when synth did not write it.

    Args:
        root: A data root (a synth ``--out`` or a real HMDB51 folder).

    Returns:
        None for a tree without the marker, else the marker's settings with ``generator``, ``motions``
        (the version of the motion set; 1 for trees of synth before it was recorded) and, where known,
        ``version`` (of lsvit).

    Raises:
        SynthError: The marker exists but is unreadable or not a JSON object.
    """
    marker = Path(root) / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SynthError(f"{marker} is unreadable ({e}): delete {root} and run synth again") from e
    if not isinstance(data, dict):
        raise SynthError(f"{marker} is not a JSON object: delete {root} and run synth again")
    return {"generator": GENERATOR, "motions": 1} | data


def _check_out(cfg: SynthConfig) -> None:
    """Refuses to mix trees: ``out`` must be new, empty, or an earlier synth run with the same settings."""
    if cfg.out.exists() and not cfg.out.is_dir():
        raise SynthError(f"--out {cfg.out} exists and is not a folder: pass a new or empty folder")
    try:
        foreign = cfg.out.is_dir() and any(p.name != LOCK for p in cfg.out.iterdir())
    except OSError as e:
        raise SynthError(f"--out {cfg.out} cannot be read ({e.strerror or e}): pass another folder") from e
    old = read_marker(cfg.out)
    if old is not None:
        new = cfg.record()
        if old["motions"] != new["motions"]:
            raise SynthError(
                f"{cfg.out} was synthesised by another version of synth (motions v{old['motions']}, this is "
                f"v{new['motions']}): delete it, or pass another --out"
            )
        if {k: old.get(k) for k in new} != new:
            was = ", ".join(f"{k}={old.get(k)}" for k in new if old.get(k) != new[k])
            raise SynthError(
                f"{cfg.out} was synthesised with {was}: pass the same settings to resume, or another --out"
            )
    elif foreign:
        raise SynthError(f"{cfg.out} is not empty and was not written by synth: pass an empty or new --out")


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def synthesize(
    out: Path,
    scale: float = 0.1,
    seed: int = 0,
    workers: int | None = None,
    min_per_class: int = 2,
    frames_range: tuple[int, int] = (15, 120),
) -> SynthSummary:
    """Writes the synthetic HMDB51-shaped tree: ``<out>/<class>/<clip>.avi`` and official-format splits.

    Clips already present are kept (each is written atomically, so a present clip is complete), which
    makes an interrupted run resumable; the same settings always give the same tree.

    Args:
        out: Root of the tree.
        scale: Fraction of the real HMDB51 per-class counts, in (0, 1].
        seed: Seed for clip content and split choices.
        workers: Processes rendering clips; None means one per core, 0 or 1 render in this process.
        min_per_class: Fewest clips a class gets at tiny scales.
        frames_range: Shortest and longest clip in frames (30 fps).

    Returns:
        A summary of the tree and of what this call wrote.

    Raises:
        SynthError: Settings out of range, or ``out`` holds something else.
        LockedError: Another synth is writing into ``out``.
        WriteError: ``out`` or a file in it cannot be written (e.g. the disk is full).
    """
    start = time.perf_counter()
    cfg = SynthConfig(Path(out), scale, seed, workers, min_per_class, frames_range)
    _check_out(cfg)
    make_dirs(cfg.out, "--out")
    with hold(cfg.out, LOCK, "synth"):
        return _synthesize(cfg, start)


def _synthesize(cfg: SynthConfig, start: float) -> SynthSummary:
    scale, seed, workers, frames_range = cfg.scale, cfg.seed, cfg.workers, cfg.frames_range
    min_per_class = cfg.min_per_class
    _write_text(cfg.out / MARKER, json.dumps(cfg.record() | {"version": __version__}))
    for stale in cfg.out.glob("*/.*.avi.*.tmp"):  # left by an interrupted run
        stale.unlink()

    counts = class_counts(scale, min_per_class)
    jobs = [
        (cfg.out / cls / clip_name(cls, i), seed, k, i, frames_range)
        for k, cls in enumerate(CLASSES)
        for i in range(counts[cls])
        if not (cfg.out / cls / clip_name(cls, i)).is_file()
    ]
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    with progress_bar(total=len(jobs), desc="synth", unit="clip", disable=not jobs) as bar:
        if n_workers <= 1 or len(jobs) < 2:
            for job in jobs:
                _render_and_write(job)
                bar.update()
        else:
            n = min(n_workers, len(jobs))
            with ProcessPoolExecutor(n, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                for _ in pool.map(_render_and_write, jobs, chunksize=4):
                    bar.update()

    splits_dir = cfg.out / SPLITS_DIRNAME
    splits_dir.mkdir(exist_ok=True)
    train, test = split_sizes(scale)
    for k, cls in enumerate(CLASSES):
        names = [clip_name(cls, i) for i in range(counts[cls])]
        for split in (1, 2, 3):
            # 1000 + split stays clear of the clip seeds [seed, k, index]: no class has 1000 clips.
            flags = split_flags(len(names), train, test, np.random.default_rng([seed, k, 1000 + split]))
            lines = "".join(f"{n} {f} \n" for n, f in sorted(zip(names, flags, strict=True)))
            _write_text(splits_dir / f"{cls}_test_split{split}.txt", lines)
    return SynthSummary(cfg.out, len(CLASSES), sum(counts.values()), len(jobs), time.perf_counter() - start)
