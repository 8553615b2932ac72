"""Fixtures for the trainer's hostile-input tests: a tiny finished run and its config file."""

from pathlib import Path

import pytest
from helpers_hostile import TINY, TINY_YAML

from lsvit.trainer.config import TrainConfig
from lsvit.trainer.train import train


@pytest.fixture(scope="session")
def tiny_run(tiny_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run folder (last.pt and best.pt with the whole training state)."""
    out = tmp_path_factory.mktemp("hostile_run") / "run"
    train(TrainConfig(**{**TINY, "shards": str(tiny_shards), "out": str(out)}))
    return out


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile_cfg") / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path
