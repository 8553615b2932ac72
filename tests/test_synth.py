"""Tests for ``lsvit-pipeline synth``: tree shape, split format, clip format, determinism, motion."""

import functools
import hashlib
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torchcodec.decoders import VideoDecoder
from typer.testing import CliRunner

from lsvit.pipeline import synth
from lsvit.pipeline.cli import app, main
from lsvit.pipeline.synth_motion import MOTIONS, render_clip

SCALE = 0.02
FRAMES = (8, 40)  # shorter than the default so the fixture stays fast; still some clips under 16 frames
REAL_SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hmdb51_splits"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "hmdb51"
    summary = synth.synthesize(out, scale=SCALE, seed=0, workers=2, frames_range=FRAMES)
    assert summary.written == summary.clips == sum(synth.class_counts(SCALE).values())
    return out


def _read_split(path: Path) -> dict[str, int]:
    text = path.read_text()
    assert text.endswith(" \n")
    flags = {}
    for line in text.splitlines():
        assert line.endswith(" "), repr(line)  # the real files' trailing space
        name, flag = line.split()
        assert name.endswith(".avi") and flag in {"0", "1", "2"}
        flags[name] = int(flag)
    return flags


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_real_totals_match_the_shared_splits() -> None:
    assert len(synth.REAL_TOTALS) == 51 and sum(synth.REAL_TOTALS.values()) == 6766
    if not REAL_SPLITS.is_dir():
        pytest.skip(f"{REAL_SPLITS} is absent")
    names: dict[str, set[str]] = {}
    for f in REAL_SPLITS.glob("*_test_split*.txt"):
        cls = f.name.rsplit("_test_split", 1)[0]
        names.setdefault(cls, set()).update(line.split()[0] for line in f.read_text().splitlines())
    assert {c: len(v) for c, v in names.items()} == synth.REAL_TOTALS


def test_counts_and_split_sizes() -> None:
    assert synth.split_sizes(1.0) == (70, 30) and synth.split_sizes(0.1) == (7, 3)
    assert synth.split_sizes(0.01) == (1, 1)
    assert synth.class_counts(1.0) == synth.REAL_TOTALS
    tenth = synth.class_counts(0.1)
    assert tenth["walk"] == 55 and tenth["catch"] == 10 and tenth["run"] == 23
    assert min(synth.class_counts(0.001).values()) == 2  # one train + one test clip at any scale
    flags = synth.split_flags(107, 70, 30, np.random.default_rng(0))
    assert Counter(flags) == {1: 70, 2: 30, 0: 7}


@pytest.mark.parametrize("scale", [0, -0.1, 1.5])
def test_bad_scale_is_rejected(tmp_path: Path, scale: float) -> None:
    with pytest.raises(synth.SynthError, match="--scale"):
        synth.synthesize(tmp_path / "x", scale=scale)
    assert not (tmp_path / "x").exists()


def test_refuses_a_foreign_or_different_tree(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "notes.txt").write_text("real data")
    with pytest.raises(synth.SynthError, match="not written by synth"):
        synth.synthesize(tmp_path / "real", scale=SCALE)
    other = synth.SynthConfig(tmp_path / "other", scale=SCALE, seed=1)
    other.out.mkdir()
    (other.out / synth.MARKER).write_text(json.dumps(other.record()))
    with pytest.raises(synth.SynthError, match="same settings"):
        synth.synthesize(other.out, scale=SCALE, seed=0)
    assert [p.name for p in other.out.iterdir()] == [synth.MARKER]


@pytest.mark.slow
def test_tree_and_split_files(tree: Path) -> None:
    classes = sorted(p.name for p in tree.iterdir() if p.is_dir() and p.name != synth.SPLITS_DIRNAME)
    assert classes == synth.CLASSES and len(classes) == 51
    train, test = synth.split_sizes(SCALE)
    totals = {}
    for cls in classes:
        splits = [_read_split(tree / synth.SPLITS_DIRNAME / f"{cls}_test_split{s}.txt") for s in (1, 2, 3)]
        assert all(set(s) == set(splits[0]) for s in splits)  # the same clips, flagged per split
        for flags in splits:
            assert Counter(flags.values())[1] == train and Counter(flags.values())[2] == test
        totals[cls] = len(splits[0])
        assert sorted(p.name for p in (tree / cls).iterdir()) == sorted(splits[0])
    assert max(totals, key=totals.get) == "walk"
    for cls, n in totals.items():  # proportional to the real totals, above the per-class floor
        assert n == max(2, round(synth.REAL_TOTALS[cls] * SCALE))
    walk = [_read_split(tree / synth.SPLITS_DIRNAME / f"walk_test_split{s}.txt") for s in (1, 2, 3)]
    assert walk[0] != walk[1] or walk[1] != walk[2]  # each split is its own draw
    names = "".join(p.name for p in tree.glob("*/*.avi"))
    assert set("!#&()+;@[]~") <= set(names)


@pytest.mark.slow
def test_clips_decode_as_hmdb_format(tree: Path) -> None:
    lengths = []
    for clip in sorted(tree.glob("*/*.avi")):
        dec = VideoDecoder(clip)
        meta = dec.metadata
        assert (meta.codec, meta.width, meta.height) == ("mpeg4", 320, 240)
        assert meta.average_fps == pytest.approx(30, abs=0.01)
        frames = dec[:].data
        assert frames.shape[1:] == (3, 240, 320) and len(frames) == meta.num_frames
        lengths.append(len(frames))
    assert min(lengths) >= FRAMES[0] and max(lengths) <= FRAMES[1]
    assert 0 < sum(n < 16 for n in lengths) < 0.2 * len(lengths)
    assert not list(tree.rglob(".*.tmp"))


@pytest.mark.slow
def test_resume_rewrites_the_same_bytes(tree: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    before = _digests(copy)
    victim = sorted(copy.glob("kiss/*.avi"))[0]
    victim.unlink()
    (copy / synth.SPLITS_DIRNAME / "kiss_test_split2.txt").unlink()
    (victim.parent / f".{victim.name}.123.tmp").write_bytes(b"half a clip")  # an interrupted write
    summary = synth.synthesize(copy, scale=SCALE, seed=0, workers=0, frames_range=FRAMES)
    assert summary.written == 1
    assert _digests(copy) == before


def test_seed_changes_content(tmp_path: Path) -> None:
    job = (tmp_path / "a.avi", 0, 3, 1, (15, 30))
    synth._render_and_write(job)
    synth._render_and_write((tmp_path / "b.avi", *job[1:]))
    synth._render_and_write((tmp_path / "c.avi", 1, *job[2:]))
    a, b, c = ((tmp_path / f"{n}.avi").read_bytes() for n in "abc")
    assert a == b and a != c


def _drift(frames: np.ndarray) -> float:
    """Median per-frame shift (x) of the centroid of strongly changing pixels."""
    grey = frames.astype(np.float32).mean(-1)
    diff = np.abs(np.diff(grey, axis=0))
    xs, shifts = np.arange(grey.shape[2]), []
    for d in diff:
        w = (d * (d > 0.5 * d.max())).sum(0)
        if w.sum() > 0:  # nothing moved in view (object off-frame) otherwise
            shifts.append((w * xs).sum() / w.sum())
    return float(np.median(np.diff(shifts)))


def test_motion_classes_differ_in_motion() -> None:
    right, left = MOTIONS.index(("linear", 0, 4.0)), MOTIONS.index(("linear", 180, 4.0))
    for seed in range(4):
        r = _drift(render_clip(MOTIONS[right], 24, np.random.default_rng([seed, right, 0])))
        l_ = _drift(render_clip(MOTIONS[left], 24, np.random.default_rng([seed, left, 0])))
        assert r > 0.5 and l_ < -0.5, (seed, r, l_)
    # Time-reversed "grow" is "shrink": the classes are motions, not looks.
    assert ("scale", 1) in MOTIONS and ("scale", -1) in MOTIONS


@pytest.mark.slow
def test_cli_resumes_and_reports(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    # The fixture used short clips; the CLI has no option for that, so give synthesize the same default.
    monkeypatch.setattr(synth, "synthesize", functools.partial(synth.synthesize, frames_range=FRAMES))
    result = CliRunner().invoke(app, ["synth", "--out", str(copy), "--scale", str(SCALE), "--workers", "0"])
    assert result.exit_code == 0, result.output
    n = sum(synth.class_counts(SCALE).values())
    assert f"51 classes, {n} clips (0 new) in {copy}" in result.output


def test_cli_bad_scale_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["lsvit-pipeline", "synth", "--out", str(tmp_path / "x"), "--scale", "1.5"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--scale 1.5" in err
    assert not (tmp_path / "x").exists()
