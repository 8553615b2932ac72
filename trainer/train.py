"""The training loop: AdamW + warmup/cosine per update, accumulation, clipping, AMP, EMA, DDP, resume.

AMP policy: see :func:`trainer.distributed.amp_dtype`.

Exact resume: the data order is a function of (seed, epoch) (``make_loader(epoch=...)``) and every rank's
RNG states are saved after each epoch, so a resumed run repeats what an uninterrupted one would have done.
"""

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import read_index, resolve_split_dir
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.augment import aug_from_eda
from lsvit.trainer.config import TrainConfig, save_config
from lsvit.trainer.data import DataConfig, make_loader, normalize
from lsvit.trainer.distributed import (
    Dist,
    all_sum,
    amp_dtype,
    barrier,
    default_workers,
    gather_objects,
    setup,
    teardown,
)
from lsvit.trainer.evaluate import EvalResult, evaluate, plot_confusion, plot_curves, write_per_class


class NonFiniteLossError(LsvitError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


def _read_json(path: str | Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LsvitError(f"cannot read {what} {path} ({e}); pass an existing JSON file") from e


def train(cfg: TrainConfig, *, stop_after: int | None = None) -> dict[str, Any]:
    """Trains, evaluates each epoch on the test shards and writes the run folder ``cfg.out``.

    Args:
        cfg: The resolved config.
        stop_after: Stop after this many epochs of this invocation, as if interrupted (used by tests).

    Returns:
        ``{"best_top1", "best_epoch", "epochs", "out"}``.
    """
    ctx = setup(cfg.device)
    try:
        return _Run(cfg, ctx).fit(stop_after)
    finally:
        teardown()


class _Run:
    """One training run's state; a class only to share it between setup, epochs and checkpoints."""

    def __init__(self, cfg: TrainConfig, ctx: Dist) -> None:
        self.cfg, self.ctx, self.out = cfg, ctx, Path(cfg.out)
        self.console = Console(stderr=True)
        if cfg.resume is None and (self.out / "last.pt").exists():
            raise LsvitError(
                f"{self.out} already holds a run (last.pt); continue it with --resume auto or pass another --out"
            )
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
        np.random.seed(cfg.seed + ctx.rank)
        split_dir = resolve_split_dir(cfg.shards, cfg.split)  # a folder or a URL prefix
        index = read_index(split_dir, cfg.split)
        self.classes, self.source_frames = index.classes, index.frames
        self.data = DataConfig(
            shards=split_dir,
            split=cfg.split,
            img_size=cfg.img_size,
            num_frames=cfg.num_frames,
            batch_size=cfg.batch_size,
            workers=default_workers(ctx) if cfg.workers is None else cfg.workers,
            balance=cfg.balance,
            seed=cfg.seed,
            aug=aug_from_eda(_read_json(cfg.eda, "--eda") if cfg.eda else None, cfg.aug),
        )
        self.model = ck.build_model(cfg, len(self.classes)).to(ctx.device)
        pcfg = self.model.pretrained_cfg
        self.mean, self.std = tuple(pcfg["mean"]), tuple(pcfg["std"])
        self.dtype = amp_dtype(cfg.amp, ctx.device)
        self.opt = create_optimizer_v2(self.model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        _, steps = make_loader(self.data, "train", True, ctx.rank, ctx.world_size, epoch=0)
        self.updates_per_epoch = math.ceil(steps / cfg.accum_steps)
        self.sched = CosineLRScheduler(
            self.opt,
            t_initial=cfg.epochs * self.updates_per_epoch,
            lr_min=cfg.min_lr,
            warmup_t=round(cfg.warmup_epochs * self.updates_per_epoch),
            warmup_lr_init=cfg.min_lr,
            t_in_epochs=False,
        )
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.dtype == torch.float16)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.ema else None
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.epoch, self.step, self.best_top1, self.best_epoch, self.since_best = 0, 0, -1.0, 0, 0
        self.best_confusion = np.zeros((len(self.classes),) * 2, dtype=np.int64)
        torch.manual_seed(cfg.seed + ctx.rank)  # per-rank dropout / drop-path streams
        if cfg.resume_path is not None:
            self._resume(cfg.resume_path)
        self.ddp = (
            DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
            if ctx.enabled
            else self.model
        )
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.json")

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.ctx.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        return normalize(frames, self.mean, self.std, device=self.ctx.device)

    def _resume(self, path: Path) -> None:
        ckpt = ck.load_checkpoint(path)
        ck.check_resumable(ckpt, self.cfg, self.classes, path)
        ck.load_weights(self.model, ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            ck.load_weights(self.ema.module, ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.best_top1, self.best_epoch = ckpt["best_top1"], ckpt["best_epoch"]
        self.since_best = ckpt["since_best"]
        self.best_confusion = ckpt["best_confusion"].numpy()
        rng = ckpt["rng"]
        ck.set_rng_state(rng[self.ctx.rank] if len(rng) == self.ctx.world_size else rng[0])
        if self.ctx.is_main:
            self.console.print(f"resumed from {path} at epoch {self.epoch} (update {self.step})")

    def fit(self, stop_after: int | None) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        done = 0
        while self.epoch < cfg.epochs and (stop_after is None or done < stop_after):
            t0 = time.perf_counter()
            train_loss, clips_per_s = self._train_epoch()
            result = evaluate(
                self.ema.module if self.ema is not None else self.model,
                *make_loader(self.data, "test", False, ctx.rank, ctx.world_size, epoch=self.epoch),
                self.prepare,
                self.autocast,
                len(self.classes),
                ctx,
            )
            self.epoch += 1
            done += 1
            self._end_epoch(result, train_loss, clips_per_s, time.perf_counter() - t0)
            if cfg.patience is not None and self.since_best >= cfg.patience:
                if ctx.is_main:
                    self.console.print(f"early stop: top-1 has not improved for {cfg.patience} epochs")
                break
        if ctx.is_main:
            plot_confusion(self.best_confusion, self.classes, self.out / "confusion.png")
            write_per_class(self.best_confusion, self.classes, self.out / "per_class.csv", self.console)
            self.console.print(
                f"best test top-1 {self.best_top1:.4f} at epoch {self.best_epoch}; run in {self.out}"
            )
        return {
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "epochs": self.epoch,
            "out": str(self.out),
        }

    def _train_epoch(self) -> tuple[float, float]:
        cfg, ctx = self.cfg, self.ctx
        loader, steps = make_loader(self.data, "train", True, ctx.rank, ctx.world_size, epoch=self.epoch)
        self.ddp.train()
        self.opt.zero_grad(set_to_none=True)
        accum, full = cfg.accum_steps, steps - steps % cfg.accum_steps
        loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
        bar = tqdm(
            total=steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not ctx.is_main, leave=False
        )
        for i, (frames, labels, _keys) in enumerate(loader):
            last_micro = (i + 1) % accum == 0 or i + 1 == steps
            group = accum if i < full else steps - full  # the epoch's last group may be shorter
            sync = nullcontext() if last_micro or not ctx.enabled else self.ddp.no_sync()
            labels = labels.to(ctx.device, non_blocking=True)
            with sync:
                with self.autocast():
                    logits = self.ddp(self.prepare(frames))
                loss = self.criterion(logits.float(), labels)
                self.scaler.scale(loss / group).backward()
            value = loss.item()
            if not math.isfinite(value):
                self._fail(f"loss is {value}")
            loss_sum, seen = loss_sum + value * labels.numel(), seen + labels.numel()
            if last_micro:
                self._update()
            rate = seen * ctx.world_size / (time.perf_counter() - t0)
            bar.update()
            bar.set_postfix(
                step=self.step, loss=f"{loss_sum / seen:.3f}", lr=f"{self._lr():.2e}", clips_s=f"{rate:.1f}"
            )
        bar.close()
        total_loss, total_seen = all_sum([loss_sum, float(seen)], ctx)
        return total_loss / max(total_seen, 1), total_seen / (time.perf_counter() - t0)

    def _update(self) -> None:
        if self.cfg.clip_grad is not None:
            self.scaler.unscale_(self.opt)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
            # Gradients are all-reduced, so every rank sees the same norm; fp16 overflow is the scaler's job.
            if not self.scaler.is_enabled() and not torch.isfinite(norm):
                self._fail(f"gradient norm is {norm.item()}")
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.sched.step_update(self.step)
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)

    def _lr(self) -> float:
        return self.opt.param_groups[0]["lr"]

    def _fail(self, what: str) -> None:
        last = self.out / "last.pt"
        kept = f"last good checkpoint kept: {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"{what} at epoch {self.epoch + 1}, update {self.step}; {kept}; lower --lr, raise --warmup-epochs "
            f"or use --amp off, then --resume auto"
        )

    def _end_epoch(self, result: EvalResult, train_loss: float, clips_per_s: float, seconds: float) -> None:
        improved = result.top1 > self.best_top1
        if improved:
            self.best_top1, self.best_epoch, self.since_best = result.top1, self.epoch, 0
            self.best_confusion = result.confusion
        else:
            self.since_best += 1
        rng = gather_objects(ck.rng_state(), self.ctx)  # every rank's streams, for an exact resume
        if not self.ctx.is_main:
            barrier(self.ctx)
            return
        row = dict(epoch=self.epoch, step=self.step, lr=self._lr(), train_loss=train_loss, **result.metrics())
        row.update(
            train_clips_per_s=round(clips_per_s, 2), epoch_s=round(seconds, 1), best_top1=self.best_top1
        )
        rows = self._append_metrics(row)
        plot_curves(rows, self.out / "curves.png")
        state = self._state(rng, row)
        ck.save_checkpoint(state, self.out / "last.pt")
        if improved:
            ck.save_checkpoint(state, self.out / "best.pt")
        self.console.print(
            f"epoch {self.epoch}/{self.cfg.epochs}  train loss {train_loss:.3f}  test loss {result.loss:.3f}  "
            f"top-1 {result.top1:.3f}  top-5 {result.top5:.3f}  mean-class {result.mean_class_acc:.3f}  "
            f"{clips_per_s:.1f} clips/s" + ("  (best)" if improved else "")
        )
        barrier(self.ctx)

    def _append_metrics(self, row: dict) -> list[dict]:
        """Appends the epoch's line; lines from epochs after a resumed checkpoint are dropped first."""
        path = self.out / "metrics.jsonl"
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
        rows = [r for r in rows if r["epoch"] < row["epoch"]] + [row]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return rows

    def _state(self, rng: list[dict], row: dict) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "since_best": self.since_best,
            "best_confusion": torch.from_numpy(self.best_confusion),
            "rng": rng,
            "config": self.cfg.to_dict(),
            "classes": self.classes,
            "source_frames": self.source_frames,  # predict samples videos like extract did
            "metrics": row,
        }
