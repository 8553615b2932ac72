"""gpu/prepare.py and gpu/check.py where no GPU and no index are needed: choices, fallbacks, arguments."""

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", ROOT / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare, check, compare = _load("prepare"), _load("check"), _load("compare_extract")
VIDEOS = ROOT.parent / "shared" / "data" / "videos"


def test_prepare_fetches_our_requirements_but_never_the_targets_torch() -> None:
    reqs = [prepare._name(r) for r in prepare.requirements({"numpy", "typer"})]
    assert "torchcodec" in reqs and "webdataset" in reqs and "albumentations" in reqs
    assert not {"torch", "torchvision", "numpy", "typer"} & set(reqs)


def test_check_installs_what_pyproject_needs_and_the_test_tools() -> None:
    names = check.provision.needed()
    assert {"torchcodec", "webdataset", "albumentations", "pyyaml", "pytest"} <= set(names)
    assert "torch" not in names and "torchvision" not in names


def test_prepare_refuses_a_torch_too_old_for_torchcodec(capsys: pytest.CaptureFixture) -> None:
    prepare.check_torch("2.11.0+cu128")
    assert prepare.main(["--torch", "2.9.1", "--ffmpeg", "none"]) == 2
    assert "torch 2.9.1 is older than 2.11" in capsys.readouterr().err


@pytest.mark.slow
def test_check_rejects_unknown_steps_and_probes(capsys: pytest.CaptureFixture) -> None:
    assert check.main(["--steps", "tests,lunch"]) == 2
    assert "--steps lunch unknown; allowed: install, tests, extract, train, bench" in capsys.readouterr().err
    facts = json.loads(subprocess.run([sys.executable, str(ROOT / "gpu" / "check.py"), "--probe"],
                                      capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert facts["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert facts["torch"] and "torchcodec" in facts["have"]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback")
def test_check_without_cuda_skips_the_gpu_steps_and_writes_its_report(tmp_path: Path) -> None:
    report = tmp_path / "gpu-check.md"
    code = check.main(["--steps", "extract,train,bench", "--report", str(report), "--work", str(tmp_path)])
    text = report.read_text()
    assert code == 0 and text.startswith("# lsvit GPU check")
    assert text.count("skipped (no CUDA)") >= 3 and "FAIL" not in text


def test_check_links_pyav_ffmpeg_sonames_and_respects_deb_glibc(tmp_path: Path, monkeypatch) -> None:
    wheels, debs = tmp_path / "whl", tmp_path / "deb"
    wheels.mkdir(), debs.mkdir()
    with zipfile.ZipFile(wheels / "av-19.0.2-cp312-abi3-manylinux_2_28_x86_64.whl", "w") as z:
        z.writestr("av.libs/libavcodec-d61378e8.so.63.1.102", b"")
        z.writestr("av.libs/libswscale-cd7831fd.so.10.1.102", b"")
    (debs / "x.deb").write_bytes(b"")
    (debs / "MANIFEST.json").write_text(json.dumps({"glibc": "99.0", "debian": "99"}))
    monkeypatch.setattr(check, "ROOT", tmp_path)
    c = check.Check(check.argparse.Namespace(wheels=wheels, debs=debs, tail=5))
    assert "need glibc >= 99.0" in c._from_debs()
    assert "av-19.0.2" in c._from_av()
    libs = tmp_path / ".gpu-prefix" / "av" / "av.libs"
    assert (libs / "libavcodec.so.63").resolve().name == "libavcodec-d61378e8.so.63.1.102"
    assert (libs / "libswscale.so.10").is_symlink() and str(libs) in c.env["LD_LIBRARY_PATH"]


@pytest.mark.slow
@pytest.mark.skipif(not VIDEOS.is_dir(), reason="needs ../shared/data/videos")
def test_compare_extract_runs_on_two_cpu_extractions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert compare.main(["--videos", str(VIDEOS), "--work", str(tmp_path), "--devices", "cpu,cpu"]) == 0
    out = capsys.readouterr().out
    assert "same indices True" in out and "on cpu vs cpu: 0 differ" in out
    assert "frames  408" in out  # the genuine HMDB51 clip: 408 frames decode, not the header's 409
