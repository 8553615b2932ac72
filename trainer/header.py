"""The run header: what a training run is about to do, printed once before its first epoch.

Model and size (parameters, GFLOPs per clip), where the weights start, the data (and whether it is
synthetic), clips per subset, steps per epoch and the effective batch, the schedule, device and AMP dtype,
and the input normalisation: what timm's and Hugging Face's trainers print, so that a log says what ran.
It goes to stdout with the results, and into the run's TensorBoard events as text.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import lsvit
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import ShardIndex
from lsvit.trainer import synthetic
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.distributed import Dist
from lsvit.trainer.preprocess import Preprocess
from lsvit.trainer.shardset import load_shardset
from lsvit.trainer.tblog import EventLog


@dataclass
class RunShape:
    """What the header reports besides the config: the built model and the loader's step plan."""

    model: torch.nn.Module
    pre: Preprocess
    index: ShardIndex
    steps: int  # batches per epoch and rank
    updates: int  # optimizer updates per epoch
    dtype: torch.dtype | None  # autocast dtype, None: float32
    init: str  # where the weights come from, in words
    max_steps: int | None = None  # --max-steps


def flops_per_clip(cfg: TrainConfig, shape: RunShape) -> float | None:
    """FLOPs of one forward pass on one clip (2 per multiply-add), counted on a meta-device copy.

    ``torch.utils.flop_counter.FlopCounterMode`` counts matrix products and convolutions, which are all but
    a sliver of a video model's work. The model is built again on the ``meta`` device (no memory, no
    compute), as ``bench/model_zoo.py`` does.

    Returns:
        The count, or None when the model cannot run on the meta device.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from lsvit.trainer import checkpoint as ck

    classes, pre = shape.index.classes, shape.pre
    try:
        with torch.device("meta"):
            model = ck.build_model(
                cfg,
                len(classes),
                pretrained=False,
                classes=classes,
                model_config=ck.model_config(shape.model),
            ).eval()
            x = torch.empty(1, pre.num_frames, 3, pre.img_size, pre.img_size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    except Exception:  # a model with data-dependent ops: the header says n/a, the run goes on
        return None
    return float(counter.get_total_flops())


def _count(n: float) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _device(ctx: Dist, dtype: torch.dtype | None) -> str:
    dev = ctx.device
    if dev.type == "cuda":
        where = f"{dev} ({torch.cuda.get_device_name(dev)})"
    elif dev.type == "cpu":
        n = torch.get_num_threads()
        where = f"cpu ({n} thread{'s' if n != 1 else ''})"
    else:
        where = str(dev)
    amp = {
        None: "float32 (AMP off)",
        torch.bfloat16: "bf16 autocast",
        torch.float16: "fp16 autocast with GradScaler",
    }.get(dtype, str(dtype))
    ranks = f"; {ctx.world_size} ranks (DDP)" if ctx.enabled else ""
    return f"{where}, {amp}{ranks}"


def _clips(cfg: TrainConfig, index: ShardIndex) -> str:
    """Clips per subset: the train clips left after the hold-out, the draws an epoch makes of them."""
    counts = {s: sum(c.values()) for s, c in index.counts.items()}
    own_val = "val" in index.subsets  # a folder dataset's own validation clips: no hold-out
    try:
        held = 0
        if cfg.val_fraction > 0 and not own_val:
            held = load_shardset(index, "val", False, cfg.balance, cfg.val_fraction).total_draws
        draws = load_shardset(index, "train", True, cfg.balance, cfg.val_fraction).total_draws
    except LsvitError:  # the loader reports unusable manifests itself, with what to do
        return ", ".join(f"{s} {n}" for s, n in counts.items())
    text = f"train {counts.get('train', 0) - held}"
    if cfg.balance != "none":
        text += f" ({cfg.balance} balancing: {draws} draws an epoch)"
    if own_val:
        text += f", val {counts.get('val', 0)} (the dataset's own)"
    else:
        text += f", val {held} (held out of train)" if held else ", no validation hold-out"
    rest = [f"{s} {n}" for s, n in counts.items() if s not in ("train", "val")]
    return ", ".join([text, *rest])


def header_lines(cfg: TrainConfig, ctx: Dist, shape: RunShape) -> list[str]:
    """The header, one fact a line, e.g. ``model    lsvit_small_patch16_224: 22.72 M parameters, ...``.

    Args:
        cfg: The resolved config.
        ctx: Device and ranks.
        shape: The built model and step plan.
    """
    model, pre, index = shape.model, shape.pre, shape.index
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    kwargs = f" {json.dumps(cfg.model_kwargs)}" if cfg.model_kwargs else ""
    size = f"{_count(params)} parameters"
    size += f" ({_count(trainable)} trainable)" if trainable != params else ""
    clip = f"{pre.num_frames}x3x{pre.img_size}x{pre.img_size}"
    flops = flops_per_clip(cfg, shape)
    if flops is not None:
        size += f", {flops / 1e9:.2f} GFLOPs per {clip} clip ({flops / 2e9:.2f} GMACs)"
    synth = synthetic.info(index.synthetic)
    data = f"{str(index.base).rstrip('/')}: split {index.split}, {len(index.classes)} classes, "
    data += f"{index.frames} frames stored a clip"
    if synth is not None:
        data = f"synthetic ({synthetic.describe(synth)}): {data}"
    world = ctx.world_size
    effective = cfg.batch_size * world * cfg.accum_steps
    lines = [
        f"lsvit-train {lsvit.__version__}: run folder {cfg.out}",
        f"model    {cfg.model}{kwargs}: {size}",
        f"init     {shape.init}",
        f"data     {data}",
        f"clips    {_clips(cfg, index)}",
        f"input    {pre.num_frames} frames ({cfg.frame_sampling} sampling of {pre.source_frames} stored; eval "
        f"uniform), {pre.img_size}x{pre.img_size} px, mean {_vec(pre.mean)} std {_vec(pre.std)}",
        f"batch    {shape.steps} steps an epoch, {shape.updates} updates; effective batch {effective} "
        f"({cfg.batch_size} clips x {world} rank{'s' if world > 1 else ''} x {cfg.accum_steps} accumulation)",
        f"schedule {cfg.epochs} epochs = {cfg.epochs * shape.updates} updates; AdamW lr {cfg.lr:g} cosine to "
        f"{cfg.min_lr:g}, {cfg.warmup_epochs:g} warmup epochs, weight decay {cfg.weight_decay:g}"
        + (
            f"; --max-steps {shape.max_steps} ends the run at update {shape.max_steps}"
            if shape.max_steps
            else ""
        ),
        f"device   {_device(ctx, shape.dtype)}",
    ]
    return lines


def init_source(cfg: TrainConfig, notes: list[str]) -> str:
    """Where a new run's weights come from: the ``--init`` report's summary, or random."""
    report = next((line.removeprefix("init: ") for line in notes if line.startswith("init: ")), None)
    return report or (f"--init {cfg.init}" if cfg.init else "random (trained from scratch)")


def announce(cfg: TrainConfig, ctx: Dist, shape: RunShape, step: int) -> EventLog:
    """Prints the header on stdout and opens the run's TensorBoard events, which start with it.

    Args:
        cfg: The resolved config.
        ctx: Device and ranks (call on rank 0 only).
        shape: The built model and step plan.
        step: The update the run starts from (0, or the resumed checkpoint's).

    Returns:
        The event log; its ``purge_step`` hides whatever a killed run logged after ``step``.
    """
    lines = header_lines(cfg, ctx, shape)
    print("\n".join(lines), flush=True)
    events = EventLog(Path(cfg.out), step + 1)
    if events.missing:
        print(f"warning: {events.missing} (metrics.jsonl and curves.png are still written)", file=sys.stderr)
    events.text("run/header", lines, step)
    events.text("run/config", cfg.to_dict(), step)
    return events


def _vec(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.3g}" for v in values) + ")"
