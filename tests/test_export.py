"""lsvit-export: onnxruntime matches eager PyTorch, the file carries its preprocessing, and lsvit-predict
gives the same answer from the .onnx as from the .pt."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers_deploy import REAL, make_checkpoint, needs_videos, run_cli
from typer.testing import CliRunner

from lsvit.trainer import export as ex
from lsvit.trainer.cli import predict_app, predict_main
from lsvit.trainer.deploy_cli import export_app, export_main
from lsvit.trainer.onnxmeta import ExportMeta, OnnxMetaError
from lsvit.trainer.predict import Predictor

CLASSES5 = ["brush_hair", "cartwheel", "catch", "chew", "clap"]


@pytest.fixture(scope="module", params=["lsvit_tiny_patch16_224", "vit_frameavg_tiny_patch16_224"])
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its export) for LS-ViT and the frame-averaged baseline: 5 classes, 4 frames, 32 px."""
    folder = tmp_path_factory.mktemp("export")
    ckpt = make_checkpoint(folder / "best.pt", request.param, CLASSES5, num_frames=4)
    result = CliRunner().invoke(export_app, ["--checkpoint", str(ckpt), "--out", str(folder / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "onnxruntime matches PyTorch" in result.stdout
    return ckpt, folder / "m.onnx"


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_eager_pytorch(exported, batch):
    ckpt, onnx_file = exported
    model = Predictor(ckpt, device="cpu").model
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, 4, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        want = model(x).numpy()
    got = session.run(["logits"], {"video": x.numpy()})[0]
    assert got.shape == (batch, 5)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    assert np.abs(want).max() > 1e-3  # a real signal, not two zero outputs agreeing


@pytest.mark.slow
def test_export_has_a_dynamic_batch_axis_and_the_preprocessing_contract(exported):
    ckpt, onnx_file = exported
    m = onnx.load(str(onnx_file))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [4, 3, 32, 32]
    props = {p.key: p.value for p in m.metadata_props}
    meta = ExportMeta.from_props(props, str(onnx_file))
    saved = torch.load(ckpt, weights_only=True)
    assert meta.classes == CLASSES5 and meta.num_frames == 4 and meta.source_frames == 16
    assert meta.img_size == 32 and meta.epoch == 3 and meta.config == saved["config"]
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406)) and meta.std == pytest.approx(
        (0.229, 0.224, 0.225)
    )
    sidecar = json.loads(Path(f"{onnx_file}.json").read_text())
    assert sidecar["metadata"]["classes"] == CLASSES5 and len(sidecar["export"]["parity"]) == 2


@pytest.mark.slow
def test_any_clip_module_exports_not_only_lsvit(tmp_path):
    class Conv3dClassifier(torch.nn.Module):  # a torchvision-style video net: (B, C, T, H, W) inside
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 8, 3, padding=1)
            self.head = torch.nn.Linear(8, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x.permute(0, 2, 1, 3, 4))  # (B, T, C, H, W) -> (B, C, T, H, W)
            return self.head(y.relu().mean((2, 3, 4)))  # (B, 7)

    model = Conv3dClassifier().eval()
    out = tmp_path / "c3d.onnx"
    assert ex.export_model(model, (4, 3, 16, 16), out, {"k": "v"}) == 18
    parity = ex.check_parity(model, out, (4, 3, 16, 16))
    assert [p.batch for p in parity] == [1, 3] and all(p.ok for p in parity)
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props} == {"k": "v"}


@pytest.mark.slow
def test_a_parity_failure_stops_and_keeps_no_file(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "best.pt", classes=CLASSES5, num_frames=2)
    monkeypatch.setattr(ex, "ATOL", -1.0)  # nothing can be that close
    with pytest.raises(ex.ExportError, match="differ from PyTorch's"):
        ex.export_checkpoint(ckpt, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


@pytest.mark.slow
@needs_videos
def test_predict_from_onnx_prints_what_the_checkpoint_prints(tmp_path):
    ckpt = make_checkpoint(tmp_path / "best.pt")  # 51 classes, 8 of 16 frames
    assert CliRunner().invoke(export_app, ["--checkpoint", str(ckpt)]).exit_code == 0
    runs = {}
    for flag, path in (("--checkpoint", ckpt), ("--model", tmp_path / "best.onnx")):
        result = CliRunner().invoke(predict_app, [flag, str(path), "--json", *map(str, REAL)])
        assert result.exit_code == 0, result.output
        runs[flag] = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(runs["--model"]) == len(REAL)
    for pt, ox in zip(runs["--checkpoint"], runs["--model"], strict=True):
        assert [r["class"] for r in ox["top"]] == [r["class"] for r in pt["top"]]
        assert [r["probability"] for r in ox["top"]] == pytest.approx(
            [r["probability"] for r in pt["top"]], abs=2e-6
        )
    table = CliRunner().invoke(predict_app, ["--model", str(tmp_path / "best.onnx"), str(REAL[0])])
    assert table.exit_code == 0 and "P(action | clip)" in table.stdout


def test_metadata_round_trip_and_refusals():
    meta = ExportMeta(
        CLASSES5, 8, 16, 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "m", {"img_size": 64}, "x.pt", "ab", 2
    )
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert ExportMeta.from_props(props, "f.onnx") == meta
    with pytest.raises(OnnxMetaError, match=r"f.onnx has no lsvit metadata \(missing classes"):
        ExportMeta.from_props({k: v for k, v in props.items() if k != "classes"}, "f.onnx")
    with pytest.raises(OnnxMetaError, match="malformed"):
        ExportMeta.from_props({**props, "std": "[0.5, 0, 0.5]"}, "f.onnx")
    with pytest.raises(OnnxMetaError, match="format '9'"):
        ExportMeta.from_props({**props, "lsvit_format": "9"}, "f.onnx")
    assert props["synthetic"] == "" and ExportMeta.from_props(props, "f.onnx").synthetic is None
    synth = ExportMeta(**{**meta.__dict__, "synthetic": {"generator": "lsvit synth", "motions": 2}})
    assert ExportMeta.from_props(synth.to_props(), "f.onnx") == synth
    with pytest.raises(OnnxMetaError, match="malformed"):
        ExportMeta.from_props({**props, "synthetic": "[1]"}, "f.onnx")


def _error(main, args, capsys, monkeypatch) -> str:
    code, _, err = run_cli(main, args, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_wrong_model_files_get_one_line_errors(tmp_path, capsys, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "best.pt", classes=CLASSES5, num_frames=2)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all" * 10)
    bare = tmp_path / "bare.onnx"  # a valid ONNX model that lsvit did not export
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [
        onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])  # fmt: skip
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), bare)
    video = tmp_path / "v.avi"
    cases = {
        ("--model", ckpt): "is a PyTorch checkpoint; pass it as --checkpoint",
        ("--checkpoint", junk): "is an ONNX file; pass it as --model",
        ("--model", junk): "is not a loadable ONNX model",
        ("--model", bare): "has no lsvit metadata",
        ("--model", tmp_path / "nope.onnx"): "does not exist",
        ("--model", junk, "--checkpoint", ckpt): "one of them",
        (): "pass either --checkpoint",
        ("--model", bare, "--device", "mps"): "not allowed with --model",
    }
    for args, message in cases.items():
        assert message in _error(predict_main, [*args, video], capsys, monkeypatch), args


def test_export_option_errors(tmp_path, capsys, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "best.pt", classes=CLASSES5, num_frames=2)
    for args, message in {
        ("--opset", "13"): "--opset 13 is not supported; choose 18 to",
        ("--out", tmp_path / "m.pt"): "must end in .onnx",
    }.items():
        assert message in _error(export_main, ["--checkpoint", ckpt, *args], capsys, monkeypatch)
    missing = _error(export_main, ["--checkpoint", tmp_path / "no.pt"], capsys, monkeypatch)
    assert "does not exist" in missing
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*"))
