"""Exploratory data analysis of shards (or of the split files alone): class balance and photometry.

Reads only index.json and the ``.json`` members of the shards: videos are never decoded again, JPEG members
are skipped by ``tarfile`` without being read, and nothing is unpickled. Writes eda.json (every figure's
numbers plus suggested augmentation ranges), class_counts.png and, for shards, photometric.png.
"""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp

from lsvit.pipeline.archives import materialise
from lsvit.pipeline.atomic import make_dirs, write_failed, write_json_atomic
from lsvit.pipeline.datasets import DEFAULT, get_dataset
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.progress import progress_bar
from lsvit.pipeline.shardindex import ShardIndex, is_url, read_index, resolve_split_dir
from lsvit.pipeline.splits import SUBSETS

EDA_VERSION = 1
# Per-clip scalars read from each sample's json "stats" (see shards/README.md).
STATS = ("brightness", "contrast", "blur", "red_mean", "green_mean", "blue_mean")
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class EdaError(LsvitError, ValueError):
    """Shards or split files that eda cannot read."""


def counts_summary(counts: dict[str, int]) -> dict:
    """Totals, extremes and imbalance ratio of per-class counts.

    Args:
        counts: Class -> number of clips (0 allowed).

    Returns:
        ``counts``, ``total``, ``num_classes`` (non-empty), ``largest`` and ``smallest`` ([class, n], ties to
        the first class by name), ``imbalance_ratio`` (largest / smallest non-empty; null if none) and
        ``empty_classes``.
    """
    filled = sorted((c, n) for c, n in counts.items() if n > 0)
    largest = max(filled, key=lambda cn: cn[1], default=None)
    smallest = min(filled, key=lambda cn: cn[1], default=None)
    return {
        "counts": dict(sorted(counts.items())),
        "total": sum(counts.values()),
        "num_classes": len(filled),
        "largest": list(largest) if largest else None,
        "smallest": list(smallest) if smallest else None,
        "imbalance_ratio": largest[1] / smallest[1] if filled else None,
        "empty_classes": sorted(c for c, n in counts.items() if n == 0),
    }


def describe(values: np.ndarray) -> dict:
    """Mean, std, min, max and the `QUANTILES` (keys q01 ... q99) of one statistic; only ``n`` when empty."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    out = {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min())}
    out["max"] = float(v.max())
    out.update(
        {
            f"q{round(q * 100):02d}": float(x)
            for q, x in zip(QUANTILES, np.quantile(v, QUANTILES), strict=True)
        }
    )
    return out


def suggest_augmentation(table: dict[str, np.ndarray]) -> dict:
    """Augmentation ranges derived from the spread of the clips' photometry.

    Keys are `trainer.augment.AugConfig` fields, so the trainer takes the dict as is (``--eda``).
    Heuristics: shift brightness by half the 5-95 % range of clip brightness (fraction of 255), scale
    contrast by half the 5-95 % range of clip contrast relative to its median, blur as often as clips are
    markedly blurrier than the median (Laplacian variance below half of it) with a sigma growing with the
    spread of sharpness, and shift RGB by half the widest 5-95 % range of a channel's cast (channel mean
    minus luma) across clips; every value is clamped to a moderate range.

    Args:
        table: Statistic name (`STATS`) -> per-clip values, from the subset the trainer trains on.

    Returns:
        ``brightness``, ``contrast``, ``p_blur``, ``blur_sigma`` [lo, hi] and ``rgb_shift`` (0-255 levels);
        empty when there are no clips.
    """
    if table["brightness"].size == 0:
        return {}

    def half_range(v: np.ndarray) -> float:
        q05, q95 = np.quantile(v, [0.05, 0.95])
        return float(q95 - q05) / 2

    contrast_median = max(float(np.median(table["contrast"])), 1e-6)
    blur = table["blur"]
    blur_median, blur_q05 = max(float(np.median(blur)), 1e-6), max(float(np.quantile(blur, 0.05)), 1e-6)
    cast = max(half_range(table[f"{ch}_mean"] - table["brightness"]) for ch in ("red", "green", "blue"))
    return {
        "brightness": round(float(np.clip(half_range(table["brightness"]) / 255, 0.05, 0.4)), 3),
        "contrast": round(float(np.clip(half_range(table["contrast"]) / contrast_median, 0.05, 0.4)), 3),
        "p_blur": round(float(np.clip(np.mean(blur < blur_median / 2), 0.05, 0.5)), 3),
        "blur_sigma": [0.1, round(float(np.clip(np.sqrt(blur_median / blur_q05) / 2, 0.5, 3.0)), 2)],
        "rgb_shift": round(float(np.clip(cast, 2.0, 30.0)), 1),
    }


def read_metadata(index: ShardIndex) -> list[dict]:
    """Every sample's json metadata from the shards listed in index.json (JPEG members are skipped).

    Raises:
        EdaError: a listed shard is missing or unreadable, or a metadata member is not valid JSON.
    """
    rows = []
    for shard in progress_bar(index.data["shards"], desc="reading shard metadata", unit="shard", leave=False):
        path = index.base / shard["url"]
        try:
            with tarfile.open(path, "r:") as tar:
                for member in tar:  # "r:" seeks past the JPEG data without reading it
                    if member.isfile() and member.name.endswith(".json"):
                        rows.append(json.loads(tar.extractfile(member).read()))
        except (OSError, tarfile.TarError) as e:
            raise EdaError(f"cannot read shard {path} ({e}); rerun `lsvit-pipeline extract`") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EdaError(f"{path}: a .json member is not valid JSON ({e})") from e
    return rows


def _stat_values(row: dict) -> tuple[float, ...] | None:
    s = row.get("stats")
    try:
        values = (s["brightness"], s["contrast"], s["blur"], *s["color_mean"][:3])
        return tuple(float(x) for x in values) if len(values) == len(STATS) else None
    except (KeyError, TypeError, ValueError):
        return None


def shard_report(split_dir: Path) -> tuple[dict, dict]:
    """Builds the eda.json content for one split folder of shards.

    Returns:
        (report, frame): the report dict, and per-clip arrays for plotting
        (``frame["class"]``, ``frame["subset"]`` and one float array per statistic).
    """
    index = read_index(split_dir)
    if not index.data["shards"]:
        raise EdaError(
            f"{index.where} lists no shards (every clip failed?); see failures.jsonl, rerun extract"
        )
    classes = index.classes
    rows = [r for r in read_metadata(index) if r.get("class") in classes and r.get("subset") in SUBSETS]
    subsets = [s for s in SUBSETS if any(r.get("subset") == s for r in rows)]
    counts = {s: dict.fromkeys(classes, 0) for s in [*subsets, "all"]}
    for r in rows:
        counts[r["subset"]][r["class"]] += 1
        counts["all"][r["class"]] += 1
    with_stats = [(r, v) for r in rows if (v := _stat_values(r)) is not None]
    frame = {
        "class": np.array([r["class"] for r, _ in with_stats], dtype=object),
        "subset": np.array([r["subset"] for r, _ in with_stats], dtype=object),
    }
    values = np.array([v for _, v in with_stats], dtype=np.float64).reshape(-1, len(STATS))
    frame.update({name: values[:, i] for i, name in enumerate(STATS)})

    stats, shift = {}, {}
    for name in STATS:
        v = frame[name]
        stats[name] = {
            "overall": describe(v),
            "by_subset": {s: describe(v[frame["subset"] == s]) for s in subsets},
            "by_class": {c: describe(v[frame["class"] == c]) for c in classes},
        }
        train, test = v[frame["subset"] == "train"], v[frame["subset"] == "test"]
        if train.size and test.size:
            ks = ks_2samp(train, test)
            shift[name] = {
                "ks_statistic": float(ks.statistic),
                "p_value": float(ks.pvalue),
                "train_mean": float(train.mean()),
                "test_mean": float(test.mean()),
            }
    source = "train" if "train" in subsets else "all"
    mask = frame["subset"] == "train" if source == "train" else np.ones(len(with_stats), dtype=bool)
    index_counts = index.counts
    report = {
        "version": EDA_VERSION,
        "mode": "shards",
        "source": str(split_dir),
        "dataset": index.dataset,
        "split": index.split,
        "classes": classes,
        "subsets": subsets,
        "counts": {s: counts_summary(c) for s, c in counts.items()},
        "index_counts_match": all(index_counts.get(s) == counts[s] for s in subsets)
        if index_counts
        else None,
        "clips_without_stats": len(rows) - len(with_stats),
        "stats": stats,
        "shift": shift,
        "augmentation": suggest_augmentation({n: frame[n][mask] for n in STATS}),
        "augmentation_basis": {"subset": source, "n": int(mask.sum())},
    }
    return report, frame


def split_files_report(splits_dir: Path, dataset: str = DEFAULT) -> dict:
    """Class counts from a dataset's split definition alone, before any extraction.

    Args:
        splits_dir: The split files (HMDB51), lists folder (UCF101), or CSV or tree (folder dataset).
        dataset: The dataset's format.

    Returns:
        The eda.json content: ``counts["all"]`` over every distinct clip, ``splits[<n>][<subset>]``, and
        the readers' ``notes``.
    """
    fmt = get_dataset(dataset)
    source = fmt.locate(None, materialise(splits_dir, "--splits-dir"))  # an archive is unpacked beside itself
    specs = [fmt.load_split(source, n) for n in fmt.splits]
    classes = specs[0].classes  # label order: the same for every split of a dataset
    names: dict[str, set[str]] = {c: set() for c in classes}
    for spec in specs:
        for c in spec.clips:
            names[c.cls].add(c.name)
    return {
        "version": EDA_VERSION,
        "mode": "splits",
        "dataset": dataset,
        "source": str(source),
        "classes": classes,
        "counts": {"all": counts_summary({c: len(v) for c, v in names.items()})},
        "splits": {
            str(spec.split): {s: counts_summary(c) for s, c in spec.counts().items()} for spec in specs
        },
        "notes": sorted({n for spec in specs for n in spec.notes}),
    }


def run_eda(
    shards: str | Path | None, splits_dir: Path | None, out: Path, dataset: str | None = None
) -> dict:
    """Analyses shards (or split files) and writes eda.json and the PNG figures into ``out``.

    Args:
        shards: A split folder with index.json, or a folder holding exactly one ``split<N>``.
        splits_dir: Folder of split files; used when ``shards`` is None (class counts only).
        dataset: The format of ``splits_dir`` (default HMDB51's); with ``shards``, when given, it must be the
            dataset the shards were extracted from (their index.json says which).
        out: Report folder, created if needed.

    Returns:
        The eda.json content (``figures`` names the PNGs written).

    Raises:
        EdaError: neither or both sources given, no index.json, unreadable shards.
    """
    from lsvit.pipeline import eda_plots  # matplotlib is only imported when figures are drawn

    if (shards is None) == (splits_dir is None):
        raise EdaError("give exactly one of --shards (extracted shards) or --splits-dir (split files only)")
    frame = None
    if shards is not None:
        if is_url(shards):
            raise EdaError(f"--shards {shards}: eda reads a local shard folder, not a URL")
        report, frame = shard_report(resolve_split_dir(shards))
        if dataset is not None and dataset != report["dataset"]:
            raise EdaError(
                f"--shards {shards} were extracted from {report['dataset']} (index.json), not --dataset "
                f"{dataset}; leave --dataset out with --shards"
            )
    else:
        report = split_files_report(splits_dir, dataset or DEFAULT)
    # The folder is made only once there is something to write, and removed again if it was new and the
    # writing failed: a failed eda leaves nothing behind.
    new = not out.exists()
    make_dirs(out, "--out")
    try:
        try:
            figures = [eda_plots.plot_class_counts(report, out / "class_counts.png")]
            if frame is not None and frame["brightness"].size:
                figures.append(eda_plots.plot_photometric(report, frame, out / "photometric.png"))
            report["figures"] = [p.name for p in figures]
            write_json_atomic(out / "eda.json", report, hint="rerun eda")
        except OSError as e:  # from matplotlib's savefig
            raise write_failed(out, e, "rerun eda") from e
    except BaseException:
        if new:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return report
