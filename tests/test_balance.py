import json
import math
from collections import Counter
from pathlib import Path

import pytest

from lsvit.pipeline.balance import (
    STRATEGIES,
    BalanceError,
    class_weights,
    parse_manifest,
    plan_draws,
    write_manifests,
)
from lsvit.pipeline.errors import LsvitError

# Imbalanced like HMDB51 in miniature: 11, 5, 3 and 2 clips, plus a class whose clips all failed.
SIZES = {"walk": 11, "run": 5, "kiss": 3, "smile": 2, "catch": 0}
CLASSES = sorted(SIZES)
KEYS = {f"{c}__clip{i:02d}__0000abcd": c for c, n in SIZES.items() for i in range(n)}


def per_class_sums(manifest: dict) -> dict[str, int]:
    sums = Counter()
    for d in manifest["draws"].values():
        sums[d["class"]] += d["count"]
    return {c: sums.get(c, 0) for c in CLASSES}


def drawn(manifest: dict) -> dict[str, int]:
    return {k: d["count"] for k, d in manifest["draws"].items()}


@pytest.mark.parametrize(
    ("strategy", "target", "expected_target"),
    [
        ("oversample", None, 11),
        ("undersample", None, 2),
        ("hybrid", None, 3),
        ("hybrid", 7, 7),
        ("hybrid", 20, 20),
    ],
)
def test_per_class_sums_equal_target(strategy: str, target: int | None, expected_target: int) -> None:
    m = plan_draws(KEYS, CLASSES, strategy, seed=3, target=target, subset="train")
    assert m["target"] == expected_target
    expected = {c: (expected_target if n else 0) for c, n in SIZES.items()}
    assert m["after"] == expected
    assert per_class_sums(m) == expected
    assert m["before"] == SIZES
    assert m["empty_classes"] == ["catch"]
    assert set(m["draws"]) == set(KEYS)  # every sample listed, even when drawn 0 times
    # Repeats spread evenly: each clip floor(t/n) or ceil(t/n) times.
    for key, d in m["draws"].items():
        n = SIZES[KEYS[key]]
        assert expected_target // n <= d["count"] <= -(-expected_target // n)


def test_hybrid_default_is_median_of_nonempty_classes() -> None:
    # Non-empty counts 2, 3, 5, 11: median_low is 3 (a real class count, never 0 from the empty class).
    assert plan_draws(KEYS, CLASSES, "hybrid")["target"] == 3
    odd = {k: c for k, c in KEYS.items() if c != "smile"}
    assert plan_draws(odd, CLASSES, "hybrid")["target"] == 5


def test_undersample_keeps_distinct_clips() -> None:
    m = plan_draws(KEYS, CLASSES, "undersample", seed=0)
    assert set(drawn(m).values()) == {0, 1}


def test_same_seed_same_manifest_other_seed_other_choice() -> None:
    a = plan_draws(KEYS, CLASSES, "hybrid", seed=1)
    assert plan_draws(dict(reversed(list(KEYS.items()))), CLASSES, "hybrid", seed=1) == a
    others = [drawn(plan_draws(KEYS, CLASSES, "hybrid", seed=s)) for s in range(2, 6)]
    assert any(o != drawn(a) for o in others)
    for o in others:  # a different choice, never a different total
        assert sum(o.values()) == sum(drawn(a).values())


def test_no_samples_at_all_gives_an_empty_manifest() -> None:
    m = plan_draws({}, CLASSES, "oversample")
    assert m["target"] == 0 and m["draws"] == {} and m["empty_classes"] == CLASSES


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "smote"}, "allowed: oversample, undersample, hybrid"),
        ({"strategy": "hybrid", "target": 0}, "positive integer"),
        ({"strategy": "oversample", "target": 5}, "only applies to the hybrid"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(BalanceError, match=match):
        plan_draws(KEYS, CLASSES, **kwargs)


def test_unknown_class_is_rejected() -> None:
    with pytest.raises(BalanceError, match="not in the class list: jump"):
        plan_draws({"k": "jump"}, CLASSES, "hybrid")


def test_class_weights() -> None:
    counts = {"walk": 548, "run": 232, "kiss": 102, "empty": 0}
    for beta in (0.9, 0.999, 0.9999):
        w = class_weights(counts, beta=beta)
        for kind in ("inverse_frequency", "effective_number"):
            ws = w[kind]
            assert all(math.isfinite(x) for x in ws.values())
            assert ws["empty"] == 0.0
            assert sum(ws[c] for c in ("walk", "run", "kiss")) / 3 == pytest.approx(1.0)
            assert ws["kiss"] > ws["run"] > ws["walk"]
    # beta -> 0 flattens the effective-number weights; inverse frequency is exactly 1/n up to scale.
    flat = class_weights(counts, beta=0.0)["effective_number"]
    assert flat["walk"] == pytest.approx(flat["kiss"])
    inv = class_weights(counts)["inverse_frequency"]
    assert inv["kiss"] / inv["walk"] == pytest.approx(548 / 102)
    with pytest.raises(BalanceError, match=r"\[0, 1\)"):
        class_weights(counts, beta=1.0)


def _load(path: Path) -> dict:
    """A manifest as a shard folder's reader (``ShardIndex.manifest``) parses it."""
    return parse_manifest(path.read_bytes(), str(path))


def test_write_manifests_roundtrip_and_byte_identical(tmp_path: Path) -> None:
    names = write_manifests(tmp_path, "train", KEYS, CLASSES, seed=0, target=4)
    assert names == {s: f"balanced-{s}-train.json" for s in STRATEGIES}
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([*names.values(), "class-weights-train.json"])  # no temporary files left
    first = {f: (tmp_path / f).read_bytes() for f in files}
    write_manifests(tmp_path, "train", dict(reversed(list(KEYS.items()))), CLASSES, seed=0, target=4)
    assert {f: (tmp_path / f).read_bytes() for f in files} == first
    hybrid = _load(tmp_path / names["hybrid"])
    assert hybrid["target"] == 4 and hybrid["subset"] == "train"
    assert _load(tmp_path / names["oversample"])["target"] == 11  # target only affects hybrid
    weights = json.loads((tmp_path / "class-weights-train.json").read_text())
    assert weights["counts"] == SIZES and weights["beta"] == 0.999
    assert weights["inverse_frequency"]["smile"] > weights["inverse_frequency"]["walk"]


def test_write_manifests_rejects_unknown_subset(tmp_path: Path) -> None:
    with pytest.raises(BalanceError, match="allowed: train, val, test, unused"):
        write_manifests(tmp_path, "holdout", KEYS, CLASSES)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m.pop("draws"), "missing keys"),
        (lambda m: m.update(strategy="smote"), "unknown strategy"),
        (lambda m: next(iter(m["draws"].values())).update(count=-1), "bad count"),
        (lambda m: next(iter(m["draws"].values())).update({"class": "jump"}), "unknown class"),
        (lambda m: m["after"].update(walk=99), "do not sum"),
        (lambda m: m["before"].update(walk=99), "differ from their 'before'"),
    ],
)
def test_parse_manifest_rejects_malformed(tmp_path: Path, mutate, match: str) -> None:
    m = plan_draws(KEYS, CLASSES, "hybrid", subset="train")
    mutate(m)
    path = tmp_path / "balanced-hybrid-train.json"
    path.write_text(json.dumps(m))
    with pytest.raises(LsvitError, match=match) as e:
        _load(path)
    assert str(path) in str(e.value)


def test_parse_manifest_refuses_what_is_not_json(tmp_path: Path) -> None:
    with pytest.raises(BalanceError, match=r"m\.json: not valid JSON"):
        parse_manifest(b"{not json", "m.json")
