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

import lsvit
from lsvit.pipeline import synth
from lsvit.pipeline.cli import app, main
from lsvit.pipeline.sampling import sample_indices
from lsvit.pipeline.synth_motion import CROP, MOTIONS, SIZE, path, place, render_clip

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
    assert synth.split_sizes(0.5) == (35, 15)  # the demo's
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
    # A tree of the first synth (per-frame motions, a marker without a version): never mixed with new clips.
    old = tmp_path / "old"
    old.mkdir()
    first = {"scale": SCALE, "seed": 0, "min_per_class": 2, "frames_range": [15, 120]}
    (old / synth.MARKER).write_text(json.dumps(first))
    with pytest.raises(synth.SynthError, match="another version of synth"):
        synth.synthesize(old, scale=SCALE)
    assert synth.read_marker(old) == first | {"generator": "lsvit-pipeline synth", "motions": 1}
    (old / synth.MARKER).write_text("[1, 2]")
    with pytest.raises(synth.SynthError, match="not a JSON object"):
        synth.read_marker(old)


@pytest.mark.slow
def test_marker_says_what_made_the_tree(tree: Path, tmp_path: Path) -> None:
    marker = synth.read_marker(tree)
    assert marker == json.loads((tree / synth.MARKER).read_text())
    assert marker["generator"] == "lsvit-pipeline synth" and marker["motions"] == synth.MOTIONS_VERSION
    assert marker["version"] == lsvit.__version__ and marker["scale"] == SCALE
    assert synth.read_marker(tmp_path) is None  # real data: no marker


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


def _sampled(num_frames: int) -> list[int]:
    """The source frames the demo model sees: extract's 16, then the trainer's 8 of those."""
    stored = sample_indices(num_frames, 16)
    return [stored[i] for i in sample_indices(16, 8)]


def _objects(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: object centroid (x, y), object area (pixels), object and background mean luma (0-255).

    The object is whatever is clearly lighter than the frame's median (the background's colour).
    """
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (T, H, W)
    bg = np.median(luma.reshape(len(luma), -1), axis=1)
    mask = luma > bg[:, None, None] + 45
    area = mask.sum((1, 2))
    ys, xs = np.mgrid[: luma.shape[1], : luma.shape[2]]
    cx = (mask * xs).sum((1, 2)) / np.maximum(area, 1)
    cy = (mask * ys).sum((1, 2)) / np.maximum(area, 1)
    obj = (mask * luma).sum((1, 2)) / np.maximum(area, 1)
    return np.stack([cx, cy], 1), area, obj, bg


def _render(name: str, num_frames: int, seed: int) -> np.ndarray:
    return render_clip(MOTIONS[name], num_frames, np.random.default_rng([seed, synth.CLASSES.index(name)]))


def test_paths_stay_in_the_centre_crop() -> None:
    u = (np.arange(120) + 0.5) / 120
    x0, y0, x1, y1 = CROP
    for name, motion in MOTIONS.items():
        for seed in range(40):
            rng = np.random.default_rng(seed)
            x, y, half = path(motion, u, rng)
            x, y = place(x, y, half, rng)
            assert (x - half).min() >= x0 and (x + half).max() <= x1, (name, seed)
            assert (y - half).min() >= y0 and (y + half).max() <= y1, (name, seed)
            assert SIZE[0] - 1e-9 <= half.min() and half.max() <= SIZE[1] + 1e-9, (name, seed)


def test_motion_is_in_normalised_clip_time() -> None:
    """A class moves as far in a short clip as in a long one: the sampled views match whatever the length."""
    for name in ("run", "pushup", "somersault", "brush_hair", "laugh"):
        views = {}
        for length in (17, 44, 119):  # the same seed: same object, path and place; only the length differs
            centre, area, _, _ = _objects(_render(name, length, 0)[_sampled(length)])
            travel = np.linalg.norm(np.diff(centre, axis=0), axis=1).sum()
            views[length] = centre, travel, np.ptp(centre, axis=0), area
        for length in (17, 44):
            _, travel, extent, area = views[length]
            assert travel == pytest.approx(views[119][1], rel=0.25, abs=8), (name, length)
            assert extent == pytest.approx(views[119][2], rel=0.25, abs=8), (name, length)
            assert area == pytest.approx(views[119][3], rel=0.3), (name, length)
        # Sampled frame times differ by at most half a frame: with 44 frames or more the views nearly match.
        assert np.abs(views[44][0] - views[119][0]).max() < 10, name
    # ... while the speed classes stay apart: "run" travels twice as far as "walk" per clip.
    for seed in range(3):
        walk, run = (_objects(_render(n, 60, seed)[_sampled(60)])[0] for n in ("walk", "run"))
        ratio = np.linalg.norm(run[-1] - run[0]) / np.linalg.norm(walk[-1] - walk[0])
        assert 1.5 < ratio < 2.6, (seed, ratio)


def test_directions_read_from_eight_sampled_frames() -> None:
    """At most two cycles a clip: 8 sampled frames never alias a rotation into the opposite one."""
    for name, sign in [("cartwheel", 1), ("flic_flac", -1), ("somersault", 1), ("handstand", -1)]:
        for seed in range(4):
            for length in (16, 37, 120):
                (x, y), _, _, _ = (a.T if a.ndim == 2 else a for a in _objects(_render(name, length, seed)))
                x, y = x[_sampled(length)], y[_sampled(length)]
                d = np.diff(np.stack([x, y], 1), axis=0)
                turning = d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]
                assert np.all(-turning * sign > 0), (name, seed, length)  # image y points down
    for name, (sx, sy) in [("walk", (1, 0)), ("push", (-1, 0)), ("jump", (0, -1)), ("fall_floor", (0, 1))]:
        for seed in range(4):
            (x, y), _, _, _ = (a.T if a.ndim == 2 else a for a in _objects(_render(name, 25, seed)))
            dx, dy = np.diff(x[_sampled(25)]), np.diff(y[_sampled(25)])
            assert np.all(dx * sx + dy * sy > 0), (name, seed)


@pytest.mark.parametrize(
    "forward, backward",
    [("walk", "push"), ("run", "ride_horse"), ("ride_bike", "catch"), ("laugh", "smile"), ("shake_hands", "eat"), ("clap", "kiss"),
     ("cartwheel", "flic_flac"), ("turn", "golf")],
)  # fmt: skip
def test_time_reversed_pairs(forward: str, backward: str) -> None:
    """A clip played backwards is another class: the reversed track of one is the other's, up to its place."""
    u = (np.arange(64) + 0.5) / 64
    for seed in range(5):
        a = np.stack(path(MOTIONS[forward], 1 - u, np.random.default_rng(seed)))
        b = np.stack(path(MOTIONS[backward], u, np.random.default_rng(seed)))
        a[:2] -= a[:2].mean(1, keepdims=True)
        b[:2] -= b[:2].mean(1, keepdims=True)
        assert np.allclose(a, b, atol=1e-6), (forward, backward, seed)


def _eta2(values: np.ndarray, labels: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by the class (0: none, 1: all)."""
    means = np.array([values[labels == k].mean() for k in labels])
    return float(((means - values.mean()) ** 2).sum() / ((values - values.mean()) ** 2).sum())


@pytest.mark.slow
def test_appearance_does_not_tell_the_class_but_motion_does() -> None:
    """Single-frame statistics (what a frame-averaged model sees) carry no class; the motion does."""
    per_class, length = 8, 20
    feats, labels = [], []
    for k, name in enumerate(synth.CLASSES):
        for seed in range(per_class):
            frames = _render(name, length, 100 + seed)[_sampled(length)]
            centre, area, obj, bg = _objects(frames)
            assert area.min() > 150 and (obj - bg).min() > 60, (name, seed)  # visible: large, lighter
            step = np.diff(centre, axis=0)
            feats.append(
                [*centre.mean(0), area.mean(), obj.mean(), bg.mean(), *frames.mean((0, 1, 2)), *step.mean(0)]
            )
            labels.append(k)
    feats, labels = np.array(feats), np.array(labels)
    # Chance level for 51 classes of 8 clips is about 50 / 407 = 0.12.
    appearance = {
        n: _eta2(feats[:, i], labels)
        for i, n in enumerate(["x", "y", "area", "object", "background", "r", "g", "b"])
    }
    assert max(appearance.values()) < 0.3, appearance
    motion = {n: _eta2(feats[:, 8 + i], labels) for i, n in enumerate(["dx", "dy"])}
    assert min(motion.values()) > 0.6, motion


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
