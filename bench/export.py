"""Per-clip CPU latency of an exported model on onnxruntime against eager PyTorch.

For lsvit_small_patch16_224 at 16x224 (51 classes) and the README demo's model (configs/demo.yaml), each
model is exported with ``lsvit.trainer.export.export_model`` (what ``lsvit-export`` runs), checked for
parity, then one clip (batch 1, float32, the network only: decoding and cropping are the same shared code
for both runtimes) is timed on each runtime, alternating the two so that machine load hits both alike.
Both use the same number of CPU threads. The best (minimum) of ``--runs`` is compared, as other load on a
shared machine only ever adds time; medians are printed too.

    python bench/export.py [--runs 10] [--threads 0] [--models small,demo]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch
import yaml
from tqdm import tqdm

from lsvit.trainer.checkpoint import build_model
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.export import check_parity, export_model

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
SHAPE_KEYS = ("model", "model_kwargs", "img_size", "num_frames")


def model_config(name: str) -> TrainConfig:
    """``small``: LS-ViT-S/16 at 16 frames of 224 px; ``demo``: the shape options of configs/demo.yaml."""
    if name == "small":
        return TrainConfig(model="lsvit_small_patch16_224", img_size=224, num_frames=16)
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    return TrainConfig(**{k: demo[k] for k in SHAPE_KEYS if k in demo})


def time_both(model: torch.nn.Module, session: ort.InferenceSession, shape: tuple, runs: int, desc: str):
    """Seconds per clip of eager PyTorch and onnxruntime, ``runs`` each after one warm-up."""
    x = torch.randn(1, *shape)
    feed = {session.get_inputs()[0].name: x.numpy()}
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for i in tqdm(range(runs + 1), desc=desc):
        for key in sorted(times, reverse=bool(i % 2)):  # alternate the order: neither always runs first
            t0 = time.perf_counter()
            if key == "torch":
                with torch.inference_mode():
                    model(x)
            else:
                session.run(None, feed)
            if i:  # the first round warms up allocators and kernels
                times[key].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="timed clips per runtime and model")
    ap.add_argument(
        "--threads", type=int, default=0, help="CPU threads for both runtimes (0: torch's default)"
    )
    ap.add_argument("--models", default="small,demo", help="comma-separated: small, demo")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, {threads} CPU thread(s), batch 1, float32"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            cfg = model_config(name)
            torch.manual_seed(0)
            model = build_model(cfg, 51, pretrained=False).eval()
            shape = (cfg.num_frames, 3, cfg.img_size, cfg.img_size)
            out = Path(tmp) / f"{name}.onnx"
            t0 = time.perf_counter()
            export_model(model, shape, out, {})
            export_s = time.perf_counter() - t0
            worst = max(p.max_abs_diff for p in check_parity(model, out, shape))
            session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
            times = time_both(model, session, shape, args.runs, f"{name} ({cfg.model}, {shape})")
            best = {k: min(v) for k, v in times.items()}
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append((name, cfg, shape, export_s, worst, best, med))
    print(f"{'model':<7}{'input (T,3,H,W)':<20}{'export s':>9}{'max|diff|':>11}"
          f"{'torch ms':>10}{'ort ms':>9}{'torch/ort':>10}{'median ratio':>14}")  # fmt: skip
    for name, _, shape, export_s, worst, best, med in rows:
        ratio, med_ratio = best["torch"] / best["onnxruntime"], med["torch"] / med["onnxruntime"]
        print(f"{name:<7}{shape!s:<20}{export_s:>9.1f}{worst:>11.1e}{1e3 * best['torch']:>10.1f}"
              f"{1e3 * best['onnxruntime']:>9.1f}{ratio:>10.2f}{med_ratio:>14.2f}")  # fmt: skip
    print("torch/ort > 1: onnxruntime is faster per clip (best of the runs; median ratio beside it)")


if __name__ == "__main__":
    main()
