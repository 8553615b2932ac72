"""The training run: data, model, epochs, validation-based selection, checkpoints, resume, final report.

Selection: every epoch evaluates the validation hold-out (``--val-fraction`` of the training clips, whole
source videos, see ``trainer.holdout``) and the test split. ``best.pt`` is the epoch with the best
validation top-1, and ``--patience`` counts epochs without a validation improvement; test metrics are
logged but never select. With ``--val-fraction 0`` there is nothing to select on: ``best.pt`` is the last
epoch. At the end, ``best.pt`` and ``last.pt`` are tested with ``--test-views`` and the selected one's
report is written (``results.json``, ``confusion.png``, ``per_class.csv``).

Output: the run header (:mod:`lsvit.trainer.header`), one line per epoch and the final summary go to
stdout; progress (:mod:`lsvit.pipeline.progress`), notes and warnings to stderr. The run folder also gets
TensorBoard events (:mod:`lsvit.trainer.tblog`) next to ``metrics.jsonl``, and ``curves.png``.

Exact resume: the data order is a function of (seed, epoch) (``make_loader(epoch=...)``) and every rank's
RNG states are saved after each epoch, so a resumed run with unchanged options repeats what an uninterrupted
one would have done (``trainer.resume`` says what may change).
"""

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.shardindex import read_index, resolve_split_dir
from lsvit.trainer import checkpoint as ck
from lsvit.trainer import synthetic
from lsvit.trainer.augment import aug_from_eda
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.data import DataConfig, make_loader
from lsvit.trainer.distributed import Dist, barrier, default_workers, gather_objects, setup, teardown
from lsvit.trainer.evaluate import EvalResult, evaluate
from lsvit.trainer.header import RunShape, announce, init_source
from lsvit.trainer.jpegclips import resolve_decode
from lsvit.trainer.optim import schedule_changes, updates_per_epoch
from lsvit.trainer.plots import plot_curves
from lsvit.trainer.preflight import check_shards, shard_errors
from lsvit.trainer.preprocess import Preprocess
from lsvit.trainer.resolve import config_json
from lsvit.trainer.resume import ignored_on_resume, restore_state, resume_changes
from lsvit.trainer.rngstate import rng_state
from lsvit.trainer.runfolder import RunFolder
from lsvit.trainer.stepper import NonFiniteLossError, Stepper
from lsvit.trainer.summary import epoch_line, finish, protocol_notes

__all__ = ["NonFiniteLossError", "train"]


def _read_json(path: str | Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LsvitError(f"cannot read {what} {path} ({e}); pass an existing JSON file") from e


def train(
    cfg: TrainConfig, *, stop_after: int | None = None, max_steps: int | None = None, verbose: bool = False
) -> dict[str, Any]:
    """Trains, validates and tests each epoch, and writes the run folder ``cfg.out``.

    Args:
        cfg: The resolved config.
        stop_after: Stop after this many epochs of this invocation, as if interrupted (used by tests).
        max_steps: End the run after this many optimizer updates in all (``--max-steps``, a smoke test):
            the epoch in progress is cut there, evaluated and checkpointed, and the run reported as
            finished. The lr schedule still spans ``cfg.epochs``.
        verbose: Also print the per-class accuracy table of the final report.

    Returns:
        ``{"best_epoch", "best_val_top1", "selected", "best_test", "last_test", "epochs", "out"}``: the
        test metrics of ``best.pt`` and ``last.pt`` (with ``--test-views``) when the run finished.
    """
    ctx = setup(cfg.device)
    try:
        with RunFolder(cfg.out, ctx.is_main).hold() as folder:
            run = _Run(cfg, ctx, folder, max_steps, verbose)
            try:
                return run.fit(stop_after)
            finally:
                if run.events is not None:
                    run.events.close()
    finally:
        teardown()


class _Run:
    """One training run's state; a class only to share it between setup, epochs and checkpoints."""

    def __init__(
        self,
        cfg: TrainConfig,
        ctx: Dist,
        folder: RunFolder,
        max_steps: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.cfg, self.ctx, self.out, self.folder = cfg, ctx, Path(cfg.out), folder
        self.max_steps, self.verbose, self.events = max_steps, verbose, None
        self.console = Console(stderr=True, soft_wrap=True, highlight=False)  # notes and warnings
        init_lines: list[str] = []

        def note(line: str) -> None:
            init_lines.append(line)
            self.console.print(line, markup=False)

        say = note if ctx.is_main else None
        if cfg.resume is None and (self.out / "last.pt").exists():
            raise LsvitError(
                f"{self.out} already holds a run (last.pt); continue it with --resume auto or pass another --out"
            )
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
        np.random.seed((cfg.seed + ctx.rank) % 2**32)
        split_dir = resolve_split_dir(cfg.shards, cfg.split)  # a folder or a URL prefix
        index = read_index(split_dir, cfg.split)
        self.classes, self.source_frames = index.classes, index.frames
        self.validates = cfg.val_fraction > 0 or "val" in index.subsets  # a hold-out, or the dataset's val
        self.synthetic = synthetic.info(index.synthetic)  # recorded in every checkpoint
        if say is not None:
            for line in protocol_notes(cfg, index):
                say(line)
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
            val_fraction=cfg.val_fraction,
            frame_sampling=cfg.frame_sampling,
            frame_stride=cfg.frame_stride,
            decode_device=str(ctx.device) if resolve_decode(cfg.decode, ctx.device) == "cuda" else None,
        )
        if say is not None:
            where = (
                "workers read bytes, nvJPEG + GPU augmentation"
                if self.data.decode_device
                else "in the workers"
            )
            say(f"JPEG decoding and augmentation: {where} (--decode {cfg.decode})")
            check_shards(index, self.data, cfg.verify_shards, say)
        path = cfg.resume_path
        ckpt = ck.load_checkpoint(path, resume=True) if path is not None else None
        changes = resume_changes(ckpt, cfg, self.classes, path) if ckpt is not None else []
        model = ck.build_model(
            cfg,
            len(self.classes),
            pretrained=ckpt is None,
            log=say,
            classes=self.classes,
            model_config=ckpt.get("model_config") if ckpt is not None else None,
        )
        self.model_config = ck.model_config(model)
        cfg.mean, cfg.std = list(model.pretrained_cfg["mean"]), list(model.pretrained_cfg["std"])
        self.pre = Preprocess(
            tuple(cfg.mean), tuple(cfg.std), cfg.img_size, cfg.num_frames, self.source_frames
        )
        _, steps = make_loader(self.data, "train", True, ctx.rank, ctx.world_size, epoch=0)
        self.stepper = Stepper(
            model, cfg, ctx, self.pre, len(self.classes), updates_per_epoch(steps, cfg.accum_steps)
        )
        self.epoch, self.best_epoch, self.best_val, self.since_best = 0, 0, None, 0
        self.best_test: dict[str, Any] = {}
        self.last_test: EvalResult | None = None  # this invocation's latest test result
        self.best_confusion = np.zeros((len(self.classes),) * 2, dtype=np.int64)
        torch.manual_seed(cfg.seed + ctx.rank)  # per-rank dropout / drop-path streams
        if ckpt is not None:
            self._resume(ckpt, path, changes, say)
        self.stepper.start(self.epoch)
        self.stepper.max_steps = max_steps
        if max_steps is not None and self.stepper.step >= max_steps:
            raise LsvitError(
                f"--max-steps {max_steps}: the run is already at update {self.stepper.step}; pass a larger value"
            )
        self.started, self.first_epoch = time.perf_counter(), self.epoch
        if ctx.is_main:
            self.folder.read_metrics()  # a damaged file stops a resumed run now, not after an epoch
            self.folder.write_text("config.json", config_json(cfg))  # in force, after resolution and resume
            resumed = (
                f"resumed from {path} (epoch {self.epoch}, update {self.stepper.step})" if ckpt else None
            )
            shape = RunShape(
                model, self.pre, index, steps, self.stepper.upe, self.stepper.dtype,
                resumed or init_source(cfg, init_lines), max_steps,
            )  # fmt: skip
            self.events = announce(cfg, ctx, shape, self.stepper.step)  # the header; TensorBoard from here
            self.stepper.on_update = self.events.update

    def _resume(self, ckpt: dict[str, Any], path: Path, changes: list[str], say) -> None:
        restore_state(self.stepper, ckpt, path, self.ctx.rank, self.ctx.world_size)
        self.epoch = ckpt["epoch"]
        self.best_epoch, self.since_best = ckpt["best_epoch"], ckpt["since_best"]
        self.best_val, self.best_test = ckpt.get("best_val_top1"), dict(ckpt.get("best_test") or {})
        self.best_confusion = ckpt["best_confusion"].numpy()
        if say is None:
            return
        say(f"resumed from {path} at epoch {self.epoch} (update {self.stepper.step})")
        if changes:
            say(f"resume: options changed: {', '.join(changes)}")
        if ignored := ignored_on_resume(ckpt, self.cfg):
            say(f"resume: {', '.join(ignored)} ignored: the weights come from {path}")
        rebuilt = schedule_changes(ckpt["config"], self.cfg, ckpt.get("updates_per_epoch"), self.stepper.upe)
        if rebuilt:
            say(f"lr schedule rebuilt at update {self.stepper.step}: {', '.join(rebuilt)}")

    def loader(self, subset: str, views: str = "1x1"):
        data = dataclasses.replace(self.data, test_views=views) if views != "1x1" else self.data
        return make_loader(
            data, subset, subset == "train", self.ctx.rank, self.ctx.world_size, epoch=self.epoch
        )

    def evaluate(self, subset: str, model: torch.nn.Module | None = None, views: str = "1x1") -> EvalResult:
        st = self.stepper
        model = st.eval_model if model is None else model
        return evaluate(
            model, *self.loader(subset, views), st.prepare, st.autocast, len(self.classes), self.ctx
        )

    def fit(self, stop_after: int | None) -> dict[str, Any]:
        cfg, done, stopped = self.cfg, 0, False
        self.stopped_by = None  # why the run ended before --epochs: early stop or --max-steps
        while self.epoch < cfg.epochs and (stop_after is None or done < stop_after):
            t0 = time.perf_counter()
            with shard_errors(f"training stopped in epoch {self.epoch + 1}, {self.folder.kept()}"):
                train_loss, clips_per_s = self.stepper.train_epoch(
                    *self.loader("train"), self.epoch, self._fail
                )
                val = self.evaluate("val") if self.validates else None
                test = self.last_test = self.evaluate("test")
            self.epoch += 1
            done += 1
            self._end_epoch(val, test, train_loss, clips_per_s, time.perf_counter() - t0)
            if cfg.patience is not None and self.since_best >= cfg.patience:
                stopped = True
                self.stopped_by = f"early stop: validation top-1 has not improved for {cfg.patience} epochs"
            elif (
                self.max_steps is not None and self.stepper.step >= self.max_steps and self.epoch < cfg.epochs
            ):
                stopped = True
                self.stopped_by = f"--max-steps {self.max_steps}: stopped at update {self.stepper.step}"
            if stopped:
                if self.ctx.is_main:
                    print(self.stopped_by, flush=True)
                break
        if self.epoch < cfg.epochs and not stopped:  # interrupted: the report waits for the end of the run
            return {"epochs": self.epoch, "out": str(self.out), "best_epoch": self.best_epoch}
        return finish(self)

    def _fail(self, what: str) -> None:
        raise NonFiniteLossError(
            f"{what} at epoch {self.epoch + 1}, update {self.stepper.step}; {self.folder.kept()}; lower --lr, raise "
            "--warmup-epochs or use --amp off, then --resume auto"
        )

    def _end_epoch(
        self, val: EvalResult | None, test: EvalResult, train_loss: float, clips_per_s: float, seconds: float
    ) -> None:
        improved = val is None or self.best_val is None or val.top1 > self.best_val
        if improved:  # without a hold-out, the last epoch is the one kept
            self.best_epoch, self.since_best = self.epoch, 0
            self.best_val = None if val is None else val.top1
            self.best_test, self.best_confusion = test.metrics(), test.confusion
        else:
            self.since_best += 1
        rng = gather_objects(rng_state(), self.ctx)  # every rank's streams, for an exact resume
        if not self.ctx.is_main:
            barrier(self.ctx)
            return
        row = dict(epoch=self.epoch, step=self.stepper.step, lr=self.stepper.lr(), train_loss=train_loss)
        row.update((val.metrics("val_") if val is not None else {}) | test.metrics("test_"))
        row.update(train_clips_per_s=round(clips_per_s, 2), epoch_s=round(seconds, 1))
        row.update(best_epoch=self.best_epoch, best_val_top1=self.best_val)
        rows = self.folder.append_metrics(row)
        with self.folder.writing(self.out / "curves.png"):
            plot_curves(rows, self.out / "curves.png", len(self.classes))
        self.events.epoch(self.stepper.step, row)
        state, hint = self._state(rng, row), self.folder.hint()
        if improved:  # best.pt first: a last.pt that says "best" never points at a best.pt not written
            ck.save_checkpoint(state, self.out / "best.pt", hint)
        ck.save_checkpoint(state, self.out / "last.pt", hint)
        print(epoch_line(self, row, improved and val is not None), flush=True)
        barrier(self.ctx)

    def _state(self, rng: list[dict], row: dict) -> dict[str, Any]:
        return {
            **self.stepper.state(),
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_val_top1": self.best_val,
            "best_test": self.best_test,
            "since_best": self.since_best,
            "best_confusion": torch.from_numpy(self.best_confusion),
            "rng": rng,
            "config": self.cfg.to_dict(),
            "classes": self.classes,
            "source_frames": self.source_frames,
            "preprocess": self.pre.to_dict(),  # read back only through Preprocess.from_checkpoint
            "model_config": self.model_config,  # an hf: model's config, to rebuild it without its folder
            "synthetic": self.synthetic,  # how the training clips were generated; None: real data
            "metrics": row,
        }
