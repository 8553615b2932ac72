"""The dataset formats ``extract``, ``eda`` and ``merge`` read (``--dataset``), behind one small interface.

A format knows where its split definition lives (:attr:`DatasetFormat.locate`) and reads one split of it
into a :class:`lsvit.pipeline.splits.SplitSpec` (:attr:`DatasetFormat.load_split`); everything after that
(decoding, shards, records, failures, manifests) is the same for every dataset. The dataset's name is saved
in ``index.json``, so the stages after extraction read it from there.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsvit.pipeline import folder, hmdb51, ucf101
from lsvit.pipeline.splits import SplitError, SplitSpec


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset format."""

    name: str
    title: str  # for messages: "HMDB51"
    splits: tuple[int, ...]
    default_root: Path | None  # None: --data-root is required
    layout: str  # the tree, for messages
    locate: Callable[[Path | None, Path | None], Path]  # (data root, --splits-dir) -> split definition
    load_split: Callable[[Path, int], SplitSpec]  # (split definition, split number) -> the split

    def check_split(self, split: int) -> None:
        """Raises an error naming the allowed splits when ``split`` is not one of them."""
        if split not in self.splits:
            allowed = ", ".join(map(str, self.splits))
            raise SplitError(f"split {split!r} is not a split of {self.title}; allowed: {allowed}")


DATASETS = {
    "hmdb51": DatasetFormat(
        "hmdb51",
        "HMDB51",
        hmdb51.SPLITS,
        Path("data/hmdb51"),
        "<data-root>/<class>/<clip>.avi with testTrainMulti_7030_splits/",
        hmdb51.find_splits_dir,
        hmdb51.load_split,
    ),
    "ucf101": DatasetFormat(
        "ucf101",
        "UCF101",
        ucf101.SPLITS,
        Path("data/ucf101"),
        "<data-root>/<Class>/v_<Class>_gGG_cCC.avi with ucfTrainTestlist/",
        ucf101.find_lists_dir,
        ucf101.load_split,
    ),
    "folder": DatasetFormat(
        "folder",
        "a folder dataset",
        folder.SPLITS,
        None,
        "<data-root>/<class>/<clip> with an optional splits.csv (path,label,subset)",
        folder.locate,
        folder.load_split,
    ),
}
DEFAULT = "hmdb51"


def get_dataset(name: str) -> DatasetFormat:
    """The format called ``name``.

    Raises:
        SplitError: An unknown name (the message lists the known ones).
    """
    if name not in DATASETS:
        raise SplitError(f"dataset {name!r} is not known; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]
