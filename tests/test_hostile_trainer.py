"""Hostile checkpoints for lsvit-train --resume, -predict, -eval, -export and -demo: one `error:` line (exit 2),
never a traceback or torch's weights_only=False advice, and nothing written or allocated.
(Configs: test_hostile_config.py; shards, disks and runs: test_hostile_training.py.)"""

import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch
from helpers_hostile import edit_checkpoint, files, one_error, run_main

from lsvit.trainer import checkpoint as ck
from lsvit.trainer.cli import eval_main, predict_main, train_main
from lsvit.trainer.deploy_cli import demo_main, export_main

pytest_plugins = ["fixtures_train", "fixtures_hostile"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip(shards: Path) -> Path:
    return next((shards.parent / "data").rglob("*.avi"))


def _tool(name: str, ckpt: Path, shards: Path, out: Path) -> tuple:
    """The entry point and arguments that load ``ckpt`` with each tool (outputs under ``out``)."""
    return {
        "predict": (predict_main, "--checkpoint", ckpt, "--device", "cpu", _clip(shards)),
        "eval": (eval_main, "--checkpoint", ckpt, "--shards", shards, "--out", out, "--device", "cpu"),
        "export": (export_main, "--checkpoint", ckpt, "--out", out / "m.onnx"),
        "demo": (demo_main, "--checkpoint", ckpt, "--device", "cpu"),
        "resume": (train_main, "--resume", ckpt, "--shards", shards, "--out", out, "--workers", "0"),
    }[name]


def _not_checkpoints(d: Path, run: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not lsvit checkpoints, and the reason each message gives."""
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("hello\n")
    torch.save(torch.nn.Linear(2, 2), d / "module.pt")  # a pickled module: never unpickled
    (d / "cut.pt").write_bytes((run / "last.pt").read_bytes()[:4000])
    torch.save([1, 2], d / "list.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, d / "weights.pt")
    (d / "folder.pt").mkdir()
    (d / "pickle.pt").write_bytes(pickle.dumps({"model": 1}))
    return {
        "empty": (d / "empty.pt", "an empty file (0 bytes)"),
        "text": (d / "text.pt", "not a torch file"),
        "module": (d / "module.pt", "it holds pickled Python objects, which lsvit never unpickles"),
        "truncated": (d / "cut.pt", "a damaged or truncated torch file"),
        "list": (d / "list.pt", "it holds a list, not a dict"),
        "state-dict": (d / "weights.pt", "missing model, config, classes, epoch"),
        "folder": (d / "folder.pt", "a folder or device, not a file"),
        "plain-pickle": (d / "pickle.pt", "it holds pickled Python objects, which lsvit never unpickles"),
    }


KINDS = ["empty", "text", "module", "truncated", "list", "state-dict", "folder", "plain-pickle"]


# Defects 9 and 11: a 0-byte file or a non-checkpoint, for every tool that loads checkpoints --------------


@pytest.mark.parametrize("tool", ["predict", "eval", "export", "demo", "resume"])
def test_a_non_checkpoint_is_one_line_for_every_tool(
    tiny_shards, tiny_run, tmp_path, monkeypatch, capsys, tool
):
    bad = _not_checkpoints(tmp_path, tiny_run)
    for kind in KINDS:
        path, why = bad[kind]
        out = tmp_path / f"out-{kind}"
        main, *args = _tool(tool, path, tiny_shards, out)
        code, stdout, err = run_main(main, monkeypatch, capsys, *args)
        line = one_error(err)
        assert (
            code == 2
            and line
            == f"error: {path} is not an lsvit checkpoint ({why}); pass a best.pt or last.pt written by lsvit-train"
        ), (kind, line)
        assert "weights_only" not in err + stdout and "arbitrary code" not in err + stdout
        assert files(out) == []  # nothing written: no run folder, no report, no .onnx


def test_a_missing_checkpoint_and_dev_null(tiny_shards, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(
        predict_main, monkeypatch, capsys, "--checkpoint", tmp_path / "no.pt", _clip(tiny_shards)
    )
    assert code == 2 and f"checkpoint {tmp_path / 'no.pt'} does not exist" in one_error(err)
    code, _, err = run_main(
        predict_main, monkeypatch, capsys, "--checkpoint", "/dev/null", _clip(tiny_shards)
    )
    assert code == 2 and "/dev/null is not an lsvit checkpoint (a folder or device, not a file)" in one_error(
        err
    )


# Defect 10: tensors of other shapes ------------------------------------------------------------------


def _shape_edits(run: Path) -> dict[str, tuple[dict, str]]:
    saved = torch.load(run / "last.pt", weights_only=True)
    wider = dict(saved["config"], model_kwargs=dict(saved["config"]["model_kwargs"], embed_dim=96))
    head = dict(saved["model"], **{"head.weight": torch.zeros(7, 64)})
    return {
        "config-width": (dict(config=wider), "cls_token is (1, 1, 64) in the file, (1, 1, 96) in the model"),
        "more-classes": (
            dict(classes=[*saved["classes"], "extra"]),
            "head.weight is (5, 64) in the file, (6, 64) in the model",
        ),
        "head": (dict(model=head), "head.weight is (7, 64) in the file, (5, 64) in the model"),
        "ema": (dict(ema=head), "(its EMA weights): head.weight is (7, 64) in the file"),
    }


@pytest.mark.parametrize("tool", ["predict", "eval", "resume"])
def test_tensors_of_other_shapes_do_not_match_their_own_config(
    tiny_shards, tiny_run, tmp_path, monkeypatch, capsys, tool
):
    for name, (changes, detail) in _shape_edits(tiny_run).items():
        if tool == "resume" and name == "more-classes":
            continue  # its best_confusion (5x5) is refused first, see test_malformed_checkpoint_fields
        path = edit_checkpoint(tiny_run / "last.pt", tmp_path / f"{name}.pt", **changes)
        main, *args = _tool(tool, path, tiny_shards, tmp_path / "out")
        code, _, err = run_main(main, monkeypatch, capsys, *args)
        line = one_error(err)
        assert code == 2 and line.startswith(f"error: checkpoint {path} does not match its own config"), line
        assert detail in line and "RuntimeError" not in err
        assert files(tmp_path / "out") == []


# Defect 14: a checkpoint's model_kwargs never reach timm unchecked ----------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"checkpoint_path": "/etc/passwd"},
            "model_kwargs 'checkpoint_path' not accepted by lsvit_tiny_patch16_224",
        ),
        ({"pretrained_cfg": {"file": "/etc/passwd"}}, "model_kwargs 'pretrained_cfg' not accepted"),
        ({"embed_dim": 10**9}, "model_kwargs embed_dim=1000000000 must be in [1, 8192]"),
        ({"depth": -1}, "model_kwargs depth=-1 must be in [1, 128]"),
        ({"patch_size": 64}, "model_kwargs patch_size=64 must be at most img_size=32"),
    ],
    ids=["checkpoint_path", "pretrained_cfg", "huge-width", "negative-depth", "patch-over-image"],
)
def test_checkpoint_model_kwargs_are_checked_before_timm(tiny_run, tmp_path, monkeypatch, kwargs, message):
    saved = torch.load(tiny_run / "last.pt", weights_only=True)
    cfg = dict(saved["config"], model_kwargs={**saved["config"]["model_kwargs"], **kwargs})
    path = edit_checkpoint(tiny_run / "last.pt", tmp_path / "k.pt", config=cfg)
    calls = []
    monkeypatch.setattr(ck.timm, "create_model", lambda *a, **kw: calls.append(kw))
    with pytest.raises(ck.CheckpointError, match="holds an invalid config") as e:
        ck.load_checkpoint(path)
    assert message in str(e.value) and calls == []  # refused before any model is built


def test_a_huge_model_in_a_small_checkpoint_is_refused_before_allocating(tiny_run, tmp_path):
    saved = torch.load(tiny_run / "last.pt", weights_only=True)
    kw = dict(saved["config"]["model_kwargs"], embed_dim=8192, depth=64, num_heads=64)  # ~51B parameters
    path = edit_checkpoint(
        tiny_run / "last.pt", tmp_path / "huge.pt", config=dict(saved["config"], model_kwargs=kw)
    )
    t0 = time.perf_counter()
    with pytest.raises(
        ck.CheckpointError,
        match=r"does not match its own config: cls_token is \(1, 1, 64\) in the file, \(1, 1, 8192\)",
    ):
        ck.load_checkpoint(path)  # compared on the meta device: 200 GB would not fit here
    assert time.perf_counter() - t0 < 60


# Weak spot: every field a reader or a resumed run uses is checked ------------------------------------


def _field_edits(run: Path) -> list[tuple[str, dict, str, tuple[str, ...]]]:
    saved = torch.load(run / "last.pt", weights_only=True)
    rng = saved["rng"][0]
    pre = dict(saved["preprocess"], img_size=64)
    return [
        (
            "no-optimizer",
            dict(optimizer=...),
            "cannot be resumed: it has no optimizer (a weights-only copy?)",
            ("resume",),
        ),
        ("rng-empty", dict(rng=[]), "rng=[] must be a non-empty list of RNG states", ("resume",)),
        (
            "rng-garbage",
            dict(rng=[dict(rng, python=(3, [1, 2], None))]),
            "rng[0] python must be random.getstate()",
            ("resume",),
        ),
        ("epoch-x", dict(epoch="x"), "epoch='x' must be an integer >= 0", ("resume", "predict")),
        ("epoch-negative", dict(epoch=-5), "epoch=-5 must be an integer >= 0", ("resume", "eval")),
        (
            "best-after-last",
            dict(best_epoch=9),
            "best_epoch=9 must be an integer in 0..epoch (1)",
            ("resume",),
        ),
        (
            "confusion",
            dict(best_confusion=torch.zeros(2, 2, dtype=torch.int64)),
            "best_confusion must be an integer tensor of shape (5, 5)",
            ("resume",),
        ),
        (
            "optimizer-groups",
            dict(optimizer={"state": {}, "param_groups": []}),
            "its training state does not fit the run",
            ("resume",),
        ),
        (
            "classes-twice",
            dict(classes=["a", "a", "b", "c", "d"]),
            "classes holds a name twice",
            ("predict",),
        ),
        (
            "not-a-tensor",
            dict(model=dict(saved["model"], extra=[1, 2])),
            "model entry 'extra' is not a named tensor",
            ("predict",),
        ),
        ("config-list", dict(config=[1]), "config must be a mapping of options", ("predict",)),
        (
            "preprocess",
            dict(preprocess=pre),
            "preprocess img_size=64 differs from config img_size=32",
            ("predict", "eval"),
        ),
        (
            "seed",
            dict(config=dict(saved["config"], seed=-1)),
            "holds an invalid config: seed=-1 must be an integer in 0..4294967295",
            ("predict",),
        ),
        (
            "unknown-option",
            dict(config=dict(saved["config"], future_option=1)),
            "was written by another version of lsvit (options future_option)",
            ("predict", "resume"),
        ),
    ]


def test_malformed_checkpoint_fields_are_one_line(tiny_shards, tiny_run, tmp_path, monkeypatch, capsys):
    for name, changes, message, tools in _field_edits(tiny_run):
        run = tmp_path / name
        shutil.copytree(tiny_run, run)
        path = edit_checkpoint(run / "last.pt", run / "last.pt", **changes)
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".lock"}
        for tool in tools:
            main, *args = _tool(tool, path, tiny_shards, run if tool == "resume" else tmp_path / "out")
            if tool == "resume":
                args += ["--epochs", "3"]
            code, _, err = run_main(main, monkeypatch, capsys, *args)
            line = one_error(err)
            assert code == 2 and message in line and str(path) in line, (name, tool, line)
            after = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".lock"}
            assert after == before  # nothing trained or written
            assert "epoch 2/3" not in err
