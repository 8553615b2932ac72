"""lsvit-demo: the HTTP API (gradio_client) and the page in a real browser (Playwright + Debian chromium)."""

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers_deploy import HMDB_CLIP, free_port, make_checkpoint, needs_videos, run_cli

from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.synth import write_clip
from lsvit.trainer import webdemo
from lsvit.trainer.deploy_cli import demo_main
from lsvit.trainer.predict import Predictor

pytest_plugins = ["fixtures_train"]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browser download is not used


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory) -> Path:
    """51 classes, 16 frames of 32 px."""
    return make_checkpoint(tmp_path_factory.mktemp("demo_ckpt") / "best.pt", num_frames=16)


@pytest.fixture(scope="module")
def served(demo_checkpoint):
    """A demo app on a free loopback port: (url, its predictor)."""
    predictor = Predictor(demo_checkpoint, device="cpu")
    examples = [HMDB_CLIP] if HMDB_CLIP else []
    app = webdemo.build_app(predictor, examples, top_k=5, source="test")
    url = webdemo.serve(app, "127.0.0.1", free_port(), examples, block=False)
    yield url, predictor
    app.close()


@needs_videos
def test_api_predicts_a_real_clip_as_lsvit_predict_does(served):
    url, predictor = served
    top, frames, facts = Client(url, verbose=False).predict(handle_file(str(HMDB_CLIP)), api_name="/predict")
    want = predictor.predict(HMDB_CLIP).top(5)
    assert [c["label"] for c in top["confidences"]] == [c for c, _ in want]
    assert [c["confidence"] for c in top["confidences"]] == pytest.approx([p for _, p in want], abs=1e-6)
    # The genuine HMDB51 clip: its header says 409 frames, 408 decode; 16 frames spread over those.
    assert facts["frames_decoded"] == 408 and facts["frames_in_header"] == 409 and facts["padded"] == 0
    assert (facts["width"], facts["height"], facts["fps"]) == (320, 240, 30.0)
    assert facts["source_indices"] == [(2 * i + 1) * 408 // 32 for i in range(16)]
    assert [f["caption"] for f in frames] == [f"frame {i}" for i in facts["source_indices"]]
    assert all(Path(f["image"]).stat().st_size > 0 for f in frames)


def test_api_reports_a_bad_file_and_keeps_serving(served, tmp_path):
    url, _ = served
    client = Client(url, verbose=False)
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    with pytest.raises(AppError, match=r"^broken\.avi: (no video stream|not a readable video)") as e:
        client.predict(handle_file(str(bad)), api_name="/predict")
    assert "\n" not in str(e.value)
    short = tmp_path / "short.avi"  # 5 frames: the 16 sampled repeat the last one 11 times
    write_clip(short, np.full((5, 48, 64, 3), 90, np.uint8))
    _, frames, facts = client.predict(handle_file(str(short)), api_name="/predict")
    assert facts["frames_decoded"] == 5 and facts["padded"] == 11
    assert facts["source_indices"] == [0, 1, 2, 3] + [4] * 12
    assert sum("repeat" in f["caption"] for f in frames) == 11


@pytest.mark.slow
@needs_videos
def test_demo_serves_an_onnx_export_with_the_checkpoints_answer(demo_checkpoint, tmp_path):
    from lsvit.trainer.export import export_checkpoint
    from lsvit.trainer.onnxpredict import OnnxPredictor

    export_checkpoint(demo_checkpoint, tmp_path / "m.onnx", check=False)
    app = webdemo.build_app(OnnxPredictor(tmp_path / "m.onnx", "cpu"), [], top_k=5, source="onnx")
    url = webdemo.serve(app, "127.0.0.1", free_port(), block=False)
    try:
        top, frames, _ = Client(url, verbose=False).predict(handle_file(str(HMDB_CLIP)), api_name="/predict")
    finally:
        app.close()
    want = Predictor(demo_checkpoint, device="cpu").predict(HMDB_CLIP).top(5)
    assert [c["label"] for c in top["confidences"]] == [c for c, _ in want] and len(frames) == 16
    assert [c["confidence"] for c in top["confidences"]] == pytest.approx([p for _, p in want], abs=2e-6)


def test_default_examples_are_test_clips_of_the_training_data(tiny_shards):
    clips, note = webdemo.training_examples({"shards": str(tiny_shards), "split": 1}, k=3)
    assert len(clips) == 3 and all(p.is_file() for p in clips) and "test clips of" in note
    assert len({p.parent.name for p in clips}) == 3  # one per class
    assert all(int(p.name.split("_")[1]) >= 8 for p in clips)  # clips 8-11 of each class are the test ones
    none, why = webdemo.training_examples({"shards": str(tiny_shards / "nope"), "split": 1})
    assert none == [] and "--examples" in why


def test_example_and_missing_package_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(LsvitError, match="does not exist"):
        webdemo.expand_examples([tmp_path / "nope.avi"])
    with pytest.raises(LsvitError, match="holds no video files"):
        webdemo.expand_examples([tmp_path])
    code, _, err = run_cli(demo_main, ["--port", "7860"], capsys, monkeypatch)
    assert code == 2 and err.strip().startswith("error: pass either --checkpoint")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m: None if m == "gradio" else real_find_spec(m))
    code, _, err = run_cli(demo_main, ["--checkpoint", tmp_path / "x.pt"], capsys, monkeypatch)
    assert code == 2 and err.strip() == "error: lsvit-demo needs gradio: pip install 'lsvit[deploy]'"


def test_a_taken_port_is_a_one_line_error(served):
    url, predictor = served
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    app = webdemo.build_app(predictor, [], top_k=3)
    with pytest.raises(LsvitError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
        webdemo.serve(app, "127.0.0.1", port, block=False)


def _start_demo(checkpoint: Path, port: int, tmp: Path) -> subprocess.Popen:
    """``lsvit-demo`` as a user runs it, until it answers on ``port``."""
    script = Path(sys.executable).with_name("lsvit-demo")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from lsvit.trainer.deploy_cli "
                                                 "import demo_main; demo_main()"]  # fmt: skip
    cmd += ["--checkpoint", str(checkpoint), "--port", str(port), "--examples", str(HMDB_CLIP)]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"lsvit-demo exited {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail("lsvit-demo did not answer within 180 s")


@pytest.mark.slow
@needs_videos
def test_browser_upload_predict_shows_16_frames_and_top5(demo_checkpoint, tmp_path):
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} missing: `apt-get install chromium` (./dev installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = _start_demo(demo_checkpoint, port, tmp_path)
    outside: list[str] = []  # requests that would need the internet: none may be made

    def route(r) -> None:
        if r.request.url.startswith(f"http://127.0.0.1:{port}/") or r.request.url.startswith(
            ("data:", "blob:")
        ):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", route)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_load_state("networkidle")  # the app's scripts ran: the file input is live
            page.locator("#video input[type=file]").set_input_files(str(HMDB_CLIP))
            page.get_by_text(HMDB_CLIP.name).first.wait_for(timeout=30_000)
            page.click("#predict")
            page.wait_for_function("document.querySelectorAll('#frames img').length === 16", timeout=60_000)
            rows = page.locator("#top .confidence-set")
            rows.nth(4).wait_for(timeout=10_000)
            n_rows = rows.count()
            classes = [t.strip() for t in page.locator("#top .confidence-set dt").all_inner_texts()]
            captions = page.locator("#frames").inner_text()
            page.screenshot(path=tmp_path / "demo.png", full_page=True)
            bad = tmp_path / "broken.avi"
            bad.write_bytes(b"RIFF garbage" * 30)
            page.reload()  # a fresh page, as a new visitor (the file input holds the first clip)
            page.wait_for_load_state("networkidle")
            page.locator("#video input[type=file]").set_input_files(str(bad))
            page.get_by_text("broken.avi").first.wait_for(timeout=30_000)
            page.click("#predict")
            toast = page.get_by_text("broken.avi: not a readable video")
            toast.first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)  # the toast fades in
            page.screenshot(path=tmp_path / "demo-error.png", full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    want = Predictor(demo_checkpoint, device="cpu").predict(HMDB_CLIP).top(5)
    assert n_rows == 5 and classes == [c for c, _ in want]
    assert "frame 12" in captions and "frame 395" in captions  # first and last of the 16 source indices
    assert (tmp_path / "demo.png").stat().st_size > 20_000
    assert outside == [], f"the page asked the internet for {outside}"


def test_a_model_trained_on_synthetic_data_says_so_on_the_page_and_for_real_clips(tmp_path):
    predictor = Predictor(make_checkpoint(tmp_path / "best.pt", classes=["a", "b", "c"], num_frames=4), "cpu")
    predictor.synthetic = {"generator": "lsvit synth", "motions": 2}  # as a checkpoint from synth's shards
    app = webdemo.build_app(predictor, [], 3, "test")
    header = next(b.value for b in app.blocks.values() if type(b).__name__ == "Markdown")
    assert "Trained on synthetic data (lsvit synth; motions 2)" in header
    predict = next(iter(app.fns.values())).fn
    (tmp_path / "tree" / "wave").mkdir(parents=True)
    (tmp_path / "tree" / "synth.json").write_text("{}")
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    for clip in (tmp_path / "real.avi", tmp_path / "tree" / "wave" / "synthetic.avi"):
        write_clip(clip, frames)
    assert "predictions on real video mean nothing" in predict(str(tmp_path / "real.avi"))[2]["note"]
    assert "note" not in predict(str(tmp_path / "tree" / "wave" / "synthetic.avi"))[2]
