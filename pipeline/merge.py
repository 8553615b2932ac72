"""``lsvit-pipeline merge`` and the split index: index.json, failures.jsonl and the balancing manifests.

A whole run writes them itself; ``--part i/N`` runs each write ``index-p<i>of<N>.json`` and
``failures-p<i>of<N>.jsonl``, and :func:`merge_parts` combines those into what a single run would write.
"""

import contextlib
import re
from pathlib import Path

from lsvit import __version__
from lsvit.pipeline.atomic import write_json_atomic
from lsvit.pipeline.balance import write_manifests
from lsvit.pipeline.datasets import DEFAULT
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.lock import hold
from lsvit.pipeline.records import SUBSETS, RecordError, read_record, shard_problem
from lsvit.pipeline.shardindex import read_index


class MergeError(LsvitError, ValueError):
    """Part outputs that cannot be merged: missing, malformed, made alike, or with damaged shards."""


def index_name(part: tuple[int, int]) -> str:
    """``index.json``, or ``index-p<i>of<N>.json`` for a part."""
    return "index.json" if part[1] == 1 else f"index-p{part[0]}of{part[1]}.json"


def failures_name(part: tuple[int, int]) -> str:
    """``failures.jsonl``, or ``failures-p<i>of<N>.jsonl`` for a part."""
    return "failures.jsonl" if part[1] == 1 else f"failures-p{part[0]}of{part[1]}.jsonl"


def lock_name(part: tuple[int, int]) -> str:
    """The lock file of the run writing ``part``'s files: ``.lock`` (whole split, merge) or ``.lock-p<i>of<N>``."""
    return ".lock" if part[1] == 1 else f".lock-p{part[0]}of{part[1]}"


def write_index(
    split_dir: Path,
    *,
    dataset: str,
    split: int,
    classes: list[str],
    subsets: list[str],
    records: list[dict],
    expected: list[str],
    config: dict,
    part: tuple[int, int] = (0, 1),
    synthetic: dict | None = None,
) -> dict:
    """Writes failures, then (for a whole split) the balancing manifests, then the index last.

    Args:
        split_dir: The split's shard folder.
        dataset: The dataset's format (``lsvit.pipeline.datasets``), for the stages that read the index.
        split: Split number.
        classes: Sorted class names (labels are indexes into it).
        subsets: Subsets extracted.
        records: Shard records in plan order.
        expected: Relative paths of every clip the records must account for.
        config: The resolved configuration.
        part: ``(i, N)``; a part gets ``index-p<i>of<N>.json`` and no manifests (``merge`` writes them).
        synthetic: What generated the clips (``lsvit.pipeline.synth.read_marker``); None for real data.

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
        "dataset": dataset,
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
        "synthetic": synthetic,  # null: real videos
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


_PART_INDEX = re.compile(r"index-p([0-9]+)of([0-9]+)\.json")
_MAX_NAMED = 8  # bad shards named in one error line


def _int(x: object, lo: int = 0) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= lo


def _part_problem(data: dict, part: tuple[int, int]) -> str | None:
    """What a part index lacks for merging (beyond what ``read_index`` checks), or None."""
    config = data["config"]
    if data.get("part") != f"{part[0]}/{part[1]}":
        return f"it says part {data.get('part')!r}"
    if not _int(data.get("split"), 1) or not _int(data.get("num_clips")):
        return "no split number or clip count"
    subsets = data.get("subsets")
    if not isinstance(subsets, list) or not subsets or not set(subsets) <= set(SUBSETS):
        return f"'subsets' is not a list of {', '.join(SUBSETS)}"
    empty = data.get("empty_shards")
    if not isinstance(empty, list) or not all(isinstance(u, str) and u.endswith(".tar") for u in empty):
        return "no list of empty shards"
    if not _int(config.get("seed")) or not (
        config.get("balance_target") is None or _int(config["balance_target"], 1)
    ):
        return "'config' lacks the seed or balance target"
    return None


def _read_parts(split_dir: Path) -> dict[tuple[int, int], dict]:
    found = {}
    for p in sorted(split_dir.glob("index-p*of*.json")) if split_dir.is_dir() else []:
        if m := _PART_INDEX.fullmatch(p.name):
            part = (int(m[1]), int(m[2]))
            data = read_index(split_dir, name=p.name).data
            problem = _part_problem(data, part)
            if problem:
                raise MergeError(
                    f"{p} is malformed ({problem}); rerun `lsvit-pipeline extract --part {part[0]}/{part[1]}`"
                )
            found[part] = data
    return found


def _records(split_dir: Path, parts: list[dict]) -> list[dict]:
    """Every part's shard records, each checked against its part index and its tar (size and sha256)."""
    records, bad, seen = [], {}, set()
    for p in parts:
        listed = {s["url"]: s for s in p["shards"]} | {u: None for u in p["empty_shards"]}
        for url, entry in listed.items():
            if url in seen:
                bad[url] = (p["part"], "listed by two parts")
                continue
            seen.add(url)
            try:
                record = read_record(split_dir, url)
            except RecordError as e:
                bad[url] = (p["part"], str(e).removeprefix(str(split_dir / "records") + "/"))
                continue
            recorded = (record["subset"], record["count"], record["bytes"], record.get("sha256"))
            names = {x["class"] for x in record["samples"]}
            if record["subset"] not in p["subsets"] or not names <= set(p["classes"]):
                bad[url] = (p["part"], "its record names a subset or class its part index lacks")
            elif (entry is None and record["count"]) or (
                entry is not None
                and recorded != tuple(entry.get(k) for k in ("subset", "count", "bytes", "sha256"))
            ):
                bad[url] = (p["part"], "its record and the part index disagree")
            elif record["count"] and (
                problem := shard_problem(split_dir / url, record["bytes"], record["sha256"])
            ):
                bad[url] = (p["part"], problem)
            else:
                records.append(record)
    if bad:
        named = "; ".join(f"{url}: {why}" for url, (_, why) in list(bad.items())[:_MAX_NAMED])
        more = f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        redo = ", ".join(sorted({part for part, _ in bad.values()}))
        raise MergeError(
            f"{split_dir}: {len(bad)} shard(s) cannot be merged ({named}{more}); rerun "
            f"`lsvit-pipeline extract --part i/N` for part(s) {redo} (it redoes them), then merge again"
        )
    return records


def merge_parts(split_dir: Path, dataset: str | None = None) -> dict:
    """Merges the ``--part`` outputs of a split folder into index.json, failures.jsonl and manifests.

    Every shard is checked before it is adopted: its record must be well-formed and agree with its part
    index, and the tar must have the recorded size and sha256 (hashing costs about a second per GB,
    little next to extracting). The merge holds the split folder's lock and refuses to start while any
    part is still being extracted.

    Args:
        split_dir: ``<out>/split<N>`` holding ``index-p<i>of<N>.json`` for every part.
        dataset: When given, the parts must have been extracted from this dataset (``--dataset``).

    Returns:
        The merged index.

    Raises:
        MergeError: No part indexes, a missing or malformed part, parts of different runs, a shard or
            record that is missing or damaged.
        LockedError: A part (or another merge or whole-split extract) is running in this folder.
    """
    found = _read_parts(split_dir)
    if not found:
        raise MergeError(
            f"no part indexes (index-p<i>of<N>.json) in {split_dir}; run `extract --part i/N` first"
        )
    made_from = sorted({p.get("dataset", DEFAULT) for p in found.values()})
    if dataset is not None and made_from != [dataset]:
        raise MergeError(
            f"{split_dir}: the parts were extracted from {', '.join(made_from)}, not --dataset {dataset}; "
            "pass the dataset they were made from, or leave --dataset out"
        )
    totals = {n for _, n in found}
    if len(totals) != 1:
        raise MergeError(
            f"{split_dir} holds parts of different --part N ({sorted(totals)}); remove the stale ones"
        )
    n = totals.pop()
    missing = [f"{i}/{n}" for i in range(n) if (i, n) not in found]
    if missing:
        raise MergeError(
            f"{split_dir}: part(s) {', '.join(missing)} missing; run `lsvit-pipeline extract --part i/{n}` for "
            f"each, then merge again"
        )
    with contextlib.ExitStack() as locks:
        locks.enter_context(hold(split_dir, lock_name((0, 1)), "extract or merge"))
        for i in range(n):
            locks.enter_context(hold(split_dir, lock_name((i, n)), f"extract --part {i}/{n}"))
        found = _read_parts(split_dir)  # again, now that no part can be writing
        return _merge(split_dir, [found[(i, n)] for i in range(n)], n)


def _merge(split_dir: Path, parts: list[dict], n: int) -> dict:
    same = [{k: v for k, v in p["config"].items() if k not in ("part", "workers")} for p in parts]
    keys = ("classes", "subsets", "split", "dataset", "synthetic")
    if any(s != same[0] for s in same) or any(p.get(k) != parts[0].get(k) for p in parts for k in keys):
        raise MergeError(f"{split_dir}: the parts were made with different settings; rerun them alike")
    records = _records(split_dir, parts)
    records.sort(key=lambda r: (SUBSETS.index(r["subset"]), r["number"]))
    expected = [s["clip"] for r in records for s in r["samples"]] + [
        f["clip"] for r in records for f in r["failures"]
    ]
    if len(expected) != sum(p["num_clips"] for p in parts):
        raise MergeError(
            f"{split_dir}: the part records hold {len(expected)} clips, the part indexes "
            f"{sum(p['num_clips'] for p in parts)}; rerun the parts, then merge again"
        )
    config = parts[0]["config"] | {"part": None, "merged_parts": n}
    return write_index(
        split_dir,
        dataset=parts[0].get("dataset", DEFAULT),
        split=parts[0]["split"],
        classes=parts[0]["classes"],
        subsets=parts[0]["subsets"],
        records=records,
        expected=expected,
        config=config,
        synthetic=parts[0].get("synthetic"),
    )
