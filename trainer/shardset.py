"""Which shards and draws one loader epoch covers: index.json + balance manifest reading, step math.

Everything here runs in the main process before any worker starts, so a missing or mismatched file
fails fast with one clear message. The step math is pure functions on ints.
"""

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import ShardIndex


class ShardSetError(LsvitError, ValueError):
    """Shards, index.json or a manifest are missing or do not match each other."""


def seed_for(*parts: int) -> int:
    """A stable 63-bit seed from ints (Python's ``hash`` is salted per process for str, so not that)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


def train_steps(total_draws: int, world_size: int, batch_size: int) -> int:
    """Full batches per rank per epoch: ``total_draws // (world_size * batch_size)`` (drop_last).

    Raises:
        ShardSetError: when that is 0.
    """
    steps = total_draws // (world_size * batch_size)
    if steps < 1:
        raise ShardSetError(
            f"{total_draws} draws per epoch cannot fill one batch of {batch_size} on each of {world_size} "
            "rank(s); lower --batch-size or use more data"
        )
    return steps


def worker_quotas(steps: int, workers: int) -> list[int]:
    """Batches each DataLoader worker yields so that together they yield ``steps`` (workers=0 -> one)."""
    w = max(workers, 1)
    return [steps // w + (i < steps % w) for i in range(w)]


def eval_counts(counts: list[int], world_size: int, workers: int, by_samples: bool) -> list[list[int]]:
    """Samples per [rank][worker] for one evaluation pass.

    By shards: rank r, worker w reads ``shards[r::world][w::workers]``. By samples: sample i (in index
    order) goes to rank ``i % world``, worker ``(i // world) % workers``.
    """
    w_n = max(workers, 1)
    if by_samples:
        n, n_all = sum(counts), world_size * w_n
        return [[len(range(w * world_size + r, n, n_all)) for w in range(w_n)] for r in range(world_size)]
    return [[sum(counts[r::world_size][w::w_n]) for w in range(w_n)] for r in range(world_size)]


def eval_steps(per_worker: list[list[int]], batch_size: int) -> int:
    """Evaluation steps every rank runs: the largest rank's batch count (workers batch separately)."""
    if any(sum(r) == 0 for r in per_worker):
        raise ShardSetError(f"a rank would get no evaluation samples ({per_worker}); use fewer ranks")
    return max(sum(-(-n // batch_size) for n in r) for r in per_worker)


@dataclass(frozen=True)
class ShardSet:
    """The shards of one subset, their draws per epoch, and the epoch plan."""

    base: Path | str
    classes: list[str]
    shards: list[tuple[str, int]]  # (url, sample count)
    draws: dict[str, int] | None  # key -> draws per epoch; None: each sample once
    key_class: dict[str, str] | None
    manifest: str | None
    total_draws: int
    by_samples: bool = False
    steps: int = 0

    def times(self, sample: dict) -> int:
        """How often a raw sample is drawn this epoch; checks it against the manifest and classes."""
        key = sample["__key__"]
        try:
            label = int(sample["cls"])
        except (KeyError, ValueError) as e:
            raise ShardSetError(f"sample {key!r} in {sample.get('__url__')} has no integer cls member") from e
        if not 0 <= label < len(self.classes):
            raise ShardSetError(f"sample {key!r}: label {label} outside the {len(self.classes)} classes")
        if self.draws is None:
            return 1
        if key not in self.draws:
            raise ShardSetError(
                f"sample {key!r} in {sample.get('__url__')} is missing from {self.manifest}: shards and "
                "manifest do not match; rerun `lsvit-pipeline extract`"
            )
        if self.key_class[key] != self.classes[label]:
            raise ShardSetError(
                f"sample {key!r}: manifest says {self.key_class[key]}, shard says label {label}"
            )
        return self.draws[key]


def load_shardset(index: ShardIndex, subset: str, train: bool, balance: str) -> ShardSet:
    """The subset's shards and, for balanced training, the manifest's draws per epoch.

    Args:
        index: The split's checked index.
        subset: Subset whose shards to read.
        train: Whether the manifest applies (evaluation never balances).
        balance: ``none`` or a manifest strategy.

    Returns:
        The shard set without an epoch plan (``steps`` 0).

    Raises:
        ShardIndexError: unknown subset, missing shards, manifest missing or not matching the shards.
    """
    shards = index.shard_urls(subset)
    total = sum(n for _, n in shards)
    if not train or balance == "none":
        return ShardSet(index.base, index.classes, shards, None, None, None, total)
    m = index.manifest(subset, balance)
    draws = {k: d["count"] for k, d in m["draws"].items()}
    key_class = {k: d["class"] for k, d in m["draws"].items()}
    name = index.manifest_name(subset, balance)
    return ShardSet(index.base, index.classes, shards, draws, key_class, name, sum(draws.values()))


def plan_epoch(ss: ShardSet, train: bool, world_size: int, workers: int, batch_size: int) -> ShardSet:
    """Adds the split mode and the steps every rank runs (see trainer.data's module docstring)."""
    by_samples = len(ss.shards) < world_size * max(workers, 1)
    if train:
        steps = train_steps(ss.total_draws, world_size, batch_size)
    else:
        per = eval_counts([n for _, n in ss.shards], world_size, workers, by_samples)
        steps = eval_steps(per, batch_size)
    return replace(ss, by_samples=by_samples, steps=steps)
