"""The resolved config: dataclass defaults < a resumed run's saved config < ``--config`` file < flags.

With ``--resume``, the run's own saved config (from the checkpoint) replaces the defaults, so a resumed run
needs no option repeated; whatever is passed overrides it, and :mod:`lsvit.trainer.resume` refuses the
overrides that would change what the saved weights mean.
"""

import json
from pathlib import Path
from typing import Any

import yaml

from lsvit.pipeline.errors import clip, short
from lsvit.trainer.config import ConfigError, TrainConfig, config_keys

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; this bounds what a bad one can cost


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with duplicate keys refused.

    Aliases let a 1 KB file expand to gigabytes once printed or copied ("billion laughs"); a config file
    has no use for them. A key given twice would silently keep the last value.
    """

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"config file {self.name}:{event.start_mark.line + 1}: YAML aliases (*{clip(str(event.anchor), 40)}) are "
                "not allowed in a config file; write the value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: dict = {}
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise ConfigError(
                        f"config file {self.name}:{line}: key {short(key, 60)} is given twice (first on line {seen[key]}); "
                        "keep one"
                    )
                seen[key] = line
            except TypeError:  # an unhashable key: PyYAML's own check below names it
                pass
        return super().construct_mapping(node, deep)


def load_config_file(path: Path) -> dict[str, Any]:
    """Reads a YAML or JSON config file (JSON is valid YAML, so one parser serves both).

    Aliases (``*name``) and duplicate keys are refused, and so is a file over 1 MiB.

    Args:
        path: The file given to ``--config``.

    Returns:
        The option mapping, keys checked against :class:`TrainConfig` (``-`` may stand for ``_``).

    Raises:
        ConfigError: The file is missing, too big, unparsable, not a mapping, or holds aliases, duplicate or
            unknown keys.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}; pass an existing --config") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes; pass a config file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {e.start}); pass a YAML/JSON file"
        ) from e
    loader = _ConfigLoader(text)
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except ConfigError:
        raise
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {_first_line(e)}") from e
    except RecursionError as e:
        raise ConfigError(
            f"config file {path} nests too deeply; a config is a flat mapping of options"
        ) from e
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise ConfigError(f"config file {path}: {_first_line(e)}") from e
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of option: value, not {type(data).__name__}"
        )
    out: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for k, v in data.items():
        name = str(k).replace("-", "_")
        if name in out:
            raise ConfigError(
                f"config file {path}: {short(given[name], 60)} and {short(k, 60)} are the same option; keep one"
            )
        out[name], given[name] = v, k
    unknown = sorted(set(out) - set(config_keys()))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {clip(', '.join(unknown))}; "
            f"allowed keys: {', '.join(config_keys())}"
        )
    return out


def _first_line(e: Exception) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return clip(lines[0], 200) if lines else type(e).__name__


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
        raise ConfigError(
            f"unknown option(s) {clip(', '.join(unknown))}; allowed: {', '.join(config_keys())}"
        )
    if values.get("resume") is not None:
        from lsvit.trainer.resume import with_saved_config  # torch: only when resuming

        values = with_saved_config(values)
    try:
        return TrainConfig(**values)
    except TypeError as e:  # e.g. a comparison of a list with a number: the message names the operation
        raise ConfigError(f"invalid option value ({_first_line(e)})") from e


def config_json(cfg: TrainConfig) -> str:
    """The resolved config as JSON text (the run folder's config.json)."""
    return json.dumps(cfg.to_dict(), indent=2) + "\n"
