"""Which shards and draws one loader epoch covers: index.json + balance manifest reading, step math.

Everything here runs in the main process before any worker starts, so a missing or mismatched file
fails fast with one clear message. The step math is pure functions on ints.
"""

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import webdataset as wds

from pipeline.balance import load_manifest
from pipeline.errors import LsvitError

if TYPE_CHECKING:
    from trainer.data import DataConfig

_SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.tar")
_MANIFEST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.json")


class ShardSetError(LsvitError, ValueError):
    """Shards, index.json or a manifest are missing or do not match each other."""


def is_url(shards: str | Path) -> bool:
    """True for WebDataset URLs (``pipe:...``, ``http(s)://...``, ``file://...``), False for paths."""
    return not isinstance(shards, Path) and (str(shards).startswith("pipe:") or "://" in str(shards))


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


def resolve_split_dir(shards: str | Path, split: int | None) -> Path | str:
    """Finds the split folder: ``shards`` itself, its only ``split*/``, or ``split<split>/``.

    Args:
        shards: Folder (``shards/`` or ``shards/splitN``) or URL prefix (``pipe:cat dir/``, ``https://h/s/``).
        split: Split number, needed when several splits are present.

    Returns:
        The split folder as a Path, or for URLs the prefix ending in ``/`` to which file names are appended.

    Raises:
        ShardSetError: nothing found, or several splits and no ``split``.
    """
    if is_url(shards):
        base = str(shards) if str(shards).endswith("/") else f"{shards}/"
        tries = [base, f"{base}split{split}/"] if split is not None else [base]
        for b in tries:
            try:
                read_bytes(b, "index.json")
                return b
            except ShardSetError:
                continue
        raise ShardSetError(f"no readable index.json at {' or '.join(tries)}; pass the split folder's URL")
    p = Path(shards)
    if not p.is_dir():
        raise ShardSetError(f"shard folder {p} does not exist; run `lsvit-pipeline extract --out {p}` first")
    if (p / "index.json").is_file():
        return p
    found = sorted(d.name for d in p.iterdir() if (d / "index.json").is_file())
    if split is not None:
        if (p / f"split{split}" / "index.json").is_file():
            return p / f"split{split}"
        raise ShardSetError(f"no split{split}/index.json in {p} (found: {', '.join(found) or 'none'})")
    if len(found) == 1:
        return p / found[0]
    if not found:
        raise ShardSetError(f"no index.json in {p} or its sub-folders; run `lsvit-pipeline extract` first")
    raise ShardSetError(f"{p} holds several splits ({', '.join(found)}); pick one with --split")


def read_bytes(base: Path | str, name: str) -> bytes:
    """Reads ``name`` next to the shards (a local file, or via ``wds.gopen`` for URLs)."""
    try:
        if isinstance(base, Path):
            return (base / name).read_bytes()
        with wds.gopen(base + name) as f:
            return f.read()
    except (OSError, ValueError) as e:
        raise ShardSetError(f"cannot read {name} from {base} ({e})") from e


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


def _load_index(base: Path | str, split: int | None) -> dict:
    try:
        index = json.loads(read_bytes(base, "index.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardSetError(f"{base}: index.json is not JSON ({e}); rerun `lsvit-pipeline extract`") from e
    shards = index.get("shards") if isinstance(index, dict) else None
    ok = isinstance(shards, list) and all(
        isinstance(s, dict) and isinstance(s.get("count"), int) and s["count"] >= 0 for s in shards
    )
    if not ok or not isinstance(index.get("classes"), list) or not isinstance(index.get("counts", {}), dict):
        raise ShardSetError(
            f"{base}: index.json lacks a class list or shard entries with counts; rerun `lsvit-pipeline extract`"
        )
    if split is not None and index.get("split", split) != split:
        raise ShardSetError(f"{base} holds split {index['split']}, not the requested split {split}")
    return index


def _load_manifest(base: Path | str, name: str) -> dict:
    if not _MANIFEST_NAME.fullmatch(name):  # appended to pipe: commands, so no shell syntax
        raise ShardSetError(f"{base}: manifest name {name!r} in index.json is not a plain .json name")
    if isinstance(base, Path):
        if not (base / name).is_file():
            raise ShardSetError(
                f"missing balancing manifest {base / name}; rerun `lsvit-pipeline extract` or use --balance none"
            )
        return load_manifest(base / name)
    data = read_bytes(base, name)
    with tempfile.TemporaryDirectory() as tmp:  # reuse the pipeline's validation, which reads a path
        (Path(tmp) / name).write_bytes(data)
        try:
            return load_manifest(Path(tmp) / name)
        except LsvitError as e:
            raise ShardSetError(str(e).replace(str(Path(tmp) / name), base + name)) from e


def load_shardset(cfg: "DataConfig", subset: str, train: bool) -> ShardSet:
    """Reads index.json (and for balanced training the manifest) and checks they match the shards.

    Args:
        cfg: Loader settings (``shards``, ``split``, ``balance``).
        subset: Subset whose shards to read.
        train: Whether the manifest applies (evaluation never balances).

    Returns:
        The shard set without an epoch plan (``steps`` 0).

    Raises:
        ShardSetError: missing/malformed files, unknown subset, missing shards, manifest mismatch.
    """
    base = resolve_split_dir(cfg.shards, cfg.split)
    index = _load_index(base, cfg.split)
    classes = index["classes"]
    entries = [s for s in index["shards"] if s.get("subset") == subset]
    if not entries:
        have = sorted({s.get("subset") for s in index["shards"]})
        raise ShardSetError(f"{base}: no {subset!r} shards in index.json; subsets present: {have}")
    shards = []
    for s in entries:
        if not isinstance(s.get("url"), str) or not _SHARD_NAME.fullmatch(s["url"]):
            raise ShardSetError(f"{base}: shard name {s.get('url')!r} in index.json is not a plain .tar name")
        if isinstance(base, Path) and not (base / s["url"]).is_file():
            raise ShardSetError(f"shard {base / s['url']} listed in index.json is missing; rerun extract")
        shards.append((str(base / s["url"]) if isinstance(base, Path) else base + s["url"], s["count"]))
    total = sum(n for _, n in shards)
    if not train or cfg.balance == "none":
        return ShardSet(base, classes, shards, None, None, None, total)
    name = (
        index.get("manifests", {}).get(subset, {}).get(cfg.balance, f"balanced-{cfg.balance}-{subset}.json")
    )
    m = _load_manifest(base, name)
    if m["strategy"] != cfg.balance or m.get("subset") not in (None, subset):
        raise ShardSetError(
            f"{name}: manifest is for {m['strategy']}/{m.get('subset')}, not {cfg.balance}/{subset}"
        )
    if set(m["before"]) != set(classes):
        raise ShardSetError(f"{name}: its classes differ from index.json's; rerun `lsvit-pipeline extract`")
    counts = index.get("counts", {}).get(subset, {})
    bad = [c for c in classes if m["before"][c] != counts.get(c, m["before"][c])]
    if bad or len(m["draws"]) != total:
        raise ShardSetError(
            f"{name} lists {len(m['draws'])} samples but the shards hold {total} (classes differing: "
            f"{bad[:3]}); rerun `lsvit-pipeline extract`"
        )
    draws = {k: d["count"] for k, d in m["draws"].items()}
    key_class = {k: d["class"] for k, d in m["draws"].items()}
    return ShardSet(base, classes, shards, draws, key_class, name, sum(draws.values()))


def plan_epoch(ss: ShardSet, train: bool, world_size: int, workers: int, batch_size: int) -> ShardSet:
    """Adds the split mode and the steps every rank runs (see trainer.data's module docstring)."""
    by_samples = len(ss.shards) < world_size * max(workers, 1)
    if train:
        steps = train_steps(ss.total_draws, world_size, batch_size)
    else:
        per = eval_counts([n for _, n in ss.shards], world_size, workers, by_samples)
        steps = eval_steps(per, batch_size)
    return replace(ss, by_samples=by_samples, steps=steps)
