"""The one reader of a shard folder: where its index.json is, what it lists, and its balancing manifests.

``extract`` and ``merge`` write ``index.json`` (`lsvit.pipeline.merge.write_index`); everything that reads
it (eda, merge, the trainer, predict) goes through :func:`read_index`, which checks its structure once and
names the file and what to do when it is unusable. A split folder may be a local path or a WebDataset URL
prefix (``https://host/shards/split1/``, ``pipe:curl -s https://host/shards/split1/``).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsvit.pipeline.balance import BalanceError, parse_manifest
from lsvit.pipeline.datasets import DATASETS
from lsvit.pipeline.datasets import DEFAULT as DEFAULT_DATASET
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.splits import SUBSETS

INDEX = "index.json"
DEFAULT_FRAMES = 16  # what extract stores when an index predates its frames setting
_SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.tar")
_MANIFEST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.json")  # appended to pipe: commands: no shell


class ShardIndexError(LsvitError, ValueError):
    """No index.json where one was expected, or an index or manifest that is malformed or inconsistent."""


def is_url(shards: str | Path) -> bool:
    """True for WebDataset URLs (``pipe:...``, ``http(s)://...``, ``file://...``), False for paths."""
    return not isinstance(shards, Path) and (str(shards).startswith("pipe:") or "://" in str(shards))


def read_bytes(base: Path | str, name: str) -> bytes:
    """Reads ``name`` next to the shards: a local file, or through ``wds.gopen`` for a URL prefix.

    Raises:
        ShardIndexError: the file cannot be read.
    """
    try:
        if not is_url(base):
            return (Path(base) / name).read_bytes()
        import webdataset as wds  # only URLs need it

        with wds.gopen(str(base) + name) as f:
            return f.read()
    except (OSError, ValueError) as e:
        raise ShardIndexError(f"cannot read {name} from {base} ({e})") from e


def resolve_split_dir(shards: str | Path, split: int | None = None) -> Path | str:
    """Finds the split folder: ``shards`` itself, its only ``split*/``, or ``split<split>/``.

    Args:
        shards: A folder (``shards/`` or ``shards/splitN``) or URL prefix (``pipe:cat dir/``, ``https://h/s/``).
        split: Split number, needed when several splits are present.

    Returns:
        The split folder as a Path, or for URLs the prefix ending in ``/`` to which file names are appended.

    Raises:
        ShardIndexError: nothing found, or several splits and no ``split``.
    """
    if is_url(shards):
        base = str(shards) if str(shards).endswith("/") else f"{shards}/"
        tries = [base, f"{base}split{split}/"] if split is not None else [base]
        for b in tries:
            try:
                read_bytes(b, INDEX)
                return b
            except ShardIndexError:
                continue
        raise ShardIndexError(f"no readable {INDEX} at {' or '.join(tries)}; pass the split folder's URL")
    p = Path(shards)
    if not p.is_dir():
        raise ShardIndexError(
            f"shard folder {p} does not exist; run `lsvit-pipeline extract --out {p}` first"
        )
    if (p / INDEX).is_file():
        return p
    found = sorted(d.name for d in p.iterdir() if (d / INDEX).is_file())
    if split is not None:
        if (p / f"split{split}" / INDEX).is_file():
            return p / f"split{split}"
        raise ShardIndexError(f"no split{split}/{INDEX} in {p} (found: {', '.join(found) or 'none'})")
    if len(found) == 1:
        return p / found[0]
    if not found:
        raise ShardIndexError(
            f"no {INDEX} in {p} or its sub-folders: run `lsvit-pipeline extract` first "
            f"(or pass the split folder, <out>/split<N>)"
        )
    raise ShardIndexError(
        f"{p} holds several splits ({', '.join(found)}); pass one of them (e.g. {p / found[0]}) or pick one "
        "with --split"
    )


@dataclass(frozen=True)
class ShardIndex:
    """A checked ``index.json`` (or a part's ``index-p<i>of<N>.json``) and the folder it describes."""

    base: Path | str
    name: str
    data: dict[str, Any]  # the whole parsed file, for writers that carry fields through (merge)

    @property
    def where(self) -> str:
        """The file, for messages."""
        return str(self.base / self.name) if isinstance(self.base, Path) else f"{self.base}{self.name}"

    @property
    def classes(self) -> list[str]:
        """Class names in label order."""
        return list(self.data["classes"])

    @property
    def split(self) -> int | None:
        return self.data.get("split")

    @property
    def dataset(self) -> str:
        """The dataset's format (``lsvit.pipeline.datasets``: hmdb51, ucf101, folder); indexes written
        before extract recorded it are HMDB51's."""
        return self.data.get("dataset", DEFAULT_DATASET)

    @property
    def subsets(self) -> list[str]:
        """The subsets that have shards, in shard-plan order (``train``, ``val``, ``test``, ``unused``)."""
        have = {s["subset"] for s in self.data["shards"]}
        return [s for s in SUBSETS if s in have]

    @property
    def config(self) -> dict[str, Any]:
        """The resolved extraction settings."""
        return self.data["config"]

    @property
    def synthetic(self) -> dict[str, Any] | None:
        """How ``synth`` generated the clips (at least ``generator``), or None for real data.

        ``extract`` records the synth tree's marker (``lsvit.pipeline.synth.read_marker``): ``generator``,
        ``motions`` (the motion set's version), ``version`` (lsvit's, when known) and the synth settings
        (``scale``, ``seed``, ...). Indexes written before extract recorded it read as None.
        """
        return self.data.get("synthetic")

    @property
    def frames(self) -> int:
        """Frames stored per clip."""
        return int(self.config.get("frames", DEFAULT_FRAMES))

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Samples per subset and class, as in the shards."""
        return self.data["counts"]

    def shard_urls(self, subset: str) -> list[tuple[str, int]]:
        """``(url or path, sample count)`` of the subset's shards, checked to exist when local.

        Raises:
            ShardIndexError: no shards of that subset, or a listed local shard is missing.
        """
        entries = [s for s in self.data["shards"] if s["subset"] == subset]
        if not entries:
            have = sorted({s["subset"] for s in self.data["shards"]})
            raise ShardIndexError(f"{self.where}: no {subset!r} shards; subsets present: {have}")
        out = []
        for s in entries:
            if isinstance(self.base, Path):
                if not (self.base / s["url"]).is_file():
                    raise ShardIndexError(
                        f"shard {self.base / s['url']} listed in {self.name} is missing; rerun extract"
                    )
                out.append((str(self.base / s["url"]), s["count"]))
            else:
                out.append((self.base + s["url"], s["count"]))
        return out

    def manifest_name(self, subset: str, strategy: str) -> str:
        """The file name of the subset's ``strategy`` manifest (checked to be a plain ``.json`` name)."""
        name = self.data["manifests"].get(subset, {}).get(strategy, f"balanced-{strategy}-{subset}.json")
        if not isinstance(name, str) or not _MANIFEST_NAME.fullmatch(name):
            raise ShardIndexError(f"{self.where}: manifest name {name!r} is not a plain .json name")
        return name

    def manifest(self, subset: str, strategy: str) -> dict:
        """The subset's balancing manifest for ``strategy``, checked against this index.

        Raises:
            ShardIndexError: the manifest is missing, malformed, or does not match the shards.
        """
        name = self.manifest_name(subset, strategy)
        if isinstance(self.base, Path) and not (self.base / name).is_file():
            raise ShardIndexError(
                f"missing balancing manifest {self.base / name}; rerun `lsvit-pipeline extract` "
                "or train with --balance none"
            )
        where = str(self.base / name) if isinstance(self.base, Path) else self.base + name
        try:
            m = parse_manifest(read_bytes(self.base, name), where)
        except BalanceError as e:
            raise ShardIndexError(str(e)) from e
        if m["strategy"] != strategy or m.get("subset") not in (None, subset):
            raise ShardIndexError(
                f"{where}: manifest is for {m['strategy']}/{m.get('subset')}, not {strategy}/{subset}"
            )
        if set(m["before"]) != set(self.classes):
            raise ShardIndexError(
                f"{where}: its classes differ from {self.name}'s; rerun `lsvit-pipeline extract`"
            )
        counts = self.counts.get(subset, {})
        total = sum(s["count"] for s in self.data["shards"] if s["subset"] == subset)
        bad = [c for c in self.classes if m["before"][c] != counts.get(c, m["before"][c])]
        if bad or len(m["draws"]) != total:
            raise ShardIndexError(
                f"{where} lists {len(m['draws'])} samples but the shards hold {total} (classes differing: "
                f"{bad[:3]}); rerun `lsvit-pipeline extract`"
            )
        return m


def read_index(base: Path | str, split: int | None = None, name: str = INDEX) -> ShardIndex:
    """Reads and checks a split folder's index.

    Args:
        base: The split folder (see :func:`resolve_split_dir`) or URL prefix ending in ``/``.
        split: When given, the index must be of this split.
        name: ``index.json``, or a part's ``index-p<i>of<N>.json``.

    Returns:
        The checked index.

    Raises:
        ShardIndexError: unreadable, not JSON, or missing or malformed fields.
    """
    where = str(Path(base) / name) if not is_url(base) else f"{base}{name}"
    try:
        data = json.loads(read_bytes(base, name))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardIndexError(f"{where} is not JSON ({e}); rerun `lsvit-pipeline extract`") from e
    problem = _problem(data)
    if problem:
        raise ShardIndexError(f"{where} is malformed ({problem}); rerun `lsvit-pipeline extract`")
    if split is not None and data.get("split", split) != split:
        raise ShardIndexError(f"{where} is of split {data['split']}, not the requested split {split}")
    return ShardIndex(base if is_url(base) else Path(base), name, data)


def _problem(data: Any) -> str | None:
    """What is structurally wrong with a parsed index, or None."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "no list of class names"
    shards = data.get("shards")
    if not isinstance(shards, list):
        return "no list of shards"
    for s in shards:
        if (
            not isinstance(s, dict)
            or not isinstance(s.get("url"), str)
            or not _SHARD_NAME.fullmatch(s["url"])
        ):
            return f"shard name {s.get('url') if isinstance(s, dict) else s!r} is not a plain .tar name"
        count = s.get("count")
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or count < 0
            or not isinstance(s.get("subset"), str)
        ):
            return f"shard entry {s['url']!r} has no subset or sample count"
    for key in ("counts", "config", "manifests"):
        if not isinstance(data.get(key, {}), dict):
            return f"{key!r} is not an object"
    if not all(
        isinstance(v, dict) for v in (*data.get("counts", {}).values(), *data.get("manifests", {}).values())
    ):
        return "'counts' or 'manifests' holds a non-object"
    synthetic = data.get("synthetic")
    if synthetic is not None and (
        not isinstance(synthetic, dict) or not isinstance(synthetic.get("generator"), str)
    ):
        return "'synthetic' is neither null nor an object naming its generator"
    data.setdefault("counts", {})
    data.setdefault("config", {})
    data.setdefault("manifests", {})
    dataset = data.get("dataset", DEFAULT_DATASET)
    if not isinstance(dataset, str) or dataset not in DATASETS:
        return f"dataset {dataset!r} is none of {', '.join(DATASETS)}"
    frames = data["config"].get("frames", DEFAULT_FRAMES)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        return f"config.frames {frames!r} is not a positive integer"
    return None
