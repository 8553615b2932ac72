"""Streaming clip loader: WebDataset shards -> balanced, shuffled, augmented uint8 batches.

Design (every DDP rank runs the same number of steps, whatever the shard sizes):

* Training: ``steps = total draws // (world_size * batch_size)`` where the draws per epoch come from the
  balance manifest (or one per sample). Worker ``w`` of a rank yields exactly ``worker_quotas(steps,
  workers)[w]`` full batches: its shard stream is repeated pass after pass (each pass reshuffled) and cut
  there, so a rank whose shards hold fewer draws wraps around and one with more stops early. Over one
  pass, a single process draws every key exactly as often as the manifest says.
* Shards are split by rank, then by worker (``shards[rank::world][worker::workers]``, what
  ``wds.split_by_node``/``wds.split_by_worker`` do, but with the rank passed in so the plan can't
  disagree with the environment and ranks can be simulated in one process). With fewer shards than
  ``world_size * workers`` every worker reads all shards and keeps every N-th draw (``by_samples``):
  nobody starves or deadlocks, at the cost of N-fold reading of what is then a small dataset.
* A pass reads the worker's shards in a shuffled order (extract already mixes classes within each shard),
  repeats each raw sample by its draw count, and shuffles in a buffer of raw bytes (before decoding) that
  drains at the end of the pass. Shard order, buffer and augmentation seeds derive from
  (seed, epoch[, pass], rank, worker): the same epoch replays exactly, the next one differs.
* Evaluation: each rank streams its shards once (no balancing, no shuffle, last batch partial). Ranks
  with fewer batches re-yield their last batch until all ranks reach the same step count, so the union of
  keys is every test sample once and padded samples repeat a key already seen on that rank: **keep the
  first prediction per key** (gather keys with the logits). The ``val`` subset (the hold-out of ``train``,
  see ``trainer.shardset``) has no exact plan: each rank yields what its shards hold, unpadded.
* Frames: training picks ``num_frames`` of the stored frames by ``frame_sampling``; evaluation takes them
  uniformly, and with ``test_views`` other than 1x1 yields (B, V, T, 3, H, W) batches of V = T_v x S views
  (``trainer.clips``).
* Frames stay uint8 until they are on the device (`normalize`); batches are (B, T, 3, H, W) views of
  channels-last (B, T, H, W, 3) memory, so ``x.flatten(0, 1)`` feeds a channels-last conv directly.
* ``decode_device`` (``--decode cuda``): workers pick the frames but pass their JPEG bytes on; each batch
  is decoded (nvJPEG) and augmented on that device as it leaves the loader (``trainer.jpegclips``).
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import is_url, read_index, resolve_split_dir
from lsvit.trainer.augment import AugConfig
from lsvit.trainer.clips import make_prepare
from lsvit.trainer.jpegclips import DeviceEpoch, DeviceFrames, collate_jpegs
from lsvit.trainer.preprocess import normalize  # re-exported: the loader's batches go through it
from lsvit.trainer.samples import counted
from lsvit.trainer.shardset import (
    ShardSet,
    load_shardset,
    plan_epoch,
    seed_for,
    train_steps,
    worker_quotas,
)
from lsvit.trainer.temporal import FRAME_SAMPLING, parse_views

__all__ = ["DataConfig", "DataError", "make_loader", "normalize"]

BALANCE = ("none", "oversample", "undersample", "hybrid")


class DataError(LsvitError, ValueError):
    """Bad loader settings or shards that do not match their index/manifest."""


@dataclass
class DataConfig:
    """Loader settings.

    ``shards`` is a local folder (``shards/`` or ``shards/splitN``) or a WebDataset URL prefix such as
    ``pipe:curl -s https://host/shards/split1/`` or ``https://host/shards/split1/``; index.json, manifests
    and shard names are appended to it.
    """

    shards: str | Path
    split: int | None = None
    img_size: int = 224
    num_frames: int = 16
    batch_size: int = 8
    workers: int = 4
    balance: str = "hybrid"
    shuffle_buffer: int = 256
    seed: int = 0
    aug: AugConfig = field(default_factory=AugConfig)
    pin_memory: bool | None = None  # None: when CUDA is available
    prefetch_factor: int = 2
    val_fraction: float = 0.0  # share of the train clips held out as the ``val`` subset
    frame_sampling: str = "uniform"  # training frame choice; evaluation is always uniform
    frame_stride: int | None = None  # for ``stride`` sampling; None: stored frames // num_frames
    test_views: tuple[int, int] = (1, 1)  # evaluation (temporal views, spatial crops)
    # None: workers decode and augment (OpenCV, albumentations); a device: workers only pick the frames'
    # JPEG bytes and that device decodes and augments each batch (nvJPEG on CUDA, trainer.jpegclips)
    decode_device: str | None = None

    def __post_init__(self) -> None:
        if self.balance not in BALANCE:
            raise DataError(f"balance={self.balance!r}; allowed: {', '.join(BALANCE)}")
        for name in ("img_size", "num_frames", "batch_size", "shuffle_buffer", "prefetch_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DataError(f"{name}={v!r}: must be an integer >= 1")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise DataError(
                f"workers={self.workers!r}: must be an integer >= 0 (0 = load in the main process)"
            )
        if self.split is not None and self.split not in (1, 2, 3):
            raise DataError(f"split={self.split!r}; allowed: 1, 2, 3 or None (the only split present)")
        if isinstance(self.aug, dict):
            self.aug = AugConfig(**self.aug)
        if self.frame_sampling not in FRAME_SAMPLING:
            raise DataError(f"frame_sampling={self.frame_sampling!r}; allowed: {', '.join(FRAME_SAMPLING)}")
        if self.frame_stride is not None and (isinstance(self.frame_stride, bool) or self.frame_stride < 1):
            raise DataError(f"frame_stride={self.frame_stride!r}: must be an integer >= 1 or None")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataError(f"val_fraction={self.val_fraction!r}: must be in [0, 1)")
        try:
            self.test_views = parse_views(self.test_views)
        except ValueError as e:
            raise DataError(str(e)) from e
        if not is_url(self.shards):
            self.shards = Path(self.shards)


class ClipStream(IterableDataset):
    """The per-worker sample stream of one rank (see the module docstring for the design)."""

    def __init__(self, cfg: DataConfig, ss: ShardSet, train: bool, rank: int, world_size: int, epoch: int):
        super().__init__()
        self.cfg, self.ss, self.train = cfg, ss, train
        self.rank, self.world_size, self.epoch = rank, world_size, epoch

    def _pass_urls(self, p: int, worker: int, workers: int) -> list[str]:
        urls = [u for u, _ in self.ss.shards]
        if self.train:  # same order on every rank and worker, so the split stays a partition
            random.Random(seed_for(self.cfg.seed, self.epoch, p)).shuffle(urls)
        if self.ss.by_samples:
            return urls
        return urls[self.rank :: self.world_size][worker::workers]

    def _pass(self, p: int, worker: int, workers: int) -> Iterator[dict]:
        """One pass over this worker's shards, each raw sample repeated by its draw count."""
        n_all = self.world_size * workers
        gid = worker * self.world_size + self.rank  # draw i goes to rank i % world, worker (i // world) % W
        urls = self._pass_urls(p, worker, workers)
        counts = dict(self.ss.shards)
        samples = (s for url in urls for s in counted(url, counts[url]))
        i = 0
        for s in samples:
            for _ in range(self.ss.times(s)):
                i += 1
                if not self.ss.by_samples or (i - 1) % n_all == gid:
                    yield s

    def _draws(self, worker: int, workers: int, rng: random.Random) -> Iterator[dict]:
        if not self.train:
            yield from self._pass(0, worker, workers)
            return
        buf = self.cfg.shuffle_buffer
        for p in count():
            # shuffled per pass (the buffer drains at its end) so one pass is exactly the manifest's draws
            drawn = 0
            for s in wds.shuffle(buf, initial=buf, rng=rng)(self._pass(p, worker, workers)):
                drawn += 1
                yield s
            if drawn == 0:
                raise DataError(
                    f"rank {self.rank} worker {worker}: its shards hold no drawn samples this epoch; "
                    "use fewer --workers or --balance none"
                )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        cfg, seed = self.cfg, seed_for(self.cfg.seed, self.epoch, self.rank, worker)
        clip = make_prepare(
            train=self.train,
            img_size=cfg.img_size,
            num_frames=cfg.num_frames,
            aug=cfg.aug,
            seed=seed,
            sampling=cfg.frame_sampling,
            stride=cfg.frame_stride,
            views=cfg.test_views,
            encoded=cfg.decode_device is not None,
        )

        def prepare(s: dict) -> tuple[np.ndarray | list[bytes], int, str]:
            return (*clip(s), s["__key__"])

        collate = _collate
        if cfg.decode_device is not None:  # each batch's augmentation seed, drawn in stream order
            batch_seeds = random.Random(seed + 1)
            collate = lambda samples: collate_jpegs(samples, batch_seeds.getrandbits(62))  # noqa: E731

        batches = iter(
            wds.DataPipeline(
                lambda: self._draws(worker, workers, random.Random(seed)),
                wds.map(prepare),
                wds.batched(cfg.batch_size, collation_fn=collate, partial=not self.train),
            )
        )
        if self.train:
            return islice(_errors_as_items(batches), worker_quotas(self.ss.steps, workers)[worker])
        return _errors_as_items(batches)


def _errors_as_items(batches: Iterator) -> Iterator:
    """Yields an ``LsvitError`` raised while making batches as an item, which ends the stream.

    torch re-raises a worker's exception in the main process with the worker's whole traceback as its
    message; sent as an item, the error keeps its own one-line message (`_Epoch` raises it).
    """
    try:
        yield from batches
    except LsvitError as e:
        yield e


def _collate(samples: list[tuple[np.ndarray, int, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    frames = torch.from_numpy(np.stack([s[0] for s in samples]))  # (B, [V,] T, H, W, 3): channels-last memory
    labels = torch.tensor([s[1] for s in samples], dtype=torch.int64)
    order = (0, 1, 4, 2, 3) if frames.dim() == 5 else (0, 1, 2, 5, 3, 4)  # -> (B, [V,] T, 3, H, W)
    return frames.permute(*order), labels, [s[2] for s in samples]


class _Epoch:
    """Iterable over exactly ``steps`` batches of one rank; eval pads by repeating the last batch."""

    def __init__(self, loader: DataLoader, steps: int, train: bool, exact: bool = True):
        self.loader, self.steps, self.train, self.exact = loader, steps, train, exact

    def __len__(self) -> int:
        return self.steps

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        for batch in self.loader:
            if isinstance(batch, LsvitError):  # raised in a worker (see _errors_as_items)
                raise batch
            yield batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        n, last = 0, None
        if not self.exact:  # a filtered evaluation subset: whatever this rank's shards hold
            yield from self._batches()
            return
        for batch in self._batches():
            n += 1
            if n > self.steps:  # another rank would wait for this one in a collective forever
                raise DataError(f"loader yielded more than the {self.steps} planned batches")
            last = batch
            yield batch
        if n < self.steps and (self.train or last is None):
            raise DataError(
                f"loader ran dry after {n} of {self.steps} batches; shards changed while reading?"
            )
        for _ in range(self.steps - n):
            yield last


def make_loader(
    cfg: DataConfig, subset: str, train: bool, rank: int = 0, world_size: int = 1, epoch: int = 0
) -> tuple[_Epoch | DeviceEpoch, int]:
    """Builds one epoch's loader for one rank.

    Args:
        cfg: Loader settings.
        subset: ``train``, ``test`` (or ``unused``), a subset listed in index.json, or ``val``: the clips
            of ``train`` held out by ``cfg.val_fraction`` (which ``train`` then never draws).
        train: Balanced, shuffled, augmented, full batches; else every sample once, deterministic.
        rank: This process's DDP rank.
        world_size: Number of DDP ranks.
        epoch: Epoch number; reseeds shard order, shuffle buffer and augmentation.

    Returns:
        ``(loader, steps_per_epoch)``; the loader yields exactly ``steps_per_epoch`` tuples
        ``(frames uint8 (B, T, 3, H, W), labels int64 (B,), keys list[str])`` on every rank (for ``val``,
        ``steps_per_epoch`` is an estimate and the count varies by rank); evaluation with test views other
        than 1x1 yields frames ``(B, V, T, 3, H, W)``.

    Raises:
        DataError: bad rank/world size, or shards/manifest missing or not matching.
    """
    if not 0 <= rank < world_size:
        raise DataError(f"rank={rank} with world_size={world_size}: need 0 <= rank < world_size")
    index = read_index(resolve_split_dir(cfg.shards, cfg.split), cfg.split)
    if subset == "val" and train:
        raise DataError("the val subset is for evaluation only (train=False)")
    ss = load_shardset(index, subset, train, cfg.balance, cfg.val_fraction)
    workers = cfg.workers
    if train:  # a worker without a single batch to make would only cost a process
        workers = min(workers, train_steps(ss.total_draws, world_size, cfg.batch_size))
    ss = plan_epoch(ss, train, world_size, workers, cfg.batch_size, exact=subset != "val")
    dataset = ClipStream(cfg, ss, train, rank, world_size, epoch)
    if workers > 0:
        # Parallelism comes from the workers: OpenCV's own threads would oversubscribe the cores. Set here,
        # before the fork: in a forked worker, setNumThreads hangs on the parent's idle pool threads' state.
        cv2.setNumThreads(1)
    pin = torch.cuda.is_available() if cfg.pin_memory is None else cfg.pin_memory
    loader = DataLoader(
        dataset,
        batch_size=None,  # batched inside the workers: one IPC message per batch
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
    )
    epoch = _Epoch(loader, ss.steps, train, ss.exact)
    if cfg.decode_device is None:
        return epoch, ss.steps
    views = (1, 1) if train else cfg.test_views
    frames = DeviceFrames(cfg.decode_device, cfg.img_size, cfg.num_frames, train, cfg.aug, views)
    return DeviceEpoch(epoch, frames), ss.steps
