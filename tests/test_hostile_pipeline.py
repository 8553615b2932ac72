"""Hostile inputs, kills, concurrent runs and damaged files: one `error:` line (exit 2) or a recorded
failure, never a traceback, and nothing lost. Each test also checks what is (or is not) on disk after."""

import hashlib
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

import pytest
from helpers_hostile import one_error, run_main

import lsvit.pipeline.extract as ex
from lsvit.pipeline import lock, records
from lsvit.pipeline.cli import main
from lsvit.pipeline.decode import DecodeError, decode_clip
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.merge import lock_name, merge_parts

# class -> [(name, flag, frames)]; frames None: listed but not on disk
LAYOUT = {
    "run": [("r0.avi", 1, 18), ("r1.avi", 1, 20), ("r2.avi", 2, 17)],
    "walk": [("w0.avi", 1, 16), ("w1.avi", 2, 19), ("gone.avi", 1, None)],
}
CLI = [sys.executable, "-m", "lsvit.pipeline.cli"]


def _digests(split_dir: Path) -> dict[str, str]:
    """sha256 of every file of a split folder (index.json without its run-specific config fields)."""
    out = {}
    for p in sorted(split_dir.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name.startswith("index"):
                index = json.loads(data)
                for k in ("workers", "out"):
                    index["config"].pop(k)
                data = json.dumps(index, sort_keys=True).encode()
            out[str(p.relative_to(split_dir))] = hashlib.sha256(data).hexdigest()
    return out


def _cfg(root: Path, out: Path, **kw) -> ex.ExtractConfig:
    return ex.ExtractConfig(**{"data_root": root, "out": out, "device": "cpu", "shard_max_samples": 2, **kw})


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Runs ``lsvit-pipeline ARGS`` in this process: (exit code, stdout, stderr)."""
    return run_main(main, monkeypatch, capsys, *args)


@pytest.fixture(scope="module")
def tree(make_hmdb) -> Path:
    return make_hmdb(LAYOUT)


@pytest.fixture(scope="module")
def ref(tree, tmp_path_factory) -> Path:
    """The split folder of one clean in-process run (shards of 2 clips)."""
    summary = ex.run_extract(_cfg(tree, tmp_path_factory.mktemp("ref"), workers=0), progress=False)
    return Path(summary["split_dir"])


def _copy_tree(tree: Path, dest: Path) -> Path:
    shutil.copytree(tree, dest, symlinks=True)
    return dest


def _splits(root: Path) -> Path:
    return root / "testTrainMulti_7030_splits"


# Defects 1-3: names from split files ------------------------------------------------------------------


def test_clip_name_too_long_for_the_file_system_is_a_recorded_failure(tree, tmp_path, monkeypatch, capsys):
    root = _copy_tree(tree, tmp_path / "data")
    long_name = "x" * 300 + ".avi"
    with (_splits(root) / "run_test_split1.txt").open("a") as fh:
        fh.write(f"{long_name} 1 \n")
    code, _, err = _run(
        monkeypatch,
        capsys,
        "extract",
        "--data-root",
        str(root),
        "--out",
        str(tmp_path / "o"),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--shard-size",
        "2",
    )
    assert code == 0 and "Traceback" not in err, err
    failures = [json.loads(x) for x in (tmp_path / "o/split1/failures.jsonl").read_text().splitlines()]
    reasons = {f["clip"]: f["reason"] for f in failures}
    assert reasons[f"run/{long_name}"] == "cannot read file (File name too long)"
    assert reasons["walk/gone.avi"] == "file not found"
    index = json.loads((tmp_path / "o/split1/index.json").read_text())
    assert sum(s["count"] for s in index["shards"]) == 5  # the run went on: every real clip is in a shard


@pytest.mark.parametrize(
    ("file_name", "message"),
    [
        (b".._test_split1.txt", "class name '..' refers to a parent or current folder"),
        (b"._test_split1.txt", "class name '.' refers to a parent or current folder"),
        (b"a\x01b_test_split1.txt", r"class name 'a\x01b' contains a NUL or control character"),
        (b"\xff\xfe_test_split1.txt", r"class name '\xff\xfe' is not valid UTF-8"),
    ],
    ids=["dotdot", "dot", "control", "not-utf8"],
)
def test_bad_class_name_is_an_error_naming_the_split_file(
    tree, tmp_path, monkeypatch, capsys, file_name, message
):
    root = _copy_tree(tree, tmp_path / "data")
    # Class "..": its clips would be read from the data root's parent folder.
    (tmp_path / "stolen.avi").write_bytes((root / "run" / "r0.avi").read_bytes())
    with open(os.path.join(os.fsencode(_splits(root)), file_name), "w") as fh:
        fh.write("stolen.avi 1 \n")
    out = tmp_path / "o"
    code, _, err = _run(
        monkeypatch,
        capsys,
        "extract",
        "--data-root",
        str(root),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "0",
    )
    line = one_error(err)
    assert code == 2 and message in line and "rename or remove that file" in line, line
    assert "split file" in line and str(_splits(root)) in line
    assert not out.exists()  # nothing extracted, nothing written


# Split files are read as the official ones are ------------------------------------------------------


def test_split_files_read_like_the_official_ones(tmp_path):
    from lsvit.pipeline.hmdb51 import load_split

    d = tmp_path / "splits"
    d.mkdir()
    text = "\ufeffbom.avi 1 \r\ncrlf.avi 2 \r\ntwo  spaces.avi \t 1 \nline\u2028sep.avi 0 \nlast.avi 1"
    (d / "c_test_split1.txt").write_bytes(text.encode())
    spec = load_split(d, 1)
    assert [(c.name, c.subset) for c in spec.clips] == [
        ("bom.avi", "train"),
        ("crlf.avi", "test"),
        ("two  spaces.avi", "train"),  # spaces inside a name stay; one run separates name and flag
        ("line\u2028sep.avi", "unused"),  # U+2028 is part of the name, not a line break
        ("last.avi", "train"),
    ]
    assert all(c.problem is None for c in spec.clips)
    (d / "c_test_split1.txt").write_bytes("a.avi 1\nb\u2028c.avi 1\nbad.avi 7\n".encode())
    with pytest.raises(LsvitError, match=r"c_test_split1\.txt:3: bad flag '7'"):  # line numbers by \n only
        load_split(d, 1)
    (d / "c_test_split1.txt").write_bytes(b"old\rmac.avi 1\n")
    assert "control character" in load_split(d, 1).clips[0].problem


# Defect 4: kill -9 of the main process --------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def long_tree(make_hmdb) -> Path:
    """48 clips: enough that the kill lands mid-run however fast the machine (6 clips all finished first)."""
    return make_hmdb({c: [(f"{c}_{i:02d}.avi", 1 + i % 2, 90) for i in range(16)] for c in ("a", "b", "c")})


@pytest.mark.slow
def test_kill_9_of_the_main_process_ends_the_workers_and_nothing_is_published_after(long_tree, tmp_path):
    tree = long_tree
    out = tmp_path / "out"
    cmd = [*CLI, "extract", "--data-root", str(tree), "--out", str(out), "--device", "cpu"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--shard-size", "1"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    split_dir = out / "split1"
    deadline = time.monotonic() + 120
    while not list(split_dir.glob("records/*.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers are not told
    proc.wait()
    published = sorted(p.name for p in split_dir.rglob("*") if not p.name.endswith(".tmp"))
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # zombies (exited, not yet reaped by init) still count as group members: check that none runs
    ps = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    assert all(s.startswith("Z") for s in ps.split()), f"processes of the killed run still running: {ps}"
    time.sleep(1)
    assert sorted(p.name for p in split_dir.rglob("*") if not p.name.endswith(".tmp")) == published
    assert not (split_dir / "index.json").exists()
    assert len(list(split_dir.glob("records/*.json"))) < 48  # killed mid-run: 48 clips, one per shard
    # The lock died with its holder: a rerun is not blocked, resumes, and ends byte-identical.
    summary = ex.run_extract(_cfg(tree, out, workers=0, shard_max_samples=1), progress=False)
    assert summary["resumed"] >= 1
    single = ex.run_extract(_cfg(tree, tmp_path / "single", workers=0, shard_max_samples=1), progress=False)
    assert _digests(split_dir) == _digests(Path(single["split_dir"]))


# Defect 5: two runs into one --out ------------------------------------------------------------------


@pytest.mark.slow
def test_second_run_into_the_same_out_is_refused_and_the_first_completes(
    tree, ref, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    args = ["extract", "--data-root", str(tree), "--out", str(out), "--device", "cpu", "--shard-size", "2"]
    first = subprocess.Popen(
        [*CLI, *args, "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lock_file = out / "split1" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock_file.is_file() and lock_file.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second could start"
    code, _, err = _run(monkeypatch, capsys, *args, "--workers", "0")
    line = one_error(err)
    assert code == 2 and f"{out / 'split1'} is in use by another extract run (pid {first.pid} on " in line
    assert f"extract --data-root {tree}" in line and "a killed run releases its lock" in line
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert _digests(out / "split1") == _digests(ref)  # the refused run deleted nothing of the first's


def test_parts_lock_separately_and_merge_waits_for_every_part(tree, tmp_path):
    split_dir = tmp_path / "split1"
    split_dir.mkdir()
    with lock.hold(split_dir, lock_name((0, 2)), "test"):
        ex.run_extract(_cfg(tree, tmp_path, workers=0, part="1/2"), progress=False)  # another part: fine
        with pytest.raises(
            LsvitError, match=rf"in use by another extract --part 0/2 run \(pid {os.getpid()} "
        ):
            ex.run_extract(_cfg(tree, tmp_path, workers=0, part="0/2"), progress=False)
        assert not (split_dir / "index-p0of2.json").exists()
        assert lock.holder(split_dir, lock_name((0, 2))).startswith(f"pid {os.getpid()} on ")
    ex.run_extract(_cfg(tree, tmp_path, workers=0, part="0/2"), progress=False)
    with lock.hold(split_dir, lock_name((1, 2)), "test"):
        with pytest.raises(LsvitError, match=r"in use by another extract --part 1/2 run"):
            merge_parts(split_dir)
        assert not (split_dir / "index.json").exists()
    assert lock.holder(split_dir, lock_name((1, 2))) is None  # released, and the file says nobody
    merge_parts(split_dir)
    assert (split_dir / "index.json").is_file()


def test_synth_refuses_a_second_run_into_the_same_tree(tmp_path, monkeypatch, capsys):
    from lsvit.pipeline.synth import LOCK

    out = tmp_path / "tree"
    out.mkdir()
    with lock.hold(out, LOCK, "synth"):
        code, _, err = _run(monkeypatch, capsys, "synth", "--out", str(out), "--scale", "0.01")
    assert code == 2 and "is in use by another synth run" in one_error(err)
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written


# Defect 6 and smaller: unusable paths ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["extract", "synth"])
@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("/proc/lsvit-out", "cannot create the folder"),
        ("{tmp}/file", "exists and is not a folder"),
        ("/dev/null", "exists and is not a folder"),
        ("{tmp}/file/sub", "is a file, not a folder"),
    ],
    ids=["proc", "file", "dev-null", "under-a-file"],
)
def test_unusable_out_is_one_line(tree, tmp_path, monkeypatch, capsys, command, where, message):
    (tmp_path / "file").write_text("not a folder")
    out = where.format(tmp=tmp_path)
    args = ["--data-root", str(tree), "--device", "cpu", "--workers", "0"] if command == "extract" else []
    code, _, err = _run(monkeypatch, capsys, command, "--out", out, *args)
    line = one_error(err)
    assert code == 2 and f"--out {out}" in line and message in line, line
    assert (tmp_path / "file").read_text() == "not a folder"
    assert not Path("/proc/lsvit-out").exists()


def test_data_root_that_is_a_file_and_part_0_of_0(tmp_path, monkeypatch, capsys):
    (tmp_path / "root").write_text("x")
    code, _, err = _run(
        monkeypatch, capsys, "extract", "--data-root", str(tmp_path / "root"), "--out", str(tmp_path / "o")
    )
    assert code == 2 and f"data root {tmp_path / 'root'} is not a folder" in one_error(err)
    code, _, err = _run(monkeypatch, capsys, "extract", "--part", "0/0", "--out", str(tmp_path / "o"))
    line = one_error(err)
    assert code == 2 and "--part 0/0: N must be 1 or more" in line and "-1" not in line
    assert not (tmp_path / "o").exists()


def test_devices_are_not_regular_files(tree, tmp_path):
    with pytest.raises(DecodeError, match=r"not a regular file \(a device, pipe or socket\)"):
        decode_clip(Path("/dev/zero"))  # size 0, but endless: never "empty file"
    root = _copy_tree(tree, tmp_path / "data")
    (root / "run" / "r1.avi").unlink()
    (root / "run" / "r1.avi").symlink_to("/dev/zero")
    summary = ex.run_extract(_cfg(root, tmp_path / "o", workers=0), progress=False)
    failures = (Path(summary["split_dir"]) / "failures.jsonl").read_text()
    assert '"clip": "run/r1.avi", "reason": "not a regular file"' in failures


def test_symlinks_leading_outside_the_data_root_are_followed_and_reported(tree, tmp_path, capsys):
    root = _copy_tree(tree, tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "walk" / "w0.avi").rename(elsewhere / "w0.avi")
    (root / "walk" / "w0.avi").symlink_to(elsewhere / "w0.avi")
    summary = ex.run_extract(_cfg(root, tmp_path / "o", workers=0), progress=False)
    err = capsys.readouterr().err
    assert f"note: 1 clip(s) are symlinks that lead outside {root} and are followed, e.g. walk/w0.avi" in err
    assert summary["samples"] == 5  # followed, as the README says


def test_failed_eda_leaves_no_folder_behind(tmp_path, monkeypatch, capsys):
    out = tmp_path / "reports" / "eda"
    code, _, err = _run(monkeypatch, capsys, "eda", "--shards", str(tmp_path / "nope"), "--out", str(out))
    assert code == 2 and "does not exist" in one_error(err)
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
    assert not out.exists()


def test_eda_out_that_is_a_file_is_one_line(ref, tmp_path, monkeypatch, capsys):
    (tmp_path / "report").write_text("x")
    code, _, err = _run(monkeypatch, capsys, "eda", "--shards", str(ref), "--out", str(tmp_path / "report"))
    assert code == 2 and "--out" in one_error(err) and "not a folder" in err
    assert (tmp_path / "report").read_text() == "x"


# Defect 7: a full disk --------------------------------------------------------------------------------


def _limit_file_size(limit: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past it fail with EFBIG

    return set_limit


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_write_that_fails_is_one_line_and_a_rerun_resumes(tree, ref, tmp_path, workers):
    out = tmp_path / "out"
    cmd = [*CLI, "extract", "--data-root", str(tree), "--out", str(out), "--device", "cpu"]
    cmd += ["--workers", workers, "--shard-size", "2"]
    biggest = max(p.stat().st_size for p in ref.glob("*.tar"))
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(biggest - 1)
    )
    line = one_error(r.stderr)
    assert r.returncode == 2 and line.startswith(f"error: cannot write {out / 'split1'}/"), line
    assert ".tar (File too large); free space or fix the folder, then rerun the same command" in line
    assert not list(out.rglob("*.tmp")) and not (out / "split1" / "index.json").exists()
    summary = ex.run_extract(_cfg(tree, out, workers=0), progress=False)  # the limit lifted
    assert summary["resumed"] < summary["planned"] and _digests(out / "split1") == _digests(ref)


def _unshare_works() -> bool:
    try:
        r = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux" or not _unshare_works(), reason="needs `unshare -rm` (user namespaces)"
)
def test_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_resumes(tree, ref, tmp_path):
    disk, keep = tmp_path / "disk", tmp_path / "keep"
    disk.mkdir()
    size_kb = sum(p.stat().st_size for p in ref.glob("*.tar")) // 2048  # room for about half the shards
    cmd = " ".join(
        [
            *CLI,
            "extract",
            "--data-root",
            str(tree),
            "--out",
            f"{disk}/out",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--shard-size",
            "2",
        ]
    )
    script = (
        f"mount -t tmpfs -o size={size_kb}k tmpfs {disk} && {cmd} 2> {tmp_path}/err1; echo $? > {tmp_path}/rc1; "
        f"find {disk} -name '*.tmp' > {tmp_path}/tmps; mount -o remount,size=64m {disk} && {cmd} "
        f"> {tmp_path}/out2 2>&1; echo $? > {tmp_path}/rc2; cp -r {disk}/out {keep}"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, timeout=600)
    line = one_error((tmp_path / "err1").read_text())
    assert (tmp_path / "rc1").read_text().strip() == "2" and "(No space left on device)" in line, line
    assert "then rerun the same command: finished work is kept and it resumes" in line
    assert (tmp_path / "tmps").read_text() == ""  # the half-written file was removed
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "out2").read_text()
    assert "(0 resumed)" not in (tmp_path / "out2").read_text()
    assert _digests(keep / "split1") == _digests(ref)


def test_manifests_and_class_weights_have_the_mode_of_the_tars(ref):
    modes = {p.name: p.stat().st_mode & 0o777 for p in ref.iterdir() if p.is_file() and p.name != ".lock"}
    tar_mode = modes["train-000000.tar"]
    assert modes["balanced-hybrid-train.json"] == modes["class-weights-train.json"] == tar_mode
    assert set(modes.values()) == {tar_mode} and tar_mode == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Damaged shards: verify, resume and merge check sha256 --------------------------------------------------


def _damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2000] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))


def test_verify_names_each_damaged_shard(ref, tmp_path, monkeypatch, capsys):
    split_dir = tmp_path / "split1"
    shutil.copytree(ref, split_dir)
    code, out, _ = _run(monkeypatch, capsys, "verify", str(split_dir))
    assert code == 0 and out.startswith("ok: 3 shards") and "match index.json" in out
    _damage(split_dir / "train-000000.tar")
    (split_dir / "test-000000.tar").write_bytes((split_dir / "test-000000.tar").read_bytes()[:-512])
    (split_dir / "train-000001.tar").unlink()
    code, _, err = _run(monkeypatch, capsys, "verify", str(tmp_path))  # a shard folder with one split
    line = one_error(err)
    assert code == 2 and line.startswith(f"error: 3 file(s) in {split_dir} do not match index.json: ")
    for name in ("train-000000.tar", "test-000000.tar", "train-000001.tar"):
        assert name in line
    assert "bad: train-000000.tar: sha256 differs from the recorded one" in err
    assert "bad: train-000001.tar: missing" in err and "truncated or replaced" in err
    assert "rerun the `lsvit-pipeline extract` command that wrote them" in line


def test_verify_catches_a_train_shard_swapped_for_a_test_shard(tree, tmp_path, monkeypatch, capsys):
    ex.run_extract(_cfg(tree, tmp_path, workers=0, shard_max_samples=1), progress=False)
    split_dir = tmp_path / "split1"
    shutil.copy(split_dir / "test-000000.tar", split_dir / "train-000000.tar")  # one sample each
    code, _, err = _run(monkeypatch, capsys, "verify", str(split_dir))
    assert code == 2 and "train-000000.tar" in one_error(err)
    assert "bad: train-000000.tar: " in err


def test_verify_refuses_while_a_run_writes_the_folder(ref, tmp_path, monkeypatch, capsys):
    split_dir = tmp_path / "split1"
    shutil.copytree(ref, split_dir)
    with lock.hold(split_dir, ".lock", "test"):
        code, _, err = _run(monkeypatch, capsys, "verify", str(split_dir))
    assert code == 2 and f"is being written right now (pid {os.getpid()} on " in one_error(err)


def test_resume_extracts_a_damaged_shard_again(tree, ref, tmp_path, capsys):
    split_dir = tmp_path / "split1"
    shutil.copytree(ref, split_dir)
    _damage(split_dir / "train-000001.tar")
    summary = ex.run_extract(_cfg(tree, tmp_path, workers=0), progress=False)
    assert "train-000001.tar: sha256 differs from the recorded one" in capsys.readouterr().err
    assert summary["resumed"] == 2 and _digests(split_dir) == _digests(ref)


@pytest.fixture(scope="module")
def parts(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parts")
    for i in range(2):
        ex.run_extract(_cfg(tree, out, workers=0, part=f"{i}/2"), progress=False)
    return out / "split1"


def _drop_key(path: Path, key: str) -> None:
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))


def _record(split_dir: Path, url: str) -> Path:
    return records.record_path(split_dir, url)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "index-p1of2.json").write_text("{not json"), r"index-p1of2.json is not JSON"),
        (
            lambda d: _drop_key(d / "index-p0of2.json", "config"),
            r"index-p0of2.json is malformed \('config' lacks the seed or balance target\); rerun "
            r"`lsvit-pipeline extract --part 0/2`",
        ),
        (
            lambda d: _record(d, "train-p1of2-000001.tar").write_text("[]"),
            r"train-p1of2-000001.tar: train-p1of2-000001.tar.json is malformed \(a JSON list, not an object\)",
        ),
        (
            lambda d: _record(d, "test-p0of2-000000.tar").unlink(),
            r"test-p0of2-000000.tar: test-p0of2-000000.tar.json is missing",
        ),
        (
            lambda d: _damage(d / "train-p1of2-000001.tar"),
            r"train-p1of2-000001.tar: sha256 differs from the recorded one .*part\(s\) 1/2",
        ),
    ],
    ids=["index-not-json", "index-without-config", "record-not-object", "record-missing", "shard-damaged"],
)
def test_merge_of_damaged_parts_is_one_line(parts, tmp_path, monkeypatch, capsys, damage, message):
    split_dir = tmp_path / "split1"
    shutil.copytree(parts, split_dir)
    damage(split_dir)
    code, _, err = _run(monkeypatch, capsys, "merge", str(split_dir))
    assert code == 2 and re.search(message, one_error(err)), err
    assert not (split_dir / "index.json").exists() and not (split_dir / "failures.jsonl").exists()


def test_verify_checks_part_indexes_before_merge(parts, tmp_path, monkeypatch, capsys):
    split_dir = tmp_path / "split1"
    shutil.copytree(parts, split_dir)
    code, out, _ = _run(monkeypatch, capsys, "verify", str(split_dir))
    assert code == 0 and "match index-p0of2.json, index-p1of2.json" in out
    _damage(split_dir / "train-p1of2-000001.tar")
    code, _, err = _run(monkeypatch, capsys, "verify", str(split_dir))
    line = one_error(err)
    assert code == 2 and "train-p1of2-000001.tar" in line
    assert "rerun `lsvit-pipeline extract --part i/N` for part(s) 1/2" in line and "merge" in line
