import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from lsvit.pipeline.cli import app
from lsvit.pipeline.eda import STATS, EdaError, counts_summary, describe, run_eda, suggest_augmentation
from lsvit.pipeline.errors import LsvitError

SPLITS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "hmdb51_splits"
CLASSES = ["catch", "kiss", "smile", "walk"]  # smile: every clip failed, so 0 samples
SIZES = {
    "train": {"catch": 3, "kiss": 5, "smile": 0, "walk": 9},
    "test": {"catch": 2, "kiss": 2, "smile": 0, "walk": 3},
}


def _jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _sample(cls: str, i: int, subset: str, rng: np.random.Generator) -> dict:
    key = f"{cls}__{subset}_clip{i}__{i:08x}"
    # The test subset is deliberately brighter, so brightness must show the largest train/test shift.
    bright = rng.normal(150.0 if subset == "test" else 90.0, 5.0)
    stats = {
        "brightness": bright,
        "contrast": rng.normal(50.0, 8.0),
        "blur": float(np.exp(rng.normal(5.0, 1.0))),
        "color_mean": [bright + rng.normal(10, 3), bright + rng.normal(0, 3), bright - rng.normal(10, 3)],
        "color_std": [40.0, 40.0, 40.0],
        "color_hist": [[0.125] * 8] * 3,
    }
    meta = {
        "key": key,
        "class": cls,
        "label": CLASSES.index(cls),
        "subset": subset,
        "split": 1,
        "stats": stats,
    }
    sample = {"__key__": key, "json": json.dumps(meta).encode(), "cls": str(CLASSES.index(cls)).encode()}
    sample.update({f"f{t:02d}.jpg": _jpeg(rng) for t in range(16)})
    return sample


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A contract-conformant split folder: train in two shards, test in one, index.json."""
    split_dir = tmp_path_factory.mktemp("shards") / "split1"
    split_dir.mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for subset, per_class in SIZES.items():
        samples = [_sample(c, i, subset, rng) for c, n in per_class.items() for i in range(n)]
        chunks = [samples[:10], samples[10:]] if subset == "train" else [samples]
        for j, chunk in enumerate(chunks):
            url = f"{subset}-{j:06d}.tar"
            with wds.TarWriter(str(split_dir / url), encoder=False) as w:
                for s in chunk:
                    w.write(s)
            entries.append({"url": url, "subset": subset, "count": len(chunk)})
    index = {"version": "test", "split": 1, "classes": CLASSES, "subsets": list(SIZES), "shards": entries}
    index |= {"counts": SIZES, "num_failures": 4, "config": {}, "manifests": {}}
    (split_dir / "index.json").write_text(json.dumps(index))
    return split_dir


def _check_png(path: Path, min_size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_size[0] and im.height >= min_size[1]
        assert np.asarray(im.convert("L")).std() > 5  # something was drawn


@pytest.fixture(scope="module")
def eda_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One CLI run on the shards/ folder holding exactly one split (figures are the slow part)."""
    out = tmp_path_factory.mktemp("eda")
    args = ["eda", "--shards", str(shards.parent), "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    return out, result.output


def test_eda_on_shards(eda_run: tuple[Path, str]) -> None:
    out, _ = eda_run
    _check_png(out / "class_counts.png", (800, 600))
    _check_png(out / "photometric.png", (800, 600))
    on_disk = json.loads((out / "eda.json").read_text())
    assert on_disk["figures"] == ["class_counts.png", "photometric.png"]
    for subset, per_class in SIZES.items():
        c = on_disk["counts"][subset]
        assert c["counts"] == per_class
        assert c["empty_classes"] == ["smile"]
    assert on_disk["counts"]["train"]["imbalance_ratio"] == 3.0
    assert on_disk["counts"]["train"]["largest"] == ["walk", 9]
    assert on_disk["counts"]["all"]["total"] == 24
    assert on_disk["index_counts_match"] is True
    stats = on_disk["stats"]
    assert set(stats) == set(STATS)
    assert stats["brightness"]["by_class"]["walk"]["n"] == 12
    assert stats["brightness"]["by_class"]["smile"] == {"n": 0}
    assert stats["blur"]["by_subset"]["test"]["n"] == 7
    assert max(on_disk["shift"], key=lambda s: on_disk["shift"][s]["ks_statistic"]) in (
        "brightness", "red_mean", "green_mean", "blue_mean"
    )  # fmt: skip
    assert on_disk["shift"]["brightness"]["ks_statistic"] == 1.0
    assert on_disk["shift"]["brightness"]["p_value"] < 1e-3
    assert on_disk["augmentation_basis"] == {"subset": "train", "n": 17}
    aug = on_disk["augmentation"]
    assert 0.05 <= aug["brightness"] <= 0.4
    from lsvit.trainer.augment import aug_from_eda  # the trainer takes the suggestion as is

    assert aug_from_eda(on_disk).brightness == aug["brightness"]


def test_eda_cli_prints_summary(eda_run: tuple[Path, str]) -> None:
    _, output = eda_run
    assert "walk (9)" in output and "catch (3)" in output  # most and least frequent train classes
    assert "3/4" in output  # smile has no clips
    shift_table = output.split("Train vs test")[1]
    assert shift_table.index("brightness") < shift_table.index("contrast")  # largest shift first


def test_eda_without_index_says_run_extract(tmp_path: Path) -> None:
    with pytest.raises(LsvitError, match="run `lsvit-pipeline extract` first"):
        run_eda(tmp_path, None, tmp_path / "out")
    with pytest.raises(LsvitError, match="exactly one of"):
        run_eda(None, None, tmp_path / "out")


def test_eda_with_several_splits_asks_which(shards: Path, tmp_path: Path) -> None:
    for n in (1, 2):
        (tmp_path / f"split{n}").mkdir()
        (tmp_path / f"split{n}" / "index.json").write_text("{}")
    with pytest.raises(LsvitError, match="several splits"):
        run_eda(tmp_path, None, tmp_path / "out")


def test_missing_shard_is_named(shards: Path, tmp_path: Path) -> None:
    index = json.loads((shards / "index.json").read_text())
    index["shards"].append({"url": "test-000001.tar", "subset": "test", "count": 1})
    (tmp_path / "index.json").write_text(json.dumps(index))
    for e in index["shards"][:-1]:
        (tmp_path / e["url"]).symlink_to(shards / e["url"])
    with pytest.raises(EdaError, match=r"test-000001\.tar"):
        run_eda(tmp_path, None, tmp_path / "out")


def test_stats_follow_the_shard_contract() -> None:
    from lsvit.pipeline.stats import STAT_NAMES

    assert STATS[: len(STAT_NAMES)] == STAT_NAMES


def test_counts_summary_and_describe_literals() -> None:
    s = counts_summary({"walk": 548, "catch": 102, "kiss": 102, "none": 0})
    assert s["total"] == 752 and s["num_classes"] == 3
    assert s["largest"] == ["walk", 548] and s["smallest"] == ["catch", 102]
    assert s["imbalance_ratio"] == pytest.approx(548 / 102)
    assert s["empty_classes"] == ["none"]
    assert counts_summary({"a": 0})["imbalance_ratio"] is None
    d = describe(np.arange(101.0))
    assert d["mean"] == 50.0 and d["q05"] == 5.0 and d["q50"] == 50.0 and d["max"] == 100.0


def test_suggest_augmentation_widens_with_spread() -> None:
    rng = np.random.default_rng(0)

    def table(spread: float) -> dict:
        b = rng.normal(120, spread, 500)
        return {"brightness": b, "contrast": rng.normal(50, spread / 4, 500), "blur": rng.lognormal(5, 1, 500),
                "red_mean": b + 5, "green_mean": b, "blue_mean": b - 5 + rng.normal(0, spread / 2, 500)}  # fmt: skip

    narrow, wide = suggest_augmentation(table(5.0)), suggest_augmentation(table(30.0))
    assert narrow["brightness"] < wide["brightness"]
    assert narrow["contrast"] < wide["contrast"]
    assert narrow["rgb_shift"] < wide["rgb_shift"]
    assert suggest_augmentation({n: np.array([]) for n in STATS}) == {}


@pytest.mark.skipif(not SPLITS_DIR.is_dir(), reason="real HMDB51 split files not present")
def test_eda_on_real_split_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eda", "--splits-dir", str(SPLITS_DIR), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eda.json").read_text())
    assert not (tmp_path / "photometric.png").exists()
    _check_png(tmp_path / "class_counts.png", (800, 600))
    overall = report["counts"]["all"]
    assert overall["num_classes"] == len(report["classes"]) == 51
    assert overall["total"] == 6766
    assert overall["counts"]["walk"] == 548 and overall["largest"] == ["walk", 548]
    assert overall["smallest"][1] == 102
    assert all(overall["counts"][c] == 102 for c in ("catch", "kiss", "smile", "throw"))
    assert overall["imbalance_ratio"] == pytest.approx(548 / 102)
    for n in ("1", "2", "3"):
        split = report["splits"][n]
        assert split["train"]["imbalance_ratio"] == 1.0 and split["train"]["total"] == 3570
        assert split["test"]["imbalance_ratio"] == 1.0 and split["test"]["total"] == 1530
        assert split["unused"]["total"] == 1666
