"""Which files are videos: what ``lsvit-predict`` and ``lsvit-demo --examples`` take from a folder."""

from collections.abc import Iterable
from pathlib import Path

from lsvit.pipeline.errors import LsvitError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ogv", ".flv", ".wmv")


def find_videos(folder: Path) -> list[Path]:
    """The video files under ``folder``, recursively (by suffix, any case), sorted by path."""
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())


def expand_videos(paths: Iterable[Path], flag: str, missing_ok: bool = False) -> list[Path]:
    """Files as given, folders as the video files inside them.

    Args:
        paths: Files and folders.
        flag: The option or argument they came from, for messages (e.g. ``--examples``).
        missing_ok: Keep a path that does not exist (its caller reports it per file) instead of stopping.

    Returns:
        The files, in the given order, each folder's sorted.

    Raises:
        LsvitError: A folder without videos, or (unless ``missing_ok``) a path that does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = find_videos(p)
            if not found:
                raise LsvitError(
                    f"{flag} {p} holds no video files ({', '.join(VIDEO_SUFFIXES[:4])}, ... in any sub-folder)"
                )
            out += found
        elif p.is_file() or missing_ok:
            out.append(p)
        else:
            raise LsvitError(f"{flag} {p} does not exist")
    return out
