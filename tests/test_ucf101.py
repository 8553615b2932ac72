"""UCF101: the official lists read as distributed, and extraction of real UCF101 clips."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import webdataset as wds
from typer.testing import CliRunner

import lsvit.pipeline.extract as ex
from lsvit.pipeline.cli import app, main
from lsvit.pipeline.merge import MergeError, merge_parts
from lsvit.pipeline.shardindex import read_index
from lsvit.pipeline.splits import SplitError
from lsvit.pipeline.ucf101 import find_lists_dir, load_classes, load_split, straddling_groups

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LISTS, VIDEOS = DATA / "ucf101_splits", DATA / "videos"
needs_real = pytest.mark.skipif(not LISTS.is_dir(), reason=f"real UCF101 lists not at {LISTS}")
needs_clips = pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"real clips not at {VIDEOS}")
# The real clips, by their UCF101 paths (mmaction2's test.avi is v_ApplyEyeMakeup_g01_c01.avi).
REAL_CLIPS = {
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": "mmaction2__test.avi",
    "BenchPress/v_BenchPress_g01_c03.avi": "ucf101__v_BenchPress_g01_c03.avi",
    "Diving/v_Diving_g01_c02.avi": "ucf101__v_Diving_g01_c02.avi",
}


def _lists(d: Path, classes: list[str], train: list[str], test: list[str], split: int = 1) -> Path:
    """Writes official-format lists (CRLF, 1-based labels in the train list, none in the test list)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "classInd.txt").write_bytes("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)).encode())
    (d / f"trainlist{split:02d}.txt").write_bytes("".join(f"{p}\r\n" for p in train).encode())
    (d / f"testlist{split:02d}.txt").write_bytes("".join(f"{p}\r\n" for p in test).encode())
    return d


@needs_real
@pytest.mark.parametrize(("split", "train", "test"), [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_real_lists(split: int, train: int, test: int) -> None:
    spec = load_split(LISTS, split)
    counts = spec.counts()
    assert len(spec.classes) == 101 and spec.subsets == ("train", "test")
    assert sum(counts["train"].values()) == train and sum(counts["test"].values()) == test
    assert all(c.problem is None and spec.classes[c.label] == c.cls for c in spec.clips)
    assert spec.notes == () and straddling_groups(spec.clips) == []  # the official lists keep groups apart
    tested = {int(c.name.split("_g")[1][:2]) for c in spec.clips if c.subset == "test"}
    assert tested == set(range(7 * split - 6, 7 * split + 1))  # split 1 tests groups 01-07, ...


@needs_real
def test_real_class_order_is_classind_not_a_sort() -> None:
    classes = load_classes(LISTS)
    assert classes[34:36] == ["Hammering", "HammerThrow"] and classes[46:48] == ["JumpingJack", "JumpRope"]
    assert sum(a != b for a, b in zip(classes, sorted(classes), strict=True)) == 4
    quirk = [c for c in load_split(LISTS, 1).clips if c.cls == "HandstandPushups"]
    assert len(quirk) == 128 and all(c.name.startswith("v_HandStandPushups_") for c in quirk)
    assert all(c.rel_path == f"HandstandPushups/{c.name}" for c in quirk)


@needs_real
def test_eda_on_the_real_lists(tmp_path: Path) -> None:
    args = ["eda", "--dataset", "ucf101", "--splits-dir", str(LISTS), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eda.json").read_text())
    assert report["dataset"] == "ucf101" and report["classes"][34] == "Hammering"
    overall = report["counts"]["all"]
    assert overall["total"] == 13320 and overall["num_classes"] == 101
    assert overall["largest"] == ["CricketShot", 167] and overall["smallest"][1] == 100
    assert {n: report["splits"][n]["test"]["total"] for n in "123"} == {"1": 3783, "2": 3734, "3": 3696}
    assert (tmp_path / "class_counts.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("classes", "train", "test", "message"),
    [
        (
            ["A", "B"],
            ["A/v_A_g01_c01.avi 2"],
            [],
            r"trainlist01\.txt:1: label '2', but classInd\.txt gives A index 1",
        ),
        (["A", "B"], ["C/v_C_g01_c01.avi 1"], [], r"trainlist01\.txt:1: class folder 'C' is not in classInd"),
        (["A", "B"], ["A/v_A_g01_c01.avi"], [], r"trainlist01\.txt:1: malformed line"),
        (["A", "B"], ["v_A_g01_c01.avi 1"], [], r"has no class folder"),
        (
            ["A", "B"],
            ["A/x.avi 1"],
            ["A/x.avi"],
            r"testlist01\.txt:1: clip 'A/x\.avi' already listed \(trainlist01",
        ),
        (["A", "B"], [], ["B/x.avi 1"], r"testlist01\.txt:1: label '1', but classInd\.txt gives B index 2"),
        (["A", "../B"], [], [], r"classInd\.txt:2: class name '\.\./B' contains a path separator"),
        (["A", "A"], [], [], r"classInd\.txt:2: class 'A' already has index 1"),
    ],
)
def test_bad_lists_are_errors_naming_file_and_line(tmp_path, classes, train, test, message) -> None:
    with pytest.raises(SplitError, match=message):
        load_split(_lists(tmp_path, classes, train, test), 1)


def test_lists_details(tmp_path: Path) -> None:
    d = _lists(
        tmp_path,
        ["A", "B"],
        ["A/v_A_g01_c01.avi 1", "B/v_B_g02_c01.avi 2", "A/..\\evil.avi 1", "B/a\x00b.avi 2"],
        ["A/v_A_g01_c02.avi", "B/v_B_g03_c01.avi 2"],  # an unofficial labelled test line is checked, kept
    )
    spec = load_split(d, 1)
    assert [(c.cls, c.name, c.label, c.subset) for c in spec.clips if not c.problem] == [
        ("A", "v_A_g01_c01.avi", 0, "train"),
        ("B", "v_B_g02_c01.avi", 1, "train"),
        ("A", "v_A_g01_c02.avi", 0, "test"),
        ("B", "v_B_g03_c01.avi", 1, "test"),
    ]
    assert {c.name: c.problem for c in spec.clips if c.problem} == {
        "..\\evil.avi": "clip name '..\\evil.avi' contains a path separator",
        "a\x00b.avi": "clip name 'a\\x00b.avi' contains a NUL or control character",
    }
    assert spec.notes and "A/g01" in spec.notes[0] and "inflated" in spec.notes[0]  # g01 straddles
    (d / "classInd.txt").write_bytes(b"1 A\r\n3 B\r\n")
    with pytest.raises(SplitError, match=r"index 3 out of order.*expected 2"):
        load_split(d, 1)
    with pytest.raises(SplitError, match=r"testlist02\.txt does not exist|trainlist02\.txt does not exist"):
        load_split(_lists(tmp_path / "b", ["A"], [], []), 2)
    with pytest.raises(SplitError, match=r"allowed: 1, 2, 3"):
        load_split(d, 4)


def test_find_lists_dir(tmp_path: Path) -> None:
    root = tmp_path / "UCF-101"
    root.mkdir()
    sibling = _lists(tmp_path / "ucfTrainTestlist", ["A"], [], [])
    assert find_lists_dir(root) == sibling  # the zip unpacked next to the videos
    inside = _lists(root / "ucfTrainTestlist", ["A"], [], [])
    assert find_lists_dir(root) == inside
    assert find_lists_dir(root, sibling) == sibling
    with pytest.raises(SplitError, match=r"has no classInd\.txt; pass --splits-dir"):
        find_lists_dir(root, root)
    with pytest.raises(SplitError, match=r"does not exist; pass --data-root"):
        find_lists_dir(tmp_path / "elsewhere" / "nope")
    (tmp_path / "x" / "bare").mkdir(parents=True)
    with pytest.raises(SplitError, match=r"no classInd\.txt in .* pass --splits-dir"):
        find_lists_dir(tmp_path / "x" / "bare")


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory) -> Path:
    """A UCF101 tree with the real lists' classes, the three real clips as test clips, copies of them as
    train clips, and a few listed clips that are not on disk."""
    root = tmp_path_factory.mktemp("ucf") / "UCF-101"
    classes = load_classes(LISTS)
    train, test = [], []
    for rel, source in REAL_CLIPS.items():
        cls = rel.split("/")[0]
        for path, group in (
            (rel, None),
            (rel.replace("_g01_", "_g08_"), 8),
            (rel.replace("_g01_", "_g09_"), 9),
        ):
            (root / cls).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(VIDEOS / source, root / path)
            (train if group else test).append(path if not group else f"{path} {classes.index(cls) + 1}")
    train.append(f"Diving/v_Diving_g10_c01.avi {classes.index('Diving') + 1}")  # listed, not on disk
    test.append("HandstandPushups/v_HandStandPushups_g01_c01.avi")  # listed, not on disk
    _lists(root.parent / "ucfTrainTestlist", classes, train, test)
    return root


@needs_real
@needs_clips
def test_extract_real_ucf101_clips(ucf_tree: Path, tmp_path: Path) -> None:
    cfg = ex.ExtractConfig(dataset="ucf101", data_root=ucf_tree, out=tmp_path, device="cpu", workers=0)
    summary = ex.run_extract(cfg, progress=False)
    index = read_index(Path(summary["split_dir"]))
    assert (
        index.dataset == "ucf101"
        and index.classes == load_classes(LISTS)
        and index.subsets == ["train", "test"]
    )
    assert summary["samples"] == 9 and summary["failures"] == 2
    assert index.counts["train"]["Diving"] == 2 and index.counts["test"]["BenchPress"] == 1
    failures = [json.loads(x) for x in (tmp_path / "split1" / "failures.jsonl").read_text().splitlines()]
    assert {(f["clip"], f["reason"]) for f in failures} == {
        ("Diving/v_Diving_g10_c01.avi", "file not found"),
        ("HandstandPushups/v_HandStandPushups_g01_c01.avi", "file not found"),
    }
    test_urls = [u for u, _ in index.shard_urls("test")]
    samples = list(wds.WebDataset(test_urls, shardshuffle=False, empty_check=False).decode("rgb8"))
    meta = {s["json"]["clip"]: s["json"] for s in samples}
    assert set(meta) == set(REAL_CLIPS)
    bench = meta["BenchPress/v_BenchPress_g01_c03.avi"]
    assert bench["class"] == "BenchPress" and bench["label"] == index.classes.index("BenchPress")
    assert bench["source_frames"] == 104 and (bench["width"], bench["height"]) == (320, 240)
    assert meta["Diving/v_Diving_g01_c02.avi"]["source_frames"] == 282
    assert all(s["f15.jpg"].shape == (240, 320, 3) for s in samples)


@needs_real
def test_include_unused_and_a_wrong_split_are_refused(
    ucf_tree: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    cfg = ex.ExtractConfig(dataset="ucf101", data_root=ucf_tree, out=tmp_path, include_unused=True)
    with pytest.raises(ex.ExtractError, match=r"--include-unused: ucf101 has no unused clips"):
        ex.run_extract(cfg, progress=False)
    with pytest.raises(SplitError, match=r"trainlist02\.txt does not exist"):
        ex.run_extract(
            ex.ExtractConfig(dataset="ucf101", data_root=ucf_tree, out=tmp_path, split=2), progress=False
        )
    monkeypatch.setattr(
        sys, "argv", ["lsvit-pipeline", "extract", "--dataset", "ucf-101", "--out", str(tmp_path)]
    )
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert (
        e.value.code == 2
        and err == "error: dataset 'ucf-101' is not known; choose one of: hmdb51, ucf101, folder"
    )


@needs_real
def test_merge_checks_the_dataset(ucf_tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        ex, "decode_clip", lambda *a: (_ for _ in ()).throw(ex.DecodeError("not decoded here"))
    )
    for i in range(2):
        cfg = ex.ExtractConfig(dataset="ucf101", data_root=ucf_tree, out=tmp_path, part=f"{i}/2", workers=0)
        ex.run_extract(cfg, progress=False)
    with pytest.raises(MergeError, match=r"extracted from ucf101, not --dataset hmdb51"):
        merge_parts(tmp_path / "split1", "hmdb51")
    merged = merge_parts(tmp_path / "split1", "ucf101")
    assert merged["dataset"] == "ucf101" and merged["num_failures"] == 11
