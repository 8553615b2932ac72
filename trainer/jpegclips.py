"""``--decode cuda``: loader workers only read JPEG bytes; the device decodes (nvJPEG) and augments.

With a ViT-B at 16x224 a GPU consumes clips faster than a CPU core decodes and augments their 16 JPEGs. On
this path a worker reads the shard, picks the frames (the same temporal sampling as the CPU path) and
passes their encoded bytes on; the main process hands a whole batch of JPEGs to
``torchcodec.decoders.decode_jpeg(..., device="cuda")`` in one call and runs the clip-consistent
augmentation of :mod:`lsvit.trainer.tensoraug` on the device. Each batch carries a seed drawn in its
worker, so the augmentation is a function of (seed, epoch, rank, worker) as on the CPU path.

``--decode auto`` picks ``cuda`` when training runs on CUDA and nvJPEG decodes there, else ``cpu`` (OpenCV
and albumentations in the workers), and says why once.
"""

import functools
import logging
from dataclasses import dataclass

import torch

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.augment import AugConfig
from lsvit.trainer.tensoraug import augment_clip, draw_params, eval_views

DECODE = ("auto", "cpu", "cuda")
log = logging.getLogger(__name__)


class DecodeError(LsvitError, ValueError):
    """A ``--decode`` value that cannot be used here."""


@dataclass
class JpegClips:
    """A batch of clips as their picked JPEGs (``jpegs[b]``: T, or T_views * T, encoded frames)."""

    jpegs: list[list[bytes]]
    seed: int  # draws the batch's augmentation parameters

    def __len__(self) -> int:
        return len(self.jpegs)


@functools.cache
def nvjpeg_problem(device: str) -> str | None:
    """None when torchcodec decodes JPEGs on ``device``, else why not (probed once per process)."""
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    try:
        from torchcodec.decoders import decode_jpeg
        from torchcodec.encoders import JpegEncoder

        jpeg = JpegEncoder(torch.zeros(3, 16, 16, dtype=torch.uint8)).to_tensor(quality=90)
        decode_jpeg([jpeg], device=device)[0].sum().item()
    except Exception as e:  # any failure means "not usable"; the reason is reported
        return f"torchcodec cannot decode JPEGs on {device} ({str(e).strip().splitlines()[0] if str(e) else e!r})"
    return None


def resolve_decode(decode: str, device: torch.device) -> str:
    """Turns ``--decode auto|cpu|cuda`` into ``cpu`` or ``cuda`` for training on ``device``.

    Raises:
        DecodeError: An unknown value, or ``cuda`` where training does not run on CUDA or nvJPEG fails.
    """
    if decode not in DECODE:
        raise DecodeError(f"--decode {decode!r} is not valid; allowed: {', '.join(DECODE)}")
    if decode == "cpu":
        return "cpu"
    why = "training runs on the CPU" if device.type != "cuda" else nvjpeg_problem(str(device))
    if why is None:
        return "cuda"
    if decode == "cuda":
        raise DecodeError(f"--decode cuda cannot be used: {why}; pass --decode cpu or auto")
    if device.type == "cuda":  # on the CPU, the workers are where auto is meant to decode: nothing to warn of
        log.warning("JPEGs decoded by the loader workers on the CPU (--decode auto): %s", why)
    return "cpu"


class DeviceFrames:
    """Decodes and augments :class:`JpegClips` batches on a device.

    Args:
        device: Where to decode (``cuda`` for nvJPEG; ``cpu`` decodes with libjpeg-turbo, for tests).
        img_size: Output height and width.
        num_frames: Frames per view.
        train: Random augmentation (else the evaluation resize and crops).
        aug: Augmentation ranges (training).
        views: ``(temporal, spatial)`` evaluation views; anything but 1x1 gives (B, V, T, 3, S, S).
    """

    def __init__(
        self,
        device: torch.device | str,
        img_size: int,
        num_frames: int,
        train: bool,
        aug: AugConfig | None = None,
        views: tuple[int, int] = (1, 1),
    ) -> None:
        self.device, self.img_size, self.num_frames = torch.device(device), img_size, num_frames
        self.train, self.aug, self.views = train, aug or AugConfig(), views

    def decode(self, batch: JpegClips) -> list[torch.Tensor]:
        """Every clip's frames as uint8 (N, 3, H, W) on the device; one decoder call for the whole batch."""
        from torchcodec.decoders import decode_jpeg

        flat = [j for clip in batch.jpegs for j in clip]
        try:
            images = decode_jpeg(flat, device=self.device)
        except RuntimeError as e:
            raise LsvitError(f"a JPEG of this batch does not decode ({e}); check the shards (verify)") from e
        out, start = [], 0
        for clip in batch.jpegs:
            frames = images[start : start + len(clip)]
            if any(f.shape != frames[0].shape for f in frames):
                raise LsvitError("the frames of a clip differ in size; check the shards (verify)")
            out.append(torch.stack(frames))
            start += len(clip)
        return out

    def __call__(self, batch: JpegClips) -> torch.Tensor:
        """uint8 (B, T, 3, S, S) on the device, or (B, V, T, 3, S, S) for evaluation views."""
        clips = self.decode(batch)
        if self.train:
            gen = torch.Generator().manual_seed(batch.seed)
            return torch.stack(
                [augment_clip(c, draw_params(self.aug, *c.shape[-2:], gen), self.img_size) for c in clips]
            )
        temporal, spatial = self.views
        out = []
        for c in clips:  # (T_v * T, 3, H, W) -> (S, T_v * T, 3, s, s) -> (T_v * S, T, 3, s, s)
            x = eval_views(c, self.img_size, spatial)
            x = x.view(spatial, temporal, self.num_frames, *x.shape[2:]).transpose(0, 1)
            out.append(x.reshape(temporal * spatial, self.num_frames, *x.shape[3:]))
        y = torch.stack(out)
        return y[:, 0] if self.views == (1, 1) else y


def collate_jpegs(
    samples: list[tuple[list[bytes], int, str]], seed: int
) -> tuple[JpegClips, torch.Tensor, list[str]]:
    """A loader worker's batch: the clips' picked JPEGs with the batch's seed, labels, keys."""
    labels = torch.tensor([s[1] for s in samples], dtype=torch.int64)
    return JpegClips([s[0] for s in samples], seed), labels, [s[2] for s in samples]


class DeviceEpoch:
    """One epoch of :class:`JpegClips` batches, yielded as device frames: decoded where they are consumed.

    Args:
        batches: The loader's epoch (``batches.loader`` etc. stay reachable for benchmarks).
        frames: Decodes and augments a batch.
    """

    def __init__(self, batches, frames: DeviceFrames) -> None:
        self.batches, self.frames = batches, frames

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for clips, labels, keys in self.batches:
            yield self.frames(clips), labels, keys
