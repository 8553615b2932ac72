"""``lsvit-pipeline extract``: video clips -> 16-frame JPEG WebDataset shards, in parallel and resumable.

The dataset's format (HMDB51, UCF101 or a folder dataset: ``lsvit.pipeline.datasets``) only decides which
clips are in which class and subset; decoding, shards, records and failures are the same for every one.

Workers write whole shards of a fixed, sorted plan, so the output does not depend on the number of workers
or their timing; finished shards survive an interruption and a rerun only redoes the rest.
"""

import hashlib
import json
import os
import re
import stat
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

from lsvit import __version__
from lsvit.pipeline import shards as sh
from lsvit.pipeline.archives import materialise_sources
from lsvit.pipeline.atomic import make_dirs
from lsvit.pipeline.datasets import DEFAULT, get_dataset
from lsvit.pipeline.decode import DecodeError, decode_clip, resolve_device
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.lock import hold
from lsvit.pipeline.merge import index_name, lock_name, write_index
from lsvit.pipeline.pool import Tick, check_main, run_tasks
from lsvit.pipeline.progress import progress_bar
from lsvit.pipeline.records import RECORDS_DIRNAME, adopt, write_record
from lsvit.pipeline.splits import ClipEntry, SplitSpec, links_outside
from lsvit.pipeline.stats import clip_stats
from lsvit.pipeline.synth import read_marker

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ExtractError(LsvitError, ValueError):
    """Bad extraction settings or an output folder that cannot be used."""


@dataclass
class ExtractConfig:
    """Everything that decides an extraction; saved (resolved) in index.json."""

    dataset: str = DEFAULT  # hmdb51, ucf101 or folder (lsvit.pipeline.datasets)
    data_root: Path | None = None  # None: the dataset's default (data/hmdb51, data/ucf101)
    splits_dir: Path | None = None
    out: Path = Path("shards")
    split: int = 1
    frames: int = 16
    device: str = "auto"
    workers: int | None = None  # None: one per core; 0: in this process
    include_unused: bool = False
    part: tuple[int, int] | str = (0, 1)
    jpeg_quality: int = 80  # ~39 dB PSNR; shards smaller than the source AVIs (README: Shards)
    shard_max_samples: int = 128
    seed: int = 0
    balance_target: int | None = None

    def __post_init__(self) -> None:
        fmt = get_dataset(self.dataset)
        if self.data_root is None and fmt.default_root is None:
            raise ExtractError(f"--dataset {self.dataset} needs --data-root (the tree: {fmt.layout})")
        self.data_root = Path(self.data_root if self.data_root is not None else fmt.default_root)
        self.out = Path(self.out)
        self.splits_dir = None if self.splits_dir is None else Path(self.splits_dir)
        self.part = sh.parse_part(self.part)
        fmt.check_split(self.split)
        checks = {
            "frames": (self.frames, 1, None),
            "jpeg_quality": (self.jpeg_quality, 1, 100),
            "shard_max_samples": (self.shard_max_samples, 1, None),
        }
        for name, (value, lo, hi) in checks.items():
            if not isinstance(value, int) or value < lo or (hi is not None and value > hi):
                raise ExtractError(f"{name}={value!r}: need an int in [{lo}, {hi or 'inf'}]")
        if self.workers is not None and self.workers < 0:
            raise ExtractError(f"workers={self.workers!r}: need >= 0 (0 runs in this process)")
        if self.balance_target is not None and self.balance_target < 1:
            raise ExtractError(f"balance_target={self.balance_target!r}: need >= 1 or none (median count)")
        if not _DEVICE_RE.match(self.device):
            raise ExtractError(f"device {self.device!r} is not allowed; use auto, cpu, cuda or cuda:N")

    def subsets(self, spec: SplitSpec) -> list[str]:
        """The split's subsets that are extracted, in shard-plan order (``unused`` only when asked).

        Raises:
            ExtractError: ``include_unused`` for a dataset whose splits use every clip.
        """
        if self.include_unused and "unused" not in spec.subsets:
            raise ExtractError(
                f"--include-unused: {self.dataset} has no unused clips (its subsets: "
                f"{', '.join(spec.subsets)}); drop the option"
            )
        return [s for s in spec.subsets if s != "unused" or self.include_unused]

    @property
    def split_dir(self) -> Path:
        """``<out>/split<N>``."""
        return self.out / f"split{self.split}"

    def to_json(self) -> dict:
        """JSON-ready copy (paths as strings, part as ``"i/N"``)."""
        d = asdict(self)
        d.update({k: None if d[k] is None else str(d[k]) for k in ("data_root", "splits_dir", "out")})
        d["part"] = f"{self.part[0]}/{self.part[1]}"
        return d


@dataclass(frozen=True)
class _Task:
    """What a worker needs to write one shard (picklable)."""

    job: sh.ShardJob
    data_root: Path
    split_dir: Path
    split: int
    frames: int
    device: str
    jpeg_quality: int
    fingerprint: str


def _fingerprint(job: sh.ShardJob, cfg: ExtractConfig, device: str, synthetic: dict | None) -> str:
    """What a shard is made from: its clips and every setting that changes its bytes.

    A synthetic tree's marker is part of it: a tree synthesised again with other settings or by another
    version of synth has the same clip names but other frames.
    """
    what = [__version__, cfg.split, cfg.frames, cfg.jpeg_quality, device.split(":")[0], synthetic]
    what += [[e.rel_path, e.label, e.subset] for e in job.entries]
    return hashlib.sha1(json.dumps(what).encode()).hexdigest()


def _clip_sample(entry: ClipEntry, task: _Task) -> dict | str:
    """The WebDataset sample of one clip, or the reason it cannot be used."""
    if entry.problem:
        return f"unsafe clip name, not read: {entry.problem}"
    path = task.data_root / entry.rel_path
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as e:  # a name too long for the file system, a folder we may not enter, a link loop
        return f"cannot read file ({e.strerror or e})"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    try:
        clip = decode_clip(path, task.frames, task.device)
    except DecodeError as e:
        return str(e)
    return sh.clip_sample(entry, clip, clip_stats(clip.images), task.split, task.jpeg_quality)


def _run_shard(task: _Task, tick: Tick) -> dict:
    """Writes one shard and then its record; returns the record."""
    failures: list[dict] = []
    samples: list[dict] = []

    def produce():
        for entry in task.job.entries:
            check_main()
            result = _clip_sample(entry, task)
            if isinstance(result, str):
                failures.append(
                    {"clip": entry.rel_path, "class": entry.cls, "subset": entry.subset, "reason": result}
                )
            else:
                samples.append({"key": result["__key__"], "class": entry.cls, "clip": entry.rel_path})
                yield result
            tick(not isinstance(result, str))

    # In a worker, check_main stops the task (no tar, no record) once the run it works for has exited.
    info = sh.write_shard(task.split_dir / task.job.name, produce(), before_publish=check_main)
    record = {"url": task.job.name, "subset": task.job.subset, "number": task.job.number, **info}
    record.update(fingerprint=task.fingerprint, samples=samples, failures=failures)
    check_main()
    write_record(task.split_dir, record)
    return record


def _say(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def _count(bar: tqdm, ok: bool) -> None:
    bar.failures += not ok
    bar.set_postfix(failures=bar.failures, refresh=False)
    bar.update(1)


def run_extract(cfg: ExtractConfig, progress: bool = True) -> dict:
    """Extracts one split (or one ``--part``) into ``<out>/split<N>``, resuming finished shards.

    Args:
        cfg: The validated configuration.
        progress: Show a progress bar on stderr.

    Returns:
        A summary: ``split_dir``, ``index`` (its file name), ``planned`` (shards), ``shards`` (written, i.e.
        non-empty), ``resumed``, ``samples``, ``failures``, ``device``, ``synthetic`` (the data root's synth
        marker, None for real data).

    Raises:
        LsvitError: Missing data root or splits folder, bad split files, unusable device or ``--out``,
            another run writing the same shards, a file that cannot be written (e.g. a full disk).
    """
    fmt = get_dataset(cfg.dataset)
    data_root, splits_dir, archives = materialise_sources(cfg.data_root, cfg.splits_dir, progress)
    cfg = replace(cfg, data_root=data_root, splits_dir=splits_dir)  # archives unpacked beside themselves
    if not cfg.data_root.is_dir():
        state = "is not a folder" if cfg.data_root.exists() else "does not exist"
        synth = " (or make a synthetic one with `lsvit-pipeline synth`)" if fmt.name == "hmdb51" else ""
        raise ExtractError(
            f"data root {cfg.data_root} {state}; pass --data-root (the tree: {fmt.layout}){synth}"
        )
    splits_dir = fmt.locate(cfg.data_root, cfg.splits_dir)
    spec = fmt.load_split(splits_dir, cfg.split)
    for note in spec.notes:
        _say(f"note: {note}")
    subsets = cfg.subsets(spec)
    synthetic = read_marker(cfg.data_root)  # None for real data
    device = resolve_device(cfg.device)  # logs why when "auto" falls back to the CPU
    jobs = sh.plan_shards([c for c in spec.clips if c.subset in subsets], cfg.shard_max_samples, cfg.part)
    make_dirs(cfg.out, "--out")
    make_dirs(cfg.split_dir / RECORDS_DIRNAME, "--out")
    what = "extract" if cfg.part[1] == 1 else f"extract --part {cfg.part[0]}/{cfg.part[1]}"
    with hold(cfg.split_dir, lock_name(cfg.part), what):  # parts have their own locks: they may run at once
        return _extract(cfg, spec.classes, subsets, splits_dir, device, jobs, progress, archives, synthetic)


def _extract(
    cfg: ExtractConfig,
    classes: list[str],
    subsets: list[str],
    splits_dir: Path,
    device: str,
    jobs: list[sh.ShardJob],
    progress: bool,
    archives: dict[str, str],
    synthetic: dict | None,
) -> dict:
    split_dir = cfg.split_dir
    for name in sh.remove_stale(split_dir, [j.name for j in jobs], cfg.part):
        _say(f"removed stale {name}")
    # Absolute paths: workers come from a forkserver whose working directory may differ from ours.
    root, out_dir = cfg.data_root.resolve(), split_dir.resolve()
    links = links_outside(cfg.data_root, (e for j in jobs for e in j.entries))
    if links:
        _say(
            f"note: {len(links)} clip(s) are symlinks that lead outside {cfg.data_root} and are followed, "
            f"e.g. {links[0][0]} -> {links[0][1]}"
        )
    fields = (cfg.split, cfg.frames, device, cfg.jpeg_quality)
    tasks = [_Task(j, root, out_dir, *fields, _fingerprint(j, cfg, device, synthetic)) for j in jobs]
    records = {}
    for t in tasks:  # sizes and sha256 checked: a damaged shard is extracted again, never adopted
        records[t.job.name], damaged = adopt(split_dir, t.job.name, t.fingerprint)
        if damaged:
            _say(f"{damaged}; extracting it again")
    todo = [t for t in tasks if records[t.job.name] is None]
    workers = len(os.sched_getaffinity(0)) if cfg.workers is None else cfg.workers
    bar = progress_bar(
        total=sum(len(j.entries) for j in jobs),
        initial=sum(len(t.job.entries) for t in tasks if records[t.job.name] is not None),
        unit="clip",
        desc=f"extract split{cfg.split}",
        disable=not progress,
        dynamic_ncols=True,
    )
    bar.failures = sum(len(r["failures"]) for r in records.values() if r)
    try:
        done = run_tasks(_run_shard, todo, min(workers, len(todo)), lambda ok: _count(bar, ok), __name__)
        records.update((r["url"], r) for r in done)
    except KeyboardInterrupt:
        _say("interrupted: finished shards are kept; rerun the same command to resume")
        raise
    finally:
        bar.close()
    config = cfg.to_json() | {"splits_dir": str(splits_dir), "device": device, "workers": workers}
    config["archives"] = archives  # what --data-root / --splits-dir named, when they were unpacked
    index = write_index(
        split_dir,
        dataset=cfg.dataset,
        split=cfg.split,
        classes=classes,
        subsets=subsets,
        records=[records[j.name] for j in jobs],
        expected=[e.rel_path for j in jobs for e in j.entries],
        config=config,
        part=cfg.part,
        synthetic=synthetic,
    )
    return {
        "split_dir": str(split_dir),
        "index": index_name(cfg.part),
        "planned": len(jobs),
        "shards": len(index["shards"]),
        "resumed": len(tasks) - len(todo),
        "samples": sum(s["count"] for s in index["shards"]),
        "failures": index["num_failures"],
        "device": device,
        "synthetic": synthetic,
    }
