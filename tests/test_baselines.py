"""Baselines on the same shards: Hugging Face video classifiers (hf:<folder>) and torchvision video models
(tv:<name>), built tiny and offline; their logits, --init, checkpoints, predict, eval and export."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import get_model

import lsvit.trainer.train as tt
from lsvit.pipeline.errors import LsvitError
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.config import ConfigError, TrainConfig
from lsvit.trainer.eval_checkpoint import evaluate_checkpoint
from lsvit.trainer.export import export_checkpoint
from lsvit.trainer.hfvideo import normalisation
from lsvit.trainer.predict import Predictor
from lsvit.trainer.preprocess import Preprocess

transformers = pytest.importorskip("transformers")
pytest_plugins = ["fixtures_train"]

LABELS = ["a", "b", "c"]
TINY_HF = dict(image_size=32, patch_size=16, num_frames=4, hidden_size=32, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=64)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight TimeSformer and VideoMAE classifiers, saved with save_pretrained (3 labels)."""
    tr = transformers
    root, labels = tmp_path_factory.mktemp("hf"), dict(enumerate(LABELS))
    made = {
        "timesformer": (
            tr.TimesformerForVideoClassification,
            tr.TimesformerConfig(**TINY_HF),
            (0.45,),
            (0.225,),
        ),
        "videomae": (
            tr.VideoMAEForVideoClassification,
            tr.VideoMAEConfig(tubelet_size=2, **TINY_HF),
            tr.image_utils.IMAGENET_DEFAULT_MEAN,
            tr.image_utils.IMAGENET_DEFAULT_STD,
        ),
    }
    out = {}
    for name, (cls, config, mean, std) in made.items():
        config.update({"id2label": labels, "label2id": {v: k for k, v in labels.items()}})
        torch.manual_seed(0)
        cls(config).save_pretrained(root / name)
        proc = tr.VideoMAEImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=list(mean) * (3 // len(mean)),
            image_std=list(std) * (3 // len(std)),
        )  # fmt: skip
        proc.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", ["timesformer", "videomae"])
def test_hf_logits_equal_transformers_own_forward(hf_dirs, name) -> None:
    """Our frames -> our normalisation -> our wrapper == transformers' processor -> transformers' model."""
    folder = hf_dirs[name]
    cfg = TrainConfig(model=f"hf:{folder}", drop_path=0.0)
    assert (cfg.num_frames, cfg.img_size) == (4, 32)  # from the folder's config
    model = ck.build_model(cfg, len(LABELS), classes=LABELS).eval()  # the saved head names our classes: kept
    pre = Preprocess(model.pretrained_cfg["mean"], model.pretrained_cfg["std"], 32, 4)
    frames = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ours = pre.normalize(torch.from_numpy(frames).permute(0, 3, 1, 2)[None])
    proc = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    theirs = proc(list(frames), return_tensors="pt")["pixel_values"]
    assert torch.allclose(ours, theirs, atol=1e-5)
    net = transformers.AutoModelForVideoClassification.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        assert torch.allclose(model(ours), net(pixel_values=theirs).logits, atol=1e-5)


def test_vivit_rescale_to_minus_one_one_is_folded_into_mean_and_std() -> None:
    proc = transformers.VivitImageProcessor(
        do_resize=False, do_center_crop=False
    )  # x / 127.5 - 1, then (x-.5)/.5
    mean, std = normalisation(proc)
    assert mean == pytest.approx((0.75,) * 3) and std == pytest.approx((0.25,) * 3)
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    theirs = proc(list(frames), return_tensors="pt")["pixel_values"][0]
    ours = Preprocess(mean, std, 8, 2).normalize(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_hf_head_is_replaced_and_the_checkpoint_needs_no_folder(hf_dirs, tmp_path, capsys) -> None:
    folder = tmp_path / "tsf"
    shutil.copytree(hf_dirs["timesformer"], folder)
    cfg = TrainConfig(model=f"hf:{folder}", drop_path=0.0)
    classes = ["x", "y", "z", "w", "v"]
    lines: list[str] = []
    model = ck.build_model(cfg, len(classes), log=lines.append, classes=classes).eval()
    assert any("new classifier for 5 classes (the folder's head: 3 classes)" in line for line in lines)
    assert model.net.classifier.out_features == 5 and model.net.config.id2label[4] == "v"
    cfg.mean, cfg.std = list(model.pretrained_cfg["mean"]), list(model.pretrained_cfg["std"])
    state = {"model": model.state_dict(), "config": cfg.to_dict(), "classes": classes, "epoch": 1}
    ck.save_checkpoint({**state, "model_config": ck.model_config(model)}, tmp_path / "best.pt")
    shutil.rmtree(folder)  # predict, eval and export run where the folder is not
    rebuilt = ck.model_from_checkpoint(ck.load_checkpoint(tmp_path / "best.pt"))
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_hf_self_supervised_videomae_gets_a_new_head_and_drops_its_decoder(hf_dirs, tmp_path) -> None:
    """VideoMAE is fine-tuned from its pre-training checkpoint: encoder loaded, fc_norm + classifier new."""
    config = transformers.VideoMAEConfig(tubelet_size=2, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                                         decoder_num_attention_heads=2, decoder_intermediate_size=64, **TINY_HF)  # fmt: skip
    torch.manual_seed(0)
    pretrain = transformers.VideoMAEForPreTraining(config)
    pretrain.save_pretrained(tmp_path / "ssl")
    shutil.copy(hf_dirs["videomae"] / "preprocessor_config.json", tmp_path / "ssl")
    lines: list[str] = []
    model = ck.build_model(TrainConfig(model=f"hf:{tmp_path / 'ssl'}", drop_path=0.0), 5, log=lines.append)
    assert (
        "new classifier, fc_norm for 5 classes" in lines[0]
        and "not used: decoder, encoder_to_decoder" in lines[0]
    )
    own, src = model.net.state_dict(), pretrain.state_dict()
    assert all(torch.equal(own[k], v) for k, v in src.items() if k.startswith("videomae."))


def test_hf_errors_are_one_line(hf_dirs, tmp_path) -> None:
    with pytest.raises(LsvitError, match=r"no config\.json there; pass a folder written by save_pretrained"):
        TrainConfig(model=f"hf:{tmp_path}")
    folder = hf_dirs["videomae"]
    with pytest.raises(LsvitError, match=r"takes 4 frames of 32px \(its config\)"):
        ck.build_model(TrainConfig(model=f"hf:{folder}", num_frames=8), 3)
    with pytest.raises(LsvitError, match=r"an hf: model starts from its folder's weights; drop --init"):
        ck.build_model(TrainConfig(model=f"hf:{folder}", init=str(tmp_path)), 3)
    with pytest.raises(LsvitError, match=r"--model-kwargs no_such_dropout: not fields of VideoMAEConfig"):
        ck.build_model(TrainConfig(model=f"hf:{folder}", model_kwargs={"no_such_dropout": 0.1}), 3)
    with pytest.raises(
        LsvitError, match=r"model_kwargs 'hidden_size' not accepted by hf:.*allowed: \*dropout\*"
    ):
        TrainConfig(model=f"hf:{folder}", model_kwargs={"hidden_size": 10**6})  # sizes come with the weights
    shutil.copytree(folder, tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(LsvitError, match=r"cannot load a video classifier"):
        ck.build_model(TrainConfig(model=f"hf:{tmp_path / 'noweights'}"), 3)


@pytest.mark.parametrize(
    ("name", "frames", "size"),
    [("r3d_18", 4, 32), ("mc3_18", 4, 32), ("r2plus1d_18", 4, 32), ("swin3d_t", 4, 32), ("s3d", 14, 224),
     ("mvit_v2_s", 16, 224)],
)  # fmt: skip
def test_tv_models_take_our_clip_layout(name, frames, size) -> None:
    cfg = TrainConfig(model=f"tv:{name}", num_frames=frames, img_size=size, drop_path=0.0)
    heavy = size > 32  # S3D and MViT only run at 224 px: shapes on the meta device, no arithmetic
    with torch.device("meta" if heavy else "cpu"):
        model = ck.build_model(cfg, 5).eval()
        x = torch.randn(1, frames, 3, size, size)  # (B, T, 3, H, W)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 5)
        if not heavy:
            assert torch.equal(out, model.net(x.permute(0, 2, 1, 3, 4)))  # torchvision's (B, C, T, H, W)


def test_tv_defaults_and_errors() -> None:
    r3d = TrainConfig(model="tv:r3d_18")
    assert (r3d.num_frames, r3d.img_size) == (16, 112)
    model = ck.build_model(TrainConfig(model="tv:swin3d_t", num_frames=4, img_size=32), 5)
    assert tuple(model.pretrained_cfg["mean"]) == (
        0.485,
        0.456,
        0.406,
    )  # Swin3D's Kinetics weights: ImageNet's
    assert tuple(
        ck.build_model(TrainConfig(model="tv:mc3_18", num_frames=4, img_size=32), 5).pretrained_cfg["std"]
    ) == (
        0.22803,
        0.22145,
        0.216989,
    )
    with pytest.raises(
        ConfigError, match=r"model='tv:r4d_18' is not a model lsvit builds; choose one of: tv:r3d_18"
    ):
        TrainConfig(model="tv:r4d_18")
    with pytest.raises(
        LsvitError, match=r"tv:mvit_v2_s is built for 16 frames of 224px only; pass --num-frames 16"
    ):
        ck.build_model(TrainConfig(model="tv:mvit_v2_s", num_frames=4, img_size=32), 5)
    with pytest.raises(LsvitError, match=r"tv:s3d needs at least 14 frames of 224px"):
        ck.build_model(TrainConfig(model="tv:s3d", num_frames=8, img_size=224), 5)


def test_tv_init_from_a_torchvision_weights_file(tmp_path) -> None:
    torch.manual_seed(3)
    # what torchvision's download holds (400 Kinetics classes), with random weights
    torch.save(get_model("r3d_18", num_classes=400).state_dict(), tmp_path / "r3d_18-b3b3357e.pth")
    torch.save(get_model("mc3_18", num_classes=400).state_dict(), tmp_path / "mc3.pth")
    file = torch.load(tmp_path / "r3d_18-b3b3357e.pth", weights_only=True)
    lines: list[str] = []
    cfg = TrainConfig(
        model="tv:r3d_18", init=str(tmp_path / "r3d_18-b3b3357e.pth"), num_frames=4, img_size=32
    )
    model = ck.build_model(cfg, 51, log=lines.append)
    own = model.net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in file.items() if not k.startswith("fc."))
    assert own["fc.weight"].shape == (51, 512) and not torch.equal(
        own["fc.weight"][:51], file["fc.weight"][:51]
    )
    assert any("a new 51-class head" in line for line in lines)
    with pytest.raises(
        LsvitError,
        match=r"does not fit tv:r3d_18 \(missing: -; shapes differ: layer2\.0\.conv1\.0\.weight \(128, 64, 1, 3, 3\)",
    ):
        ck.build_model(
            TrainConfig(model="tv:r3d_18", init=str(tmp_path / "mc3.pth"), num_frames=4, img_size=32), 5
        )
    with pytest.raises(
        LsvitError, match=r"download https://download\.pytorch\.org/models/r3d_18-b3b3357e\.pth"
    ):
        ck.build_model(TrainConfig(model="tv:r3d_18", init=str(tmp_path / "nope.pth")), 5)


FAMILIES = {
    "timesformer": dict(drop_path=0.0),
    "videomae": dict(drop_path=0.0),
    "tv:mc3_18": dict(model="tv:mc3_18", num_frames=4, img_size=16),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_epoch_then_checkpoint_predict_eval_export(family, hf_dirs, tiny_shards, tmp_path) -> None:
    kw = dict(FAMILIES[family])
    kw.setdefault("model", f"hf:{hf_dirs.get(family)}")
    cfg = TrainConfig(shards=str(tiny_shards), out=str(tmp_path / "run"), epochs=1, batch_size=4, workers=0,
                      device="cpu", lr=1e-3, warmup_epochs=0, **kw)  # fmt: skip
    summary = tt.train(cfg)
    best = tmp_path / "run" / "best.pt"
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert summary["epochs"] == 1 and ckpt["config"]["model"] == kw["model"]
    assert (ckpt["model_config"] is not None) == kw["model"].startswith("hf:")
    results = evaluate_checkpoint(
        best, str(tiny_shards), "test", out=tmp_path / "eval", device="cpu", workers=0
    )
    assert results["metrics"]["top1"] == pytest.approx(
        summary["best_test"]["top1"]
    )  # the checkpoint rebuilt = the trained
    clip = next((tiny_shards.parent / "data").rglob("*.avi"))
    pred = Predictor(best, device="cpu").predict(clip)
    assert len(pred.probs) == 5 and sum(pred.probs) == pytest.approx(1.0, abs=1e-5)
    report = export_checkpoint(best, tmp_path / "m.onnx")  # raises unless onnxruntime matches eager PyTorch
    assert all(p.ok for p in report.parity) and len(report.parity) == 2
    assert json.loads((tmp_path / "m.onnx.json").read_text())["metadata"]["model"] == kw["model"]


def test_layer_decay_groups_the_stem_stages_and_head(hf_dirs) -> None:
    from lsvit.trainer.optim import build_optimizer

    for model, kw, stages in (
        ("tv:mc3_18", dict(num_frames=4, img_size=32), 4),
        (f"hf:{hf_dirs['videomae']}", {}, 2),
    ):
        cfg = TrainConfig(model=model, layer_decay=0.5, **kw)
        net = ck.build_model(cfg, 5)
        scales = {n: g["lr_scale"] for g in build_optimizer(net, cfg).param_groups for n in g["params"]}
        by_name = {name: scales[p] for name, p in net.named_parameters()}
        head = "net.fc.weight" if model.startswith("tv:") else "net.classifier.weight"
        stem = (
            "net.stem.0.weight"
            if model.startswith("tv:")
            else "net.videomae.embeddings.patch_embeddings.projection.weight"
        )
        assert by_name[head] == 1.0 and by_name[stem] == pytest.approx(0.5 ** (stages + 1))
