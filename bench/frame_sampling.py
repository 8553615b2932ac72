"""Training frame sampling side by side: one config trained with uniform, random and stride sampling.

Same shards, seeds and every other option; only ``--frame-sampling`` differs (evaluation is always uniform,
so the three are tested alike). ``uniform`` is the baseline: each row prints its ratio to it. Per strategy
and seed: best validation top-1 (what selects ``best.pt``), test top-1 of ``best.pt`` and of ``last.pt``,
and the training time. The shards must store more frames than the config feeds the model (the demo: 8 of
16), else the three strategies pick the same frames.

    python bench/frame_sampling.py [--shards shards] [--config configs/demo.yaml] [--seeds 0 1 2]
                                   [--epochs N] [--out runs/bench-sampling] [--workers N]

Make the shards first (``just demo`` does, or ``lsvit-pipeline synth --scale 0.1`` then ``extract``).
"""

import argparse
import statistics
import time
from pathlib import Path

from lsvit.pipeline.shardindex import read_index, resolve_split_dir
from lsvit.trainer.resolve import resolve_config
from lsvit.trainer.train import train

STRATEGIES = ("uniform", "random", "stride")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", default="shards")
    p.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs (a quicker run)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/bench-sampling"))
    args = p.parse_args()
    stored = read_index(resolve_split_dir(args.shards)).frames
    rows: dict[str, list[dict]] = {s: [] for s in STRATEGIES}
    for seed in args.seeds:
        for strategy in STRATEGIES:
            out = args.out / f"{strategy}-seed{seed}"
            overrides = {"shards": args.shards, "out": str(out), "seed": seed, "frame_sampling": strategy}
            overrides |= {"epochs": args.epochs} if args.epochs else {}
            overrides |= {"workers": args.workers} if args.workers is not None else {}
            if (out / "last.pt").exists():
                overrides["resume"] = "auto"  # a finished run only reports again
            cfg = resolve_config(args.config, overrides)
            t0 = time.perf_counter()
            s = train(cfg)
            rows[strategy].append(
                dict(val=s["best_val_top1"], best=s["best_test"]["top1"], last=s["last_test"]["top1"],
                     seconds=time.perf_counter() - t0)
            )  # fmt: skip
    print(
        f"\n{args.config} on {args.shards} ({stored} stored frames, {cfg.num_frames} used), seeds {args.seeds}"
    )
    print(
        f"{'strategy':<9} {'val top-1':>10} {'test best.pt':>13} {'test last.pt':>13} {'ratio':>6} {'train s':>8}"
    )
    base = statistics.mean(r["best"] for r in rows["uniform"])
    for strategy, rs in rows.items():
        mean = {
            k: statistics.mean([r[k] for r in rs if r[k] is not None] or [float("nan")])
            for k in ("val", "best", "last", "seconds")
        }
        spread = f" ±{statistics.stdev(r['best'] for r in rs):.3f}" if len(rs) > 1 else ""
        print(
            f"{strategy:<9} {mean['val']:>10.3f} {mean['best']:>8.3f}{spread:<5} {mean['last']:>13.3f} "
            f"{mean['best'] / base if base else float('nan'):>6.2f} {mean['seconds']:>8.0f}"
        )


if __name__ == "__main__":
    main()
