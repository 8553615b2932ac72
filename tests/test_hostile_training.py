"""Hostile training runs: damaged shards, a full disk, unusable or shared --out folders, kill -9. Each ends in
one `error:` line (exit 2) before the work it cannot do, and leaves what was finished intact."""

import errno
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_hostile import TINY, bomb, edit_sample, files, one_error, run_main
from PIL import Image

from lsvit.pipeline import lock
from lsvit.trainer import checkpoint as ck
from lsvit.trainer.cli import eval_main, train_main
from lsvit.trainer.config import TrainConfig
from lsvit.trainer.jpeg import MAX_FRAME_PIXELS, JpegHeaderError, jpeg_size
from lsvit.trainer.samples import SampleError, decode_clip, read_shard
from lsvit.trainer.train import train

pytest_plugins = ["fixtures_train", "fixtures_hostile"]
CLI = [sys.executable, "-m", "lsvit.trainer.cli"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def shards(tiny_shards, tmp_path) -> Path:
    """A copy of the tiny shards to damage."""
    return Path(shutil.copytree(tiny_shards, tmp_path / "shards"))


def _train(monkeypatch, capsys, tiny_yaml, shards: Path, out: Path, *args: str) -> tuple[int, str, str]:
    return run_main(
        train_main, monkeypatch, capsys, "--config", tiny_yaml, "--shards", shards, "--out", out, *args
    )


def _first_sample(shards: Path, shard: str = "test-000000.tar") -> dict:
    return next(iter(read_shard(str(shards / "split1" / shard))))


# Defect 8: a JPEG that declares 60000x60000 pixels, and other undecodable frames ----------------------


def test_jpeg_size_reads_only_the_header():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    assert jpeg_size(jpeg) == (48, 64)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(buf, "JPEG", progressive=True)  # SOF2
    assert jpeg_size(buf.getvalue()) == (48, 64)
    assert jpeg_size(bomb(jpeg, 8192, 8192)) == (8192, 8192) and MAX_FRAME_PIXELS >= 8192 * 8192
    for data, why in [
        (bomb(jpeg), "declares 60000x60000 pixels, more than any video frame"),
        (bomb(jpeg, 0, 64), "declares 64x0 pixels"),
        (b"junk", "is not a JPEG"),
        (jpeg[:100], "is cut short (100 bytes) before its frame header"),
        (jpeg[:2] + b"\x00" + jpeg[3:], "has a damaged header (no marker at byte 2)"),
        (b"\xff\xd8\xff\xd9", "is cut short"),
        (jpeg[:-200], f"is cut short ({len(jpeg) - 200} bytes, no end-of-image marker)"),
    ]:
        with pytest.raises(JpegHeaderError, match=re.escape(why)):
            jpeg_size(data)


@pytest.mark.parametrize("frame", [0, 5], ids=["first-frame", "later-frame"])
def test_a_decompression_bomb_frame_is_a_sample_error_naming_shard_and_key(tiny_shards, frame):
    sample = _first_sample(tiny_shards)
    name = f"f{frame:02d}.jpg"
    good = sample[name]
    sample[name] = bomb(good)
    for reduction in (None, lambda h, w: 2):
        with pytest.raises(SampleError) as e:
            decode_clip(sample, 8, reduction)
        msg = str(e.value)
        assert msg.startswith(
            f"sample {sample['__key__']!r} in {sample['__url__']}: {name} declares 60000x60000"
        )
        assert "lsvit-pipeline verify" in msg and "Decompression" not in msg
    sample[name] = good[:300] + b"\xff\xd9"  # a real size, but no image data
    with pytest.raises(SampleError, match=f"{name} is not a decodable JPEG"):
        decode_clip(sample, 8)
    sample[name] = good[:-300]  # cut short: OpenCV alone would fill the rest with grey and only warn
    with pytest.raises(SampleError, match=f"{name} is cut short .* no end-of-image marker"):
        decode_clip(sample, 8)


def test_a_damaged_shard_stops_training_before_the_first_epoch(
    shards, tmp_path, tiny_yaml, monkeypatch, capsys
):
    edit_sample(shards / "split1" / "test-000001.tar", 3, "f02.jpg", bomb)
    out = tmp_path / "run"
    code, _, err = _train(monkeypatch, capsys, tiny_yaml, shards, out)
    line = one_error(err)
    assert code == 2 and f"1 file(s) in {shards / 'split1'} do not match index.json: test-000001.tar" in line
    assert "rerun the `lsvit-pipeline extract` command that wrote them" in line
    assert "epoch 1/" not in err and not out.exists()  # nothing trained, no run folder left behind


def test_without_verification_a_bad_first_sample_still_stops_before_training(
    shards, tmp_path, tiny_yaml, monkeypatch, capsys
):
    key = edit_sample(shards / "split1" / "test-000000.tar", 0, "f04.jpg", bomb)
    out = tmp_path / "run"
    code, _, err = _train(monkeypatch, capsys, tiny_yaml, shards, out, "--no-verify-shards")
    line = one_error(err)
    assert (
        code == 2
        and f"sample '{key}' in {shards / 'split1' / 'test-000000.tar'}: f04.jpg declares 60000x60000" in line
    )
    assert "epoch 1/" not in err and not out.exists()


def test_a_sample_damaged_mid_shard_stops_training_in_one_line(
    shards, tmp_path, tiny_yaml, monkeypatch, capsys
):
    key = edit_sample(shards / "split1" / "test-000001.tar", 4, "f06.jpg", bomb)
    out = tmp_path / "run"
    # Two loader workers: the error crosses a process boundary and still arrives as its own line.
    code, _, err = _train(monkeypatch, capsys, tiny_yaml, shards, out, "--no-verify-shards", "--workers", "2")
    line = one_error(err)
    assert (
        code == 2 and f"sample '{key}' in {shards / 'split1' / 'test-000001.tar'}: f06.jpg declares" in line
    )
    assert (
        line.endswith("training stopped in epoch 1, no checkpoint was written yet")
        and "DataLoader" not in err
    )
    assert "config.json" in files(out) and not list(out.glob("*.pt"))  # no checkpoint of an untested epoch


@pytest.mark.parametrize("damage", ["test-tar-missing", "no-test-shards"])
def test_missing_test_shards_stop_training_before_the_first_epoch(
    shards, tmp_path, tiny_yaml, monkeypatch, capsys, damage
):
    split = shards / "split1"
    for tar in split.glob("test-*.tar"):
        tar.unlink()
    if damage == "no-test-shards":  # an index whose split has no test clips at all
        index = json.loads((split / "index.json").read_text())
        index["shards"] = [s for s in index["shards"] if s["subset"] != "test"]
        (split / "index.json").write_text(json.dumps(index))
    out = tmp_path / "run"
    code, _, err = _train(monkeypatch, capsys, tiny_yaml, shards, out, "--no-verify-shards")
    line = one_error(err)
    want = (
        "no 'test' shards; subsets present: ['train']"
        if damage == "no-test-shards"
        else "test-000000.tar listed in index.json is missing"
    )
    assert code == 2 and want in line, line
    assert "epoch 1/" not in err and not out.exists()


def test_eval_of_a_damaged_shard_or_into_a_file_is_one_line(
    shards, tiny_shards, tiny_run, tmp_path, monkeypatch, capsys
):
    key = edit_sample(shards / "split1" / "test-000002.tar", 1, "f00.jpg", lambda b: b[:-500])
    args = ["--checkpoint", tiny_run / "best.pt", "--device", "cpu", "--workers", "2"]
    code, _, err = run_main(
        eval_main, monkeypatch, capsys, *args, "--shards", shards, "--out", tmp_path / "r"
    )
    line = one_error(err)
    assert (
        code == 2
        and f"sample '{key}' in {shards / 'split1' / 'test-000002.tar'}: f00.jpg is cut short" in line
    )
    assert "DataLoader" not in err and not (tmp_path / "r").exists()
    (tmp_path / "file").write_text("x")
    code, _, err = run_main(
        eval_main, monkeypatch, capsys, *args, "--shards", tiny_shards, "--out", tmp_path / "file"
    )
    line = one_error(err)
    assert code == 2 and line.startswith(f"error: cannot write {tmp_path / 'file'} (File exists)"), line
    assert line.endswith("then rerun lsvit-eval") and (tmp_path / "file").read_text() == "x"


# Full disk, unusable --out ------------------------------------------------------------------------------


def test_a_full_disk_mid_run_names_the_file_and_resume_continues(tiny_shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = dict(TINY, shards=str(tiny_shards), out=str(out), epochs=2, val_fraction=0.0)
    sinks, write = [], ck._Sink.write

    def full_after_epoch_1(self, data):
        if self not in sinks:
            sinks.append(self)
        if len(sinks) > 2:  # epoch 1 wrote best.pt and last.pt; the disk is full from then on
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    monkeypatch.setattr(ck._Sink, "write", full_after_epoch_1)
    with pytest.raises(ck.LsvitError) as e:
        train(TrainConfig(**cfg))
    assert str(e.value) == (
        f"cannot write {out / 'best.pt'} (No space left on device); free space or fix the folder, then continue "
        f"with `lsvit-train --resume auto --out {out}` (the last checkpoint, {out / 'last.pt'}, is intact)"
    )
    assert not list(out.glob("*.tmp")) and ck.load_checkpoint(out / "last.pt", resume=True)["epoch"] == 1
    monkeypatch.undo()
    summary = train(TrainConfig(**{**cfg, "resume": "auto"}))  # space freed: it goes on from epoch 1
    assert summary["epochs"] == 2 and len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_leaves_no_half_file(tiny_shards, tiny_yaml, tmp_path):
    out = tmp_path / "run"
    limit = 200_000  # config, metrics and curves fit; a checkpoint (about 1.5 MB) does not

    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [*CLI, "--config", str(tiny_yaml), "--shards", str(tiny_shards), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=set_limit)
    line = one_error(r.stderr)
    assert r.returncode == 2 and line == (
        f"error: cannot write {out / 'best.pt'} (File too large); free space or fix the folder, then rerun the "
        "same command"
    )
    assert {".lock", "config.json", "curves.png", "metrics.jsonl"} <= set(files(out))
    assert not list(out.glob("*.pt")) and not list(out.glob("*.tmp"))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("{tmp}/file", "exists and is not a folder"),
        ("/dev/null", "exists and is not a folder"),
        ("{tmp}/file/sub", "a parent of it is a file, not a folder"),
        ("/proc/lsvit-run", "cannot create the folder"),
    ],
    ids=["file", "dev-null", "under-a-file", "proc"],
)
def test_an_unusable_out_is_one_line(tiny_shards, tiny_yaml, tmp_path, monkeypatch, capsys, where, message):
    (tmp_path / "file").write_text("not a folder")
    out = where.format(tmp=tmp_path)
    code, _, err = _train(monkeypatch, capsys, tiny_yaml, tiny_shards, Path(out))
    line = one_error(err)
    assert code == 2 and line.startswith(f"error: --out {out}: ") and message in line, line
    assert (tmp_path / "file").read_text() == "not a folder" and "epoch 1/" not in err


# Two runs into one --out, kill -9 -------------------------------------------------------------------------


def test_a_second_run_into_a_held_out_is_refused_and_writes_nothing(
    tiny_shards, tiny_yaml, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    with lock.hold(out, ".lock", "lsvit-train"):
        code, _, err = _train(monkeypatch, capsys, tiny_yaml, tiny_shards, out)
    line = one_error(err)
    assert code == 2 and f"{out} is in use by another lsvit-train run (pid {os.getpid()} on " in line
    assert "a killed run releases its lock by itself" in line and files(out) == [".lock"]


@pytest.mark.slow
def test_two_runs_into_one_out_the_second_is_refused_the_first_finishes(
    tiny_shards, tiny_yaml, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    cmd = [*CLI, "--config", str(tiny_yaml), "--shards", str(tiny_shards), "--out", str(out), "--epochs", "2"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((out / ".lock").is_file() and (out / ".lock").stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second could start"
    code, _, err = _train(monkeypatch, capsys, tiny_yaml, tiny_shards, out)
    line = one_error(err)
    assert code == 2 and f"{out} is in use by another lsvit-train run (pid {first.pid} on " in line
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2 and (out / "results.json").is_file()


@pytest.mark.slow
def test_kill_9_mid_run_resumes_from_the_last_checkpoint(
    tiny_shards, tiny_yaml, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    cmd = [*CLI, "--config", str(tiny_yaml), "--shards", str(tiny_shards), "--out", str(out), "--epochs", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "last.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if len((out / "metrics.jsonl").read_text().splitlines()) == 3:
        pytest.skip("the run finished before it could be killed")
    epoch = ck.load_checkpoint(out / "last.pt", resume=True)["epoch"]  # intact, whatever was being written
    code, _, err = run_main(
        train_main, monkeypatch, capsys, "--resume", "auto", "--out", out
    )  # nothing repeated
    assert code == 0, err
    assert re.sub(r"\s", "", f"resumed from {out / 'last.pt'} at epoch {epoch}") in re.sub(r"\s", "", err)
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert not list(out.glob("*.tmp"))


def test_a_damaged_metrics_file_is_one_line_on_resume(tiny_run, tmp_path, monkeypatch, capsys):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo')
    cfg = json.loads((run / "config.json").read_text())
    code, _, err = run_main(
        train_main,
        monkeypatch,
        capsys,
        "--resume",
        "auto",
        "--out",
        run,
        "--epochs",
        "2",
        "--shards",
        cfg["shards"],
    )
    line = one_error(err)
    assert code == 2 and f"{run / 'metrics.jsonl'} is damaged" in line and "--resume auto" in line
    assert "epoch 2/" not in err  # found before training, not after an epoch
    assert ck.load_checkpoint(run / "last.pt")["epoch"] == 1  # the checkpoint of epoch 1 was kept
