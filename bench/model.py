"""Cost of LS-ViT's motion modules (SMIF + LMI) against the plain frame-averaged ViT on the same clips.

1. Parameters and forward FLOPs (torch.utils.flop_counter.FlopCounterMode, counted on the meta device) of
   lsvit_{tiny,small,base}_patch16_224 against vit_frameavg_*_patch16_224 on (1, 16, 3, 224, 224) clips.
2. Time of one CPU training step (forward, cross-entropy, backward, AdamW step) of ``--model`` against its
   frame-averaged baseline, alternating the two so that machine load hits both alike. The best (minimum) of
   ``--steps`` is compared, as other load on a shared machine only ever adds time; medians are printed too.

Goal: motion modules add <= 3% FLOPs and <= 10% step time.

    python bench/model.py [--model tiny] [--batch-size 1] [--frames 16] [--img-size 224] [--steps 5] [--threads 1]
"""

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import lsvit  # noqa: F401  registers the models

FLOP_GOAL, TIME_GOAL = 1.03, 1.10
SIZES = ("tiny", "small", "base")


def count(size: str, motion: bool, frames: int, img_size: int) -> tuple[int, int]:
    """(parameters, forward FLOPs) of one preset on a (1, frames, 3, img, img) clip, on the meta device."""
    name = f"{'lsvit' if motion else 'vit_frameavg'}_{size}_patch16_224"
    with torch.device("meta"):
        model = timm.create_model(name, num_frames=frames, img_size=img_size)
        x = torch.empty(1, frames, 3, img_size, img_size)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as fc:
        model(x)
    return params, fc.get_total_flops()


def step_times(size: str, batch: int, frames: int, img_size: int, steps: int) -> dict[str, list[float]]:
    """Seconds per training step of LS-ViT and its baseline (same weights for the shared trunk)."""
    models, opts = {}, {}
    for key, prefix in (("lsvit", "lsvit"), ("frameavg", "vit_frameavg")):
        torch.manual_seed(0)
        models[key] = timm.create_model(f"{prefix}_{size}_patch16_224", num_frames=frames, img_size=img_size)
        opts[key] = torch.optim.AdamW(models[key].parameters(), lr=1e-4)
    x = torch.randn(batch, frames, 3, img_size, img_size)
    y = torch.randint(0, 51, (batch,))
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in tqdm(range(steps + 1), desc=f"train steps ({size}, B={batch}, T={frames}, {img_size}px)"):
        for key in sorted(models, reverse=bool(i % 2)):  # alternate the order: neither always runs first
            model = models[key]
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opts[key].zero_grad(set_to_none=True)
            loss.backward()
            opts[key].step()
            if i:  # the first round warms up allocators and kernels
                times[key].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=SIZES, default="tiny", help="preset whose training step is timed")
    ap.add_argument("--batch-size", type=int, default=1, help="clips per timed step")
    ap.add_argument("--frames", type=int, default=16, help="frames per clip")
    ap.add_argument("--img-size", type=int, default=224, help="frame size for the timed step")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"Parameters and forward FLOPs on (1, {args.frames}, 3, 224, 224):")
    print(f"{'preset':<7}{'params':>14}{'(+%)':>9}{'GFLOPs':>10}{'baseline':>10}{'ratio':>8}")
    worst = 0.0
    for size in SIZES:
        p1, f1 = count(size, True, args.frames, 224)
        p0, f0 = count(size, False, args.frames, 224)
        worst = max(worst, f1 / f0)
        print(
            f"{size:<7}{p1:>14,}{100 * (p1 / p0 - 1):>8.3f}%{f1 / 1e9:>10.2f}{f0 / 1e9:>10.2f}{f1 / f0:>8.4f}"
        )
    print(
        f"FLOPs ratio (worst preset): {worst:.4f}  goal <= {FLOP_GOAL}  {'OK' if worst <= FLOP_GOAL else 'MISSED'}"
    )

    t = step_times(args.model, args.batch_size, args.frames, args.img_size, args.steps)
    best = {k: min(v) for k, v in t.items()}
    med = {k: statistics.median(v) for k, v in t.items()}
    ratio = best["lsvit"] / best["frameavg"]
    print(f"CPU training step, {args.model}, B={args.batch_size}, T={args.frames}, {args.img_size}px, "
          f"{torch.get_num_threads()} thread(s), {args.steps} steps each:")  # fmt: skip
    for key, label in (("lsvit", "LS-ViT"), ("frameavg", "frame-averaged ViT")):
        print(f"  {label:<20} best {best[key]:.3f} s   median {med[key]:.3f} s")
    print(f"  median ratio {med['lsvit'] / med['frameavg']:.3f}")
    print(
        f"Step-time ratio (best): {ratio:.3f}  goal <= {TIME_GOAL}  {'OK' if ratio <= TIME_GOAL else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
