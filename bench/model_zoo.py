"""Parameters and GFLOPs per clip of every model family at its default input, against LS-ViT-S.

Every model is built the way ``lsvit-train --model ...`` builds it (51 classes, HMDB51's), on the meta device
(no memory, no weights), and its forward pass on one clip is counted with ``torch.utils.flop_counter``
(FLOPs = 2 x multiply-adds; torchvision's and fvcore's tables count multiply-adds, half these numbers). The
Hugging Face rows use the architecture of the usual Kinetics checkpoints (transformers' default configs:
TimeSformer-base 8x224, VideoMAE-base 16x224, ViViT-B 16x2 32x224). Prints a Markdown table for the README.

    python bench/model_zoo.py [--classes 51]
"""

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from lsvit.trainer import checkpoint as ck
from lsvit.trainer.config import TrainConfig

TIMM = ("lsvit_small_patch16_224", "vit_frameavg_small_patch16_224", "lsvit_base_patch16_224")
TV = ("r2plus1d_18", "r3d_18", "mc3_18", "s3d", "mvit_v2_s", "swin3d_t")
HF = {  # name -> (config class, what `hf:` loads from the hub checkpoint of that architecture)
    "TimeSformer-base (facebook/timesformer-base-finetuned-k400)": "TimesformerConfig",
    "VideoMAE-base (MCG-NJU/videomae-base-finetuned-kinetics)": "VideoMAEConfig",
    "ViViT-B 16x2 (google/vivit-b-16x2-kinetics400)": "VivitConfig",
}


def count(model: torch.nn.Module, frames: int, size: int) -> tuple[int, float]:
    """(parameters, GFLOPs) of one forward pass on a (1, frames, 3, size, size) clip, on the meta device."""
    x = torch.empty(1, frames, 3, size, size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return sum(p.numel() for p in model.parameters()), fc.get_total_flops() / 1e9


def rows(classes: int) -> list[tuple[str, str, int, int, int, float]]:
    """(family, --model, frames, size, parameters, GFLOPs) of every row."""
    out = []
    with torch.device("meta"):
        for name in TIMM + tuple(f"tv:{n}" for n in TV):
            cfg = TrainConfig(model=name, drop_path=0.0)
            family = "torchvision" if name.startswith("tv:") else "LS-ViT / ViT (timm)"
            model = ck.build_model(cfg, classes).eval()
            out.append(
                (family, name, cfg.num_frames, cfg.img_size, *count(model, cfg.num_frames, cfg.img_size))
            )
        import transformers

        from lsvit.trainer.hfvideo import HfVideo

        for title, config_name in HF.items():
            config = getattr(transformers, config_name)(num_labels=classes)
            net = transformers.AutoModelForVideoClassification.from_config(config)
            frames, size = config.num_frames, config.image_size
            out.append(
                ("Hugging Face", f"hf:<{title}>", frames, size, *count(HfVideo(net).eval(), frames, size))
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=51)
    args = parser.parse_args()
    table = rows(args.classes)
    base = next(g for _, n, _, _, _, g in table if n == "lsvit_small_patch16_224")
    print("| family | `--model` | input (T x H x W) | params | GFLOPs / clip | vs LS-ViT-S |")
    print("| --- | --- | --- | --- | --- | --- |")
    for family, name, frames, size, params, gflops in table:
        print(
            f"| {family} | `{name}` | {frames} x {size} x {size} | {params / 1e6:.1f} M | {gflops:.1f} | "
            f"{gflops / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
