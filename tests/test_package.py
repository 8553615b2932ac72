"""The installed package: one ``lsvit`` namespace, models registered on import, CLIs that start without torch."""

import subprocess
import sys


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_cli_modules_import_neither_torch_nor_timm() -> None:
    # What `--help` and usage errors cost: the options must parse before any heavy import.
    heavy = ("torch", "timm", "albumentations", "cv2", "webdataset", "onnx", "onnxruntime", "gradio")
    code = (
        "import sys, lsvit.pipeline.cli, lsvit.trainer.cli, lsvit.trainer.deploy_cli\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    assert _run(code) == "[]"


def test_import_lsvit_registers_the_models_with_timm() -> None:
    code = "import lsvit, timm\nprint(timm.list_models('lsvit_*'), timm.list_models('vit_frameavg_*'))"
    out = _run(code)
    assert "lsvit_small_patch16_224" in out and "vit_frameavg_base_patch16_224" in out


def test_models_registered_when_timm_came_first() -> None:
    code = "import timm, lsvit\nm = timm.create_model('lsvit_tiny_patch16_224', num_frames=2, num_classes=3)\nprint(type(m).__name__)"
    assert _run(code) == "LSViT"
