"""trainer.config / evaluate / train: options, metrics, a 2-epoch run, exact resume, non-finite loss, AMP."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from typer.testing import CliRunner

import lsvit.trainer.train as tt
from lsvit.pipeline.errors import LsvitError
from lsvit.trainer import checkpoint as ck
from lsvit.trainer import preprocess
from lsvit.trainer.cli import train_app
from lsvit.trainer.config import ConfigError, TrainConfig, available_models
from lsvit.trainer.distributed import amp_dtype
from lsvit.trainer.evaluate import summarize
from lsvit.trainer.resolve import load_config_file, resolve_config

pytest_plugins = ["fixtures_train"]

TINY = dict(
    model="lsvit_tiny_patch16_224",
    model_kwargs=dict(patch_size=8, embed_dim=64, depth=2, num_heads=2),
    img_size=32,
    num_frames=8,
    batch_size=4,
    epochs=2,
    lr=3e-3,
    warmup_epochs=0.5,
    drop_path=0.1,  # exercises the per-rank RNG streams that resume must restore
    label_smoothing=0.1,
    workers=0,
    device="cpu",
)
VOLATILE = ("train_clips_per_s", "epoch_s")  # wall-clock figures differ between runs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(shards: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "shards": shards, "out": out, **kw})


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


# --- config -------------------------------------------------------------------------------------------


def test_config_file_unknown_key_lists_allowed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) learning_rate; allowed keys: .*\blr\b"):
        load_config_file(f)


def test_flags_override_file_and_yaml_exponents_are_numbers(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epochs": 3, "lr": "5e-4", "batch-size": 2}))
    cfg = resolve_config(f, {"epochs": 7})
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (7, 5e-4, 2)
    assert json.loads(json.dumps(cfg.to_dict()))["lr"] == 5e-4


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(model="resnet50"), "allowed: .*lsvit_tiny_patch16_224.*vit_frameavg_tiny_patch16_224"),
        (dict(balance="smote"), "choose one of: none, oversample, undersample, hybrid"),
        (dict(amp="fp8"), "choose one of: auto, bf16, fp16, off"),
        (dict(lr=0), "lr=0 must be a finite number > 0"),
        (dict(label_smoothing=1.0), "label_smoothing=1.0"),
        (dict(model_kwargs={"img_size": 64}), "may not set img_size; use the options img_size"),
        (dict(aug={"sharpen": 1}), "unknown augmentation setting"),
        (dict(epochs=0), "epochs=0 must be an integer >= 1"),
    ],
)
def test_bad_options_name_value_and_allowed(kw, match):
    with pytest.raises(LsvitError, match=match):
        TrainConfig(**kw)


def test_model_list_has_lsvit_and_baselines():
    names = available_models()
    assert {"lsvit_tiny_patch16_224", "vit_frameavg_tiny_patch16_224"} <= set(names)
    assert all(n.startswith(("lsvit_", "vit_frameavg_")) for n in names)


def test_cli_reports_bad_config_as_one_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("bogus: 1\n")
    result = CliRunner().invoke(train_app, ["--config", str(f), "--epochs", "2"])
    assert isinstance(result.exception, ConfigError)
    assert "bogus" in str(result.exception) and "\n" not in str(result.exception)


def test_amp_policy_on_cpu():
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(LsvitError, match="fp16 needs CUDA"):
        amp_dtype("fp16", cpu)


def test_init_starts_from_a_plain_timm_vit(tmp_path):
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2
    )
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    model = ck.build_model(TrainConfig(**{**TINY, "init": tmp_path / "vit.pth"}), num_classes=5)
    assert torch.equal(model.blocks[1].attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    assert model.head.out_features == 5  # the 1000-class ImageNet head is replaced
    with pytest.raises(LsvitError, match="does not exist"):
        ck.build_model(TrainConfig(**{**TINY, "init": tmp_path / "missing.pth"}), num_classes=5)


# --- metrics ------------------------------------------------------------------------------------------


def test_summarize_literal_lists():
    r = summarize(
        labels=[0, 0, 1, 2], preds=[0, 1, 1, 1], top5_hits=[1, 1, 1, 0], losses=[1, 2, 3, 4], num_classes=4
    )
    assert r.top1 == 0.5 and r.top5 == 0.75 and r.loss == 2.5 and r.n == 4
    assert r.mean_class_acc == pytest.approx((0.5 + 1 + 0) / 3)  # class 3 has no clips: left out
    assert r.confusion.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]


# --- training runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tiny_shards, tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "full"
    return out, tt.train(_cfg(tiny_shards, out))


@pytest.fixture(scope="module")
def half_run(tiny_shards, tmp_path_factory) -> Path:
    """The same run as ``full_run``, interrupted after its first epoch."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "half"
    tt.train(_cfg(tiny_shards, out), stop_after=1)
    return out


@pytest.mark.slow
def test_two_epochs_write_reports_and_beat_chance(full_run):
    out, summary = full_run
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert summary["best_test"]["top1"] > 1 / 5 + 0.2  # 5 classes: chance is 0.2
    assert {"val_top1", "test_top1", "test_top5", "test_mean_class_acc", "test_loss", "train_loss", "lr"} <= (
        rows[-1].keys()
    )
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"] == "best.pt" and results["selected_by"] == "val_top1"
    assert results["metrics"]["top1"] == summary["best_test"]["top1"] == results["best"]["test"]["top1"]
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_class = (out / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,clips,correct,accuracy" and len(per_class) == 1 + 5
    assert json.loads((out / "config.json").read_text())["model_kwargs"]["depth"] == 2
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


@pytest.mark.slow
def test_checkpoint_loads_with_weights_only(full_run):
    out, summary = full_run
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["classes"] == ["brush_hair", "cartwheel", "catch", "chew", "clap"]
    assert ckpt["config"]["img_size"] == 32 and ckpt["best_val_top1"] == summary["best_val_top1"]
    assert ckpt["preprocess"] == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "img_size": 32, "num_frames": 8,
        "source_frames": 8, "resize": "short-side+center-crop",
    }  # fmt: skip
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "rng"} <= ckpt.keys()
    assert isinstance(ckpt["rng"][0]["torch"], torch.Tensor)
    model = ck.model_from_checkpoint(ckpt)
    assert model(torch.zeros(1, 8, 3, 32, 32)).shape == (1, 5)


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_metrics(full_run, half_run, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(half_run, out)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    tt.train(_resume_cfg(full_run, out))
    assert _metrics(out) == _metrics(full_run[0])
    a = torch.load(out / "last.pt", weights_only=True)["model"]
    b = torch.load(full_run[0] / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def _resume_cfg(full_run, out: Path) -> TrainConfig:
    cfg = json.loads((full_run[0] / "config.json").read_text())
    return TrainConfig(**{**cfg, "out": str(out), "resume": "auto"})


@pytest.mark.slow
def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(half_run, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    shutil.copytree(half_run, out)
    before = (out / "last.pt").read_bytes()
    real = preprocess.normalize
    monkeypatch.setattr(
        preprocess, "normalize", lambda *a, **k: real(*a, **k) * float("nan")
    )  # corrupt batch
    cfg = TrainConfig(
        **{**json.loads((half_run / "config.json").read_text()), "out": str(out), "resume": "auto"}
    )
    with pytest.raises(
        tt.NonFiniteLossError, match=r"loss is nan at epoch 2.*last good checkpoint kept: .*last\.pt"
    ):
        tt.train(cfg)
    assert (out / "last.pt").read_bytes() == before
    assert [r["epoch"] for r in _metrics(out)] == [1]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_training_steps_on_cuda(tiny_shards, tmp_path, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    protocol = dict(mixup=0.8, cutmix=1.0, layer_decay=0.75, test_views="2x2", num_frames=4)  # all on the GPU
    summary = tt.train(
        _cfg(tiny_shards, tmp_path / amp, device="cuda", amp=amp, epochs=1, workers=1, **protocol)
    )
    ckpt = torch.load(tmp_path / amp / "last.pt", weights_only=True)
    assert ckpt["step"] > 0 and np.isfinite(ckpt["metrics"]["train_loss"]) and summary["epochs"] == 1
    assert (amp == "fp16") == bool(ckpt["scaler"])  # GradScaler state only for fp16
    assert np.isfinite(summary["best_test"]["top1"]) and summary["test_views"] == "2x2"
