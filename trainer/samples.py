"""Raw samples from WebDataset shards: reading (frames, label and metadata only), merging, JPEG decoding.

Only ``fNN.jpg``, ``cls`` and ``json`` members are read from a tar (``select_files``), so pickles
(``.pyd``/``.pth``/...) are never even loaded, let alone unpickled; nothing goes through webdataset's
default decoders.
"""

import json
import re
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np
import webdataset as wds

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.sampling import sample_indices
from lsvit.trainer.jpeg import JpegHeaderError, jpeg_size

_MEMBER = re.compile(r"f\d+\.jpg|cls|json")
_FRAME = re.compile(r"f(\d+)\.jpg")
# imdecode flags per JPEG scale-down: libjpeg's scaled IDCT skips most of the decoding work and averages
# as it goes. The IMREAD_REDUCED_COLOR_N flags decode to BGR; their scale bits with IMREAD_COLOR_RGB give RGB.
_IMREAD = {
    1: cv2.IMREAD_COLOR_RGB,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2 | cv2.IMREAD_COLOR_RGB,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4 | cv2.IMREAD_COLOR_RGB,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_COLOR_RGB,
}


class SampleError(LsvitError, ValueError):
    """A shard that cannot be read, or a sample that does not match the shard contract or index.json."""


# What to do about a sample that cannot be decoded (training stops at it: see the README's failure modes).
DAMAGED = (
    "the shard is damaged: `lsvit-pipeline verify <split folder>` names every bad shard, and rerunning the "
    "extract command that wrote them redoes them"
)


def decode_clip(
    sample: dict,
    num_frames: int,
    reduction: Callable[[int, int], int] | None = None,
    pick: Callable[[int], Sequence[int]] | None = None,
) -> tuple[np.ndarray, int]:
    """Decodes a raw shard sample's JPEG frames and label; nothing else is decoded.

    OpenCV (albumentations' backend, libjpeg-turbo) decodes straight to RGB, ~1.5x faster than PIL here,
    and each frame is written once into the clip array. Only the picked frames are decoded: ``num_frames``
    below the frames stored picks them uniformly (``pipeline.sampling.sample_indices``); above, the last
    frame repeats; ``pick`` chooses other frames (training jitter, test views). With ``reduction``, frames
    are decoded at 1/2, 1/4 or 1/8 size, which costs less and leaves the later resize less to do. Every
    picked frame's header is read first (`trainer.jpeg`): a size that differs between frames or is
    implausibly large stops before any decoding.

    Args:
        sample: Raw sample from `read_shard` (``fNN.jpg`` bytes, ``cls``, optional ``json``).
        num_frames: Frames wanted.
        reduction: Maps the stored frame ``(height, width)`` to a scale-down of 1, 2, 4 or 8 (e.g.
            `trainer.augment.jpeg_reduction`); None decodes at full size.
        pick: Maps the number of stored frames to the indices to decode, in output order (repeats are
            decoded once); None: ``sample_indices(stored, num_frames)``.

    Returns:
        ``(frames (T, H, W, 3) uint8 RGB, label)``, T = ``num_frames`` or ``len(pick(stored))``; reduced by ``f``, H and W are the stored size / f
        rounded up.

    Raises:
        SampleError: missing/undecodable frames, frames of different sizes, or inconsistent labels.
    """
    where, names, picks, sizes, label = _picked(sample, num_frames, pick)
    flags = _IMREAD[1]
    if reduction is not None:
        factor = reduction(*sizes[picks[0]])
        if factor not in _IMREAD:
            raise ValueError(f"reduction returned {factor!r}; allowed: {sorted(_IMREAD)}")
        flags = _IMREAD[factor]
    clip, done = None, {}  # done: stored index -> output position, so each JPEG is decoded once
    for t, i in enumerate(picks):
        if i in done:  # padded short clips and overlapping views repeat frames
            clip[t] = clip[done[i]]
            continue
        try:
            frame = cv2.imdecode(np.frombuffer(sample[names[i][1]], np.uint8), flags)
        except cv2.error as e:  # OpenCV's own limits and assertions
            raise _damaged(where, f"{names[i][1]} is not a decodable JPEG ({_first_line(e)})") from e
        if frame is None:
            raise _damaged(where, f"{names[i][1]} is not a decodable JPEG")
        if clip is None:
            clip = np.empty((len(picks), *frame.shape), np.uint8)
        if frame.shape != clip.shape[1:]:
            raise _damaged(where, "frames differ in size after decoding")
        clip[t], done[i] = frame, t
    return clip, label


def _picked(
    sample: dict, num_frames: int, pick: Callable[[int], Sequence[int]] | None
) -> tuple[str, list[tuple[int, str]], list[int], dict[int, tuple[int, int]], int]:
    """Where the sample is from, its frame members in order, the picked positions, their JPEG sizes
    (from the headers: a damaged size never reaches a decoder) and the label (checked against json)."""
    where = f"sample {sample['__key__']!r} in {sample.get('__url__')}"
    names = sorted((int(m.group(1)), k) for k in sample if (m := _FRAME.fullmatch(k)))
    if not names or "cls" not in sample:
        raise _damaged(where, "has no fNN.jpg frames or no cls member")
    try:
        label = int(sample["cls"])
        meta = json.loads(sample["json"]) if "json" in sample else {}
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise _damaged(where, f"unreadable cls/json member ({e})") from e
    if isinstance(meta, dict) and meta.get("label", label) != label:
        raise _damaged(where, f"json label {meta['label']} differs from cls {label}")
    picks = list(pick(len(names))) if pick is not None else sample_indices(len(names), num_frames)
    if not picks or not all(0 <= i < len(names) for i in picks):
        raise ValueError(f"frame picks {picks} outside the {len(names)} stored frames")
    # Every frame's header is read before any is decoded: a damaged size never reaches the decoder.
    sizes = {}
    for i in dict.fromkeys(picks):
        try:
            sizes[i] = jpeg_size(sample[names[i][1]])
        except JpegHeaderError as e:
            raise _damaged(where, f"{names[i][1]} {e}") from e
    if len(set(sizes.values())) > 1:
        raise _damaged(where, f"frames differ in size ({sorted(set(sizes.values()))})")
    return where, names, picks, sizes, label


def pick_jpegs(
    sample: dict, num_frames: int, pick: Callable[[int], Sequence[int]] | None = None
) -> tuple[list[bytes], int]:
    """The encoded JPEGs of the frames :func:`decode_clip` would decode, undecoded (``--decode cuda``).

    Their headers are checked as for :func:`decode_clip` (sizes within bounds and equal), so the device
    decoder never sees a damaged size.

    Args:
        sample: Raw sample from `read_shard`.
        num_frames: Frames wanted.
        pick: As for :func:`decode_clip`.

    Returns:
        ``(JPEG bytes in output order (repeats share one object), label)``.

    Raises:
        SampleError: missing or damaged frames, or inconsistent labels.
    """
    _, names, picks, _, label = _picked(sample, num_frames, pick)
    return [sample[names[i][1]] for i in picks], label


def _damaged(where: str, what: str) -> SampleError:
    """A sample that extract cannot have written: the shard was damaged (or made) elsewhere."""
    return SampleError(f"{where}: {what}; {DAMAGED}")


def _first_line(e: Exception) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0][:200] if lines else type(e).__name__


def _wanted(fname: str) -> bool:
    return bool(_MEMBER.fullmatch(fname.rsplit("/", 1)[-1].partition(".")[2]))


def read_shard(url: str) -> Iterator[dict]:
    """Raw samples of one shard; members other than frames/cls/json are skipped unread.

    Args:
        url: Local path or WebDataset URL (``pipe:``, ``http(s)://``) of a tar.

    Yields:
        Dicts of member name -> bytes plus ``__key__`` and ``__url__``.

    Raises:
        SampleError: the shard is missing or not a readable tar.
    """
    it = iter(wds.tarfile_samples([{"url": url}], select_files=_wanted))
    while True:
        try:
            sample = next(it)
        except StopIteration:
            return
        except Exception as e:  # wds raises OSError/ValueError/tarfile errors alike
            raise SampleError(f"cannot read shard {url}: {_first_line(e)}") from e
        yield sample


def counted(url: str, expected: int) -> Iterator[dict]:
    """`read_shard`, raising `SampleError` at the end when the shard does not hold ``expected`` samples.

    The epoch's step plan comes from index.json's counts, so a stale count must not pass silently.
    """
    n = 0
    for s in read_shard(url):
        n += 1
        yield s
    if n != expected:
        raise SampleError(f"shard {url} holds {n} samples but index.json says {expected}; rerun extract")
