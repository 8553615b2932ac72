"""End to end: a tiny HMDB51-like tree -> shards, failures, resume, workers, parts + merge, CLI errors."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import webdataset as wds

import lsvit.pipeline.extract as ex
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.merge import merge_parts
from lsvit.pipeline.shardindex import ShardIndexError, read_index
from lsvit.pipeline.synth import MARKER, SynthConfig

# class -> [(name, flag, frames)]: frames 0 = zero-byte file, -1 = garbage bytes, None = not on disk.
LAYOUT = {
    "brush_hair": [
        ("a_brush_hair_0.avi", 1, 20),
        ("b!#&()+;@[]~_brush_hair_1.avi", 1, 24),
        ("corrupt_brush_hair.avi", 1, -1),
        ("short_brush_hair.avi", 2, 5),
    ],
    "kiss": [
        ("Hug_(1)_kiss_0.avi", 1, 18),
        ("missing_kiss.avi", 1, None),
        ("k(1)_kiss_1.avi", 2, 20),
        ("empty_kiss.avi", 2, 0),
        ("unused_kiss.avi", 0, 17),
    ],
    "walk": [
        ("w;0@walk.avi", 1, 16),
        ("w[1]~walk.avi", 1, 20),
        ("..evil_walk.avi", 1, 20),  # a real clip, but the name must never be joined to a path
        ("w_walk_2.avi", 2, 22),
    ],
}
EXPECTED_FAILURES = {
    "brush_hair/corrupt_brush_hair.avi": "",
    "kiss/missing_kiss.avi": "not found",
    "kiss/empty_kiss.avi": "empty",
    "walk/..evil_walk.avi": "unsafe",
}
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _cfg(root: Path, out: Path, **kw) -> ex.ExtractConfig:
    return ex.ExtractConfig(**{"data_root": root, "out": out, "device": "cpu", "shard_max_samples": 2, **kw})


def _digests(split_dir: Path) -> dict[str, str]:
    """sha256 of every file under a split folder; index.json's config.workers and .out left out."""
    out = {}
    for p in sorted(split_dir.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name.startswith("index"):
                index = json.loads(data)
                del index["config"]["workers"], index["config"]["out"]
                data = json.dumps(index, sort_keys=True).encode()
            out[str(p.relative_to(split_dir))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def tree(make_hmdb) -> Path:
    return make_hmdb(LAYOUT)


@pytest.fixture(scope="module")
def base(tree, tmp_path_factory) -> tuple[Path, dict, list[Path]]:
    """One in-process run; also records which files the decoder was asked to open."""
    opened: list[Path] = []
    real = ex.decode_clip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex, "decode_clip", lambda path, *a: opened.append(path) or real(path, *a))
        summary = ex.run_extract(_cfg(tree, tmp_path_factory.mktemp("out"), workers=0), progress=False)
    return Path(summary["split_dir"]), summary, opened


def test_shards_read_back_with_stock_webdataset(base) -> None:
    split_dir, summary, _ = base
    index = json.loads((split_dir / "index.json").read_text())
    assert summary["samples"] == 8 and summary["failures"] == 4 and summary["shards"] == 5
    keys = {}
    for shard in index["shards"]:
        samples = list(wds.WebDataset(str(split_dir / shard["url"]), shardshuffle=False).decode("rgb8"))
        assert len(samples) == shard["count"]
        for s in samples:
            frames = [s[f"f{i:02d}.jpg"] for i in range(16)]
            assert all(f.shape == (24, 32, 3) and f.dtype.name == "uint8" for f in frames)
            meta = s["json"]
            assert s["cls"] == meta["label"] == index["classes"].index(meta["class"])
            assert KEY_RE.match(s["__key__"]) and s["__key__"] == meta["key"]
            keys[meta["clip"]] = s["__key__"]
            assert meta["subset"] == shard["subset"] and len(meta["indices"]) == 16
            assert set(meta["stats"]) >= {"brightness", "contrast", "blur"}
            if meta["clip"] == "brush_hair/short_brush_hair.avi":
                assert (
                    meta["source_frames"] == 5 and meta["padded"] == 11 and meta["indices"][-12:] == [4] * 12
                )
    # The special characters survive as sanitised keys and as the clip path in the metadata.
    assert keys["brush_hair/b!#&()+;@[]~_brush_hair_1.avi"].startswith("brush_hair__b-_brush_hair_1__")
    assert keys["kiss/Hug_(1)_kiss_0.avi"].startswith("kiss__Hug_-1-_kiss_0__")


def test_shards_list_with_tar(base) -> None:
    split_dir, _, _ = base
    index = json.loads((split_dir / "index.json").read_text())
    members: dict[str, list[str]] = {}
    for shard in index["shards"]:
        names = subprocess.run(
            ["tar", "-tf", str(split_dir / shard["url"])], check=True, capture_output=True, text=True
        ).stdout.split()
        for n in names:
            members.setdefault(n.split(".", 1)[0], []).append(n.split(".", 1)[1])
    assert len(members) == 8 and all(KEY_RE.match(k) for k in members)
    for exts in members.values():
        assert sorted(exts) == sorted(["cls", "json", *(f"f{i:02d}.jpg" for i in range(16))])
    assert any(k.startswith("brush_hair__b-_brush_hair_1__") for k in members)  # "!#&()+;@[]~" -> "-"


def test_failures_have_reasons_and_unsafe_names_are_never_read(base, tree) -> None:
    split_dir, _, opened = base
    failures = [json.loads(line) for line in (split_dir / "failures.jsonl").read_text().splitlines()]
    assert {f["clip"] for f in failures} == set(EXPECTED_FAILURES)
    for f in failures:
        assert EXPECTED_FAILURES[f["clip"]] in f["reason"] and f["reason"]
        assert f["class"] == f["clip"].split("/")[0] and f["subset"] in ("train", "test")
    assert tree / "walk" / "..evil_walk.avi" not in opened and opened  # the decoder never saw it
    assert all(p.is_relative_to(tree) and ".." not in p.relative_to(tree).parts for p in opened)


def test_every_listed_clip_is_accounted_for(base) -> None:
    split_dir, _, _ = base
    index = json.loads((split_dir / "index.json").read_text())
    listed = {f"{c}/{n}" for c, clips in LAYOUT.items() for n, flag, _ in clips if flag in (1, 2)}
    in_shards = set()
    for shard in index["shards"]:
        for s in wds.WebDataset(str(split_dir / shard["url"]), shardshuffle=False).decode():
            in_shards.add(s["json"]["clip"])
    failed = {json.loads(line)["clip"] for line in (split_dir / "failures.jsonl").read_text().splitlines()}
    assert in_shards | failed == listed and not in_shards & failed
    assert index["num_clips"] == len(listed) and index["num_failures"] == len(failed)
    assert index["counts"] == {
        "train": {"brush_hair": 2, "kiss": 1, "walk": 2},
        "test": {"brush_hair": 1, "kiss": 1, "walk": 1},
    }
    assert index["classes"] == ["brush_hair", "kiss", "walk"] and index["subsets"] == ["train", "test"]
    assert index["config"]["jpeg_quality"] == 80 and index["config"]["device"] == "cpu"
    assert set(index["manifests"]) == {"train", "test"}
    for subset, names in index["manifests"].items():
        draws = json.loads((split_dir / names["oversample"]).read_text())["draws"]
        assert len(draws) == sum(index["counts"][subset].values())


def test_resume_after_interruption_is_byte_identical(base, tree, tmp_path) -> None:
    split_dir, _, _ = base
    out = tmp_path / "out"
    shutil.copytree(split_dir, out / "split1")
    redo = out / "split1"
    (redo / "train-000001.tar").unlink()  # a finished shard lost
    (redo / "records" / "test-000000.tar.json").unlink()  # renamed, but killed before its record
    (redo / "train-000002.tar.tmp").write_bytes(b"half a shard")  # a stale temporary file
    (redo / "index.json").unlink()
    (redo / "failures.jsonl").unlink()
    summary = ex.run_extract(_cfg(tree, out, workers=0), progress=False)
    assert summary["resumed"] == 4
    assert _digests(redo) == _digests(split_dir)


@pytest.mark.slow
def test_worker_count_does_not_change_the_bytes(base, tree, tmp_path) -> None:
    split_dir, _, _ = base
    for workers in (1, 2):
        summary = ex.run_extract(_cfg(tree, tmp_path / f"w{workers}", workers=workers), progress=False)
        assert _digests(Path(summary["split_dir"])) == _digests(split_dir)


def test_parts_merge_to_the_single_run(base, tree, tmp_path) -> None:
    split_dir, _, _ = base
    ex.run_extract(_cfg(tree, tmp_path, workers=0, part="0/2"), progress=False)
    with pytest.raises(LsvitError, match=r"part\(s\) 1/2 missing"):
        merge_parts(tmp_path / "split1")
    ex.run_extract(_cfg(tree, tmp_path, workers=0, part="1/2"), progress=False)
    merged = merge_parts(tmp_path / "split1")
    single = json.loads((split_dir / "index.json").read_text())
    assert merged["counts"] == single["counts"] and merged["num_failures"] == single["num_failures"]
    assert merged["synthetic"] is None and single["synthetic"] is None
    assert [(s["subset"], s["count"], s["sha256"]) for s in merged["shards"]] == [
        (s["subset"], s["count"], s["sha256"]) for s in single["shards"]
    ]
    # train shard 0 holds the missing and the corrupt clip: no tar, listed as empty
    assert merged["empty_shards"] == ["train-p0of2-000000.tar"]
    assert [s["url"] for s in merged["shards"]][:2] == ["train-p1of2-000001.tar", "train-p0of2-000002.tar"]
    for name in ["failures.jsonl", *(f for m in single["manifests"].values() for f in m.values())]:
        assert (tmp_path / "split1" / name).read_bytes() == (split_dir / name).read_bytes(), name


def test_real_data_is_not_marked_synthetic(base) -> None:
    split_dir, summary, _ = base
    assert summary["synthetic"] is None and read_index(split_dir).synthetic is None


def test_a_synthetic_tree_is_recorded_and_its_shards_redone_when_resynthesised(base, tree, tmp_path) -> None:
    split_dir, _, _ = base
    root = tmp_path / "synth"
    shutil.copytree(tree, root)
    marker = SynthConfig(root, scale=0.5).record() | {"version": "9.9"}
    (root / MARKER).write_text(json.dumps(marker))
    out = tmp_path / "out"
    shutil.copytree(split_dir, out / "split1")  # shards of the same clip names, from before the marker
    summary = ex.run_extract(_cfg(root, out, workers=0), progress=False)
    index = read_index(out / "split1")
    assert summary["synthetic"] == index.synthetic == index.data["synthetic"] == marker
    assert index.synthetic["generator"] == "lsvit-pipeline synth" and index.synthetic["motions"] >= 2
    assert summary["resumed"] == 0  # the marker is part of what a shard is made from
    assert ex.run_extract(_cfg(root, out, workers=0), progress=False)["resumed"] == summary["planned"]
    # A tree synthesised again (another seed) has the same clip names but other frames: all redone.
    (root / MARKER).write_text(json.dumps(marker | {"seed": 1}))
    summary = ex.run_extract(_cfg(root, out, workers=0), progress=False)
    assert summary["resumed"] == 0 and read_index(out / "split1").synthetic["seed"] == 1


@pytest.mark.parametrize("bad", [[], "yes", {"scale": 0.5}, {"generator": 2}])
def test_index_synthetic_must_be_null_or_a_generator_record(base, tmp_path, bad) -> None:
    split_dir, _, _ = base
    index = json.loads((split_dir / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps(index | {"synthetic": bad}))
    with pytest.raises(ShardIndexError, match="synthetic"):
        read_index(tmp_path)


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_cli_interrupted_run_resumes_to_identical_output(tree, tmp_path, sig) -> None:
    ref = ex.run_extract(_cfg(tree, tmp_path / "ref", workers=0, shard_max_samples=1), progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lsvit.pipeline.cli", "extract", "--data-root", str(tree), "--out", str(out)]
    cmd += ["--device", "cpu", "--workers", "1", "--shard-size", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    records = out / "split1" / "records"
    deadline = time.monotonic() + 120
    while not (records.is_dir() and any(records.glob("*.json"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C (or a power cut) would
    _, err = proc.communicate(timeout=60)
    done = len(list(records.glob("*.json")))
    if done == ref["planned"]:
        pytest.skip("the run finished before it could be interrupted")
    assert proc.returncode != 0 and not (out / "split1" / "index.json").exists()
    if sig == signal.SIGINT:
        assert "rerun the same command to resume" in err
        assert proc.returncode == 130  # click's exit status for Ctrl-C
        assert _group_gone(proc.pid, timeout=20)  # no worker (or forkserver) left behind
    summary = ex.run_extract(_cfg(tree, out, workers=0, shard_max_samples=1), progress=False)
    assert summary["resumed"] == done
    assert _digests(out / "split1") == _digests(tmp_path / "ref" / "split1")


def test_cli_error_is_one_line_exit_2(tmp_path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "lsvit.pipeline.cli",
        "extract",
        "--data-root",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data root") and "--data-root" in lines[0], r.stderr


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"data_root": "{tmp}/nope"}, "data root"),
        ({"data_root": "{tmp}"}, "no split files"),
        ({"data_root": "{tree}", "splits_dir": "{tmp}/nope"}, "splits folder"),
    ],
)
def test_missing_inputs_are_clear_errors(tree, tmp_path, kw, message) -> None:
    kw = {k: v.format(tmp=tmp_path, tree=tree) for k, v in kw.items()}
    with pytest.raises(LsvitError, match=message) as e:
        ex.run_extract(ex.ExtractConfig(out=tmp_path / "o", **kw), progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"split": 4}, "allowed: 1, 2, 3"),
        ({"part": "1of2"}, "i/N"),
        ({"part": "2/2"}, "0 <= i < N"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"device": "tpu"}, "auto, cpu, cuda"),
        ({"workers": -1}, "workers"),
    ],
)
def test_config_validates_itself(kw, message) -> None:
    with pytest.raises(LsvitError, match=re.escape(message)):
        ex.ExtractConfig(**kw)


def test_config_resolves_part_and_serialises() -> None:
    cfg = ex.ExtractConfig(part=" 1 / 3 ", data_root="x")
    assert cfg.part == (1, 3) and cfg.data_root == Path("x")
    assert cfg.to_json()["part"] == "1/3" and json.dumps(cfg.to_json())
