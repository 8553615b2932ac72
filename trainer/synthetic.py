"""Models trained on synthetic data: what they record, and the note every tool prints when they meet a video.

``extract`` records in ``index.json["synthetic"]`` how ``lsvit-pipeline synth`` made the clips (null for real
data, see ``ShardIndex.synthetic``); training copies it into every checkpoint (``"synthetic"``) and
``lsvit-export`` into the ONNX metadata. A model that learnt synthetic motions says nothing about real
video, so ``lsvit-predict`` prints :func:`note` on stderr when it is given a clip that is not one of the
synthetic clips, and the web demo shows it on its page. Synthetic clips are known by the ``synth.json``
that ``synth`` writes at the root of its tree (``<root>/<class>/<clip>``).
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

SYNTH_MARKER = "synth.json"  # lsvit.pipeline.synth.MARKER (not imported: that module needs torchcodec)


def info(value: Any) -> dict[str, Any] | None:
    """The synthetic-data record of a checkpoint or index entry as a dict, or None for real data."""
    if not value:
        return None
    return dict(value) if isinstance(value, dict) else {"generator": str(value)}


def describe(synthetic: dict[str, Any]) -> str:
    """One phrase for a record, e.g. ``lsvit synth; motions 2, scale 0.5, seed 0``."""
    generator = str(synthetic.get("generator") or "synthetic")
    rest = [f"{k} {_short(v)}" for k, v in synthetic.items() if k != "generator" and v not in (None, "", {})]
    return f"{generator}; {', '.join(rest)}" if rest else generator


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "-".join(_short(v) for v in value)
    return str(value)


def note(synthetic: dict[str, Any]) -> str:
    """The line printed when a model trained on synthetic data is used on a video that is not synthetic."""
    generator = str(synthetic.get("generator") or "synthetic")
    return f"note: this model was trained on synthetic data ({generator}); its predictions on real video mean nothing"


def is_synthetic_clip(video: Path | str) -> bool:
    """Whether a video lies in a tree written by ``lsvit-pipeline synth`` (a ``synth.json`` two folders up)."""
    try:
        path = Path(video).resolve()
    except OSError:
        return False
    return any((folder / SYNTH_MARKER).is_file() for folder in list(path.parents)[:2])


def real_videos(videos: Iterable[Path | str]) -> list[Path | str]:
    """The videos that are not synthetic clips (those a synthetic model's predictions say nothing about)."""
    return [v for v in videos if not is_synthetic_clip(v)]
