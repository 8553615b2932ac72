"""One training epoch: forward, loss, backward with accumulation and AMP, clipping, update, schedule, EMA.

AMP policy: see :func:`lsvit.trainer.distributed.amp_dtype`. The lr schedule is positioned by
``epoch * updates_per_epoch + updates so far`` (see :mod:`lsvit.trainer.optim`).
"""

import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.progress import progress_bar
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.distributed import Dist, all_sum, amp_dtype
from lsvit.trainer.mixing import build_loss
from lsvit.trainer.optim import apply_options, build_optimizer, build_schedule
from lsvit.trainer.preprocess import Preprocess


class NonFiniteLossError(LsvitError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is kept."""


class Stepper:
    """The model with everything that updates it: optimizer, schedule, scaler, EMA, loss and mixing."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        ctx: Dist,
        pre: Preprocess,
        num_classes: int,
        updates_per_epoch: int,
    ) -> None:
        self.cfg, self.ctx, self.pre, self.upe = cfg, ctx, pre, updates_per_epoch
        self.model = model.to(ctx.device)
        self.dtype = amp_dtype(cfg.amp, ctx.device)
        self.opt = build_optimizer(self.model, cfg)
        self.sched = None  # built by start(), from the options in force
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.dtype == torch.float16)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.ema else None
        self.criterion, self.mixup = build_loss(cfg, num_classes)
        self.step = 0  # optimizer updates over the whole run
        self._losses: tuple[torch.Tensor, ...] = ()
        self._loss_so_far = float("nan")
        self.ddp: torch.nn.Module = self.model
        self.max_steps: int | None = None  # --max-steps: end the epoch once the run reaches this update
        # Called after each update with (update, its mean loss as a device tensor, lr): TensorBoard.
        self.on_update: Callable[[int, torch.Tensor, float], None] | None = None

    @property
    def eval_model(self) -> torch.nn.Module:
        """What evaluation and checkpoints' predictions use: the EMA weights when kept."""
        return self.ema.module if self.ema is not None else self.model

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.ctx.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        return self.pre.normalize(frames, device=self.ctx.device)

    def load(self, ckpt: dict[str, Any], load_weights: Callable[[torch.nn.Module, dict], None]) -> None:
        """Restores weights, optimizer moments, scaler and EMA; the options in force replace saved lr/wd."""
        load_weights(self.model, ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        apply_options(self.opt, self.cfg)
        if self.scaler.is_enabled() and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            load_weights(self.ema.module, ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
        self.step = int(ckpt["step"])

    def start(self, epoch: int) -> None:
        """(Re)builds the schedule from the options in force at ``epoch``'s start; wraps the model for DDP."""
        self.sched = build_schedule(self.opt, self.cfg, self.upe)
        self.sched.step_update(epoch * self.upe)
        if self.ctx.enabled and self.ddp is self.model:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "updates_per_epoch": self.upe,
        }

    def lr(self) -> float:
        """The schedule's current lr: the rate of a group at full scale (layer decay scales the others)."""
        group = self.opt.param_groups[0]
        return group["lr"] / group.get("lr_scale", 1.0)

    def train_epoch(
        self, loader: Iterable, steps: int, epoch: int, fail: Callable[[str], None]
    ) -> tuple[float, float]:
        """Trains over one epoch's batches.

        Args:
            loader: Yields ``(frames uint8 (B, T, 3, H, W), labels, keys)``, ``steps`` of them.
            steps: Batches in the epoch.
            epoch: 0-based epoch number (positions the schedule).
            fail: Raises the run's :class:`NonFiniteLossError` with its message.

        Returns:
            ``(mean training loss over all ranks, clips per second over all ranks)``.
        """
        cfg, ctx = self.cfg, self.ctx
        self.ddp.train()
        self.opt.zero_grad(set_to_none=True)
        accum, full = cfg.accum_steps, steps - steps % cfg.accum_steps
        # Losses add up on the device: the host waits for the GPU once per update, not once per micro-step.
        loss_sum = torch.zeros((), device=ctx.device)
        update_loss = torch.zeros((), device=ctx.device)  # this update's micro-batches
        seen, update_n, t0, done, shown = 0, 0, time.perf_counter(), 0, float("nan")
        self._losses = (update_loss, loss_sum)  # read by _update: its one host sync checks and reports them
        bar = progress_bar(
            total=steps,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not ctx.is_main,
            leave=False,
        )
        for i, (frames, labels, _keys) in enumerate(loader):
            last_micro = (i + 1) % accum == 0 or i + 1 == steps
            group = accum if i < full else steps - full  # the epoch's last group may be shorter
            sync = nullcontext() if last_micro or not ctx.enabled else self.ddp.no_sync()
            labels = labels.to(ctx.device, non_blocking=True)
            x, target = self.prepare(frames), labels
            if self.mixup is not None:
                x, target = self.mixup(x, labels)
            with sync:
                with self.autocast():
                    logits = self.ddp(x)
                loss = self.criterion(logits.float(), target)
                self.scaler.scale(loss / group).backward()
            part = loss.detach() * labels.shape[0]
            update_loss += part
            loss_sum += part
            seen, update_n = seen + labels.shape[0], update_n + labels.shape[0]
            if last_micro:
                done += 1
                self._update(epoch * self.upe + done, fail)
                shown = self._loss_so_far / seen
                if self.on_update is not None:
                    self.on_update(self.step, update_loss / update_n, self.lr())
                update_loss.zero_()
                update_n = 0
            rate = seen * ctx.world_size / (time.perf_counter() - t0)
            bar.update()
            bar.set_postfix(step=self.step, loss=f"{shown:.3f}", lr=f"{self.lr():.2e}", clips_s=f"{rate:.1f}")
            if last_micro and self.max_steps is not None and self.step >= self.max_steps:
                break  # every rank has made the same updates, so all stop here together
        bar.close()
        total_loss, total_seen = all_sum([loss_sum.item(), float(seen)], ctx)
        return total_loss / max(total_seen, 1), total_seen / (time.perf_counter() - t0)

    def _update(self, position: int, fail: Callable[[str], None]) -> None:
        """Clips, checks the update's loss (and the gradient norm) and steps: the one host sync of an update."""
        checks = list(self._losses)  # (this update's loss sum, the epoch's running loss sum)
        if self.cfg.clip_grad is not None:
            self.scaler.unscale_(self.opt)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
            # Gradients are all-reduced, so every rank sees the same norm; fp16 overflow is the scaler's job.
            if not self.scaler.is_enabled():
                checks.append(norm)
        values = torch.stack([c.detach().float() for c in checks]).tolist()
        if not math.isfinite(values[0]):
            fail(f"loss is {values[0]}")
        if len(values) > 2 and not math.isfinite(values[2]):
            fail(f"gradient norm is {values[2]}")
        self._loss_so_far = values[1]
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.sched.step_update(position)
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
