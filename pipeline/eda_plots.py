"""Figures and the terminal summary of `pipeline.eda` (matplotlib Agg, rich)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from rich.console import Console
from rich.table import Table

SUBSET_COLORS = {"train": "tab:blue", "test": "tab:orange", "unused": "tab:gray", "all": "tab:green"}


def _ratio_text(summary: dict) -> str:
    if summary["imbalance_ratio"] is None:
        return "no clips"
    (big, nb), (small, ns) = summary["largest"], summary["smallest"]
    if nb == ns:
        return f"imbalance 1.00 (every class {nb})"
    names = summary["empty_classes"]
    empty = f", empty: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}" if names else ""
    return f"imbalance {nb}/{ns} = {summary['imbalance_ratio']:.2f} ({big} / {small}){empty}"


def _bars(ax: plt.Axes, counts: dict[str, dict[str, int]], title: str) -> None:
    """Stacked bars per class (one layer per subset), sorted by total, with the median as a dashed line."""
    classes = sorted(counts[next(iter(counts))], key=lambda c: (-sum(v[c] for v in counts.values()), c))
    x = np.arange(len(classes))
    bottom = np.zeros(len(classes))
    for subset, per_class in counts.items():
        h = np.array([per_class[c] for c in classes], dtype=float)
        ax.bar(x, h, bottom=bottom, color=SUBSET_COLORS.get(subset, "tab:green"), label=subset, width=0.8)
        bottom += h
    median = np.median(bottom[bottom > 0]) if bottom.any() else 0
    ax.axhline(median, color="k", ls="--", lw=0.8, label=f"median class ({median:g})")
    ax.set_xticks(x, classes, rotation=90, fontsize=7)
    for tick, total in zip(ax.get_xticklabels(), bottom, strict=True):
        if total == 0:  # every clip of the class failed: make the gap visible
            tick.set_color("red")
            ax.text(tick.get_position()[0], 0, "0", color="red", ha="center", va="bottom", fontsize=7)
    ax.set_xlim(-0.6, len(classes) - 0.4)
    ax.set_ylabel("clips")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)


def plot_class_counts(report: dict, path: Path) -> Path:
    """Clips per class, sorted, one panel per subset (shards) or per split (split files)."""
    panels: list[tuple[dict, str]] = []
    if report["mode"] == "shards":
        names = report["subsets"] + (["all"] if len(report["subsets"]) > 1 else [])
        for s in names:
            c = report["counts"][s]
            panels.append(({s: c["counts"]}, f"{s}: {c['total']} clips, {_ratio_text(c)}"))
    else:
        c = report["counts"]["all"]
        panels.append(({"all": c["counts"]}, f"all clips: {c['total']}, {_ratio_text(c)}"))
        for n, subsets in report["splits"].items():
            ratios = "; ".join(
                f"{s} {v['total']} (imbalance {v['imbalance_ratio'] or 0:.2f})" for s, v in subsets.items()
            )
            panels.append(({s: v["counts"] for s, v in subsets.items()}, f"split {n}: {ratios}"))
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(15, 3.9 * len(panels)), squeeze=False, layout="constrained"
    )
    for ax, (counts, title) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, counts, title)
    fig.suptitle(f"Clips per class ({report['source']})", fontsize=12)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _hist(ax: plt.Axes, frame: dict, values: np.ndarray, label: str, shift: dict | None) -> None:
    bins = np.histogram_bin_edges(values, bins=int(np.clip(np.sqrt(values.size), 8, 40)))
    for subset in ("train", "test"):
        v = values[frame["subset"] == subset]
        if v.size:
            ax.hist(
                v,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.6,
                color=SUBSET_COLORS[subset],
                label=f"{subset} (n={v.size})",
            )
    ks = f"\nKS D={shift['ks_statistic']:.3f}, p={shift['p_value']:.2g}" if shift else ""
    ax.set_title(f"{label}{ks}", fontsize=10)
    ax.set_xlabel(label.split(" (")[0].split(":")[0])
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def _boxes(ax: plt.Axes, frame: dict, values: np.ndarray, classes: list[str], ylabel: str) -> None:
    groups = {c: values[frame["class"] == c] for c in classes}
    groups = {c: v for c, v in groups.items() if v.size}
    order = sorted(groups, key=lambda c: np.median(groups[c]))  # sorted so outlying classes stand out
    ax.boxplot(
        [groups[c] for c in order],
        patch_artist=True,
        boxprops={"facecolor": "lightsteelblue"},
        medianprops={"color": "black"},
        flierprops={"markersize": 2},
    )
    ax.set_xticks(np.arange(1, len(order) + 1), order, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def plot_photometric(report: dict, frame: dict, path: Path) -> Path:
    """Train-vs-test distributions of brightness, contrast, blur and colour; per-class brightness and blur."""
    shift = report["shift"]
    fig = plt.figure(figsize=(16, 14), layout="constrained")
    grid = fig.add_gridspec(3, 4, height_ratios=[1, 1.1, 1.1])
    log_blur = np.log10(frame["blur"] + 1.0)  # Laplacian variance is heavy-tailed
    _hist(
        fig.add_subplot(grid[0, 0]),
        frame,
        frame["brightness"],
        "brightness (mean luma)",
        shift.get("brightness"),
    )
    _hist(
        fig.add_subplot(grid[0, 1]), frame, frame["contrast"], "contrast (std of luma)", shift.get("contrast")
    )
    _hist(fig.add_subplot(grid[0, 2]), frame, log_blur, "blur: log10(1 + Laplacian var)", shift.get("blur"))
    ax = fig.add_subplot(grid[0, 3])
    # Cumulative curves: six overlaid histograms are unreadable, and KS D is the largest vertical gap.
    for ch in ("red", "green", "blue"):
        for subset, ls in (("train", "-"), ("test", "--")):
            sel = frame[f"{ch}_mean"][frame["subset"] == subset]
            if sel.size:
                ax.ecdf(sel, ls=ls, color=ch, label=f"{ch} {subset}")
    ax.set_title("colour: per-channel mean, cumulative\n(solid train, dashed test)", fontsize=10)
    ax.set_ylabel("fraction of clips")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[1, :])
    _boxes(ax, frame, frame["brightness"], report["classes"], "brightness")
    ax.set_title("brightness per class (all subsets), sorted by median", fontsize=10)
    ax = fig.add_subplot(grid[2, :])
    _boxes(ax, frame, log_blur, report["classes"], "log10(1 + Laplacian var)")
    ax.set_title("blur per class (all subsets; low = blurry), sorted by median", fontsize=10)
    fig.suptitle(f"Photometric statistics of the sampled frames ({report['source']})", fontsize=12)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def print_summary(report: dict, out: Path, console: Console | None = None) -> None:
    """Prints class balance per subset and the statistics whose train/test distributions differ most."""
    console = console or Console()
    table = Table(title=f"Class balance ({report['source']})")
    for col in ("subset", "clips", "classes", "largest class", "smallest class", "max/min"):
        table.add_column(
            col, justify="right" if col in ("clips", "classes", "max/min") else "left", no_wrap=True
        )
    rows = [(s, c) for s, c in report["counts"].items()]
    for n, subsets in report.get("splits", {}).items():
        rows += [(f"split {n} {s}", c) for s, c in subsets.items()]
    for name, c in rows:
        ratio = "-" if c["imbalance_ratio"] is None else f"{c['imbalance_ratio']:.2f}"
        most = least = "-"
        if c["largest"] and c["largest"][1] == c["smallest"][1]:
            most = least = f"all ({c['largest'][1]})"
        elif c["largest"]:
            most, least = (f"{name} ({n})" for name, n in (c["largest"], c["smallest"]))
        classes = f"{c['num_classes']}/{len(c['counts'])}"
        table.add_row(name, str(c["total"]), classes, most, least, ratio)
    console.print(table)
    if report.get("index_counts_match") is False:
        console.print("[yellow]warning: the counts in the shards differ from index.json's; rerun extract[/]")
    if report.get("clips_without_stats"):
        console.print(
            f"[yellow]warning: {report['clips_without_stats']} clips have no stats in their json[/]"
        )
    if report.get("shift"):
        table = Table(title="Train vs test shift (two-sample Kolmogorov-Smirnov), largest first")
        for col in ("statistic", "train mean", "test mean", "KS D", "p-value"):
            table.add_column(col, justify="left" if col == "statistic" else "right")
        for name, s in sorted(report["shift"].items(), key=lambda kv: -kv[1]["ks_statistic"]):
            table.add_row(
                name,
                f"{s['train_mean']:.1f}",
                f"{s['test_mean']:.1f}",
                f"{s['ks_statistic']:.3f}",
                f"{s['p_value']:.2g}",
            )
        console.print(table)
    aug, basis = report.get("augmentation"), report.get("augmentation_basis", {})
    if aug:
        console.print(
            f"suggested augmentation (from {basis['n']} {basis['subset']} clips; lsvit-train --eda uses it): "
            f"brightness ±{aug['brightness']}, contrast ±{aug['contrast']}, blur p={aug['p_blur']} "
            f"sigma≤{aug['blur_sigma'][1]}, RGB shift ±{aug['rgb_shift']}"
        )
    console.print(f"wrote {', '.join(report['figures'] + ['eda.json'])} to {out}")
