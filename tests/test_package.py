"""The installed package: one ``lsvit`` namespace, models registered on import, CLIs that start without torch."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import lsvit

SCRIPTS = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
HEAVY = (
    "torch",
    "timm",
    "albumentations",
    "cv2",
    "webdataset",
    "onnx",
    "onnxruntime",
    "gradio",
    "matplotlib",
)


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


# Runs a console script's entry point in a fresh interpreter, as the shell would, once per argument list;
# prints each run's exit status and output, and which heavy modules had been imported after all of them.
_PROBE = """
import contextlib, io, json, sys
name, module, func, runs, heavy = sys.argv[1:4] + [json.loads(a) for a in sys.argv[4:]]
results = []
for args in runs:
    sys.argv = [name, *args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            getattr(__import__(module, fromlist=[func]), func)()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps({"runs": results, "heavy": sorted(m for m in heavy if m in sys.modules)}))
"""


def _probe(script: str, *runs: list[str]) -> tuple[list[dict], list[str]]:
    module, func = SCRIPTS[script].split(":")
    cmd = [sys.executable, "-c", _PROBE, script, module, func, json.dumps(runs), json.dumps(HEAVY)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={"COLUMNS": "200", "PATH": ""}
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["runs"], result["heavy"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_answers_help_version_and_usage_errors_without_heavy_imports(script):
    assert len(SCRIPTS) == 6
    (help_, version, bad), heavy = _probe(script, ["--help"], ["--version"], ["--no-such-option"])
    assert heavy == []  # what --help and usage errors cost: options parse before any heavy import
    assert help_["code"] == 0 and "Usage" in help_["out"] and "--version" in help_["out"]
    assert "<bool>" not in help_["out"]  # flags take no value
    assert (version["code"], version["out"].strip()) == (0, f"{script} {lsvit.__version__}")
    assert bad["code"] == 2 and "--no-such-option" in bad["err"]


def test_train_help_groups_its_options_in_panels_and_names_the_aug_keys():
    from dataclasses import fields

    from lsvit.trainer.augment import AugConfig
    from lsvit.trainer.train_cli import AUG_KEYS

    out = _probe("lsvit-train", ["--help"])[0][0]["out"]
    for panel in ("Data", "Model", "Optimisation", "Augmentation", "Validation and test", "Checkpointing",
                  "Hardware", "Run"):  # fmt: skip
        assert f"─ {panel} ─" in out, panel
    assert tuple(f.name for f in fields(AugConfig)) == AUG_KEYS
    assert "aug: mapping" in out and "p_rgb_shift" in out
    assert "--max-steps" in out and "--verbose" in out and "LSVIT_MAX_STEPS" in out


def test_a_url_prefix_keeps_its_double_slash(tmp_path):
    from typer.testing import CliRunner

    from lsvit.trainer.train_cli import train_app

    url = "https://127.0.0.1:9/shards/split1/"  # nothing listens on port 9: the index cannot be read
    result = CliRunner().invoke(train_app, ["--shards", url, "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert result.exit_code == 1 and url in str(result.exception)  # run_app turns it into one error line
