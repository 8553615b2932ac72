"""Offline preprocessing: HMDB51-style clips -> 16-frame WebDataset shards, manifests and EDA."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lsvit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"
