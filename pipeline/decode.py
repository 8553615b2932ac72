"""Decode a clip with torchcodec's packet-level API and keep only the sampled frames.

Why a sequential walk instead of ``VideoDecoder.get_frames_at`` / ``get_frames_played_at``: HMDB51 clips
are DivX AVIs with packed B-frames. Their packets (and torchcodec's exact-mode scan) count one frame more
than the decoder outputs (409 vs 408), the decoded frames' timestamps are shifted against the packet
timestamps and the last one has none. Index access therefore returns a neighbouring frame (index 100 gives
frame 98) and time access cannot reach the last frame. Walking the decoder output in order is the only
trustworthy frame count, and is pixel-identical to ``ffmpeg -i clip -f rawvideo -pix_fmt rgb24``.

The walk uses ``Demuxer`` -> ``VideoPacketDecoder`` -> ``ColorConverter``: every packet is decoded, but
only the frames that the sampling may pick are kept (each ``RawFrame`` holds its own reference to the
decoded YUV picture, so it stays valid while later packets are decoded) and only the sampled ones are
converted to RGB. A clip costs ~1.2x ``ffmpeg -threads 1 -f null`` (408 frames) to ~1.5x (70 frames); the
rest is the per-packet Python calls and the 16 conversions.
"""

import functools
import logging
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torchcodec.decoders import ColorConverter, Demuxer, RawFrame, VideoDecoder, VideoPacketDecoder
from torchcodec.encoders import VideoEncoder

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.sampling import num_padded, sample_indices

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
# Packed B-frames and dropped placeholder frames make a decoded count 1-2 below the header normal; far
# fewer decoded frames than the header promises means the file was cut short.
TRUNCATION_SLACK = (2, 0.05)
_CPP_PREFIX = re.compile(r"^.*?\.(?:cpp|h|cu):\d+,\s*")


class DecodeError(LsvitError):
    """A clip that cannot be decoded; the message is the short reason recorded in failures.jsonl."""


@dataclass
class DecodedClip:
    """The sampled frames of one clip and what was learnt about it while decoding."""

    images: list[torch.Tensor]  # T (H, W, 3) uint8 CPU frames; padding repeats the same tensor
    indices: list[int]
    padded: int
    source_frames: int
    header_frames: int | None
    fps: float
    duration: float
    width: int
    height: int

    @functools.cached_property
    def frames(self) -> torch.Tensor:
        """The frames as one (T, H, W, 3) uint8 tensor (stacked on first use; extraction never needs it)."""
        return torch.stack(self.images)


@functools.cache
def _cuda_decode_works(device: str) -> str | None:
    """None when torchcodec can decode on ``device``, else why not (probed once per process)."""
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    try:
        clip = VideoEncoder(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), frame_rate=25.0).to_tensor("mp4")
        VideoDecoder(clip, device=device).get_frame_at(0)
    except Exception as e:  # any failure here means "not usable", the reason is logged
        return f"torchcodec cannot decode on {device} ({_reason(e)})"
    return None


def resolve_device(device: str) -> str:
    """Turns a ``--device`` value into the concrete decode device.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        ``cpu`` or a CUDA device string. ``auto`` picks ``cuda`` when torchcodec can decode on it and
        otherwise falls back to ``cpu``, logging why once per process.

    Raises:
        LsvitError: If ``device`` is not one of the allowed values, or CUDA was asked for explicitly but
            cannot be used.
    """
    if device == "cpu":
        return device
    if device == "auto":
        why = _cuda_decode_works("cuda")
        if why is None:
            return "cuda"
        _warn_once(f"decoding on CPU: CUDA not usable ({why})")
        return "cpu"
    if re.fullmatch(r"cuda(:\d+)?", device):
        why = _cuda_decode_works(device)
        if why is not None:
            raise LsvitError(f"--device {device} cannot be used: {why}; pass --device cpu or auto")
        return device
    raise LsvitError(f"--device {device!r} is not valid; allowed: {', '.join(DEVICES)}")


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def _reason(e: BaseException) -> str:
    """The human part of a torchcodec/FFmpeg error: first line, without the C++ source location."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return _CPP_PREFIX.sub("", text)


def _open(path: Path) -> Demuxer:
    """A demuxer following FFmpeg's best video stream (the one ``ffmpeg -i`` would pick)."""
    try:
        st = path.stat()
    except OSError as e:
        raise DecodeError(f"cannot read file ({e.strerror or e})") from e
    if not stat.S_ISREG(st.st_mode):  # a device such as /dev/zero has size 0 but never ends
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise DecodeError(f"not a regular file ({kind})")
    if st.st_size == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        return Demuxer(path, streams="video")
    except ValueError as e:
        if "video stream" in str(e):
            raise DecodeError("no video stream") from e
        raise DecodeError(f"cannot open video: {_reason(e)}") from e
    except RuntimeError as e:
        reason = _reason(e).replace(str(path), "").replace("Could not open input file:", "").strip()
        raise DecodeError(f"not a readable video ({reason or 'FFmpeg cannot open it'})") from e


def _walk(demuxer: Demuxer, decoder: VideoPacketDecoder) -> Iterator[RawFrame]:
    """Every frame the decoder outputs, in presentation order, not yet converted to RGB."""
    for packet in demuxer:  # only the followed stream's packets come out
        yield from decoder.decode(packet)
    yield from decoder.drain()


def _keep(demuxer: Demuxer, device: str, wanted: set[int]) -> tuple[dict[int, RawFrame], int]:
    kept: dict[int, RawFrame] = {}
    count = 0
    try:
        decoder = demuxer.streams[0].make_decoder(device, num_ffmpeg_threads=1)
        for i, frame in enumerate(_walk(demuxer, decoder)):
            if i in wanted:
                kept[i] = frame
            count = i + 1
    except RuntimeError as e:
        raise DecodeError(f"decoding failed after {count} frames ({_reason(e)})") from e
    return kept, count


@functools.cache
def _converter(device: str) -> ColorConverter:
    return ColorConverter(device)


_fallback_checked: set[tuple[str, str | None]] = set()


def _warn_on_cpu_fallback(path: Path, device: str, codec: str | None) -> None:
    """Logs once per device and codec when NVDEC cannot decode it and torchcodec decodes on the CPU.

    The packet-level API does not report the fallback; ``VideoDecoder`` knows it as soon as it is created.
    """
    if (device, codec) in _fallback_checked:
        return
    _fallback_checked.add((device, codec))
    status = VideoDecoder(path, seek_mode="approximate", device=device).cpu_fallback
    if status:
        _warn_once(f"torchcodec fell back to CPU decoding for {codec}: {status}")


def decode_clip(path: Path, num_samples: int = 16, device: str = "cpu") -> DecodedClip:
    """Decodes a clip and returns ``num_samples`` frames spread uniformly over the frames that decode.

    One sequential decode counts the frames and keeps those that the sampling may pick for the count the
    header suggests (a few counts around it); only when the real count is far off (a bad header) is the
    clip decoded a second time for the missing frames.

    Args:
        path: The video file.
        num_samples: Frames wanted (>= 1); short clips repeat their last frame.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see :func:`resolve_device`).

    Returns:
        The sampled frames (``images``: T (H, W, 3) uint8 CPU tensors, ``frames``: the same stacked) and the
        clip's metadata.

    Raises:
        DecodeError: If the file is missing, empty, not a video, has no video stream, decodes no frame or
            decodes far fewer frames than its header promises (truncated).
        LsvitError: If ``device`` is invalid.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    path = Path(path)
    dev = resolve_device(device)
    demuxer = _open(path)
    meta = demuxer.streams[0].metadata
    header = meta.num_frames_from_header
    fps = float(meta.average_fps_from_header or 0.0)
    estimate = header or round((meta.duration_seconds_from_header or 0.0) * fps)
    wanted = set()
    if estimate:
        for n in range(max(1, estimate - 2), estimate + 1):
            wanted.update(sample_indices(n, num_samples))
    kept, count = _keep(demuxer, dev, wanted)
    if count == 0:
        raise DecodeError("no decodable video frames")
    if header and count < header - max(TRUNCATION_SLACK[0], TRUNCATION_SLACK[1] * header):
        raise DecodeError(f"truncated or corrupt: header says {header} frames but only {count} decode")
    indices = sample_indices(count, num_samples)
    if not set(indices) <= kept.keys():
        kept, recount = _keep(_open(path), dev, set(indices))
        if recount != count:
            raise DecodeError(f"decodes inconsistently ({count} frames, then {recount})")
    converter = _converter(dev)
    rgb = {i: converter.convert(kept[i]).data.permute(1, 2, 0).cpu() for i in set(indices)}  # (H, W, 3)
    images = [rgb[i] for i in indices]
    if dev != "cpu":
        _warn_on_cpu_fallback(path, dev, meta.codec)
    duration = meta.duration_seconds_from_header or demuxer.metadata.duration_seconds_from_header
    return DecodedClip(
        images=images,
        indices=indices,
        padded=num_padded(count, num_samples),
        source_frames=count,
        header_frames=header,
        fps=fps,
        duration=float(duration or (count / fps if fps else 0.0)),
        width=int(images[0].shape[1]),
        height=int(images[0].shape[0]),
    )
