"""The shard format: sample keys, the deterministic shard plan, and atomic, reproducible shard files.

A shard is complete when its tar exists *and* its record ``records/<shard>.json`` (written after the tar
is renamed into place, see ``lsvit.pipeline.records``) matches the tar's size, sha256 and the job's
fingerprint; anything else is redone.
"""

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torchcodec.encoders import JpegEncoder

from lsvit.pipeline.atomic import atomic_open
from lsvit.pipeline.decode import DecodedClip
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.records import RECORDS_DIRNAME
from lsvit.pipeline.splits import SUBSETS, ClipEntry
from lsvit.pipeline.tarstream import TarStream

# Fixed tar header fields: together with deterministic content they make reruns byte-identical.
TAR_MTIME = 0  # an int: a float mtime makes tarfile add a PAX header (1 kB) to every member
TAR_OWNER = "lsvit"
TAR_MODE = 0o444  # webdataset TarWriter's default
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_PART_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(LsvitError, ValueError):
    """A bad ``--part``."""


def clip_key(cls: str, name: str) -> str:
    """The WebDataset key of a clip: ``<class>__<sanitised stem>__<8 hex of sha1(class/name)>``.

    Runs of characters outside ``[A-Za-z0-9_-]`` (dots included, which WebDataset would read as an
    extension) become one ``-``; the hash of the relative path keeps keys unique when sanitising merges
    two names.

    Args:
        cls: Class name (from the split file).
        name: Clip file name as in the split file.

    Returns:
        A key made of ``[A-Za-z0-9_-]`` only.
    """
    stem = name[: -len(".avi")] if name.lower().endswith(".avi") else name
    digest = hashlib.sha1(f"{cls}/{name}".encode()).hexdigest()[:8]
    return f"{_UNSAFE.sub('-', cls)}__{_UNSAFE.sub('-', stem).strip('-') or 'clip'}__{digest}"


def clip_sample(entry: ClipEntry, clip: DecodedClip, stats: dict, split: int, jpeg_quality: int) -> dict:
    """The WebDataset sample of a decoded clip: ``fNN.jpg`` frames, ``cls`` and ``json`` metadata.

    Args:
        entry: The clip's split-file entry.
        clip: Its decoded, sampled frames and what the decoder learnt.
        stats: ``pipeline.stats.clip_stats`` of the frames.
        split: Split number.
        jpeg_quality: JPEG quality, 1-100.

    Returns:
        A sample dict whose values are bytes, ready for ``TarWriter(encoder=False)``.
    """
    key = clip_key(entry.cls, entry.name)
    meta = dict(
        key=key, label=entry.label, clip=entry.rel_path, subset=entry.subset, split=split, stats=stats
    )
    meta |= {"class": entry.cls, "indices": list(clip.indices)}
    for name in ("source_frames", "header_frames", "fps", "duration", "width", "height", "padded"):
        meta[name] = getattr(clip, name)
    sample = {
        "__key__": key,
        "cls": str(entry.label).encode(),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }
    width = max(2, len(str(len(clip.images) - 1)))  # f00..f15; f000.. from 101 frames on
    encoded: dict[int, bytes] = {}  # a padded clip repeats its last frame: encode it once
    for i, frame in enumerate(clip.images):
        if id(frame) not in encoded:  # JpegEncoder wants CHW
            jpeg = JpegEncoder(frame.permute(2, 0, 1)).to_tensor(quality=jpeg_quality)
            encoded[id(frame)] = jpeg.numpy().tobytes()
        sample[f"f{i:0{width}d}.jpg"] = encoded[id(frame)]
    return sample


def parse_part(text: str | tuple[int, int]) -> tuple[int, int]:
    """Parses ``--part i/N`` (0-based: ``0 <= i < N``) or checks an ``(i, N)`` tuple.

    Raises:
        ShardError: Malformed text or ``i`` out of range.
    """
    if isinstance(text, str):
        m = _PART_RE.match(text)
        if not m:
            raise ShardError(f"--part {text!r} is not of the form i/N (0-based), e.g. 0/4 ... 3/4")
        text = (int(m[1]), int(m[2]))
    i, n = text
    if n < 1:
        raise ShardError(f"--part {i}/{n}: N must be 1 or more, e.g. 0/1 (the whole split) or 0/4 ... 3/4")
    if not 0 <= i < n:
        raise ShardError(
            f"--part {i}/{n}: need N >= 1 and 0 <= i < N (parts are 0-based: 0/{n} ... {n - 1}/{n})"
        )
    return i, n


def part_tag(part: tuple[int, int]) -> str:
    """File-name infix of a ``--part i/N`` run: ``""`` for ``(0, 1)``, else ``"p<i>of<N>-"``."""
    i, n = part
    return "" if n == 1 else f"p{i}of{n}-"


@dataclass(frozen=True)
class ShardJob:
    """One shard to write: a fixed run of clips of one subset."""

    subset: str
    number: int  # position within the subset; the same for every --part and worker count
    entries: tuple[ClipEntry, ...]
    part: tuple[int, int] = (0, 1)

    @property
    def name(self) -> str:
        """Tar file name, e.g. ``train-000003.tar`` or ``train-p1of4-000003.tar``."""
        return f"{self.subset}-{part_tag(self.part)}{self.number:06d}.tar"


def shard_order(entry: ClipEntry, seed: int = 0) -> tuple[int, str, str]:
    """Sort key of the shard plan: subset, then a seeded hash of the clip path (ties: the path).

    A hash order mixes the classes within every shard (class order would put one or two classes in each),
    yet depends only on the clip and the seed, never on input order, worker count or timing.

    Args:
        entry: A clip.
        seed: Seeds the order within each subset.

    Returns:
        ``(subset position, sha1 of "<seed>:<class>/<name>", "<class>/<name>")``.
    """
    digest = hashlib.sha1(f"{seed}:{entry.rel_path}".encode()).hexdigest()
    return SUBSETS.index(entry.subset), digest, entry.rel_path


def plan_shards(
    entries: Iterable[ClipEntry], shard_size: int, part: tuple[int, int] = (0, 1), seed: int = 0
) -> list[ShardJob]:
    """Cuts clips into shards deterministically and keeps the ones of ``part``.

    Clips are ordered by :func:`shard_order` (subset, then a seeded hash of the clip path, so every shard
    mixes classes) and each subset is chunked into runs of ``shard_size``; shard ``g`` (counted over all
    subsets in train, test, unused order) belongs to part ``g % N``, so the parts are balanced and their
    union is exactly the single-run plan.

    Args:
        entries: The clips to extract.
        shard_size: Clips per shard (>= 1); the last shard of a subset may be shorter.
        part: ``(i, N)``, 0-based part ``i`` of ``N``.
        seed: Seeds the clip order within each subset.

    Returns:
        The part's shard jobs in plan order.
    """
    assert shard_size >= 1 and 0 <= part[0] < part[1], (shard_size, part)
    ordered = sorted(entries, key=lambda e: shard_order(e, seed))
    jobs: list[ShardJob] = []
    g = 0
    for subset in SUBSETS:
        clips = [e for e in ordered if e.subset == subset]
        for number, start in enumerate(range(0, len(clips), shard_size)):
            if g % part[1] == part[0]:
                jobs.append(ShardJob(subset, number, tuple(clips[start : start + shard_size]), part))
            g += 1
    return jobs


class _NoShard(Exception):
    """Every clip of the shard failed: no tar is published (stock WebDataset rejects an empty one)."""


def write_shard(
    path: Path, samples: Iterable[dict], before_publish: Callable[[], None] | None = None
) -> dict:
    """Writes samples as a tar to ``<path>.tmp`` and renames it to ``path``.

    The bytes are exactly those of webdataset's ``TarWriter(encoder=False, mtime=0, user=group=lsvit)``
    (:class:`lsvit.pipeline.tarstream.TarStream` writes them with less overhead and hashes them as it goes).

    Args:
        path: Final tar path.
        samples: WebDataset sample dicts whose values are already bytes (``__key__`` a str).
        before_publish: Called after the tar is complete and just before it is renamed into place; it may
            raise to keep the tar from being published (the temporary file is removed).

    Returns:
        ``{"count", "bytes", "sha256"}`` of the finished tar; with no sample no tar is left at all.

    Raises:
        WriteError: The tar could not be written (e.g. the disk is full); nothing is left under ``path``.
    """
    count = 0
    try:
        with atomic_open(path, "wb") as fh:
            tar = TarStream(fh, mode=TAR_MODE, owner=TAR_OWNER, mtime=TAR_MTIME)
            for sample in samples:
                tar.write(sample)
                count += 1
            if count == 0:
                raise _NoShard
            tar.close()
            info = {"count": count, "bytes": tar.size, "sha256": tar.sha256.hexdigest()}
            if before_publish is not None:
                before_publish()
    except _NoShard:
        path.unlink(missing_ok=True)
        return {"count": 0, "bytes": 0, "sha256": None}
    return info


def remove_stale(split_dir: Path, keep: Sequence[str], part: tuple[int, int]) -> list[str]:
    """Deletes this part's temporary files and shards that are not in the current plan.

    Only names of this part's family (``<subset>-<tag>NNNNNN.tar``) are touched, so parts writing the
    same folder concurrently never delete each other's work.

    Args:
        split_dir: The split's shard folder.
        keep: Shard names of the current plan for this part.
        part: ``(i, N)``.

    Returns:
        The names removed.
    """
    family = re.compile(rf"^({'|'.join(SUBSETS)})-{re.escape(part_tag(part))}\d{{6}}\.tar$")
    removed = []
    for folder in (split_dir, split_dir / RECORDS_DIRNAME):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            shard = p.name.removesuffix(".tmp")
            if folder != split_dir:
                shard = shard.removesuffix(".json")
            if family.match(shard) and (p.name.endswith(".tmp") or shard not in keep):
                p.unlink()
                removed.append(p.name)
    return removed
