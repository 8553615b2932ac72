"""Training throughput: clips/s and model FLOP utilisation of LS-ViT, and whether the loader keeps up.

On CUDA, for each ``--models`` size at ``--frames`` x ``--img-size`` (16 x 224) in ``--amp`` (bf16):
1. full training steps (forward, cross-entropy, backward, AdamW) on a batch resident on the GPU, eager and
   ``torch.compile``, channels-first and channels-last: clips/s and MFU = model FLOP/s (forward FLOPs from
   ``FlopCounterMode`` x 3 for forward + backward) / the device's dense bf16 peak (a table by device name,
   or ``--peak-tflops``). Goal: LS-ViT-B >= 40 % MFU.
2. the same steps fed by the real loader for each decode path (``--decode cpu``: workers decode and
   augment; ``cuda``: workers read bytes, nvJPEG + GPU augmentation): GPU busy = resident-batch time / fed
   time. Goal: >= 90 % busy.
On any device, per loader worker: clips/s of the CPU path (read, decode, augment in the worker) against the
byte path (the worker only reads and picks JPEGs), plus what the device decode + augmentation costs per clip;
on CPU also the LS-ViT / frame-averaged ViT training-step time ratio. Shards: ``--shards DIR`` (a split
folder or its parent), else contract-conformant 320x240 shards written under ``--work``.

    python bench/train.py [--models small,base] [--batch-size 32] [--steps 20] [--workers 8] [--shards DIR]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import lsvit  # noqa: F401  registers the models
from lsvit.trainer.data import DataConfig, make_loader
from lsvit.trainer.jpegclips import DeviceFrames, nvjpeg_problem
from lsvit.trainer.preprocess import normalize

sys.path.insert(0, str(Path(__file__).parent))
from loader import make_fake_shards  # bench/loader.py

MFU_GOAL, BUSY_GOAL = 0.40, 0.90
# Dense bf16 tensor-core peaks (TFLOP/s) by device-name substring, most specific first.
PEAK_BF16 = (
    ("GB200", 2500), ("B200", 2250), ("H200", 989), ("H100 PCIe", 756), ("H100", 989), ("GH200", 989),
    ("H800", 989), ("A100", 312), ("A800", 312), ("L40S", 362), ("L40", 181), ("L4", 121), ("A10G", 125),
    ("A10", 125), ("RTX 6000 Ada", 364), ("RTX 4090", 165), ("RTX 3090", 71), ("A6000", 155),
)  # fmt: skip


def peak_flops(device: torch.device, override: float | None) -> float | None:
    """The device's dense bf16 peak in FLOP/s (None when unknown: MFU is not printed)."""
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tf * 1e12 for key, tf in PEAK_BF16 if key in name), None)


def train_flops(name: str, frames: int, img: int, classes: int) -> int:
    """FLOPs of one training step per clip: forward on the meta device, x 3 for forward + backward."""
    with torch.device("meta"):
        model = timm.create_model(name, num_frames=frames, img_size=img, num_classes=classes)
        x = torch.empty(1, frames, 3, img, img)
    with FlopCounterMode(display=False) as fc:
        model(x)
    return 3 * fc.get_total_flops()


class Trainer:
    """One model, optimizer and autocast policy; ``step(x, y)`` is one training step."""

    def __init__(self, name: str, a, device: torch.device, compile: bool, channels_last: bool) -> None:
        torch.manual_seed(0)
        model = timm.create_model(name, num_frames=a.frames, img_size=a.img_size, num_classes=a.classes)
        self.model = model.to(device, memory_format=torch.channels_last if channels_last else None)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=device.type == "cuda")
        self.forward = torch.compile(self.model) if compile else self.model
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[a.amp]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.device, self.channels_last = device, channels_last

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.channels_last:  # (B, T, 3, H, W): channels-last per frame, what the patch conv sees
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view_as(x)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = F.cross_entropy(self.forward(x).float(), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(trainer: Trainer, batches, steps: int, warmup: int = 3) -> float:
    """Seconds per step over ``steps`` steps after ``warmup`` (compilation, allocator, autotuning)."""
    it = iter(batches)
    for _ in range(warmup):
        trainer.step(*next(it))
    sync(trainer.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step(*next(it))
    sync(trainer.device)
    return (time.perf_counter() - t0) / steps


def resident(a, device: torch.device):
    """The same normalised batch, forever (the GPU never waits for data)."""
    x = torch.randn(a.batch_size, a.frames, 3, a.img_size, a.img_size, device=device)
    y = torch.randint(0, a.classes, (a.batch_size,), device=device)
    while True:
        yield x, y


def fed(a, shards: Path, device: torch.device, decode: str):
    """Batches from the real loader (epochs chained), normalised on the device."""
    cfg = DataConfig(
        shards=shards, split=1, img_size=a.img_size, num_frames=a.frames, batch_size=a.batch_size,
        workers=a.workers, balance="none", decode_device=str(device) if decode == "cuda" else None,
    )  # fmt: skip
    for epoch in range(10**6):
        loader, _ = make_loader(cfg, "train", train=True, epoch=epoch)
        for frames, labels, _ in loader:
            x = normalize(frames, (0.5,) * 3, (0.5,) * 3, device=device)
            yield x, labels.to(device, non_blocking=True) % a.classes


def gpu_section(a, device: torch.device, shards: Path) -> None:
    peak = peak_flops(device, a.peak_tflops)
    print(
        f"device: {torch.cuda.get_device_name(device)}, peak bf16 {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s"
    )
    for size in a.models.split(","):
        name = f"lsvit_{size}_patch16_224"
        flops = train_flops(name, a.frames, a.img_size, a.classes)
        base = None
        for compile in (False, True):
            for cl in (False, True):
                trainer = Trainer(name, a, device, compile, cl)
                s = timed_steps(trainer, resident(a, device), a.steps)
                rate = a.batch_size / s
                mfu = flops * rate / peak if peak else float("nan")
                ok = "" if size != "base" else (" ok" if mfu >= MFU_GOAL else " MISS (goal >= 40 %)")
                print(
                    f"{name} compile={compile!s:5} channels_last={cl!s:5}: {rate:7.1f} clips/s  MFU {mfu:6.1%}{ok}"
                )
                if not compile and not cl:
                    base = (trainer, s)
        trainer, s_res = base
        for decode in ("cpu", "cuda"):
            if decode == "cuda" and (why := nvjpeg_problem(str(device))):
                print(f"  loader --decode cuda: skipped ({why})")
                continue
            s_fed = timed_steps(trainer, fed(a, shards, device, decode), a.steps)
            busy = min(1.0, s_res / s_fed)
            print(
                f"  loader --decode {decode}, {a.workers} workers: {a.batch_size / s_fed:7.1f} clips/s, GPU busy "
                f"{busy:.0%} {'ok' if busy >= BUSY_GOAL else 'MISS'} (goal >= 90 %)"
            )


def worker_section(a, shards: Path, device: torch.device) -> None:
    """Per-worker loader cost of each decode path (workers=0: this process is the worker)."""
    torch.set_num_threads(1)
    cfg = DataConfig(
        shards=shards, split=1, img_size=a.img_size, num_frames=a.frames, batch_size=8, workers=0,
        balance="none",
    )  # fmt: skip
    rows = {}
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    for r in range(a.rounds):
        for decode in ("cpu", "bytes"):
            c = cfg if decode == "cpu" else DataConfig(**{**cfg.__dict__, "decode_device": str(device)})
            loader, _ = make_loader(c, "train", train=True, epoch=r)
            it = iter(
                loader.batches if decode == "bytes" else loader
            )  # bytes: the workers' output, undecoded
            frames = DeviceFrames(device, a.img_size, a.frames, train=True)
            n, worker_s, dev_s = 0, 0.0, 0.0
            while True:
                t0 = time.process_time()
                batch = next(it, None)
                worker_s += time.process_time() - t0
                if batch is None:
                    break
                if decode == "bytes":
                    d0 = clock()
                    frames(batch[0])
                    sync(device)
                    dev_s += clock() - d0
                n += len(batch[0])
            rows.setdefault(decode, []).append((n / worker_s, n / dev_s if dev_s else None))
    cpu_rate = max(r[0] for r in rows["cpu"])
    byte_rate, dev_rate = max(r[0] for r in rows["bytes"]), max(r[1] for r in rows["bytes"])
    print(f"loader, one worker ({a.frames}x{a.img_size}, training augmentation):")
    print(f"  --decode cpu   (read + OpenCV decode + albumentations): {cpu_rate:8.1f} clips/s")
    print(
        f"  --decode cuda  worker (read + pick JPEG bytes):          {byte_rate:8.1f} clips/s ({byte_rate / cpu_rate:.1f}x)"
    )
    print(f"                 device decode + augmentation on {device.type}:    {dev_rate:8.1f} clips/s")


def cpu_section(a) -> None:
    """LS-ViT / frame-averaged ViT training-step time on the CPU (the cost of the motion modules)."""
    sizes, times = a.cpu_model, {}
    ax = argparse.Namespace(**{**vars(a), "batch_size": 1, "amp": "off"})
    trainers = {
        k: Trainer(f"{k}_{sizes}_patch16_224", ax, torch.device("cpu"), False, False)
        for k in ("lsvit", "vit_frameavg")
    }
    x, y = next(resident(ax, torch.device("cpu")))
    for i in range(a.rounds * 2 + 1):
        for k in sorted(trainers, reverse=bool(i % 2)):  # alternate: machine load hits both alike
            t0 = time.perf_counter()
            trainers[k].step(x, y)
            if i:
                times.setdefault(k, []).append(time.perf_counter() - t0)
    ls, fa = min(times["lsvit"]), min(times["vit_frameavg"])
    print(
        f"CPU training step, {sizes} at {a.frames}x{a.img_size}, batch 1: LS-ViT {ls:.2f} s, frame-averaged "
        f"ViT {fa:.2f} s, ratio {ls / fa:.3f} (medians {statistics.median(times['lsvit']):.2f} / "
        f"{statistics.median(times['vit_frameavg']):.2f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,base", help="LS-ViT sizes for the GPU section")
    ap.add_argument("--cpu-model", default="tiny", help="size for the CPU step-time ratio")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=51)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--amp", choices=["bf16", "fp16", "off"], default="bf16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8, help="loader workers for the GPU busy measure")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    ap.add_argument("--shards", type=Path, help="a shard folder (else fake 320x240 shards under --work)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lsvit-bench-train"))
    ap.add_argument("--clips", type=int, default=64, help="clips of the fake shards")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    device = torch.device(a.device)
    shards = a.shards
    if shards is None:
        shards = a.work / "shards"
        if not (shards / "split1" / "index.json").is_file():
            make_fake_shards(a.work, a.clips)
    if device.type == "cuda":
        gpu_section(a, device, shards)
    else:
        torch.set_num_threads(1)  # one core per measurement: other load on a shared machine barely moves it
        cpu_section(a)
    worker_section(a, shards, device)


if __name__ == "__main__":
    main()
