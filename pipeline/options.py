"""Option aliases shared by ``lsvit-pipeline``, ``lsvit-train`` and ``lsvit-predict``.

Every option can also come from the environment through click's own envvar support (``LSVIT_<NAME>``).
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipeline.errors import LsvitError


def _opt(*names: str, help: str, envvar: str, **kw) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, envvar=f"LSVIT_{envvar}", show_envvar=True, **kw)


DataRoot = Annotated[
    Path, _opt("--data-root", help="HMDB51 tree: <data-root>/<class>/<clip>.avi.", envvar="DATA_ROOT")
]
SplitsDir = Annotated[
    Path | None,
    _opt(
        "--splits-dir",
        help="Folder of <class>_test_split<N>.txt files (default: found inside --data-root).",
        envvar="SPLITS_DIR",
    ),
]
Split = Annotated[
    int, _opt("--split", help="Official split number: 1, 2 or 3.", envvar="SPLIT", min=1, max=3)
]
Shards = Annotated[
    Path, _opt("--shards", help="Shard folder written by `lsvit-pipeline extract`.", envvar="SHARDS")
]
Workers = Annotated[
    int | None,
    _opt("--workers", help="Worker processes (default: number of cores).", envvar="WORKERS", min=0),
]
Seed = Annotated[int, _opt("--seed", help="Random seed; the same seed gives the same output.", envvar="SEED")]
Device = Annotated[str, _opt("--device", help="auto, cuda, cpu (and mps for training).", envvar="DEVICE")]
Frames = Annotated[int, _opt("--frames", help="Frames sampled per clip.", envvar="FRAMES", min=1)]


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
