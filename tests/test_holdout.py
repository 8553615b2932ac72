"""The validation hold-out: source-video groups on literal names, the hold-out rule, and the loaders' subsets."""

from collections import Counter
from pathlib import Path

import pytest

from lsvit.pipeline.groups import key_stem, source_group
from lsvit.pipeline.shardindex import read_index
from lsvit.pipeline.shards import clip_key
from lsvit.trainer.data import DataConfig, make_loader
from lsvit.trainer.holdout import group_keys, holdout_keys
from lsvit.trainer.shardset import load_shardset, subset_keys

pytest_plugins = ["fixtures_train"]

SPLITS = Path(__file__).parents[2] / "shared" / "data" / "hmdb51_splits"
if not SPLITS.is_dir():
    SPLITS = Path("/work/shared/data/hmdb51_splits")


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "april_09_brush_hair"),
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi", "april_09_brush_hair"),
        # one source video, clips with different tags: the trailing number alone would split it
        (
            "Davos_-_Anschieben_von_Michis_Auto_push_f_cm_np1_fr_bad_0.avi",
            "davos_-_anschieben_von_michis_auto_push",
        ),
        (
            "Davos_-_Anschieben_von_Michis_Auto_push_f_cm_np4_ba_bad_2.avi",
            "davos_-_anschieben_von_michis_auto_push",
        ),
        ("TheBoondockSaints_sit_u_nm_np10_ba_med_0.avi", "theboondocksaints_sit"),
        # near-identical titles are different videos
        ("The_Matrix_1_kick_f_cm_np1_fr_med_3.avi", "the_matrix_1_kick"),
        ("THE_MATRIX_2_kick_f_cm_np1_le_med_0.AVI", "the_matrix_2_kick"),
        ("v_ApplyEyeMakeup_g08_c01.avi", "g08"),
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g8_c04.avi", "g08"),
        ("my_own_clip_12.mp4", "my_own_clip"),
        ("single", "single"),
    ],
)
def test_source_group_of_literal_names(name, group):
    assert source_group(name) == group


def test_key_stems_group_like_the_clip_names():
    for cls, name in [("push", "Davos_-_Anschieben_von_Michis_Auto_push_f_cm_np1_fr_bad_0.avi"),
                      ("kiss", "Ghost_(1990)_kiss_h_nm_np2_fr_goo_1.avi"),
                      ("brush_hair", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi")]:  # fmt: skip
        key = clip_key(cls, name)
        assert source_group(key_stem(key, cls)) == source_group(name).replace("(", "-").replace(")", "-")


@pytest.mark.skipif(not SPLITS.is_dir(), reason="no official HMDB51 split files")
def test_hmdb51_split1_hold_out_keeps_videos_whole_and_takes_a_tenth():
    key_class, name_of = {}, {}
    for f in sorted(SPLITS.glob("*_test_split1.txt")):
        cls = f.name.rsplit("_test_split", 1)[0]
        for line in f.read_text().splitlines():
            if line.split() and line.split()[1] == "1":
                key = clip_key(cls, line.split()[0])
                key_class[key], name_of[key] = cls, line.split()[0]
    val = holdout_keys(key_class, 0.1)
    assert holdout_keys(dict(reversed(key_class.items())), 0.1) == val  # order-independent
    assert 0.09 < len(val) / len(key_class) < 0.13
    per_class = Counter(key_class[k] for k in val)
    assert len(per_class) == 51 and min(per_class.values()) >= 5
    sides: dict[tuple[str, str], set[bool]] = {}
    for key, cls in key_class.items():  # grouped on the real names, not the keys
        sides.setdefault((cls, source_group(name_of[key])), set()).add(key in val)
    assert all(len(s) == 1 for s in sides.values())


def test_hold_out_rule_on_literal_groups():
    keys = {
        f"c__{g}_u_nm_np1_fr_med_{i}__0000000{i}": "c"
        for g, n in (("a", 3), ("b", 1), ("d", 6))
        for i in range(n)
    }
    assert {len(v) for v in group_keys(keys)["c"].values()} == {3, 1, 6}
    assert holdout_keys(keys, 0.0) == frozenset()
    val = holdout_keys(keys, 0.2)  # target 2 of 10 clips: a group of 1 or 3 comes closer, 6 does not
    assert len(val) in (1, 3) and len({source_group(key_stem(k, "c")) for k in val}) == 1
    assert len(holdout_keys({"c__x_0__00000000": "c"}, 0.5)) == 0  # a single group always stays in training
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        holdout_keys(keys, 1.0)


def _keys(loader) -> list[str]:
    return [k for _, _, keys in loader for k in keys]


@pytest.mark.parametrize("balance", ["none", "oversample"])
def test_val_test_and_train_subsets_are_disjoint(tiny_shards, balance):
    cfg = DataConfig(shards=tiny_shards, img_size=16, num_frames=2, batch_size=2, workers=0, balance=balance,
                     val_fraction=0.2)  # fmt: skip
    index = read_index(tiny_shards / "split1")
    key_class, _ = subset_keys(index, "train")
    expected = holdout_keys(key_class, 0.2)
    val = _keys(make_loader(cfg, "val", False)[0])
    test = _keys(make_loader(cfg, "test", False)[0])
    trained = set()
    for epoch in range(2):
        trained |= set(_keys(make_loader(cfg, "train", True, epoch=epoch)[0]))
    assert sorted(val) == sorted(expected) and len(val) == len(set(val)) >= 5
    assert not set(val) & set(test) and not set(val) & trained
    assert trained <= set(key_class) - expected
    ss = load_shardset(index, "train", True, balance, 0.2)
    counts = Counter()
    for key, n in ss.draws.items():
        counts[key_class[key]] += n
    per_class = Counter(key_class[k] for k in key_class if k not in expected)
    if balance == "oversample":  # rebalanced over what is left: every class at the largest remaining count
        assert set(counts.values()) == {max(per_class.values())}
    else:
        assert counts == per_class
    assert all(ss.draws[k] == 0 for k in expected)


def test_val_needs_a_hold_out(tiny_shards):
    cfg = DataConfig(shards=tiny_shards, img_size=16, num_frames=2, batch_size=2, workers=0, val_fraction=0.0)
    with pytest.raises(Exception, match="no validation clips"):
        make_loader(cfg, "val", False)


def test_hold_out_without_manifests_says_what_to_do(tiny_shards, tmp_path):
    import shutil

    split = tmp_path / "split1"
    shutil.copytree(tiny_shards / "split1", split)
    for f in split.glob("balanced-*-train.json"):
        f.unlink()
    cfg = DataConfig(shards=split, img_size=16, num_frames=2, batch_size=2, workers=0, balance="none",
                     val_fraction=0.1)  # fmt: skip
    with pytest.raises(Exception, match=r"rerun `lsvit-pipeline extract`, or train with --val-fraction 0"):
        make_loader(cfg, "train", True)
    make_loader(DataConfig(**{**cfg.__dict__, "val_fraction": 0.0}), "train", True)  # no manifest needed then
