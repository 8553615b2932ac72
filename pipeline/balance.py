"""Balancing manifests and loss class weights for one subset of a split (see shards/README.md).

A manifest says how many times each sample is drawn per epoch so that every class reaches a target count.
Repeats are separate draws (augmentation makes them differ); nothing is synthesised between clips, since
averaging two videos does not make a real video of the action (no SMOTE).
"""

import json
import statistics
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from lsvit.pipeline.atomic import write_json_atomic
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.splits import SUBSETS

STRATEGIES = ("oversample", "undersample", "hybrid")
MANIFEST_VERSION = 1
_MANIFEST_KEYS = (
    "version",
    "strategy",
    "subset",
    "seed",
    "target",
    "before",
    "after",
    "empty_classes",
    "draws",
)


class BalanceError(LsvitError, ValueError):
    """Bad arguments for a manifest, or a manifest file that is malformed."""


def _class_target(counts: dict[str, int], strategy: str, target: int | None) -> int:
    """The per-class count every non-empty class is brought to."""
    filled = sorted(n for n in counts.values() if n > 0)
    if not filled:
        return 0
    if strategy == "oversample":
        return filled[-1]
    if strategy == "undersample":
        return filled[0]
    # median_low is always a real class count, so the default target is an integer.
    return target if target is not None else statistics.median_low(filled)


def _spread(keys: list[str], target: int, rng: np.random.Generator) -> dict[str, int]:
    """Draw counts for one class: every key floor(target/n) or ceil(target/n) times, summing to target."""
    base, extra = divmod(target, len(keys))
    counts = dict.fromkeys(keys, base)
    for i in rng.choice(len(keys), size=extra, replace=False):
        counts[keys[int(i)]] += 1
    return counts


def plan_draws(
    key_to_class: dict[str, str],
    classes: list[str],
    strategy: str,
    seed: int = 0,
    target: int | None = None,
    *,
    subset: str | None = None,
) -> dict:
    """Plans the per-epoch draw count of every sample so that each class sums to its target exactly.

    Args:
        key_to_class: Sample key -> class name, for every sample of the subset.
        classes: All class names of the split (classes without samples stay at 0 and are listed as empty).
        strategy: ``oversample`` (up to the largest class), ``undersample`` (down to the smallest non-empty
            class) or ``hybrid`` (to ``target``, by default the median non-empty class count).
        seed: Seeds the choice of which clips get the extra draw (or are kept, when undersampling). Each
            class uses its own generator seeded from ``seed`` and the class name, so the choice for one class
            does not depend on the others.
        target: Per-class count for ``hybrid`` (at least 1); not allowed with the other strategies.
        subset: Recorded in the manifest.

    Returns:
        The manifest dict: version, strategy, subset, seed, target, before, after, empty_classes, draws
        (key -> {"class", "count"}).

    Raises:
        BalanceError: unknown strategy, bad target, or a key whose class is not in ``classes``.
    """
    if strategy not in STRATEGIES:
        raise BalanceError(f"unknown balancing strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    if target is not None and strategy != "hybrid":
        raise BalanceError(f"a balance target only applies to the hybrid strategy, not {strategy!r}")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 1):
        raise BalanceError(f"balance target must be a positive integer, got {target!r}")
    known = set(classes)
    if len(known) != len(classes):
        raise BalanceError("class list has duplicates")
    unknown = sorted({c for c in key_to_class.values() if c not in known})
    if unknown:
        raise BalanceError(f"samples of classes not in the class list: {', '.join(unknown)}")

    by_class: dict[str, list[str]] = {c: [] for c in classes}
    for key in sorted(key_to_class):
        by_class[key_to_class[key]].append(key)
    before = {c: len(keys) for c, keys in by_class.items()}
    per_class = _class_target(before, strategy, target)
    draws: dict[str, dict] = {}
    for cls, keys in by_class.items():
        if not keys:
            continue
        rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(cls.encode())])
        for key, n in _spread(keys, per_class, rng).items():
            draws[key] = {"class": cls, "count": n}
    after = {c: (per_class if n else 0) for c, n in before.items()}
    return {
        "version": MANIFEST_VERSION,
        "strategy": strategy,
        "subset": subset,
        "seed": seed,
        "target": per_class,
        "before": before,
        "after": after,
        "empty_classes": [c for c in classes if before[c] == 0],
        "draws": draws,
    }


def class_weights(counts: dict[str, int], beta: float = 0.999) -> dict:
    """Loss weights per class: inverse frequency and effective number (Cui et al., CVPR 2019).

    Effective number of samples: E_n = (1 - beta^n) / (1 - beta); the weight is 1 / E_n. Both kinds are
    normalised to mean 1 over the non-empty classes; empty classes get weight 0 (they never reach the loss).

    Args:
        counts: Class name -> number of samples.
        beta: Effective-number hyperparameter in [0, 1); 0 gives uniform weights, towards 1 approaches
            inverse frequency.

    Returns:
        ``{"inverse_frequency": {cls: w}, "effective_number": {cls: w}}``.

    Raises:
        BalanceError: beta outside [0, 1) or a negative count.
    """
    if not 0.0 <= beta < 1.0:
        raise BalanceError(f"effective-number beta must be in [0, 1), got {beta}")
    if any(n < 0 for n in counts.values()):
        raise BalanceError(f"class counts must be >= 0, got {counts}")
    filled = {c: n for c, n in counts.items() if n > 0}

    def normalised(raw: dict[str, float]) -> dict[str, float]:
        mean = sum(raw.values()) / len(raw) if raw else 1.0
        return {c: (raw[c] / mean if c in raw else 0.0) for c in counts}

    inverse = {c: 1.0 / n for c, n in filled.items()}
    effective = {c: (1.0 - beta) / (1.0 - beta**n) for c, n in filled.items()}
    return {"inverse_frequency": normalised(inverse), "effective_number": normalised(effective)}


def manifest_name(strategy: str, subset: str) -> str:
    """File name of a manifest, e.g. ``balanced-hybrid-train.json``."""
    return f"balanced-{strategy}-{subset}.json"


def write_manifests(
    split_dir: Path,
    subset: str,
    key_to_class: dict[str, str],
    classes: list[str],
    seed: int = 0,
    target: int | None = None,
    *,
    beta: float = 0.999,
) -> dict[str, str]:
    """Writes the three balancing manifests and the class weights of one subset into ``split_dir``.

    Args:
        split_dir: The split's shard folder (next to index.json).
        subset: ``train``, ``test`` or ``unused``.
        key_to_class: Sample key -> class name for every sample written to the subset's shards.
        classes: All class names of the split.
        seed: Seed of the draws (see `plan_draws`).
        target: Per-class target of the hybrid manifest (default: median class count).
        beta: Effective-number beta of the class weights.

    Returns:
        Strategy -> manifest file name (relative to ``split_dir``), for index.json's ``manifests``.

    Raises:
        BalanceError: unknown subset or bad arguments (see `plan_draws`, `class_weights`).
        WriteError: a file could not be written (e.g. the disk is full).
    """
    if subset not in SUBSETS:
        raise BalanceError(f"unknown subset {subset!r}; allowed: {', '.join(SUBSETS)}")
    names = {}
    for strategy in STRATEGIES:
        manifest = plan_draws(
            key_to_class, classes, strategy, seed, target if strategy == "hybrid" else None, subset=subset
        )
        names[strategy] = manifest_name(strategy, subset)
        write_json_atomic(split_dir / names[strategy], manifest)
    counts = Counter(key_to_class.values())
    counts = {c: counts.get(c, 0) for c in classes}
    weights = class_weights(counts, beta)
    write_json_atomic(
        split_dir / f"class-weights-{subset}.json",
        {"version": MANIFEST_VERSION, "subset": subset, "beta": beta, "counts": counts, **weights},
    )
    return names


def _check(ok: bool, path: str, problem: str) -> None:
    if not ok:
        raise BalanceError(f"{path}: {problem}; rerun `lsvit-pipeline extract` to rewrite it")


def parse_manifest(data: bytes | str, path: str) -> dict:
    """Parses and validates a balancing manifest's content.

    Args:
        data: The file's bytes (or text).
        path: Where it came from, for messages (a path or URL).

    Returns:
        The manifest dict (see `plan_draws`).

    Raises:
        BalanceError: not JSON, or inconsistent (names the file and the problem).
    """
    try:
        m = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BalanceError(f"{path}: not valid JSON ({e}); rerun `lsvit-pipeline extract`") from e
    _check(isinstance(m, dict), path, "not a JSON object")
    missing = [k for k in _MANIFEST_KEYS if k not in m]
    _check(not missing, path, f"missing keys {missing}")
    _check(m["version"] == MANIFEST_VERSION, path, f"version {m['version']!r}, expected {MANIFEST_VERSION}")
    _check(m["strategy"] in STRATEGIES, path, f"unknown strategy {m['strategy']!r}")
    before, after, draws = m["before"], m["after"], m["draws"]
    _check(all(isinstance(x, dict) for x in (before, after, draws)), path, "before/after/draws not objects")
    _check(set(before) == set(after), path, "before and after name different classes")

    def count_ok(n: object) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and n >= 0

    _check(
        all(count_ok(n) for n in (*before.values(), *after.values())), path, "counts must be integers >= 0"
    )
    sums = dict.fromkeys(before, 0)
    seen = dict.fromkeys(before, 0)
    for key, d in draws.items():
        _check(isinstance(d, dict) and d.get("class") in sums, path, f"draw {key!r} has an unknown class")
        _check(count_ok(d.get("count")), path, f"draw {key!r} has a bad count {d.get('count')!r}")
        sums[d["class"]] += d["count"]
        seen[d["class"]] += 1
    bad = sorted(c for c in sums if sums[c] != after[c])
    _check(not bad, path, f"draws of {', '.join(bad[:3])} do not sum to their 'after' count")
    bad = sorted(c for c in seen if seen[c] != before[c])
    _check(not bad, path, f"samples listed for {', '.join(bad[:3])} differ from their 'before' count")
    return m
