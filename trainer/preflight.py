"""What a training run checks before its first epoch, so that bad shards fail in seconds, not after one.

* Every subset the run reads has shards, and the local ones exist (``train``, ``test``, and ``val`` when
  the dataset has one of its own; a validation hold-out lives in the train shards).
* Local shards: every shard's size and sha256 against ``index.json``, as ``lsvit-pipeline verify`` checks
  them (about a second per GB), so a damaged JPEG anywhere, a truncated shard or a train shard swapped for a
  test shard stops the run before it trains (``--no-verify-shards`` skips this; shards behind a URL are
  not hashed).
* The first sample of each subset decodes as the loader will decode it.

A sample that is damaged all the same (a URL shard, or one damaged during the run) stops the run when the
loader reaches it, with one line naming the shard and the sample (``trainer.samples``).
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import ShardIndex, ShardIndexError
from lsvit.pipeline.verify import verify_split
from lsvit.trainer.clips import make_prepare
from lsvit.trainer.data import DataConfig, DataError
from lsvit.trainer.samples import SampleError, read_shard
from lsvit.trainer.shardset import ShardSetError

SUBSETS = ("train", "test")  # always read; a dataset's own "val" too when present


class ShardCheckError(LsvitError):
    """Shards that do not match their index, found before training."""


def check_shards(index: ShardIndex, data: DataConfig, verify: bool, say: Callable[[str], None]) -> None:
    """Runs the checks of the module docstring.

    Args:
        index: The split's index.
        data: The loader settings (image size, frames, augmentation ranges).
        verify: Hash the local shards against the index.
        say: Where to print what was checked.

    Raises:
        ShardIndexError: A subset without shards, or a listed local shard that is missing.
        ShardCheckError: Shards whose size or sha256 differ from the index (naming each).
        SampleError: A first sample that does not decode (naming its shard and key).
    """
    subsets = [*SUBSETS, *(["val"] if "val" in index.subsets else [])]
    firsts = [(subset, index.shard_urls(subset)[0]) for subset in subsets]
    if not isinstance(index.base, Path):
        checked = "behind a URL: not hashed"
    elif not verify:
        checked = "not hashed (--no-verify-shards)"
    else:
        report = verify_split(index.base, progress=True)
        if report.bad:
            raise ShardCheckError(report.summary())
        checked = report.summary().removeprefix("ok: ")
    prepare = make_prepare(
        train=False, img_size=data.img_size, num_frames=data.num_frames, aug=data.aug, seed=0
    )
    for _, (url, count) in firsts:
        sample = next(iter(read_shard(url)), None)
        if sample is None:
            raise SampleError(f"shard {url} holds no samples but index.json says {count}; rerun extract")
        prepare(sample)
    say(f"shards: {checked}; the first {', '.join(subsets)} samples decode")


@contextlib.contextmanager
def shard_errors(stopped: str) -> Iterator[None]:
    """Adds what the run keeps to a shard error raised in the block (shards damaged while it ran).

    Args:
        stopped: E.g. ``training stopped in epoch 3, last good checkpoint kept: runs/x/last.pt``.
    """
    try:
        yield
    except (SampleError, ShardIndexError, ShardSetError, DataError) as e:
        raise type(e)(f"{e}; {stopped}") from e
