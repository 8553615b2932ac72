"""What a run says about its protocol at the start, and its end: test ``best.pt`` and ``last.pt``.

At the start: the validation hold-out's size, and warnings for options that would do less than asked
(frame jitter or temporal views with no spare stored frames). At the end, ``best.pt`` and ``last.pt`` are tested
with ``--test-views`` and both reported.

``best.pt`` was selected on validation (or is the last epoch without a hold-out); its test metrics are
reported, never used. With ``1x1`` views the per-epoch test results are reused; other views evaluate both
checkpoints again (``best.pt`` rebuilt from its file, as any later tool would). The selected checkpoint's
report goes to the run folder (``results.json``, ``confusion.png``, ``per_class.csv``); ``results.json``
also holds both checkpoints' test metrics.
"""

import functools
import math
import time
from typing import Any

from rich.console import Console

from lsvit.pipeline.shardindex import ShardIndex
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.distributed import barrier
from lsvit.trainer.evaluate import EvalResult
from lsvit.trainer.holdout import group_keys, holdout_keys
from lsvit.trainer.report import worst_classes, write_eval_report
from lsvit.trainer.shardset import subset_keys


def protocol_notes(cfg: TrainConfig, index: ShardIndex) -> list[str]:
    """Lines to print before training: the hold-out, and options that would silently do less than asked."""
    notes, stored = [], index.frames
    if "val" in index.subsets:
        n = sum(index.counts.get("val", {}).values())
        notes.append(
            f"validation: the dataset's own val subset ({n} clips); --val-fraction does not apply; best.pt and "
            "--patience follow it, test never selects"
        )
    elif cfg.val_fraction > 0:
        key_class, _ = subset_keys(index, "train", cfg.balance if cfg.balance != "none" else "hybrid")
        val = holdout_keys(key_class, cfg.val_fraction)
        groups = sum(len(g) for g in group_keys({k: key_class[k] for k in val}).values())
        classes = len({key_class[k] for k in val})
        notes.append(
            f"validation: {len(val)} of {len(key_class)} training clips held out ({groups} source videos, "
            f"{classes}/{len(index.classes)} classes); best.pt and --patience follow it, test never selects"
        )
    else:
        notes.append("validation: none (--val-fraction 0): best.pt will be the last epoch")
    if cfg.num_frames > stored:
        notes.append(f"warning: --num-frames {cfg.num_frames} > the {stored} stored per clip: frames repeat")
    elif cfg.num_frames == stored and cfg.frame_sampling != "uniform":
        notes.append(
            f"warning: --frame-sampling {cfg.frame_sampling} picks all {stored} stored frames, as uniform does: "
            f"extract --frames {2 * stored} for temporal jitter"
        )
    if int(cfg.test_views.split("x")[0]) > 1 and stored <= cfg.num_frames:
        notes.append(
            f"warning: --test-views {cfg.test_views}: with {stored} stored frames and {cfg.num_frames} used, the "
            f"temporal views are identical; extract --frames {2 * cfg.num_frames} for distinct ones"
        )
    return notes


def epoch_line(run: Any, row: dict[str, Any], best: bool) -> str:
    """The result line of an epoch (stdout), with the time left at this invocation's pace.

    Args:
        run: The ``trainer.train._Run`` (its epoch, the epoch it started at and its start time).
        row: The epoch's metrics.jsonl record.
        best: Whether validation made this epoch ``best.pt``.
    """
    left, done = run.cfg.epochs - run.epoch, run.epoch - run.first_epoch
    if run.max_steps is not None:  # --max-steps may end the run sooner
        left = min(left, math.ceil((run.max_steps - run.stepper.step) / run.stepper.upe))
    eta = ""
    if left > 0 and done > 0:
        secs = int((time.perf_counter() - run.started) / done * left)
        eta = f", eta {secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    val = f"val top-1 {row['val_top1']:.3f}  " if row.get("val_top1") is not None else ""
    return (
        f"epoch {run.epoch}/{run.cfg.epochs}  train loss {row['train_loss']:.3f}  {val}test top-1 "
        f"{row['test_top1']:.3f}  top-5 {row['test_top5']:.3f}  mean-class {row['test_mean_class_acc']:.3f}  "
        f"{row['train_clips_per_s']:.1f} clips/s  {row['epoch_s']:.0f} s{eta}" + ("  (best)" if best else "")
    )


def _result(metrics: dict[str, Any], confusion) -> EvalResult:
    """An evaluation rebuilt from a metrics.jsonl row's ``test_*`` values and its confusion matrix."""
    return EvalResult(
        loss=metrics["test_loss"],
        top1=metrics["test_top1"],
        top5=metrics["test_top5"],
        mean_class_acc=metrics["test_mean_class_acc"],
        n=metrics["test_clips"],
        confusion=confusion,
    )


def _line(r: EvalResult) -> str:
    return f"test top-1 {r.top1:.4f}  top-5 {r.top5:.4f}  mean-class {r.mean_class_acc:.4f}  ({r.n} clips)"


def finish(run: Any) -> dict[str, Any]:
    """Evaluates and reports the finished run ``run`` (a ``trainer.train._Run``).

    Returns:
        The summary that ``train`` returns.
    """
    ctx, views = run.ctx, run.cfg.test_views
    barrier(ctx)  # rank 0 wrote best.pt
    last_epoch, selected = run.epoch, "best" if run.validates else "last"
    if views == "1x1" and run.last_test is not None:
        last = run.last_test
    else:
        last = run.evaluate("test", views=views)
    if run.best_epoch == last_epoch:
        best = last
    elif views == "1x1" and run.best_test:
        best = _result(run.best_test, run.best_confusion)
    else:
        model = ck.model_from_checkpoint(ck.load_checkpoint(run.out / "best.pt")).to(ctx.device)
        best = run.evaluate("test", model=model, views=views)
    chosen = best if selected == "best" else last
    summary = {
        "selected": selected,
        "test_views": views,
        "best_epoch": run.best_epoch,
        "best_val_top1": run.best_val,
        "best_test": best.metrics(prefix=""),
        "last_test": last.metrics(prefix=""),
        "epochs": last_epoch,
        "stopped_by": run.stopped_by,
        "out": str(run.out),
    }
    if not ctx.is_main:
        return summary
    info = {
        "checkpoint": f"{selected}.pt",
        "epoch": run.best_epoch if selected == "best" else last_epoch,
        "subset": "test",
        "views": views,
        "selected_by": "val_top1" if selected == "best" else "last epoch (--val-fraction 0: no hold-out)",
        "best": {"epoch": run.best_epoch, "val_top1": run.best_val, "test": _json(best.metrics(prefix=""))},
        "last": {"epoch": last_epoch, "test": _json(last.metrics(prefix=""))},
        "preprocess": run.pre.to_dict(),
        "stopped_by": run.stopped_by,  # None: --epochs ran out
        "synthetic": run.synthetic,
    }
    table = Console(soft_wrap=True) if run.verbose else None  # stdout, with the other results
    with run.folder.writing(run.out):
        write_eval_report(run.out, chosen, run.classes, info, table)
    say = functools.partial(print, flush=True)
    if selected == "best":
        say(
            f"best.pt: epoch {run.best_epoch}, selected on validation top-1 {run.best_val:.4f}; {_line(best)} [{views}]"
        )
    else:
        say(
            f"no validation hold-out (--val-fraction 0): best.pt is the last epoch ({last_epoch}); test never selects"
        )
    say(f"last.pt: epoch {last_epoch}; {_line(last)} [{views}]")
    say(
        f"worst classes ({selected}.pt): {worst_classes(chosen.confusion, run.classes)}; all in "
        f"{run.out / 'per_class.csv'} and per_class.png" + ("" if run.verbose else " (--verbose prints them)")
    )
    say(
        f"run folder {run.out}: curves.png, confusion.png, metrics.jsonl; tensorboard --logdir {run.out.parent}"
    )
    return summary


def _json(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
