"""Which shards and draws one loader epoch covers: index.json + balance manifest reading, step math.

Everything here runs in the main process before any worker starts, so a missing or mismatched file
fails fast with one clear message. The step math is pure functions on ints.

The validation hold-out (``val_fraction > 0``, see :mod:`lsvit.trainer.holdout`) splits the ``train``
subset: its keys come from a balancing manifest (each lists every key of its subset), ``train`` draws only
the kept keys, rebalanced over them with the manifest's own strategy and seed, and ``val`` reads the train
shards keeping only the held-out keys. Which train shard holds a validation clip is not recorded, so a
``val`` epoch has no exact step plan: it is read once, unpadded (evaluation needs no equal step counts, as
it runs no collective until the final gather).
"""

import hashlib
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from lsvit.pipeline.balance import STRATEGIES, plan_draws
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import ShardIndex, ShardIndexError
from lsvit.trainer.holdout import holdout_keys


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
    exact: bool = True  # steps is the exact batch count of every rank (False: an estimate, no padding)

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


def subset_keys(index: ShardIndex, subset: str, prefer: str = "hybrid") -> tuple[dict[str, str], dict]:
    """Every key of a subset with its class, from one of its balancing manifests.

    Args:
        index: The split's checked index.
        subset: A subset listed in index.json.
        prefer: The manifest strategy to read first.

    Returns:
        ``(key -> class, the manifest read)``.

    Raises:
        ShardIndexError: No readable manifest for the subset.
    """
    order = [prefer] + [s for s in STRATEGIES if s != prefer]
    listed = [s for s in order if s in index.data["manifests"].get(subset, {})] or order[:1]
    m = index.manifest(subset, listed[0])
    return {k: d["class"] for k, d in m["draws"].items()}, m


def _rebalanced(m: dict, kept: dict[str, str], classes: list[str]) -> dict[str, int]:
    """The manifest's strategy replanned over the kept keys (same seed; a hybrid --balance-target kept)."""
    target = None
    if m["strategy"] == "hybrid":
        filled = sorted(n for n in m["before"].values() if n > 0)
        if filled and m["target"] != statistics.median_low(filled):
            target = m["target"]  # extract --balance-target N: keep N
    plan = plan_draws(kept, classes, m["strategy"], seed=m["seed"], target=target)
    return {k: d["count"] for k, d in plan["draws"].items()}


def load_shardset(
    index: ShardIndex, subset: str, train: bool, balance: str, val_fraction: float = 0.0
) -> ShardSet:
    """The subset's shards and, for balanced training, the manifest's draws per epoch.

    Args:
        index: The split's checked index.
        subset: Subset whose shards to read, or ``val``: the dataset's own ``val`` shards when it has them,
            else the hold-out of ``train``.
        train: Whether the manifest applies (evaluation never balances).
        balance: ``none`` or a manifest strategy.
        val_fraction: Share of the ``train`` clips held out for ``val`` (0: none; ``val`` is then empty).

    Returns:
        The shard set without an epoch plan (``steps`` 0).

    Raises:
        ShardIndexError: unknown subset, missing shards, manifest missing or not matching the shards.
        ShardSetError: ``val`` asked for with no hold-out.
    """
    own_val = (
        "val" in index.subsets
    )  # the dataset's own validation clips (a folder dataset's CSV): no hold-out
    holdout = not own_val and (subset == "val" or (subset == "train" and val_fraction > 0))
    shards = index.shard_urls("train" if subset == "val" and not own_val else subset)
    total = sum(n for _, n in shards)
    if not holdout:
        if not train or balance == "none":
            return ShardSet(index.base, index.classes, shards, None, None, None, total)
        m = index.manifest(subset, balance)
        draws = {k: d["count"] for k, d in m["draws"].items()}
        key_class = {k: d["class"] for k, d in m["draws"].items()}
        name = index.manifest_name(subset, balance)
        return ShardSet(index.base, index.classes, shards, draws, key_class, name, sum(draws.values()))
    try:
        key_class, m = subset_keys(index, "train", balance if balance != "none" else "hybrid")
    except ShardIndexError as e:
        raise ShardSetError(
            f"{e} (the validation hold-out reads the train keys from a balancing manifest: rerun "
            "`lsvit-pipeline extract`, or train with --val-fraction 0)"
        ) from e
    val = holdout_keys(key_class, val_fraction)
    if subset == "val":
        if not val:
            raise ShardSetError(f"no validation clips with val_fraction={val_fraction}; use 0.05 or more")
        draws = {k: int(k in val) for k in key_class}
    else:
        kept = {k: c for k, c in key_class.items() if k not in val}
        draws = dict.fromkeys(val, 0)
        draws.update(
            _rebalanced(m, kept, index.classes) if train and balance != "none" else dict.fromkeys(kept, 1)
        )
    name = index.manifest_name("train", m["strategy"])
    return ShardSet(index.base, index.classes, shards, draws, key_class, name, sum(draws.values()))


def plan_epoch(
    ss: ShardSet, train: bool, world_size: int, workers: int, batch_size: int, exact: bool = True
) -> ShardSet:
    """Adds the split mode and the steps every rank runs (see trainer.data's module docstring).

    With ``exact=False`` (evaluation of a filtered subset such as ``val``) ``steps`` is only an estimate for
    progress bars and the loader is not padded.
    """
    by_samples = len(ss.shards) < world_size * max(workers, 1)
    if train:
        steps = train_steps(ss.total_draws, world_size, batch_size)
    elif not exact:
        steps = max(1, math.ceil(ss.total_draws / (world_size * batch_size)))
    else:
        per = eval_counts([n for _, n in ss.shards], world_size, workers, by_samples)
        steps = eval_steps(per, batch_size)
    return replace(ss, by_samples=by_samples, steps=steps, exact=train or exact)
