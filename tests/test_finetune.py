"""The fine-tuning protocol in runs: selection on validation, resume overrides, mixup, layer decay, lsvit-eval."""

import json
import shutil
import sys

import numpy as np
import pytest
import timm
import torch
from timm.scheduler import CosineLRScheduler

import lsvit.trainer.train as tt
from lsvit.trainer.cli import eval_main, train_main
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.evaluate import EvalResult
from lsvit.trainer.mixing import ClipMixup
from lsvit.trainer.optim import build_optimizer
from lsvit.trainer.stepper import Stepper

pytest_plugins = ["fixtures_train"]

SHAPE = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)
TINY = dict(
    model="lsvit_tiny_patch16_224", model_kwargs=SHAPE, img_size=32, num_frames=4, batch_size=4, epochs=2,
    lr=3e-3, warmup_epochs=0.5, workers=0, device="cpu",
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _scripted(monkeypatch, scores: dict[str, list[float]]) -> None:
    """Replaces evaluation by fixed top-1 values per subset and epoch (the model still trains)."""
    calls = {"val": 0, "test": 0}

    def fake(run, subset, model=None, views="1x1"):
        top1 = scores[subset][calls[subset]]
        calls[subset] += 1
        cm = np.zeros((5, 5), dtype=np.int64)
        cm[0, 0] = 1
        return EvalResult(loss=1 - top1, top1=top1, top5=1.0, mean_class_acc=top1, n=20, confusion=cm)

    monkeypatch.setattr(tt._Run, "evaluate", fake)


@pytest.mark.slow
def test_best_follows_validation_and_patience_ignores_test(tiny_shards, tmp_path, monkeypatch):
    _scripted(monkeypatch, {"val": [0.5, 0.9, 0.7], "test": [0.9, 0.2, 0.95]})
    out = tmp_path / "run"
    summary = tt.train(TrainConfig(**{**TINY, "epochs": 4, "patience": 1, "shards": tiny_shards, "out": out}))
    assert [r["epoch"] for r in _rows(out)] == [1, 2, 3]  # stopped: validation did not improve at epoch 3
    assert summary["best_epoch"] == 2 and summary["best_val_top1"] == 0.9
    assert summary["best_test"]["top1"] == 0.2 and summary["last_test"]["top1"] == 0.95  # reported, not used
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["metrics"]["test_top1"] == 0.2
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"] == "best.pt" and results["epoch"] == 2 and results["metrics"]["top1"] == 0.2


@pytest.mark.slow
def test_no_hold_out_keeps_the_last_epoch_with_mixup_and_layer_decay(tiny_shards, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = dict(val_fraction=0.0, mixup=0.8, cutmix=1.0, layer_decay=0.75, frame_sampling="stride")
    summary = tt.train(TrainConfig(**{**TINY, **cfg, "shards": tiny_shards, "out": out}))
    out_text = capsys.readouterr().out  # the summary is a result: stdout
    assert "no validation hold-out (--val-fraction 0): best.pt is the last epoch (2)" in out_text
    rows = _rows(out)
    assert all("val_top1" not in r and np.isfinite(r["train_loss"]) for r in rows)
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 2 and summary["selected"] == "last"
    assert json.loads((out / "results.json").read_text())["selected_by"].startswith("last epoch")
    with pytest.raises(Exception, match="patience needs a validation hold-out"):
        TrainConfig(**{**TINY, "val_fraction": 0, "patience": 3})


def _argv(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["lsvit", *args])


@pytest.mark.slow
def test_resume_with_a_new_lr_and_more_epochs_needs_no_shape_options(
    tiny_shards, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    tt.train(TrainConfig(**{**TINY, "shards": tiny_shards, "out": out}), stop_after=1)
    upe = torch.load(out / "last.pt", weights_only=True)["updates_per_epoch"]
    used: list[float] = []
    real = Stepper._update

    def spy(self, position, fail):
        used.append(self.opt.param_groups[0]["lr"])  # the lr this update applies
        real(self, position, fail)

    monkeypatch.setattr(Stepper, "_update", spy)
    capsys.readouterr()
    _argv(
        monkeypatch,
        "--shards",
        str(tiny_shards),
        "--out",
        str(out),
        "--resume",
        "auto",
        "--lr",
        "1e-3",
        "--epochs",
        "3",
    )
    with pytest.raises(SystemExit) as e:
        train_main()
    err = capsys.readouterr().err
    assert e.value.code in (0, None), err
    assert "resume: options changed: epochs 2 -> 3, lr 0.003 -> 0.001" in err
    assert f"lr schedule rebuilt at update {upe}: epochs 2 -> 3, lr 0.003 -> 0.001" in err
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    new = CosineLRScheduler(opt, t_initial=3 * upe, lr_min=1e-6, warmup_t=round(0.5 * upe), warmup_lr_init=1e-6,
                            t_in_epochs=False)  # fmt: skip
    new.step_update(upe)
    assert used[0] == pytest.approx(
        opt.param_groups[0]["lr"]
    )  # the first update after resuming: new schedule
    assert used[0] < 1e-3 * 0.95 and used[0] != pytest.approx(3e-3 * 0.5 * (1 + np.cos(np.pi / 2)))
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    new.step_update(2 * upe)
    assert rows[1]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    saved = json.loads((out / "config.json").read_text())
    assert (saved["lr"], saved["epochs"], saved["img_size"], saved["model_kwargs"]) == (1e-3, 3, 32, SHAPE)


@pytest.mark.slow
def test_resume_refuses_a_shape_change_and_eval_reports_like_training(
    tiny_shards, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    tt.train(TrainConfig(**{**TINY, "shards": tiny_shards, "out": out}))
    before = (out / "last.pt").read_bytes()
    _argv(
        monkeypatch, "--shards", str(tiny_shards), "--out", str(out), "--resume", "auto", "--img-size", "64"
    )
    with pytest.raises(SystemExit) as e:
        train_main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "img_size: 32 -> 64; keep those options or start a new --out" in err
    assert (out / "last.pt").read_bytes() == before
    best = torch.load(out / "best.pt", weights_only=True)
    for subset, views in (("val", "1x1"), ("test", "2x3")):
        report = tmp_path / f"eval-{subset}"
        _argv(monkeypatch, "--checkpoint", str(out / "best.pt"), "--shards", str(tiny_shards), "--subset", subset,
              "--test-views", views, "--out", str(report), "--device", "cpu", "--workers", "0")  # fmt: skip
        with pytest.raises(SystemExit) as e:
            eval_main()
        assert e.value.code in (0, None), capsys.readouterr().err
        results = json.loads((report / "results.json").read_text())
        assert results["views"] == views and results["preprocess"] == best["preprocess"]
        assert (report / "confusion.png").is_file() and (report / "per_class.csv").read_text().startswith(
            "class,"
        )
        if subset == "val":  # the same clips, model and preprocessing as training's validation
            assert results["metrics"]["top1"] == best["metrics"]["val_top1"]
            assert results["metrics"]["clips"] == best["metrics"]["val_clips"] == 5
        else:
            assert results["metrics"]["clips"] == 20


def test_clip_cutmix_uses_one_box_for_all_frames():
    cfg = TrainConfig(**{**TINY, "mixup": 0.0, "cutmix": 1.0, "mixup_mode": "elem", "label_smoothing": 0.0})
    mix = ClipMixup(cfg, num_classes=4)
    clips = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 3, 3, 16, 16).clone()  # clip b: all pixels b
    labels = torch.arange(4)
    np.random.seed(0)
    mixed, target = mix(clips.clone(), labels)  # timm mixes in place
    assert mixed.shape == (4, 3, 3, 16, 16) and target.shape == (4, 4)
    for b in range(4):
        assert all(torch.equal(mixed[b, 0], mixed[b, t]) for t in range(3))  # the same box in every frame
        own = (mixed[b] == b).float().mean().item()
        assert own == pytest.approx(target[b, b].item(), abs=1e-6)  # lambda = the area kept
    assert (target.sum(1) - 1).abs().max() < 1e-6 and (mixed != clips).any()


def test_layer_decay_scales_each_block_and_the_schedule_applies_it():
    cfg = TrainConfig(**{**TINY, "layer_decay": 0.5})
    model = timm.create_model("lsvit_tiny_patch16_224", num_classes=5, img_size=32, num_frames=4, **SHAPE)
    opt = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert scale["head.weight"] == 1.0 and scale["blocks.1.attn.qkv.weight"] == 0.5
    assert scale["blocks.0.lmi.gate.fc1.weight"] == 0.25 and scale["patch_embed.proj.weight"] == 0.125
    assert scale["smif.alpha"] == 0.125 and scale["norm.weight"] == 0.5
    sched = CosineLRScheduler(opt, t_initial=10, t_in_epochs=False)
    sched.step_update(0)
    assert {round(g["lr"] / cfg.lr, 6) for g in opt.param_groups} == {1.0, 0.5, 0.25, 0.125}


def test_resume_copy_keeps_exactness_of_unchanged_options(tiny_shards, tmp_path):
    """Sanity for the fixture runs: a copied run folder resumes from its own saved config."""
    out = tmp_path / "a"
    tt.train(TrainConfig(**{**TINY, "epochs": 1, "shards": tiny_shards, "out": out}))
    shutil.copytree(out, tmp_path / "b")
    cfg = TrainConfig(
        **{**json.loads((out / "config.json").read_text()), "out": str(tmp_path / "b"), "resume": "auto"}
    )
    summary = tt.train(cfg)  # nothing left to train: reports again, from the same checkpoint
    assert summary["epochs"] == 1 and _rows(tmp_path / "b") == _rows(out)


def test_protocol_notes_state_the_hold_out_and_warn_about_ineffective_options(tiny_shards):
    from lsvit.pipeline.shardindex import read_index
    from lsvit.trainer.summary import protocol_notes

    index = read_index(tiny_shards / "split1")  # 8 frames stored per clip
    notes = protocol_notes(TrainConfig(**{**TINY, "num_frames": 4, "test_views": "2x1"}), index)
    assert notes == [
        "validation: 5 of 40 training clips held out (5 source videos, 5/5 classes); best.pt and --patience "
        "follow it, test never selects"
    ]
    notes = protocol_notes(
        TrainConfig(**{**TINY, "num_frames": 8, "test_views": "2x3", "val_fraction": 0}), index
    )
    assert notes[0] == "validation: none (--val-fraction 0): best.pt will be the last epoch"
    assert "--frame-sampling random picks all 8 stored frames, as uniform does" in notes[1]
    assert "--test-views 2x3: with 8 stored frames and 8 used, the temporal views are identical" in notes[2]
    with pytest.raises(Exception, match="frame_stride=2 only applies to frame_sampling=stride"):
        TrainConfig(**{**TINY, "frame_stride": 2})
