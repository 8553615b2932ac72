"""Shard format: keys, the shard plan, atomic reproducible tars, completion records."""

import hashlib
import io
import json
import random
import re
import subprocess

import pytest
import webdataset as wds

from lsvit.pipeline import merge, records
from lsvit.pipeline import shards as sh
from lsvit.pipeline.splits import ClipEntry
from lsvit.pipeline.tarstream import TarStream

KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _e(cls: str, name: str, subset: str = "train") -> ClipEntry:
    return ClipEntry(name, cls, 0, subset)


@pytest.mark.parametrize(
    "name",
    [
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "!!!Boom!_Headshot!!!_shoot_gun_f_cm_np1_fr_med_0.avi",
        "#122_Cleaning_Up_The_Beach_In_Chiba_Japan_pick_f_nm_np1_ba_bad_2.avi",
        "A_Beautiful_Mind_(1)_smile_h_nm_np1_fr_goo_0.avi",
        "Fellowship_5_+_6_shoot_bow_u_cm_np1_fr_med_9.avi",
        "x;y@z[1]~&w.v.avi",
        "...",
    ],
)
def test_clip_key_is_safe_and_stable(name: str) -> None:
    key = sh.clip_key("shoot_gun", name)
    assert KEY_RE.match(key), key
    assert "." not in key and key.startswith("shoot_gun__")
    assert key == sh.clip_key("shoot_gun", name)
    assert key.endswith("__" + hashlib.sha1(f"shoot_gun/{name}".encode()).hexdigest()[:8])


def test_clip_key_literal_and_unique_when_sanitising_collides() -> None:
    assert (
        sh.clip_key("smile", "A_(1)_x.avi")
        == "smile__A_-1-_x__" + hashlib.sha1(b"smile/A_(1)_x.avi").hexdigest()[:8]
    )
    a, b = sh.clip_key("hug", "a!b.avi"), sh.clip_key("hug", "a#b.avi")
    assert a.split("__")[1] == b.split("__")[1] and a != b  # same stem, the hash tells them apart
    assert sh.clip_key("hug", "x.avi") != sh.clip_key("kiss", "x.avi")


def test_plan_shards_hash_ordered_chunked_and_parts_partition() -> None:
    entries = [
        _e("walk", "b.avi", "test"),
        _e("kiss", "z.avi"),
        _e("kiss", "a.avi"),
        _e("walk", "a.avi"),
        _e("hug", "c.avi", "unused"),
        _e("hug", "q.avi"),
        _e("walk", "a.avi", "test"),
    ]
    plan = sh.plan_shards(entries, 2)
    assert [j.name for j in plan] == [
        "train-000000.tar",
        "train-000001.tar",
        "test-000000.tar",
        "unused-000000.tar",
    ]
    # within a subset: ordered by sha1("<seed>:<class>/<name>"), not by class
    assert [[e.rel_path for e in j.entries] for j in plan] == [
        ["hug/q.avi", "kiss/z.avi"],
        ["walk/a.avi", "kiss/a.avi"],
        ["walk/a.avi", "walk/b.avi"],
        ["hug/c.avi"],
    ]
    train = [e.rel_path for j in plan[:2] for e in j.entries]
    assert train == sorted(train, key=lambda p: hashlib.sha1(f"0:{p}".encode()).hexdigest())
    assert sh.plan_shards(reversed(entries), 2) == plan  # input order does not matter
    reseeded = [e.rel_path for j in sh.plan_shards(entries, 2, seed=1)[:2] for e in j.entries]
    assert reseeded == ["hug/q.avi", "walk/a.avi", "kiss/z.avi", "kiss/a.avi"]
    p0, p1 = sh.plan_shards(entries, 2, (0, 2)), sh.plan_shards(entries, 2, (1, 2))
    assert [j.name for j in p0] == ["train-p0of2-000000.tar", "test-p0of2-000000.tar"]
    assert [j.name for j in p1] == ["train-p1of2-000001.tar", "unused-p1of2-000000.tar"]
    assert sorted((j.subset, j.number, j.entries) for j in p0 + p1) == sorted(
        (j.subset, j.number, j.entries) for j in plan
    )


def test_plan_shards_mix_classes() -> None:
    entries = [_e(f"class{c:02d}", f"clip{i:02d}.avi") for c in range(10) for i in range(20)]
    plan = sh.plan_shards(entries, 20)
    assert sorted(e.rel_path for j in plan for e in j.entries) == sorted(e.rel_path for e in entries)
    # sorted by class, every shard would hold one class; hashed, each holds most of the ten
    assert min(len({e.cls for e in j.entries}) for j in plan) >= 6


def _samples(n: int) -> list[dict]:
    return [
        {"__key__": f"c__k{i}__0000000{i}", "cls": str(i).encode(), "json": b'{"a": 1}'} for i in range(n)
    ]


def test_write_shard_is_atomic_reproducible_and_plain_tar(tmp_path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    info = sh.write_shard(a, _samples(3))
    sh.write_shard(b, _samples(3))
    assert a.read_bytes() == b.read_bytes()
    assert info == {
        "count": 3,
        "bytes": a.stat().st_size,
        "sha256": hashlib.sha256(a.read_bytes()).hexdigest(),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "b.tar"]  # no .tmp left behind
    listing = subprocess.run(["tar", "-tvf", str(a)], check=True, capture_output=True, text=True).stdout
    assert "c__k0__00000000.cls" in listing and "1970-01-01" in listing and "lsvit/lsvit" in listing
    got = list(wds.WebDataset(str(a), shardshuffle=False).decode())
    assert [s["cls"] for s in got] == [0, 1, 2] and got[0]["json"] == {"a": 1}


@pytest.mark.parametrize(
    "stem", ["k", "k" * 94, "k" * 95, "a_" * 60 + "long"]
)  # names up to and over 100 bytes
def test_tar_stream_writes_exactly_what_webdataset_tarwriter_writes(tmp_path, stem) -> None:
    rng = random.Random(0)
    samples = [
        {
            "__key__": f"{stem}{i}",
            "_hidden": b"never written",
            "cls": str(i).encode(),
            "json": b"{}",
            "f00.jpg": rng.randbytes(size),
        }
        for i, size in enumerate([0, 1, 511, 512, 513, 10240, 30000])
    ]
    ours, theirs = io.BytesIO(), io.BytesIO()
    stream = TarStream(ours, mode=sh.TAR_MODE, owner=sh.TAR_OWNER, mtime=sh.TAR_MTIME)
    with wds.TarWriter(
        theirs, user=sh.TAR_OWNER, group=sh.TAR_OWNER, compress=False, encoder=False, mtime=sh.TAR_MTIME
    ) as writer:
        for sample in samples:
            stream.write(sample)
            writer.write(sample)
    stream.close()
    assert ours.getvalue() == theirs.getvalue()
    assert stream.size == len(ours.getvalue()) and stream.size % 10240 == 0
    assert stream.sha256.hexdigest() == hashlib.sha256(ours.getvalue()).hexdigest()
    with pytest.raises(ValueError, match="not bytes"):
        stream.write({"__key__": "x", "cls": 3})


def test_write_shard_failure_leaves_nothing(tmp_path) -> None:
    def boom():
        yield _samples(1)[0]
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        sh.write_shard(tmp_path / "x.tar", boom())
    assert list(tmp_path.iterdir()) == []


def test_complete_record_needs_tar_size_sha256_and_fingerprint(tmp_path) -> None:
    (tmp_path / records.RECORDS_DIRNAME).mkdir()
    tar = tmp_path / "train-000000.tar"
    info = sh.write_shard(tar, _samples(2))
    assert records.adopt(tmp_path, tar.name, "fp") == (None, None)  # tar without record: never finished
    samples = [{"key": f"k{i}", "class": "c", "clip": f"c/{i}.avi"} for i in range(2)]
    record = {"url": tar.name, "subset": "train", "number": 0, **info, "fingerprint": "fp"}
    records.write_record(tmp_path, record | {"samples": samples, "failures": []})
    assert records.adopt(tmp_path, tar.name, "fp")[0]["count"] == 2
    assert records.adopt(tmp_path, tar.name, "other") == (None, None)  # other clips or settings: redone
    good = tar.read_bytes()
    tar.write_bytes(good[:-1] + b"x")  # same size, other bytes
    assert records.adopt(tmp_path, tar.name, "fp") == (
        None,
        f"{tar.name}: sha256 differs from the recorded one (damaged or replaced by another shard)",
    )
    tar.write_bytes(good + b"\0" * 512)
    assert "truncated or replaced" in records.adopt(tmp_path, tar.name, "fp")[1]


def test_remove_stale_only_touches_own_family(tmp_path) -> None:
    rec = tmp_path / records.RECORDS_DIRNAME
    rec.mkdir()
    names = [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar.tmp",
        "train-p0of2-000000.tar",
        "notes.tar",
    ]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (rec / "train-000001.tar.json").write_text("{}")
    (rec / "train-000000.tar.json.tmp").write_text("{}")
    removed = sh.remove_stale(tmp_path, ["train-000000.tar"], (0, 1))
    assert sorted(removed) == [
        "train-000000.tar.json.tmp",
        "train-000001.tar",
        "train-000001.tar.json",
        "train-000002.tar.tmp",
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "notes.tar",
        "train-000000.tar",
        "train-p0of2-000000.tar",
    ]


def test_index_and_failure_names() -> None:
    assert (merge.index_name((0, 1)), merge.failures_name((0, 1))) == ("index.json", "failures.jsonl")
    assert (merge.index_name((2, 4)), merge.failures_name((2, 4))) == (
        "index-p2of4.json",
        "failures-p2of4.jsonl",
    )


def test_merge_without_parts_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(merge.MergeError, match="no part indexes"):
        merge.merge_parts(tmp_path)
    part = {"classes": ["a"], "shards": [], "part": "0/3", "split": 1, "num_clips": 0, "subsets": ["train"]}
    part |= {"empty_shards": [], "config": {"seed": 0, "balance_target": None}}
    (tmp_path / "index-p0of3.json").write_text(json.dumps(part))
    with pytest.raises(merge.MergeError, match=r"part\(s\) 1/3, 2/3 missing"):
        merge.merge_parts(tmp_path)
