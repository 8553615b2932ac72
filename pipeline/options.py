"""Option aliases shared by ``lsvit-pipeline``, ``lsvit-train`` and ``lsvit-predict``.

Every option can also come from the environment through click's own envvar support (``LSVIT_<NAME>``).
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lsvit.pipeline.errors import LsvitError


def opt(name: str, help: str, *, envvar: str | None = None, **kw: Any) -> Any:
    """A Typer option that can also come from ``LSVIT_<NAME>`` (click's own envvar support).

    Args:
        name: The flag, e.g. ``--batch-size`` (``--ema/--no-ema`` for a boolean pair).
        help: One line of help text.
        envvar: The variable's name after ``LSVIT_``; default: the flag's name, upper-cased.
        **kw: Passed on to ``typer.Option`` (``min``, ``max``, ...).
    """
    env = envvar or name.lstrip("-").split("/")[0].replace("-", "_").upper()
    return typer.Option(name, help=help, envvar=f"LSVIT_{env}", show_envvar=True, **kw)


Dataset = Annotated[
    str,
    opt(
        "--dataset",
        "Dataset format: hmdb51 (split files), ucf101 (ucfTrainTestlist) or folder (<root>/<class>/<clip>, "
        "optional splits.csv).",
        envvar="DATASET",
    ),
]
DataRoot = Annotated[
    Path | None,
    opt(
        "--data-root",
        "Dataset tree <data-root>/<class>/<clip>, or its archive (hmdb51_org.rar; unpacked beside it once) "
        "(default: data/hmdb51, or data/ucf101 with --dataset ucf101).",
        envvar="DATA_ROOT",
    ),
]
SplitsDir = Annotated[
    Path | None,
    opt(
        "--splits-dir",
        "HMDB51's testTrainMulti_7030_splits, UCF101's ucfTrainTestlist (or their archives), or a folder "
        "dataset's CSV (default: found from --data-root).",
        envvar="SPLITS_DIR",
    ),
]
Split = Annotated[
    int,
    opt("--split", "Split number: 1, 2 or 3 (a folder dataset has split 1).", envvar="SPLIT", min=1, max=3),
]
Shards = Annotated[
    Path, opt("--shards", "Shard folder written by `lsvit-pipeline extract`.", envvar="SHARDS")
]
Workers = Annotated[
    int | None,
    opt("--workers", "Worker processes (default: number of cores).", envvar="WORKERS", min=0),
]
Seed = Annotated[int, opt("--seed", "Random seed; the same seed gives the same output.", envvar="SEED")]
Device = Annotated[str, opt("--device", "auto, cuda, cpu (and mps for training).", envvar="DEVICE")]
Frames = Annotated[int, opt("--frames", "Frames sampled per clip.", envvar="FRAMES", min=1)]


def run_app(app: typer.Typer) -> Callable[[], None]:
    """Wraps a Typer app so that an ``LsvitError`` ends the process with a one-line message.

    Args:
        app: The Typer application to run.

    Returns:
        A zero-argument entry point for ``[project.scripts]``.
    """

    def main() -> None:
        try:
            app()  # standalone: click handles --help, usage errors and Ctrl-C itself
        except LsvitError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            sys.exit(2)

    return main
