"""Shard completion records, ``records/<shard>.json``: what a finished shard holds, for resume and merge.

A worker writes a shard's record right after renaming the tar into place; the record says which clips
are in the tar (``samples``: key, class, clip) and which failed (``failures``), and the tar's ``count``,
``bytes`` and ``sha256``. A rerun adopts a shard (does not extract it again) only when its record is
well-formed, made from the same clips and settings (``fingerprint``), and the tar still has the recorded
size and sha256; ``merge`` builds the split index from the records of every part, checked the same way.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from lsvit.pipeline.atomic import write_json_atomic
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.splits import SUBSETS

RECORDS_DIRNAME = "records"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SAMPLE_KEYS = ("key", "class", "clip")
_FAILURE_KEYS = ("clip", "class", "subset", "reason")


class RecordError(LsvitError, ValueError):
    """A shard record that is missing, unreadable or malformed, or a shard that does not match it."""


def record_path(split_dir: Path, shard_name: str) -> Path:
    """Where the completion record of a shard lives."""
    return split_dir / RECORDS_DIRNAME / f"{shard_name}.json"


def write_record(split_dir: Path, record: dict) -> None:
    """Writes a shard's record atomically (after its tar is in place)."""
    write_json_atomic(record_path(split_dir, record["url"]), record)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def shard_problem(path: Path, size: Any, sha256: Any) -> str | None:
    """Why the tar at ``path`` is not the recorded one, or None when its size and sha256 match.

    The size is compared first, so a truncated or grown tar costs no hashing.

    Args:
        path: The tar.
        size: The recorded size in bytes.
        sha256: The recorded hex sha256.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if not path.is_file():
        return "not a regular file"
    if not _is_count(size):
        return "no size recorded for it"
    if st.st_size != size:
        return f"{st.st_size} bytes, but {size} were recorded (truncated or replaced)"
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        return "no sha256 recorded for it"
    try:
        digest = file_sha256(path)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if digest != sha256:
        return "sha256 differs from the recorded one (damaged or replaced by another shard)"
    return None


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _entries_ok(rows: Any, keys: tuple[str, ...]) -> bool:
    return isinstance(rows, list) and all(
        isinstance(r, dict) and all(isinstance(r.get(k), str) for k in keys) for r in rows
    )


def record_problem(record: Any, shard_name: str) -> str | None:
    """What is structurally wrong with a parsed record, or None.

    Args:
        record: The parsed JSON.
        shard_name: The tar the record must describe.
    """
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if record.get("url") != shard_name:
        return f"it describes {record.get('url')!r}, not {shard_name!r}"
    if record.get("subset") not in SUBSETS or not _is_count(record.get("number")):
        return "no subset or shard number"
    if not _is_count(record.get("count")) or not _is_count(record.get("bytes")):
        return "no sample count or size"
    if not isinstance(record.get("fingerprint"), str):
        return "no fingerprint"
    if not _entries_ok(record.get("samples"), _SAMPLE_KEYS) or len(record["samples"]) != record["count"]:
        return f"'samples' is not a list of {record['count']} objects with {', '.join(_SAMPLE_KEYS)}"
    if not _entries_ok(record.get("failures"), _FAILURE_KEYS):
        return f"'failures' is not a list of objects with {', '.join(_FAILURE_KEYS)}"
    if record["count"] and not (
        isinstance(record.get("sha256"), str) and _SHA256.fullmatch(record["sha256"])
    ):
        return "no sha256"
    return None


def read_record(split_dir: Path, shard_name: str) -> dict:
    """Reads and checks the record of one shard.

    Raises:
        RecordError: The record is missing, not JSON, or malformed (the message names the file).
    """
    path = record_path(split_dir, shard_name)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RecordError(f"{path} is missing") from e
    except (OSError, ValueError) as e:
        raise RecordError(f"{path} is unreadable or not JSON ({e})") from e
    problem = record_problem(record, shard_name)
    if problem:
        raise RecordError(f"{path} is malformed ({problem})")
    return record


def adopt(split_dir: Path, shard_name: str, fingerprint: str) -> tuple[dict | None, str | None]:
    """The record of a finished shard that a rerun may keep, else why the shard must be extracted again.

    Args:
        split_dir: The split's shard folder.
        shard_name: Tar file name.
        fingerprint: What the shard would be made from now (clips and settings).

    Returns:
        ``(record, None)`` when the record is well-formed, has this fingerprint, and the tar (if it has
        samples) has the recorded size and sha256; else ``(None, reason)``, where reason is None for a
        shard never finished (no record) or made from other clips or settings, and a short text when a
        finished shard was found damaged.
    """
    try:
        record = read_record(split_dir, shard_name)
    except RecordError as e:
        return None, (None if "is missing" in str(e) else str(e))
    if record["fingerprint"] != fingerprint:
        return None, None
    if record["count"]:
        problem = shard_problem(split_dir / shard_name, record["bytes"], record["sha256"])
        if problem:
            return None, f"{shard_name}: {problem}"
    return record, None
