"""Device choice and the DDP process group (torchrun sets the environment; torch reads it)."""

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from lsvit.pipeline.errors import LsvitError


@dataclass(frozen=True)
class Dist:
    """Where this process runs and which rank it is."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes files and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(device: str) -> torch.device:
    """Resolves ``auto|cuda|mps|cpu`` to an available device.

    Args:
        device: The ``--device`` value.

    Returns:
        CUDA when available (for ``auto``), else MPS, else CPU.

    Raises:
        LsvitError: An explicitly requested device is not available.
    """
    has_mps = torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise LsvitError(
            "--device cuda was asked for but torch sees no CUDA device; use --device auto or cpu"
        )
    if device == "mps" and not has_mps:
        raise LsvitError("--device mps was asked for but MPS is not available; use --device auto or cpu")
    if device not in ("cuda", "mps", "cpu"):
        raise LsvitError(f"--device {device!r} is not allowed; choose one of: auto, cuda, mps, cpu")
    return torch.device(device)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` on this device (None = float32).

    ``auto`` is bf16 on CUDA where supported, else fp16 (with a GradScaler); it is off on CPU and MPS,
    where autocast is often slower than float32 and changes results. ``bf16`` may be asked for on any
    device; ``fp16`` needs CUDA.

    Args:
        amp: ``auto``, ``bf16``, ``fp16`` or ``off``.
        device: The training device.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or None.

    Raises:
        LsvitError: fp16 without CUDA, or bf16 on a GPU without bf16 support.
    """
    cuda = device.type == "cuda"
    if amp == "off" or (amp == "auto" and not cuda):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16" and not cuda:
        raise LsvitError(f"--amp fp16 needs CUDA (GradScaler); on {device.type} use --amp bf16 or --amp off")
    if amp == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise LsvitError("--amp bf16 is not supported by this GPU; use --amp fp16 or --amp auto")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def setup(device: str) -> Dist:
    """Joins the torchrun process group when launched by torchrun, else runs as a single process.

    NCCL is used on CUDA and gloo otherwise; each rank takes the GPU of its node-local rank.

    Args:
        device: The ``--device`` value.

    Returns:
        This process's device, rank and world size.
    """
    dev = pick_device(device)
    if not dist.is_torchelastic_launched():
        return Dist(dev)
    if dev.type == "mps":
        raise LsvitError("DDP is not supported on MPS; use --device cpu under torchrun")
    if dev.type == "cuda":
        local = dist.get_node_local_rank(fallback_rank=0)
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None
        )
    return Dist(dev, dist.get_rank(), dist.get_world_size())


def default_workers(ctx: Dist) -> int:
    """Loader workers per rank when ``--workers`` is not given: the cores shared by the ranks (>= 1)."""
    return max(1, (os.cpu_count() or 1) // ctx.world_size)


def teardown() -> None:
    """Leaves the process group (a no-op for single-process runs)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], ctx: Dist) -> list[float]:
    """Sums a few floats over all ranks.

    Args:
        values: This rank's values.
        ctx: The process context.

    Returns:
        The sums (the input unchanged for a single process).
    """
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any, ctx: Dist) -> list[Any]:
    """Collects one picklable object per rank on every rank (small per-sample results only)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Dist) -> None:
    """Waits for all ranks (e.g. until rank 0 has written a checkpoint)."""
    if ctx.enabled:
        dist.barrier()
