"""Runs you can watch: plain progress lines off a terminal, the figures, TensorBoard events, the header,
--max-steps, and the synthetic-data flag from the shards to every checkpoint, predict and the ONNX file."""

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_deploy import make_checkpoint, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lsvit.pipeline.progress import LineProgress, progress_bar
from lsvit.pipeline.synth import write_clip
from lsvit.trainer import synthetic
from lsvit.trainer.cli import predict_main, train_main
from lsvit.trainer.plots import accuracy_limit, plot_curves, plot_per_class
from lsvit.trainer.predictions import csv_header
from lsvit.trainer.tblog import epoch_scalars

pytest_plugins = ["fixtures_train"]

SHAPE = '{"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}'
TINY_ARGS = ["--model-kwargs", SHAPE, "--img-size", "32", "--num-frames", "8", "--batch-size", "4",
             "--workers", "0", "--device", "cpu", "--warmup-epochs", "0.5"]  # fmt: skip
SYNTH = {"generator": "lsvit synth", "motions": 2, "settings": {"scale": 0.5, "seed": 0}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- progress, figures, event tags, the synthetic note: no training -------------------------------------


def test_progress_off_a_terminal_is_whole_lines_and_silent_for_short_work():
    out = io.StringIO()  # not a terminal, as in Slurm or CI
    bar = progress_bar(total=4, desc="epoch 1/2", unit="batch", file=out, interval=0.0)
    assert isinstance(bar, LineProgress)
    for i in range(4):
        bar.update()
        bar.set_postfix(loss=f"{2 - i / 10:.2f}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) >= 4
    assert lines[0].startswith("epoch 1/2: 1/4 batch (25%)") and lines[-1].startswith("epoch 1/2: 4/4 batch")
    assert "loss=1.70" in lines[-1] and "█" not in out.getvalue()
    quiet = io.StringIO()
    for _ in progress_bar(range(50), desc="eval", file=quiet, interval=60.0):
        pass
    assert quiet.getvalue() == ""  # work shorter than the interval prints nothing


def test_accuracy_axis_scales_to_the_data_and_the_chance_level():
    assert accuracy_limit([0.05, 0.06], 1 / 51) == pytest.approx(0.06 * 1.15 + 0.02)
    assert accuracy_limit([0.0, 0.01], 1 / 51) == pytest.approx(1 / 51 * 1.15 + 0.02)  # chance stays visible
    assert accuracy_limit([0.99, float("nan")], 0.2) == 1.03


def test_curves_and_per_class_plots_are_written_for_any_run(tmp_path):
    rows = [dict(epoch=1, lr=1e-3, train_loss=2.0, test_loss=2.1, test_top1=0.2, test_top5=0.6, best_epoch=1)]
    plot_curves(rows, tmp_path / "c.png", 5)  # one epoch, no validation columns
    cm = np.diag([3, 0, 1, 2, 0])
    cm[1, 0] = 2  # class 4 has no clips: left out of the bars
    plot_per_class(cm, ["a", "b", "c", "d", "e"], tmp_path / "p.png", "per-class accuracy (x)")
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in ("c.png", "p.png"))


def test_epoch_scalars_map_metrics_to_tensorboard_tags():
    row = {"epoch": 3, "lr": 1e-3, "train_loss": 1.5, "val_top1": 0.4, "test_top1": float("nan"),
           "test_clips": 20, "best_val_top1": None, "epoch_s": 2.0}  # fmt: skip
    assert epoch_scalars(row) == {"epoch": 3.0, "train/epoch_loss": 1.5, "val/top1": 0.4, "perf/epoch_s": 2.0}


def test_without_the_tensorboard_package_a_run_says_so_and_goes_on(tmp_path, monkeypatch):
    from lsvit.trainer.tblog import EventLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    log = EventLog(tmp_path, 1)
    log.update(1, torch.tensor(2.0), 1e-3)
    log.epoch(1, {"epoch": 1, "train_loss": 2.0})
    log.close()
    assert "pip install 'tensorboard" in log.missing and list(tmp_path.iterdir()) == []


def test_synthetic_records_are_described_and_synthetic_clips_recognised(tmp_path):
    assert synthetic.info(None) is None and synthetic.info({}) is None
    assert synthetic.describe(SYNTH) == "lsvit synth; motions 2, settings {scale 0.5, seed 0}"
    assert synthetic.note(SYNTH) == (
        "note: this model was trained on synthetic data (lsvit synth); its predictions on real video mean nothing"
    )
    (tmp_path / "tree" / "wave").mkdir(parents=True)
    (tmp_path / "tree" / "synth.json").write_text("{}")
    clip, real = tmp_path / "tree" / "wave" / "a.avi", tmp_path / "b.avi"
    assert synthetic.is_synthetic_clip(clip) and not synthetic.is_synthetic_clip(real)
    assert synthetic.real_videos([clip, real]) == [real]


def test_predict_takes_folders_and_writes_csv_and_jsonl(tmp_path, capsys, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "best.pt", classes=["a", "b", "c", "d"], num_frames=4)
    rng = np.random.default_rng(0)
    for name in ("x/one.avi", "x/deep/two.AVI"):
        write_clip(tmp_path / name, rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8))
    (tmp_path / "x" / "deep" / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "x" / "notes.txt").write_text("not a video suffix: skipped")
    code, _, err = run_cli(predict_main, ["--checkpoint", ckpt, "--output", tmp_path / "p.csv", "--top-k", "3",
                                          tmp_path / "x"], capsys, monkeypatch)  # fmt: skip
    assert code == 1 and "broken.mp4" in err and "note:" not in err  # a real-data model: no note
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert (
        rows[0]
        == ",".join(csv_header(3))
        == ("path,class,probability,class_2,probability_2,class_3,probability_3,error")
    )
    assert [r.split(",")[0] for r in rows[1:]] == [
        str(tmp_path / "x" / p) for p in ("deep/broken.mp4", "deep/two.AVI", "one.avi")
    ]
    broken, two = rows[1].split(","), rows[2].split(",")
    assert broken[1] == "" and broken[-1] != "" and two[-1] == "" and two[1] in "abcd"
    assert float(two[2]) >= float(two[4]) >= float(two[6]) > 0
    code, out, _ = run_cli(predict_main, ["--checkpoint", ckpt, "--output", tmp_path / "p.jsonl",
                                          tmp_path / "x" / "one.avi"], capsys, monkeypatch)  # fmt: skip
    line = json.loads((tmp_path / "p.jsonl").read_text())
    assert code == 0 and "1 of 1 clips predicted" in out
    assert line["class"] == line["top"][0]["class"] and len(line["top"]) == 4  # 4 classes < --top-k 5
    code, _, err = run_cli(predict_main, ["--checkpoint", ckpt, "--output", tmp_path / "p.txt", tmp_path / "x"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 2 and "must end in .csv or .jsonl" in err and not (tmp_path / "p.txt").exists()
    code, _, err = run_cli(predict_main, ["--checkpoint", ckpt, tmp_path / "empty"], capsys, monkeypatch)
    assert code == 1 and "empty" in err  # a missing path is reported in its turn
    (tmp_path / "void").mkdir()
    code, _, err = run_cli(predict_main, ["--checkpoint", ckpt, tmp_path / "void"], capsys, monkeypatch)
    assert code == 2 and "holds no video files" in err


# --- a run on synthetic shards: header, streams, --max-steps, TensorBoard across a resume --------------


@pytest.fixture(scope="module")
def synth_shards(tiny_shards, tmp_path_factory) -> Path:
    """The tiny shards with an index that says synth made them."""
    out = tmp_path_factory.mktemp("synth") / "shards"
    shutil.copytree(tiny_shards, out)
    index = out / "split1" / "index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "synthetic": SYNTH}))
    return out


def _train(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["lsvit-train", *map(str, args), *TINY_ARGS])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


@pytest.mark.slow
def test_a_watched_run_resumes_its_events_and_stops_at_max_steps(synth_shards, tmp_path, monkeypatch, capsys):
    from lsvit.trainer import train as tt
    from lsvit.trainer.config import TrainConfig

    run = tmp_path / "runs" / "synth"
    cfg = json.loads(json.dumps(dict(shards=str(synth_shards), out=str(run), epochs=3, **dict(
        model_kwargs=json.loads(SHAPE), img_size=32, num_frames=8, batch_size=4, workers=0, device="cpu",
        warmup_epochs=0.5))))  # fmt: skip
    tt.train(TrainConfig(**cfg), stop_after=1)  # a run killed after its first epoch ...
    upe = torch.load(run / "last.pt", weights_only=True)["step"]
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run)) as w:  # ... that had logged updates past its checkpoint
        for step in range(upe + 1, upe + 4):
            w.add_scalar("train/loss", 99.0, step)
    code, out, err = _train(monkeypatch, capsys, "--shards", synth_shards, "--out", run, "--resume", "auto",
                            "--max-steps", upe + 2)  # fmt: skip
    assert code == 0, err
    header = dict(line.split(maxsplit=1) for line in out.splitlines()[1:10])
    assert header["data"].startswith("synthetic (lsvit synth; motions 2, settings {scale 0.5, seed 0}): ")
    assert "GFLOPs per 8x3x32x32 clip" in header["model"] and header["init"].startswith("resumed from")
    assert (
        header["clips"]
        == "train 35 (hybrid balancing: 35 draws an epoch), val 5 (held out of train), test 20"
    )
    assert "effective batch 4 (4 clips x 1 rank x 1 accumulation)" in header["batch"]
    assert header["device"] == "cpu (1 thread), float32 (AMP off)"
    assert f"--max-steps {upe + 2}: stopped at update {upe + 2}" in out and "epoch 2/3" in out
    assert (
        "best.pt: epoch" in out and "worst classes" in out and "┃ class" not in out
    )  # no table without --verbose
    assert "epoch 2/3" not in err and "resume: options changed" not in out  # results out, notes err
    results = json.loads((run / "results.json").read_text())
    assert results["stopped_by"].startswith("--max-steps") and results["synthetic"] == SYNTH
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    for name in ("curves.png", "confusion.png", "per_class.png", "per_class.csv"):
        assert (run / name).is_file(), name
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["synthetic"] == SYNTH and ckpt["step"] == upe + 2
    events = EventAccumulator(str(run))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, upe + 3))  # each update once, the orphans purged
    assert all(e.value < 10 for e in losses)
    assert [e.step for e in events.Scalars("val/top1")] == [upe, upe + 2]
    assert (
        len(events.Scalars("train/lr")) == upe + 2 and "run/header/text_summary" in events.Tags()["tensors"]
    )

    # predict says so on a clip that is not synthetic, and not on one of synth's own
    tree = tmp_path / "tree"
    (tree / "wave").mkdir(parents=True)
    (tree / "synth.json").write_text("{}")
    clip = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    write_clip(tree / "wave" / "s.avi", clip)
    write_clip(tmp_path / "real.avi", clip)
    best = run / "best.pt"
    code, _, err = run_cli(predict_main, ["--checkpoint", best, tree], capsys, monkeypatch)
    assert code == 0 and "note:" not in err
    code, _, err = run_cli(predict_main, ["--checkpoint", best, tmp_path / "real.avi"], capsys, monkeypatch)
    assert code == 0 and err.count(synthetic.note(SYNTH)) == 1


@pytest.mark.slow
def test_onnx_export_carries_the_synthetic_flag_and_predicts_the_same_rows(tmp_path, capsys, monkeypatch):
    from lsvit.trainer import checkpoint as ck
    from lsvit.trainer.deploy_cli import export_main
    from lsvit.trainer.onnxpredict import OnnxPredictor

    path = make_checkpoint(tmp_path / "best.pt", classes=["a", "b", "c"], num_frames=4)
    ck.save_checkpoint({**torch.load(path, weights_only=True), "synthetic": SYNTH}, path)
    code, _, err = run_cli(export_main, ["--checkpoint", path], capsys, monkeypatch)
    assert code == 0, err
    assert OnnxPredictor(tmp_path / "best.onnx", "cpu").synthetic == SYNTH
    write_clip(
        tmp_path / "v" / "real.avi", np.random.default_rng(1).integers(0, 255, (9, 32, 40, 3), np.uint8)
    )
    rows = {}
    for flag, model in (("--checkpoint", path), ("--model", tmp_path / "best.onnx")):
        out = tmp_path / f"{flag[2:]}.csv"
        code, _, err = run_cli(
            predict_main, [flag, model, "--output", out, tmp_path / "v"], capsys, monkeypatch
        )
        assert code == 0 and synthetic.note(SYNTH) in err
        rows[flag] = [r.split(",") for r in out.read_text().splitlines()]
    assert [r[0::2] for r in rows["--model"]] == [r[0::2] for r in rows["--checkpoint"]]  # path, classes
    probs = [[float(x) for x in r[2:-1:2]] for r in (rows["--model"][1], rows["--checkpoint"][1])]
    assert probs[0] == pytest.approx(probs[1], abs=2e-6)
