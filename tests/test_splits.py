from pathlib import Path

import pytest

from lsvit.pipeline.eda import split_files_report
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.hmdb51 import find_splits_dir, load_split
from lsvit.pipeline.splits import ClipEntry, SplitError, unsafe_reason

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "hmdb51_splits"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real split files not at {REAL}")


def _write(d: Path, cls: str, split: int, lines: list[str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{cls}_test_split{split}.txt"
    p.write_text("".join(f"{line} \n" for line in lines))
    return p


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "testTrainMulti_7030_splits"
    for s in (1, 2, 3):
        _write(d, "run", s, ["a_run_0.avi 1", "b_jump_0.avi 2", "c.avi 0"])
        _write(d, "jump", s, ["x_jump.avi 1", f"y{s}.avi 2"])
    return d


@needs_real
@pytest.mark.parametrize("split", [1, 2, 3])
def test_real_split_counts(split: int) -> None:
    spec = load_split(REAL, split)
    assert len(spec.classes) == 51 and spec.classes == sorted(spec.classes)
    assert len(spec.clips) == 6766
    counts = spec.counts()
    assert {s: sum(v.values()) for s, v in counts.items()} == {"train": 3570, "test": 1530, "unused": 1666}
    assert all(counts["train"][c] == 70 and counts["test"][c] == 30 for c in spec.classes)
    assert sum(counts[s]["walk"] for s in counts) == 548
    assert all(sum(counts[s][c] for s in counts) == 102 for c in ("catch", "kiss", "smile", "throw"))
    assert all(c.problem is None for c in spec.clips)
    assert all(spec.classes[c.label] == c.cls for c in spec.clips)


@needs_real
def test_real_labels_come_from_file_not_name() -> None:
    spec = load_split(REAL, 1)
    misleading = [
        c for c in spec.clips if any(f"_{o}_" in c.name for o in spec.classes if o != c.cls and len(o) > 3)
    ]
    assert len(misleading) > 100  # many names mention another class; their label is still the file's
    for c in misleading:
        assert spec.classes[c.label] == c.cls and c.rel_path == f"{c.cls}/{c.name}"


@needs_real
def test_real_all_clips() -> None:
    counts = split_files_report(REAL)["counts"]["all"]
    assert counts["num_classes"] == 51 and counts["total"] == 6766
    assert counts["counts"]["walk"] == 548


def test_tiny_parse(tiny: Path) -> None:
    spec = load_split(tiny, 2)
    assert spec.classes == ["jump", "run"]
    assert spec.clips[0] == ClipEntry("x_jump.avi", "jump", 0, "train")
    run = [c for c in spec.clips if c.cls == "run"]
    assert [(c.name, c.label, c.subset) for c in run] == [
        ("a_run_0.avi", 1, "train"),
        ("b_jump_0.avi", 1, "test"),  # name says jump, file says run
        ("c.avi", 1, "unused"),
    ]
    assert spec.counts() == {
        "train": {"jump": 1, "run": 1},
        "test": {"jump": 1, "run": 1},
        "unused": {"jump": 0, "run": 1},
    }
    assert split_files_report(tiny)["counts"]["all"]["counts"] == {"jump": 4, "run": 3}  # distinct clips


def test_find_splits_dir(tiny: Path, tmp_path: Path) -> None:
    root = tiny.parent
    assert find_splits_dir(root) == tiny
    assert find_splits_dir(root, tiny) == tiny
    other = tmp_path / "elsewhere" / "nested"
    _write(other, "run", 1, ["a.avi 1"])
    assert find_splits_dir(tmp_path / "elsewhere") == other
    with pytest.raises(SplitError, match=r"--splits-dir"):
        find_splits_dir(root, tmp_path / "missing")
    with pytest.raises(SplitError, match=r"does not exist.*--data-root"):
        find_splits_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitError, match=r"no split files.*--splits-dir"):
        find_splits_dir(tmp_path / "empty")


def test_missing_dir_and_file(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(SplitError, match=r"missing_dir does not exist; pass --splits-dir") as e:
        load_split(tmp_path / "missing_dir", 1)
    assert isinstance(e.value, LsvitError) and isinstance(e.value, ValueError)
    assert "\n" not in str(e.value)
    (tiny / "jump_test_split3.txt").unlink()
    with pytest.raises(SplitError, match=r"jump_test_split3\.txt does not exist"):
        load_split(tiny, 3)
    load_split(tiny, 1)  # the other splits are still complete
    with pytest.raises(SplitError, match=r"allowed: 1, 2, 3"):
        load_split(tiny, 4)


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("clip.avi 3", r"run_test_split1\.txt:2: bad flag '3'; allowed flags are 1 \(train\), 2 \(test\), 0"),
        ("clip.avi train", r":2: bad flag 'train'"),
        ("clip.avi", r"run_test_split1\.txt:2: malformed line"),
        ("a_run_0.avi 2", r":2: clip 'a_run_0.avi' already listed on line 1"),
    ],
)
def test_bad_lines(tiny: Path, line: str, pattern: str) -> None:
    _write(tiny, "run", 1, ["a_run_0.avi 1", line])
    with pytest.raises(SplitError, match=pattern):
        load_split(tiny, 1)


def test_unsafe_names_flagged(tiny: Path) -> None:
    _write(
        tiny, "run", 1, ["../jump/x_jump.avi 1", "..\\evil.avi 2", "ok.avi 1", "a\x00b.avi 0", "..  1", " 1"]
    )
    spec = load_split(tiny, 1)
    by_name = {c.name: c for c in spec.clips if c.cls == "run"}
    assert by_name["ok.avi"].problem is None
    for bad in ("../jump/x_jump.avi", "..\\evil.avi", "a\x00b.avi"):
        assert by_name[bad].problem, bad
    assert "separator" in by_name["../jump/x_jump.avi"].problem
    assert "NUL" in by_name["a\x00b.avi"].problem
    assert "parent" in by_name[".."].problem  # "..  1": one run of spaces separates name and flag
    assert by_name[""].problem == "empty clip name"


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b.avi", "a\\b.avi", "\x00", "..x.avi"])
def test_unsafe_reason(name: str) -> None:
    assert unsafe_reason(name)


@pytest.mark.parametrize("name", ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "a.b.avi", "x..avi", "é.avi"])
def test_safe_reason(name: str) -> None:
    assert unsafe_reason(name) is None
