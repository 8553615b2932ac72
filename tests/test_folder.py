"""A user's own dataset (--dataset folder): the CSV, the stratified split of a bare tree, and extraction."""

import json
import sys
from pathlib import Path

import pytest
import webdataset as wds

import lsvit.pipeline.extract as ex
from lsvit.pipeline.cli import main
from lsvit.pipeline.eda import split_files_report
from lsvit.pipeline.folder import locate, read_csv, scan_tree, stratified_split
from lsvit.pipeline.shardindex import read_index
from lsvit.pipeline.splits import SplitError

# class -> [(name, flag, frames)]: frames 0 = zero-byte, -1 = garbage, None = not on disk (conftest).
LAYOUT = {
    "dribble": [(f"d{i}.mp4", 1, 17 + i) for i in range(4)] + [("broken.mp4", 1, -1)],
    "juggle": [(f"j{i}.avi", 1, 16 + i) for i in range(3)] + [("notes.txt", 1, -1)],
    "Wave Hello": [("w0.mkv", 1, 16), ("w1.mkv", 1, 18)],
}


def _csv(path: Path, rows: list[str], header: str = "path,label,subset") -> Path:
    path.write_bytes(("\ufeff" + header + "\r\n" + "".join(f"{r}\r\n" for r in rows)).encode())
    return path


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Runs ``lsvit-pipeline ARGS`` in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lsvit-pipeline", *args])
    try:
        main()
    except SystemExit as e:
        return e.code or 0, capsys.readouterr().err
    return 0, capsys.readouterr().err


@pytest.fixture(scope="module")
def tree(make_hmdb) -> Path:
    root = make_hmdb(LAYOUT)  # clips in <root>/<class>/; its HMDB51 split folder holds no videos
    (root / "juggle" / ".hidden.avi").write_bytes(b"")
    (root / "empty").mkdir()
    return root


def test_stratified_split_on_literal_names() -> None:
    names = {"a": [f"a{i}" for i in range(10)], "b": ["b0", "b1"], "c": ["c0"]}
    split = stratified_split(names, 0.3)
    assert split == stratified_split(dict(reversed(names.items())), 0.3)  # depends on the names alone
    assert sum(s == "test" for s in split["a"].values()) == 3
    assert sorted(split["b"].values()) == ["test", "train"] and split["c"] == {"c0": "train"}
    # groups stay whole: one source video per letter, never on both sides
    grouped = stratified_split({"a": [f"{g}_{i}" for g in "pqrst" for i in range(4)]}, 0.3, lambda n: n[0])
    for g in "pqrst":
        assert len({s for n, s in grouped["a"].items() if n[0] == g}) == 1
    assert 4 <= sum(s == "test" for s in grouped["a"].values()) <= 8
    assert set(stratified_split({"a": ["x_0", "x_1"]}, 0.3, lambda n: "x")["a"].values()) == {"train"}


def test_scan_tree(tree: Path) -> None:
    spec = scan_tree(tree)
    assert spec.classes == ["Wave Hello", "dribble", "juggle"] and spec.subsets == ("train", "test")
    by_class = {c: sorted((e.name, e.subset) for e in spec.clips if e.cls == c) for c in spec.classes}
    assert [n for n, _ in by_class["juggle"]] == ["j0.avi", "j1.avi", "j2.avi"]  # .txt and hidden skipped
    assert {c: sum(s == "test" for _, s in v) for c, v in by_class.items()} == {
        "Wave Hello": 1,
        "dribble": 1,  # 30 % of 5 clips: 1.5, a tie goes to train
        "juggle": 1,
    }
    assert scan_tree(tree) == spec
    notes = " | ".join(spec.notes)
    assert "skipped 2 file(s) without a video extension or hidden" in notes and "juggle/notes.txt" in notes
    assert "'empty'" in notes and "'testTrainMulti_7030_splits'" in notes


def test_the_tree_split_keeps_source_videos_together(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    names = [f"{video}_{i}.mp4" for video, n in (("x", 3), ("y", 2), ("z", 2), ("w", 3)) for i in range(n)]
    for name in names:
        (tmp_path / "a" / name).write_bytes(b"x")
    subset = {c.name: c.subset for c in scan_tree(tmp_path).clips}
    for video in "xyzw":
        assert len({s for n, s in subset.items() if n.startswith(video)}) == 1, video
    assert 2 <= sum(s == "test" for s in subset.values()) <= 4  # about 30 % of 10 clips


def test_unsafe_names_in_the_tree(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a\x01b.mp4").write_bytes(b"x")
    (tmp_path / "ok" / "fine.mp4").write_bytes(b"x")
    spec = scan_tree(tmp_path)
    assert {c.name: bool(c.problem) for c in spec.clips} == {"a\x01b.mp4": True, "fine.mp4": False}
    (tmp_path / "bad\x02class").mkdir()
    with pytest.raises(SplitError, match=r"class folder in .*: class name 'bad\\x02class' contains a NUL"):
        scan_tree(tmp_path)


def test_csv(tmp_path: Path) -> None:
    path = _csv(
        tmp_path / "splits.csv",
        [
            "7,dribble/d0.mp4,dribble,train",
            '8,"juggle/j,1.avi",juggle,VAL',
            "9,./juggle/j2.avi, juggle ,test",
            "",
        ],
        header="id,path,label,subset",  # extra columns are ignored; a BOM and CRLF are fine
    )
    spec = read_csv(path)
    assert spec.classes == ["dribble", "juggle"] and spec.subsets == ("train", "val", "test")
    assert [(c.rel_path, c.label, c.subset) for c in spec.clips] == [
        ("dribble/d0.mp4", 0, "train"),
        ("juggle/j,1.avi", 1, "val"),
        ("juggle/j2.avi", 1, "test"),
    ]
    spec = read_csv(_csv(tmp_path / "b.csv", ["a/x.mp4,a,train", "a/../../etc.mp4,a,test"]))
    assert spec.subsets == ("train", "test") and "separator" in spec.clips[1].problem


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([], "file,label,subset", r"b\.csv:1: the header must name the columns path,label,subset"),
        (["a/x.mp4,a,unused"], None, r"b\.csv:2: subset 'unused'; allowed: train, val, test"),
        (["a/x.mp4,a"], None, r"b\.csv:2: 2 field\(s\), the header names 3"),
        (["b/x.mp4,a,train"], None, r"b\.csv:2: path 'b/x\.mp4' is not in its class folder 'a/'"),
        (["../x.mp4,..,train"], None, r"b\.csv:2: label: class name '\.\.' refers to a parent"),
        (["a/x.mp4,a,train", "a/x.mp4,a,test"], None, r"b\.csv:3: 'a/x\.mp4' already listed on line 2"),
        (['"a/x.mp4,a,train'], None, r"b\.csv:\d+: not valid CSV \(unexpected end of data\)"),
        (['"a"b,a,train'], None, r"b\.csv:2: not valid CSV"),
    ],
)
def test_bad_csv_is_an_error_naming_the_line(tmp_path: Path, rows, header, message) -> None:
    with pytest.raises(SplitError, match=message):
        read_csv(_csv(tmp_path / "b.csv", rows, header or "path,label,subset"))


def test_locate(tree: Path, tmp_path: Path) -> None:
    assert locate(tree) == tree and locate(None, tree) == tree and locate(tree, tree) == tree
    csv = _csv(tmp_path / "mine.csv", ["a/x.mp4,a,train"])
    assert locate(tree, csv) == csv
    with pytest.raises(SplitError, match=r"holds no splits\.csv; pass the CSV"):
        locate(tree, tmp_path)
    with pytest.raises(SplitError, match=r"does not exist; pass --data-root"):
        locate(tmp_path / "nope")
    _csv(tmp_path / "splits.csv", ["a/x.mp4,a,train"])
    assert locate(tmp_path) == tmp_path / "splits.csv" == locate(None, tmp_path)


def test_extract_with_a_csv(tree: Path, tmp_path: Path) -> None:
    rows = [
        "dribble/d0.mp4,dribble,train",
        "dribble/d1.mp4,dribble,train",
        "dribble/broken.mp4,dribble,train",
    ]
    rows += ["juggle/j0.avi,juggle,train", "juggle/j1.avi,juggle,val", "juggle/gone.avi,juggle,val"]
    rows += ["dribble/d2.mp4,dribble,test", "juggle/j2.avi,juggle,test", "juggle/..x,juggle,test"]
    csv = _csv(tmp_path / "mine.csv", rows)
    cfg = ex.ExtractConfig(dataset="folder", data_root=tree, splits_dir=csv, out=tmp_path / "s", device="cpu")
    summary = ex.run_extract(cfg, progress=False)
    index = read_index(Path(summary["split_dir"]))
    assert index.dataset == "folder" and index.classes == ["dribble", "juggle"]
    assert index.subsets == ["train", "val", "test"] and index.config["splits_dir"] == str(csv)
    assert index.counts == {
        "train": {"dribble": 2, "juggle": 1},
        "val": {"dribble": 0, "juggle": 1},
        "test": {"dribble": 1, "juggle": 1},
    }
    failures = [
        json.loads(x) for x in (tmp_path / "s" / "split1" / "failures.jsonl").read_text().splitlines()
    ]
    reasons = {f["clip"]: f["reason"] for f in failures}
    assert set(reasons) == {"dribble/broken.mp4", "juggle/gone.avi", "juggle/..x"}
    assert reasons["juggle/gone.avi"] == "file not found" and reasons["juggle/..x"].startswith(
        "unsafe clip name"
    )
    assert "val" in index.data["manifests"]
    val = list(wds.WebDataset([u for u, _ in index.shard_urls("val")], shardshuffle=False).decode("rgb8"))
    assert [s["json"]["clip"] for s in val] == ["juggle/j1.avi"] and val[0]["f00.jpg"].shape == (24, 32, 3)


def test_extract_and_eda_without_a_csv(tree: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "shards"
    argv = ["extract", "--dataset", "folder", "--data-root", str(tree), "--out", str(out)]
    code, err = _run(monkeypatch, capsys, *argv, "--device", "cpu", "--workers", "0")
    assert code == 0 and "note: skipped 2 file(s) without a video extension" in err
    index = read_index(out / "split1")
    spec = scan_tree(tree)
    assert index.classes == spec.classes and index.subsets == ["train", "test"]
    assert sum(index.counts["test"].values()) + index.data["num_failures"] == 4  # dribble's broken.mp4 failed
    assert index.config["splits_dir"] == str(tree)
    assert _run(monkeypatch, capsys, "eda", "--shards", str(out), "--out", str(tmp_path / "e"))[0] == 0
    assert json.loads((tmp_path / "e" / "eda.json").read_text())["dataset"] == "folder"
    code, err = _run(monkeypatch, capsys, "eda", "--shards", str(out), "--dataset", "ucf101")
    assert code == 2 and "were extracted from folder (index.json), not --dataset ucf101" in err


def test_eda_of_the_split_definition(tree: Path, tmp_path: Path) -> None:
    report = split_files_report(tree, "folder")
    assert report["dataset"] == "folder" and list(report["splits"]) == ["1"]
    assert report["counts"]["all"]["counts"] == {"Wave Hello": 2, "dribble": 5, "juggle": 3}
    assert any("skipped" in n for n in report["notes"])
    csv = _csv(tmp_path / "x.csv", ["a/1.mp4,a,train", "a/2.mp4,a,val", "b/3.mp4,b,test"])
    assert split_files_report(csv, "folder")["splits"]["1"]["val"]["total"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--dataset", "folder"],
            "error: --dataset folder needs --data-root (the tree: <data-root>/<class>/<clip>",
        ),
        (
            ["--dataset", "folder", "--data-root", "{tree}", "--split", "2"],
            "error: split 2 is not a split of a folder",
        ),
    ],
)
def test_cli_errors_are_one_line(tree: Path, tmp_path: Path, monkeypatch, capsys, args, message) -> None:
    code, err = _run(
        monkeypatch, capsys, "extract", *[a.format(tree=tree) for a in args], "--out", str(tmp_path)
    )
    assert code == 2 and err.strip().startswith(message) and "\n" not in err.strip()


@pytest.mark.slow
def test_training_selects_on_the_csv_val_subset(tree: Path, tmp_path: Path, capsys) -> None:
    import torch

    import lsvit.trainer.train as tt
    from lsvit.trainer.config import TrainConfig
    from lsvit.trainer.eval_checkpoint import evaluate_checkpoint

    rows = [f"dribble/d{i}.mp4,dribble,{s}" for i, s in enumerate(["train", "train", "val", "test"])]
    rows += [f"juggle/j{i}.avi,juggle,{s}" for i, s in enumerate(["train", "val", "test"])]
    rows += ["Wave Hello/w0.mkv,Wave Hello,train", "Wave Hello/w1.mkv,Wave Hello,test"]
    csv = _csv(tmp_path / "mine.csv", rows)
    cfg = ex.ExtractConfig(dataset="folder", data_root=tree, splits_dir=csv, out=tmp_path / "s", device="cpu")
    ex.run_extract(cfg, progress=False)
    torch.manual_seed(0)
    shape = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2)
    run = TrainConfig(shards=str(tmp_path / "s"), out=str(tmp_path / "run"), model_kwargs=shape, img_size=16,
                      num_frames=4, epochs=1, batch_size=2, workers=0, device="cpu")  # fmt: skip
    tt.train(run)
    assert "validation: the dataset's own val subset (2 clips); --val-fraction does not apply" in " ".join(
        capsys.readouterr().err.split()
    )
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["val_clips"] == 2 and row["test_clips"] == 3
    assert json.loads((tmp_path / "run" / "results.json").read_text())["selected_by"] == "val_top1"
    val = evaluate_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "s", "val", device="cpu", workers=0)
    assert val["metrics"]["top1"] == pytest.approx(row["val_top1"])
