"""--init: what loads, what is refused (exit 2, naming it), wrappers and prefixes, the HF cache, normalisation."""

import json
import sys

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.cli import train_main
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.predict import Predictor
from lsvit.trainer.pretrained import InitError
from lsvit.trainer.train import train
from lsvit.trainer.transfer import load_init, summarize

pytest_plugins = ["fixtures_train"]

SHAPE = dict(patch_size=8, embed_dim=64, depth=2, num_heads=2)
TINY = dict(model="lsvit_tiny_patch16_224", model_kwargs=SHAPE, img_size=32, num_frames=8)


def _vit(**kw) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, **{**SHAPE, **kw})


def _build(init, **kw) -> torch.nn.Module:
    torch.manual_seed(0)  # the same random head and motion start for every build
    return ck.build_model(TrainConfig(**TINY, init=str(init), **kw), num_classes=5)


def _cli(monkeypatch, capsys, tiny_shards, tmp_path, *extra: str) -> tuple[int, str]:
    argv = ["lsvit-train", "--shards", str(tiny_shards), "--out", str(tmp_path / "run"), "--device", "cpu"]
    argv += ["--model", TINY["model"], "--model-kwargs", json.dumps(SHAPE), "--img-size", "32"]
    argv += ["--num-frames", "8", "--workers", "0", "--epochs", "1", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as e:
        train_main()
    return e.value.code, capsys.readouterr().err


def test_resnet_weights_stop_with_exit_2_naming_what_did_not_match(
    monkeypatch, capsys, tiny_shards, tmp_path
):
    torch.save(timm.create_model("resnet10t").state_dict(), tmp_path / "resnet.pth")
    code, err = _cli(monkeypatch, capsys, tiny_shards, tmp_path, "--init", str(tmp_path / "resnet.pth"))
    lines = err.strip().splitlines()
    errors = [x for x in lines if x.startswith("error:")]
    assert code == 2 and errors == lines[-1:] and errors[0].startswith("error: --init ")  # one line, the last
    assert (
        "0/30 trunk tensors" in err
        and "missing trunk tensors cls_token, pos_embed, patch_embed, blocks.0-1, norm (30)" in errors[0]
    )
    assert (
        "no place in the model conv1, bn1, layer1-4, fc (86)" in err
        and not (tmp_path / "run" / "last.pt").exists()
    )


def test_vit_of_another_width_is_refused_with_the_shapes(monkeypatch, capsys, tiny_shards, tmp_path):
    torch.save(_vit(embed_dim=32).state_dict(), tmp_path / "narrow.pth")
    code, err = _cli(monkeypatch, capsys, tiny_shards, tmp_path, "--init", str(tmp_path / "narrow.pth"))
    assert code == 2 and "does not fit lsvit_tiny_patch16_224 (0/30 trunk tensors)" in err
    assert "shapes differ: cls_token (1, 1, 32) vs (1, 1, 64); pos_embed (1, 17, 32) vs (1, 17, 64)" in err
    assert "and 27 more" in err
    assert "--init-partial" in err


def test_wrapped_and_prefixed_weights_load_exactly_like_the_plain_file(tmp_path):
    sd = _vit().state_dict()
    torch.save(sd, tmp_path / "plain.pth")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in sd.items()} | {"cls_head.fc_cls.weight": torch.ones(5, 64)},
                "meta": {"epoch": 3}}, tmp_path / "mmaction.pth")  # fmt: skip
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 9}, tmp_path / "ddp.pth")
    save_file({f"encoder.{k}": v.contiguous() for k, v in sd.items()}, str(tmp_path / "mae.safetensors"))
    plain = _build(tmp_path / "plain.pth").state_dict()
    assert torch.equal(plain["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])
    for name in ("mmaction.pth", "ddp.pth", "mae.safetensors"):
        other = _build(tmp_path / name).state_dict()
        assert other.keys() == plain.keys() and all(torch.equal(other[k], plain[k]) for k in plain), name
    report = load_init(_build(tmp_path / "plain.pth"), str(tmp_path / "mmaction.pth"))
    assert report.line().startswith(
        f"init: 30/30 trunk tensors from {tmp_path / 'mmaction.pth'}; new: smif, lmi (identity start), head (5 classes)"
    )
    assert report.line().endswith("; dropped: cls_head, head (1000 classes)")


def test_partial_init_loads_what_fits_and_lists_the_rest(tmp_path, capsys):
    torch.save(_vit(depth=1).state_dict(), tmp_path / "shallow.pth")
    with pytest.raises(InitError, match=r"missing trunk tensors blocks\.1 \(12\)"):
        _build(tmp_path / "shallow.pth")
    model = ck.build_model(
        TrainConfig(**TINY, init=str(tmp_path / "shallow.pth"), init_partial=True), 5, log=print
    )
    out = capsys.readouterr().out
    assert (
        "init: 18/30 trunk tensors" in out
        and "stayed random (--init-partial): missing trunk tensors blocks.1" in out
    )
    assert torch.equal(model.blocks[0].attn.qkv.weight, _vit(depth=1).blocks[0].attn.qkv.weight)
    assert summarize(["blocks.0.a", "blocks.1.b", "blocks.3.c", "norm.weight", "layer2.x", "layer1.y"]) == (
        "blocks.0-1,3, norm, layer1-2"
    )


def test_a_file_without_a_hint_warns_and_uses_imagenet_then_mean_std_override(tmp_path, capsys):
    torch.save(_vit().state_dict(), tmp_path / "vit.pth")
    model = ck.build_model(TrainConfig(**TINY, init=str(tmp_path / "vit.pth")), 5, log=print)
    assert "says nothing about its input normalisation; using the model's default mean (0.485" in (
        capsys.readouterr().out
    )
    assert model.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)
    model = ck.build_model(TrainConfig(**TINY, init=str(tmp_path / "vit.pth"), mean="0.5", std=[0.5] * 3), 5)
    with pytest.raises(LsvitError, match="mean and std go together"):
        TrainConfig(**TINY, mean="0.5")
    assert model.pretrained_cfg["mean"] == model.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in _vit().state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"pretrained_cfg": {"mean": [0.4, 0.4, 0.4], "std": [0.2] * 3}})
    )
    model = ck.build_model(TrainConfig(**TINY, init=str(folder)), 5, log=print)
    assert model.pretrained_cfg["mean"] == (0.4, 0.4, 0.4) and "config.json" in capsys.readouterr().out


def _npz(vit: torch.nn.Module, path) -> None:
    """Writes ``vit`` in the big_vision/JAX .npz layout timm's ``_load_weights`` reads."""
    sd = {k: v.detach().numpy() for k, v in vit.state_dict().items()}
    d, h = vit.embed_dim, vit.blocks[0].attn.num_heads
    w = {"embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0), "embedding/bias": sd["patch_embed.proj.bias"],
         "cls": sd["cls_token"], "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
         "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"]}  # fmt: skip
    for i in range(len(vit.blocks)):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        for ln, n in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            w[p + ln + "/scale"], w[p + ln + "/bias"] = sd[b + n + ".weight"], sd[b + n + ".bias"]
        for j, name in enumerate(("query", "key", "value")):
            w[f"{p}MultiHeadDotProductAttention_1/{name}/kernel"] = sd[b + "attn.qkv.weight"][
                j * d : (j + 1) * d
            ].T.reshape(d, h, -1)
            w[f"{p}MultiHeadDotProductAttention_1/{name}/bias"] = sd[b + "attn.qkv.bias"][
                j * d : (j + 1) * d
            ].reshape(h, -1)
        w[p + "MultiHeadDotProductAttention_1/out/kernel"] = (
            sd[b + "attn.proj.weight"].reshape(d, h, -1).transpose(1, 2, 0)
        )
        w[p + "MultiHeadDotProductAttention_1/out/bias"] = sd[b + "attn.proj.bias"]
        for r in range(2):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"] = sd[f"{b}mlp.fc{r + 1}.weight"].T
            w[f"{p}MlpBlock_3/Dense_{r}/bias"] = sd[f"{b}mlp.fc{r + 1}.bias"]
    np.savez(path, **w)


def test_big_vision_npz_loads_like_the_state_dict(tmp_path):
    vit = _vit()
    _npz(vit, tmp_path / "vit.npz")
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    a, b = _build(tmp_path / "vit.npz").state_dict(), _build(tmp_path / "vit.pth").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)
    _npz(_vit(depth=1), tmp_path / "shallow.npz")
    with pytest.raises(InitError, match=r"1 blocks in the \.npz, the model has 2"):
        _build(tmp_path / "shallow.npz")


NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # timm's config: mean = std = 0.5


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A Hugging Face hub cache holding random weights for NAME, offline."""
    cache = tmp_path / "hf" / "hub"
    repo = cache / f"models--timm--{NAME}"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(2)
    vit = timm.create_model("vit_tiny_patch16_224")  # the real architecture: 192 wide, 12 blocks
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(snap / "model.safetensors"))
    (snap / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224",
                                                  "pretrained_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))  # fmt: skip
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return vit


@pytest.mark.slow
def test_timm_name_from_the_hf_cache_reaches_checkpoint_and_predict(hf_cache, tiny_shards, tmp_path):
    cfg = TrainConfig(
        model="lsvit_tiny_patch16_224", init=NAME, img_size=32, num_frames=4, batch_size=8, epochs=1,
        workers=0, device="cpu", shards=str(tiny_shards), out=str(tmp_path / "run"),
    )  # fmt: skip
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert ckpt["preprocess"]["mean"] == ckpt["preprocess"]["std"] == [0.5, 0.5, 0.5]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mean"] == [0.5, 0.5, 0.5]
    predictor = Predictor(tmp_path / "run" / "best.pt", device="cpu")
    assert predictor.mean == predictor.std == (0.5, 0.5, 0.5)
    model = _build_from(NAME)
    assert torch.equal(model.blocks[11].mlp.fc2.weight, hf_cache.blocks[11].mlp.fc2.weight)
    clip = sorted((tiny_shards.parent / "data").rglob("*.avi"))[0]
    assert abs(sum(predictor.predict(clip).probs) - 1) < 1e-5


def _build_from(init: str) -> torch.nn.Module:
    cfg = TrainConfig(model="lsvit_tiny_patch16_224", init=init, img_size=32, num_frames=4)
    return ck.build_model(cfg, num_classes=5)


def test_hf_hub_name_and_a_cache_miss(hf_cache, monkeypatch, tmp_path):
    model = _build_from(f"hf-hub:timm/{NAME}")
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert torch.equal(model.patch_embed.proj.weight, hf_cache.patch_embed.proj.weight)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    with pytest.raises(InitError) as e:
        _build_from("vit_small_patch16_224.augreg_in21k")
    msg = str(e.value)
    assert (
        str(tmp_path / "empty" / "hub") in msg
        and "HF_HUB_OFFLINE is set" in msg
        and "hf download timm/" in msg
    )
    with pytest.raises(InitError, match="not a timm pretrained name"):
        _build_from("no_such_model_anywhere")
    with pytest.raises(InitError, match="does not exist"):
        _build_from(str(tmp_path / "missing.pth"))
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # a whole module, not a state dict
    with pytest.raises(
        InitError, match="pickled Python objects besides tensors, which lsvit never unpickles"
    ):
        _build_from(str(tmp_path / "pickled.pth"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InitError, match="cannot read it as weights"):
        _build_from(str(tmp_path / "junk.safetensors"))


@pytest.mark.parametrize("name", ["hmdb51_vit_small", "hmdb51_vit_base"])
def test_recipes_resolve_and_name_timm_in21k_weights_with_their_normalisation(name):
    from pathlib import Path

    from lsvit.trainer.resolve import resolve_config

    cfg = resolve_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
    pcfg = timm.models.get_pretrained_cfg(cfg.init)
    assert pcfg.num_classes == 21843 and pcfg.mean == pcfg.std == (0.5, 0.5, 0.5)  # ImageNet-21k heads
    arch = cfg.init.split(".")[0].replace("vit_", "lsvit_")
    assert cfg.model == arch and cfg.val_fraction > 0 and cfg.test_views == "2x3" and cfg.batch_size % 2 == 0
