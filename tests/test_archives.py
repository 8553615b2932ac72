"""Datasets as distributed: real RAR files (from rarfile's sdist), nested archives, and HMDB51's layout."""

import json
import shutil
from pathlib import Path

import pytest

import lsvit.pipeline.extract as ex
from lsvit.pipeline import archives
from lsvit.pipeline.archives import ArchiveError, materialise

RAR = Path(__file__).parent / "data" / "rarfile"
SUBDIRS = {"dir1/file1.txt": 6, "dir2/file2.txt": 6, "with space/long fn.txt": 8, "üȵĩöḋè/file.txt": 5}
needs_unar = pytest.mark.skipif(shutil.which("unar") is None, reason="unar (Debian package) not installed")
LAYOUT = {
    "brush_hair": [("b0.avi", 1, 17), ("b1.avi", 2, 18), ("b2.avi", 1, 16)],
    "kiss": [("k0.avi", 1, 16), ("k1.avi", 2, 19), ("gone.avi", 1, None)],
}


def _copy(tmp: Path, name: str) -> Path:
    shutil.copy(RAR / name, tmp / name)
    return tmp / name


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _write(path: Path, fmt: str, members: dict[str, bytes]) -> Path:
    import libarchive

    with libarchive.file_writer(str(path), fmt) as a:
        for name, data in members.items():
            a.add_file_from_memory(name, len(data), data)
    return path


@pytest.mark.parametrize("name", ["rar3-subdirs.rar", "rar5-subdirs.rar"])
def test_real_rar_files_unpack_beside_themselves(tmp_path: Path, name: str) -> None:
    folder = materialise(_copy(tmp_path, name), "--data-root", progress=False)
    assert folder == tmp_path / name.removesuffix(".rar") / "sub"  # a single top folder is stepped into
    assert _files(folder) == SUBDIRS
    assert (folder / "dir1" / "file1.txt").read_bytes() == b"file1\n"
    stamp = json.loads((folder.parent / archives.STAMP).read_text())
    assert stamp["files"] == 4 and stamp["skipped"] == {}


@needs_unar
@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("rar3-solid.rar", {"stest1.txt": 2048, "stest2.txt": 2048}),  # solid RAR4: libarchive refuses it
        (
            "rar5-dups.rar",
            {f"stest{i}.txt": 2048 for i in range(1, 10)},
        ),  # references: libarchive gives 0 bytes
    ],
)
def test_what_libarchive_cannot_read_goes_through_unar(tmp_path: Path, name: str, files: dict) -> None:
    folder = materialise(_copy(tmp_path, name), "--data-root", progress=False)
    assert _files(folder) == {archives.STAMP: _files(folder)[archives.STAMP], ".unpack.lock": 0, **files}
    assert len({(folder / f).read_bytes() for f in files if f.startswith("stest")}) <= 2
    assert not [p for p in folder.rglob("*") if p.is_symlink()]


def test_without_unar_a_solid_rar4_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(archives.shutil, "which", lambda _: None)
    with pytest.raises(
        ArchiveError, match=r"libarchive cannot read rar3-solid\.rar \(RAR solid archive .*install unar"
    ):
        materialise(_copy(tmp_path, "rar3-solid.rar"), "--data-root", progress=False)


def test_links_never_leave_the_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    folder = archives.unpack(_copy(tmp_path / "in", "rar5-evil-symlink-traversal.rar"), "--data-root", False)
    assert not (tmp_path / "pwned.txt").exists() and not [p for p in tmp_path.rglob("*") if p.is_symlink()]
    assert (folder / "up" / "pwned.txt").is_file()  # written inside, as a plain folder
    assert json.loads((folder / archives.STAMP).read_text())["skipped"] == {"up": "a link or special file"}
    assert "1 member(s) not unpacked ('up': a link or special file)" in capsys.readouterr().err


@needs_unar
def test_an_encrypted_rar_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        ArchiveError, match=r"cannot unpack rar5-psw\.rar \(encrypted or damaged\?\).*password"
    ):
        materialise(_copy(tmp_path, "rar5-psw.rar"), "--data-root", progress=False)


def test_unsafe_member_paths_are_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "x.zip", "zip", {"a/ok.avi": b"1", "a/../../evil.avi": b"2", "a/b\x01c.avi": b"3"}
    )
    folder = archives.unpack(path, "--data-root", progress=False)
    assert _files(folder)["a/ok.avi"] == 1 and not (tmp_path / "evil.avi").exists()
    assert set(json.loads((folder / archives.STAMP).read_text())["skipped"]) == {
        "a/../../evil.avi",
        "a/b\x01c.avi",
    }


def test_hmdb51_as_distributed(make_hmdb, tmp_path: Path, monkeypatch) -> None:
    """hmdb51_org: an archive of one archive per class (and a real RAR inside), test_train_splits: an
    archive of the split folder; extract reads both and writes the same shards as from the unpacked tree."""
    tree = make_hmdb(LAYOUT)
    dist = tmp_path / "dist"
    dist.mkdir()
    inner = {}
    for cls in LAYOUT:
        members = {f"{cls}/{p.name}": p.read_bytes() for p in sorted((tree / cls).iterdir())}
        inner[f"{cls}.zip"] = _write(tmp_path / f"{cls}.zip", "zip", members).read_bytes()
    inner["extra.rar"] = (RAR / "rar5-subdirs.rar").read_bytes()  # a real RAR, opened in memory
    _write(dist / "hmdb51_org.7z", "7zip", inner)
    splits = tree / "testTrainMulti_7030_splits"
    _write(
        dist / "test_train_splits.zip",
        "zip",
        {f"{splits.name}/{p.name}": p.read_bytes() for p in splits.iterdir()},
    )

    def run(root: Path, splits_dir: Path | None, out: Path) -> dict:
        cfg = ex.ExtractConfig(data_root=root, splits_dir=splits_dir, out=out, device="cpu", workers=0)
        return json.loads((Path(ex.run_extract(cfg, progress=False)["split_dir"]) / "index.json").read_text())

    index = run(dist / "hmdb51_org.7z", dist / "test_train_splits.zip", tmp_path / "a")
    assert _files(dist / "hmdb51_org" / "extra" / "sub") == SUBDIRS
    assert sorted(p.name for p in (dist / "hmdb51_org").iterdir() if not p.name.startswith(".")) == [
        "brush_hair",
        "extra",
        "kiss",
    ]
    assert index["config"]["archives"] == {
        "data_root": str(dist / "hmdb51_org.7z"),
        "splits_dir": str(dist / "test_train_splits.zip"),
    }
    direct = run(tree, None, tmp_path / "b")
    assert [(s["url"], s["sha256"]) for s in index["shards"]] == [
        (s["url"], s["sha256"]) for s in direct["shards"]
    ]
    assert index["num_failures"] == direct["num_failures"] == 1
    monkeypatch.setattr(archives, "_unpack_file", lambda *a: pytest.fail("unpacked twice"))
    assert (
        run(dist / "hmdb51_org.7z", dist / "test_train_splits.zip", tmp_path / "c")["counts"]
        == index["counts"]
    )
