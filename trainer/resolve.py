"""The resolved config: dataclass defaults < a resumed run's saved config < ``--config`` file < flags.

With ``--resume``, the run's own saved config (from the checkpoint) replaces the defaults, so a resumed run
needs no option repeated; whatever is passed overrides it, and :mod:`lsvit.trainer.resume` refuses the
overrides that would change what the saved weights mean.
"""

import json
from pathlib import Path
from typing import Any

import yaml

from lsvit.trainer.config import ConfigError, TrainConfig, config_keys


def load_config_file(path: Path) -> dict[str, Any]:
    """Reads a YAML or JSON config file (JSON is valid YAML, so one parser serves both).

    Args:
        path: The file given to ``--config``.

    Returns:
        The option mapping, keys checked against :class:`TrainConfig` (``-`` may stand for ``_``).

    Raises:
        ConfigError: The file is missing, unparsable, not a mapping, or holds unknown keys.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}; pass an existing --config") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {str(e).splitlines()[0]}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of option: value, not {type(data).__name__}"
        )
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(config_keys()))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(config_keys())}"
        )
    return data


def resolve_config(file: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Builds the validated config from the defaults, an optional file and explicit overrides.

    Args:
        file: Optional YAML/JSON config file.
        overrides: Options given explicitly (on the command line or through ``LSVIT_*`` variables);
            they win over the file. With ``resume`` (here or in the file), the checkpoint's saved config
            takes the place of the defaults.

    Returns:
        The validated :class:`TrainConfig`.

    Raises:
        ConfigError: Unknown keys or invalid values.
    """
    values = load_config_file(file) if file is not None else {}
    values.update(overrides or {})
    unknown = sorted(set(values) - set(config_keys()))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(config_keys())}")
    if values.get("resume") is not None:
        from lsvit.trainer.resume import with_saved_config  # torch: only when resuming

        values = with_saved_config(values)
    try:
        return TrainConfig(**values)
    except TypeError as e:  # e.g. a list where a number belongs: name the offending values
        raise ConfigError(f"invalid option value in {values!r}: {e}") from e


def save_config(cfg: TrainConfig, path: Path) -> None:
    """Writes the resolved config as JSON (the run folder's config.json)."""
    path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
