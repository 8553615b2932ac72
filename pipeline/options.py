"""What every lsvit command shares: option aliases, ``--version``, help without ``<bool>``, one-line errors.

Every option can also come from the environment through click's own envvar support (``LSVIT_<NAME>``).
Each application is made by :func:`app`, and each command takes a :data:`Version` option.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from lsvit.pipeline.errors import LsvitError


class _FlagsWithoutType:
    """Help panels list a flag (``--ema/--no-ema``, ``--help``) without a ``<bool>`` value it never takes."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_bool_flag", False) and p.metavar is None:
                p.metavar = ""  # typer shows the metavar, when set, instead of the type
        return params


class Command(_FlagsWithoutType, TyperCommand):
    """The click command class of every lsvit command (what :func:`app`'s commands are)."""


class Group(_FlagsWithoutType, TyperGroup):
    """The click group class of ``lsvit-pipeline``."""


class _App(typer.Typer):
    def command(self, *args: Any, cls: type[TyperCommand] = Command, **kw: Any) -> Callable:
        return super().command(*args, cls=cls, **kw)


def app(help: str, **kw: Any) -> typer.Typer:
    """A Typer application with lsvit's conventions: its commands are :class:`Command` s, no shell-completion
    options.

    Args:
        help: The command's one-paragraph description.
        **kw: Passed on to ``typer.Typer``.
    """
    return _App(cls=Group, add_completion=False, help=help, **kw)


def _print_version(ctx: typer.Context, value: bool) -> None:
    if value:
        import lsvit  # importlib.metadata only: as light as --help

        typer.echo(f"{ctx.find_root().info_name} {lsvit.__version__}")
        raise typer.Exit()


Version = Annotated[
    bool | None,
    typer.Option(
        "--version", help="Print the lsvit version and exit.", callback=_print_version, is_eager=True
    ),
]


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
# A str, not a Path: a URL prefix (https://host/shards/split1/) must keep its "//".
Shards = Annotated[
    str,
    opt(
        "--shards",
        "Shard folder written by `lsvit-pipeline extract`, or a URL prefix (https://..., pipe:...).",
        envvar="SHARDS",
    ),
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
