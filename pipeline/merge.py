"""``lsvit-pipeline merge`` and the split index: index.json, failures.jsonl and the balancing manifests.

A whole run writes them itself; ``--part i/N`` runs each write ``index-p<i>of<N>.json`` and
``failures-p<i>of<N>.jsonl``, and :func:`merge_parts` combines those into what a single run would write.
"""

import json
import re
from pathlib import Path

from lsvit import __version__
from lsvit.pipeline.balance import write_manifests
from lsvit.pipeline.shardindex import read_index
from lsvit.pipeline.shards import SUBSETS, ShardError, record_path, write_json_atomic


def index_name(part: tuple[int, int]) -> str:
    """``index.json``, or ``index-p<i>of<N>.json`` for a part."""
    return "index.json" if part[1] == 1 else f"index-p{part[0]}of{part[1]}.json"


def failures_name(part: tuple[int, int]) -> str:
    """``failures.jsonl``, or ``failures-p<i>of<N>.jsonl`` for a part."""
    return "failures.jsonl" if part[1] == 1 else f"failures-p{part[0]}of{part[1]}.jsonl"


def write_index(
    split_dir: Path,
    *,
    split: int,
    classes: list[str],
    subsets: list[str],
    records: list[dict],
    expected: list[str],
    config: dict,
    part: tuple[int, int] = (0, 1),
) -> dict:
    """Writes failures, then (for a whole split) the balancing manifests, then the index last.

    Args:
        split_dir: The split's shard folder.
        split: Split number.
        classes: Sorted class names (labels are indexes into it).
        subsets: Subsets extracted.
        records: Shard records in plan order.
        expected: Relative paths of every clip the records must account for.
        config: The resolved configuration.
        part: ``(i, N)``; a part gets ``index-p<i>of<N>.json`` and no manifests (``merge`` writes them).

    Returns:
        The index.
    """
    failures = [f for r in records for f in r["failures"]]
    seen = [s["clip"] for r in records for s in r["samples"]] + [f["clip"] for f in failures]
    assert sorted(seen) == sorted(expected), "every listed clip must be in a shard or in the failures, once"
    counts = {s: dict.fromkeys(classes, 0) for s in subsets}
    for r in records:
        for s in r["samples"]:
            counts[r["subset"]][s["class"]] += 1
    index = {
        "version": __version__,
        "split": split,
        "classes": classes,
        "subsets": subsets,
        "shards": [
            {k: r[k] for k in ("url", "subset", "count", "bytes", "sha256")} for r in records if r["count"]
        ],
        "empty_shards": [r["url"] for r in records if not r["count"]],  # all their clips failed: no tar
        "counts": counts,
        "num_clips": len(expected),
        "num_failures": len(failures),
        "config": config,
        "manifests": {},
    }
    if part[1] > 1:
        index["part"] = f"{part[0]}/{part[1]}"
    else:
        for subset in subsets:
            key_to_class = {
                s["key"]: s["class"] for r in records if r["subset"] == subset for s in r["samples"]
            }
            if key_to_class:
                index["manifests"][subset] = write_manifests(
                    split_dir,
                    subset,
                    key_to_class,
                    classes,
                    seed=config["seed"],
                    target=config["balance_target"],
                )
    write_json_atomic(split_dir / failures_name(part), failures, lines=True)
    write_json_atomic(split_dir / index_name(part), index)
    return index


_PART_INDEX = re.compile(r"^index-p(\d+)of(\d+)\.json$")


def merge_parts(split_dir: Path) -> dict:
    """Merges the ``--part`` outputs of a split folder into index.json, failures.jsonl and manifests.

    Args:
        split_dir: ``<out>/split<N>`` holding ``index-p<i>of<N>.json`` for every part.

    Returns:
        The merged index.

    Raises:
        ShardError: No part indexes, a missing part, parts of different runs, or a damaged shard.
    """
    found = {}
    for p in sorted(split_dir.glob("index-p*of*.json")) if split_dir.is_dir() else []:
        if m := _PART_INDEX.match(p.name):
            found[(int(m[1]), int(m[2]))] = read_index(split_dir, name=p.name).data
    if not found:
        raise ShardError(
            f"no part indexes (index-p<i>of<N>.json) in {split_dir}; run `extract --part i/N` first"
        )
    totals = {n for _, n in found}
    if len(totals) != 1:
        raise ShardError(
            f"{split_dir} holds parts of different --part N ({sorted(totals)}); remove the stale ones"
        )
    n = totals.pop()
    missing = [f"{i}/{n}" for i in range(n) if (i, n) not in found]
    if missing:
        raise ShardError(
            f"{split_dir}: part(s) {', '.join(missing)} missing; run `lsvit-pipeline extract --part i/{n}` for "
            f"each, then merge again"
        )
    parts = [found[(i, n)] for i in range(n)]
    same = [{k: v for k, v in p["config"].items() if k not in ("part", "workers")} for p in parts]
    if any(s != same[0] for s in same) or any(p["classes"] != parts[0]["classes"] for p in parts):
        raise ShardError(f"{split_dir}: the parts were made with different settings; rerun them alike")
    records = []
    for p in parts:
        for url in [s["url"] for s in p["shards"]] + p["empty_shards"]:
            try:
                record = json.loads(record_path(split_dir, url).read_text(encoding="utf-8"))
                intact = not record["count"] or (split_dir / url).stat().st_size == record["bytes"]
            except (OSError, ValueError, KeyError) as e:
                raise ShardError(
                    f"{split_dir / url}: shard or record unreadable ({e}); rerun its part"
                ) from e
            if not intact:
                raise ShardError(f"{split_dir / url} does not match its record; rerun its part")
            records.append(record)
    records.sort(key=lambda r: (SUBSETS.index(r["subset"]), r["number"]))
    expected_n = sum(p["num_clips"] for p in parts)
    expected = [s["clip"] for r in records for s in r["samples"]] + [
        f["clip"] for r in records for f in r["failures"]
    ]
    assert len(expected) == expected_n, "the part records must account for every clip of the part indexes"
    config = parts[0]["config"] | {"part": None, "merged_parts": n}
    return write_index(
        split_dir,
        split=parts[0]["split"],
        classes=parts[0]["classes"],
        subsets=parts[0]["subsets"],
        records=records,
        expected=expected,
        config=config,
    )
