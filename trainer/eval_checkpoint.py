"""``lsvit-eval``: evaluate a checkpoint on the validation hold-out or the test split, with test views.

The model, its preprocessing (``Preprocess.from_checkpoint``) and, for ``val``, the hold-out rule all come
from the checkpoint, so the numbers are those training would report. The report is the one training writes
(``results.json``, ``confusion.png``, ``per_class.csv``).
"""

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from lsvit.pipeline.atomic import write_failed
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import read_index, resolve_split_dir
from lsvit.trainer.checkpoint import load_checkpoint, model_from_checkpoint
from lsvit.trainer.data import DataConfig, make_loader
from lsvit.trainer.distributed import amp_dtype, default_workers, setup, teardown
from lsvit.trainer.evaluate import evaluate
from lsvit.trainer.preprocess import Preprocess
from lsvit.trainer.report import worst_classes, write_eval_report

SUBSETS = ("val", "test", "train", "unused")


def evaluate_checkpoint(
    checkpoint: Path,
    shards: str | Path,
    subset: str = "test",
    views: str = "1x1",
    out: Path | None = None,
    *,
    split: int | None = None,
    batch_size: int = 8,
    workers: int | None = None,
    device: str = "auto",
    amp: str = "auto",
    verbose: bool = False,
) -> dict[str, Any]:
    """Evaluates ``checkpoint`` on a subset of the shards and writes the report.

    Args:
        checkpoint: A ``best.pt``/``last.pt`` written by ``lsvit-train``.
        shards: The shard folder (or URL prefix) of the split it was trained on.
        subset: ``val`` (the run's own hold-out of the train clips), ``test``, ``train`` or ``unused``.
        views: ``TxS`` temporal views x spatial crops.
        out: Report folder; default ``<checkpoint folder>/eval-<checkpoint>-<subset>-<views>``.
        split: The split, when the shard folder holds several.
        batch_size: Clips per batch (per rank under torchrun).
        workers: Loader processes per rank (default: the cores).
        device: ``auto``, ``cuda``, ``mps`` or ``cpu``.
        amp: ``auto``, ``bf16``, ``fp16`` or ``off``.
        verbose: Also print the per-class table (per_class.csv always has it).

    Returns:
        The results.json content.

    Raises:
        LsvitError: A bad subset, shards of other classes, or a ``val`` subset the run did not hold out.
    """
    if subset not in SUBSETS:
        raise LsvitError(f"--subset {subset!r} is not allowed; choose one of: {', '.join(SUBSETS)}")
    ckpt = load_checkpoint(checkpoint)
    pre, cfg = Preprocess.from_checkpoint(ckpt), ckpt["config"]
    val_fraction = float(cfg.get("val_fraction") or 0.0)
    ctx = setup(device)
    console = Console(stderr=True)
    try:
        split_dir = resolve_split_dir(shards, split)
        index = read_index(split_dir, split)
        if subset == "val" and val_fraction == 0 and "val" not in index.subsets:
            raise LsvitError(
                f"{checkpoint} was trained without a validation hold-out (--val-fraction 0); use --subset test"
            )
        if index.classes != list(ckpt["classes"]):
            raise LsvitError(
                f"{split_dir} holds other classes than {checkpoint} was trained on; pass its shards"
            )
        if index.frames != pre.source_frames and ctx.is_main:
            console.print(
                f"warning: the shards store {index.frames} frames a clip, the model was trained on "
                f"{pre.source_frames}: its {pre.num_frames} frames are picked from other time points"
            )
        data = DataConfig(
            shards=split_dir,
            split=split,
            img_size=pre.img_size,
            num_frames=pre.num_frames,
            batch_size=batch_size,
            workers=default_workers(ctx) if workers is None else workers,
            balance="none",
            val_fraction=val_fraction,
            test_views=views,
        )
        model = model_from_checkpoint(ckpt).to(ctx.device)
        dtype = amp_dtype(amp, ctx.device)

        def autocast():
            return torch.autocast(ctx.device.type, dtype=dtype) if dtype is not None else nullcontext()

        loader, steps = make_loader(data, subset, False, ctx.rank, ctx.world_size)
        prepare = lambda x: pre.normalize(x, device=ctx.device)  # noqa: E731
        result = evaluate(model, loader, steps, prepare, autocast, len(index.classes), ctx)
        checkpoint = Path(checkpoint)
        tag = f"{data.test_views[0]}x{data.test_views[1]}"
        out = Path(out) if out is not None else checkpoint.parent / f"eval-{checkpoint.stem}-{subset}-{tag}"
        info = {
            "checkpoint": str(checkpoint),
            "epoch": ckpt.get("epoch"),
            "subset": subset,
            "views": tag,
            "shards": str(split_dir),
            "preprocess": pre.to_dict(),
        }
        if not ctx.is_main:
            return {**info, "metrics": result.metrics(prefix="")}
        try:
            data_out = write_eval_report(
                out, result, index.classes, info, Console(soft_wrap=True) if verbose else None
            )
        except OSError as e:
            raise write_failed(Path(e.filename or out), e, "rerun lsvit-eval") from e
        print(
            f"{subset} ({result.n} clips, {tag} views): top-1 {result.top1:.4f}  top-5 {result.top5:.4f}  "
            f"mean-class {result.mean_class_acc:.4f}  loss {result.loss:.4f}; report in {out}",
            flush=True,
        )
        print(f"worst classes: {worst_classes(result.confusion, index.classes)}", flush=True)
        return data_out
    finally:
        teardown()
