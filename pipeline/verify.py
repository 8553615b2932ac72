"""``lsvit-pipeline verify``: every shard of a split folder against the size and sha256 in its index.

A shard that was truncated, damaged on disk or in transfer, or replaced by another shard (a test shard
with the same sample count in place of a train shard) has other bytes than the ones extract wrote and
recorded, whatever its name or size. ``verify`` reads every listed tar once (about a second per GB),
checks the balancing manifests against the index, and counts the lines of the failure list. It writes
nothing, so it also works on a read-only copy of the shards.
"""

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.lock import holder
from lsvit.pipeline.merge import failures_name, lock_name
from lsvit.pipeline.progress import progress_bar
from lsvit.pipeline.records import shard_problem
from lsvit.pipeline.shardindex import (
    INDEX,
    ShardIndex,
    ShardIndexError,
    is_url,
    read_index,
    resolve_split_dir,
)

_PART_INDEX = re.compile(r"index-p([0-9]+)of([0-9]+)\.json")
_PART_SHARD = re.compile(r"-p([0-9]+)of([0-9]+)-[0-9]{6}\.tar$")
_MAX_NAMED = 8


class VerifyError(LsvitError):
    """Shards or files of a split folder that do not match its index."""


@dataclass
class VerifyReport:
    """What :func:`verify_split` checked and what it found wrong."""

    split_dir: Path
    indexes: list[str]
    shards: int = 0
    bytes: int = 0
    files: int = 0  # manifests and failure lists checked
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file name, problem)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: what matched, or which files did not and how to redo them."""
        what = f"{self.shards} shards ({self.bytes / 1e6:.1f} MB) and {self.files} other files"
        if not self.bad:
            return f"ok: {what} in {self.split_dir} match {', '.join(self.indexes)} [{self.seconds:.1f}s]"
        names = [n for n, _ in self.bad]
        named = ", ".join(names[:_MAX_NAMED]) + (
            f" and {len(names) - _MAX_NAMED} more" if len(names) > 8 else ""
        )
        parts = sorted({f"{m[1]}/{m[2]}" for n in names if (m := _PART_SHARD.search(n))})
        if parts:
            redo = (
                f"rerun `lsvit-pipeline extract --part i/N` for part(s) {', '.join(parts)} (each redoes its "
                f"damaged shards), then `lsvit-pipeline merge {self.split_dir}`"
            )
        else:
            redo = (
                "rerun the `lsvit-pipeline extract` command that wrote them (its options are in the index's "
                "config): it checks every shard and redoes the damaged ones"
            )
        return f"{len(names)} file(s) in {self.split_dir} do not match {', '.join(self.indexes)}: {named}; {redo}"


def _indexes(path: Path) -> tuple[Path, list[str]]:
    """The split folder and the index files to check: index.json, or else every part's index."""
    if is_url(str(path)):
        raise VerifyError(f"{path}: verify reads a local shard folder, not a URL")
    if path.is_dir() and not (path / INDEX).is_file():
        parts = sorted(p.name for p in path.iterdir() if _PART_INDEX.fullmatch(p.name))
        if parts:
            return path, parts
    split_dir = resolve_split_dir(path)
    assert isinstance(split_dir, Path)
    return split_dir, [INDEX]


def _check_others(index: ShardIndex, name: str, report: VerifyReport) -> None:
    """The manifests (whole split only) and the failure list of one index."""
    for subset, strategies in index.data["manifests"].items():
        for strategy in strategies:
            report.files += 1
            try:
                index.manifest(subset, strategy)
            except ShardIndexError as e:
                report.bad.append((index.manifest_name(subset, strategy), str(e)))
    m = _PART_INDEX.fullmatch(name)
    failures = failures_name((int(m[1]), int(m[2])) if m else (0, 1))
    want = index.data.get("num_failures")
    if isinstance(want, int):
        report.files += 1
        try:
            lines = (index.base / failures).read_bytes().count(b"\n")
        except OSError as e:
            report.bad.append((failures, f"unreadable ({e.strerror or e})"))
            return
        if lines != want:
            report.bad.append((failures, f"{lines} lines, but {name} counts {want} failures"))


def verify_split(path: Path, progress: bool = True) -> VerifyReport:
    """Checks every shard listed in a split folder's index against its recorded size and sha256.

    Args:
        path: The split folder (``shards/split1``), or a shard folder holding exactly one split. Without
            ``index.json`` (``--part`` runs not merged yet), every ``index-p<i>of<N>.json`` is checked.
        progress: Show a progress bar (in bytes) on stderr.

    Returns:
        The report; ``bad`` lists every file that does not match, with why.

    Raises:
        LsvitError: No index, an index that is not valid, or a run writing the folder right now.
    """
    start = time.perf_counter()
    split_dir, names = _indexes(path)
    for name in names:
        m = _PART_INDEX.fullmatch(name)
        who = holder(split_dir, lock_name((int(m[1]), int(m[2])) if m else (0, 1)))
        if who:
            raise VerifyError(
                f"{split_dir} is being written right now ({who}); verify once that run has finished"
            )
    indexes = [read_index(split_dir, name=name) for name in names]
    report = VerifyReport(split_dir, names)
    listed = [s for index in indexes for s in index.data["shards"]]
    total = sum(s["bytes"] for s in listed if isinstance(s.get("bytes"), int))
    with progress_bar(
        total=total, unit="B", unit_scale=True, desc="verify", disable=not progress, leave=False
    ) as bar:
        for s in listed:
            problem = shard_problem(split_dir / s["url"], s.get("bytes"), s.get("sha256"))
            if problem:
                report.bad.append((s["url"], problem))
            report.shards += 1
            report.bytes += s["bytes"] if isinstance(s.get("bytes"), int) else 0
            bar.update(s["bytes"] if isinstance(s.get("bytes"), int) else 0)
    for index, name in zip(indexes, names, strict=True):
        _check_others(index, name, report)
    report.seconds = time.perf_counter() - start
    return report
