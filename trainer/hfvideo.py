"""Hugging Face video classifiers as ``--model hf:<folder>``, on the same shards, loader and evaluation.

The folder is what ``save_pretrained`` writes (``config.json``, ``model.safetensors``, and the image
processor's ``preprocessor_config.json``): TimeSformer, VideoMAE, ViViT, V-JEPA 2, whatever
``AutoModelForVideoClassification`` loads. Loading is strictly local (``local_files_only=True``). The frame
count and size come from the model's config, the normalisation from its image processor, turned into the
checkpoint's ``(pixel / 255 - mean) / std`` contract (ViViT's rescale to [-1, 1] included). The head is
replaced for our classes unless it already names them. A checkpoint keeps the model's config, so predict,
eval and export rebuild it without the folder.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.preprocess import IMAGENET_MEAN, IMAGENET_STD

PREFIX = "hf:"
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")
HEAD = (
    "classifier.",
    "fc_norm.",
)  # modules after the trunk: new when the folder has none (self-supervised weights)


class HfModelError(LsvitError):
    """A Hugging Face folder that cannot be loaded as a video classifier."""


@dataclass(frozen=True)
class HfSpec:
    """What a saved Hugging Face video classifier expects."""

    num_frames: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: int  # the processor's short side before its centre crop (== img_size: crop the whole short side)
    norm_from: str  # where mean/std came from, for messages


def folder(model: str) -> Path:
    """The folder of ``hf:<folder>``."""
    return Path(model.removeprefix(PREFIX)).expanduser()


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise HfModelError(
            "--model hf:... needs transformers: `pip install 'lsvit[hf]'` (the dev install has it)"
        ) from e
    transformers.logging.set_verbosity_error()  # we report what loaded ourselves
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _first(obj: Any, *names: str) -> Any:
    return next((getattr(obj, n) for n in names if getattr(obj, n, None) is not None), None)


def _side(size: Any) -> int | None:
    """A processor's size (an int, a dict or transformers' SizeDict) as one side in pixels."""
    if isinstance(size, int):
        return size
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    return get("shortest_edge") or get("height")


def normalisation(proc: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An image processor's rescale, offset and normalise steps as one ``(pixel / 255 - mean) / std``.

    The processor computes ``((p * r - offset) - m) / s`` (``offset`` 1 when set: ViViT's [-1, 1]); that is
    ``(p / 255 - M) / S`` with ``S = s / (255 r)`` and ``M = (offset + m) / (255 r)``.

    Args:
        proc: The image processor (attributes ``do_rescale``, ``rescale_factor``, ``offset``,
            ``do_normalize``, ``image_mean``, ``image_std``).

    Returns:
        ``(mean, std)`` per RGB channel in 0-1 units.
    """
    r = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
    off = 1.0 if getattr(proc, "offset", False) else 0.0
    normalize = getattr(proc, "do_normalize", True)
    m = [float(x) for x in (proc.image_mean if normalize else (0.0, 0.0, 0.0))]
    s = [float(x) for x in (proc.image_std if normalize else (1.0, 1.0, 1.0))]
    m, s = (m * 3)[:3], (s * 3)[:3]
    return tuple((off + mi) / (255 * r) for mi in m), tuple(si / (255 * r) for si in s)


def _processor(tr: Any, path: Path, name: str) -> Any:
    """The folder's image processor, or its video processor (newer models save one instead)."""
    for auto in ("AutoImageProcessor", "AutoVideoProcessor"):
        try:
            return getattr(tr, auto).from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError, AttributeError):
            continue
    raise HfModelError(
        f"--model hf:{path}: cannot read its {name}; re-save the processor with save_pretrained"
    )


def read_spec(path: Path) -> HfSpec:
    """Frames, size and normalisation of a saved model, from its config and image processor.

    Raises:
        HfModelError: No such folder or config, or a config without a frame count or image size.
    """
    tr = _transformers()
    if not (path / "config.json").is_file():
        raise HfModelError(
            f"--model hf:{path}: no config.json there; pass a folder written by save_pretrained (see the README "
            "for how to fetch one on a machine with internet)"
        )
    try:
        config = tr.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise HfModelError(f"--model hf:{path}: cannot read its config ({str(e).splitlines()[0]})") from e
    frames = _first(config, "num_frames", "frames_per_clip")
    size = _first(config, "image_size", "crop_size")
    size = size[0] if isinstance(size, list | tuple) else size
    if not frames or not size:
        raise HfModelError(
            f"--model hf:{path}: its config ({config.model_type}) names no frame count or image size"
        )
    found = [n for n in PROCESSOR_FILES if (path / n).is_file()]
    if found:
        proc = _processor(tr, path, found[0])
        mean, std = normalisation(proc)
        crop = _side(_first(proc, "crop_size")) or int(size)
        resize = _side(_first(proc, "size")) or crop
        if crop != size:
            raise HfModelError(f"--model hf:{path}: its processor crops {crop}px, its config says {size}px")
        return HfSpec(int(frames), int(size), mean, std, int(resize), f"{path}/{found[0]}")
    return HfSpec(int(frames), int(size), IMAGENET_MEAN, IMAGENET_STD, int(size), "")


class HfVideo(nn.Module):
    """A transformers video classifier fed ``(B, T, 3, H, W)`` clips (its ``pixel_values`` layout).

    Args:
        net: The ``...ForVideoClassification`` model.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` normalised clips -> ``(B, num_classes)`` logits."""
        return self.net(pixel_values=x).logits

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping (``--layer-decay``): embeddings, each encoder layer, then the final norm."""
        return {
            "stem": r"^net\.\w+\.embeddings",
            "blocks": [(r"^net\.\w+\.encoder\.layer\.(\d+)", None), (r"^net\.\w+\.layernorm", (99999,))],
        }

    def config_json(self) -> str:
        """The model's config as JSON, which checkpoints keep to rebuild it without the folder."""
        return self.net.config.to_json_string(use_diff=False)


def _head(net: nn.Module) -> nn.Linear:
    head = getattr(net, "classifier", None)
    if not isinstance(head, nn.Linear):
        raise HfModelError(f"{type(net).__name__}: no linear `classifier` head to replace")
    return head


def load_pretrained(
    path: Path, classes: list[str], overrides: dict[str, Any] | None = None
) -> tuple[HfVideo, str]:
    """Loads a saved classifier for our classes (``local_files_only``): the trunk must load completely.

    Args:
        path: The ``save_pretrained`` folder.
        classes: Our class names, in label order.
        overrides: Config fields to change first (``--model-kwargs``), e.g. ``hidden_dropout_prob``.

    Returns:
        The model and one line saying what was loaded.

    Raises:
        HfModelError: Not a video classifier, or weights missing from the folder.
    """
    tr = _transformers()
    config = tr.AutoConfig.from_pretrained(path, local_files_only=True)
    saved = [config.id2label[i] for i in sorted(config.id2label)]
    labels = {"id2label": dict(enumerate(classes)), "label2id": {c: i for i, c in enumerate(classes)}}
    unknown = sorted(set(overrides or {}) - set(config.to_dict()))
    if unknown:
        raise HfModelError(f"--model-kwargs {', '.join(unknown)}: not fields of {type(config).__name__}")
    try:
        config.update({**(overrides or {}), "num_labels": len(classes), **labels})
    except (TypeError, ValueError) as e:  # transformers validates the field types
        raise HfModelError(f"--model-kwargs {overrides}: {str(e).splitlines()[0]}") from e
    try:
        net, info = tr.AutoModelForVideoClassification.from_pretrained(
            path, config=config, local_files_only=True, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except (OSError, ValueError) as e:  # no weights file, or a model type that is no video classifier
        raise HfModelError(
            f"--model hf:{path}: cannot load a video classifier ({str(e).splitlines()[0]})"
        ) from e
    head = _head(net)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(HEAD))
    if missing:
        raise HfModelError(
            f"--model hf:{path}: its weights lack {len(missing)} tensor(s) of {type(net).__name__} "
            f"({', '.join(missing[:3])}); pass a folder saved from this architecture"
        )
    if saved == classes and not info["missing_keys"]:
        kept = "its head (it names our classes)"
    else:
        if not info["mismatched_keys"] and not info["missing_keys"]:
            head.reset_parameters()  # as many classes, other names: not our head
        new = sorted({k.split(".")[0] for k in info["missing_keys"]} | {"classifier"})
        kept = f"new {', '.join(new)} for {len(classes)} classes (the folder's head: {len(saved)} classes)"
    unused = sorted({k.split(".")[0] for k in info["unexpected_keys"]})  # e.g. a pre-training decoder
    dropped = f"; not used: {', '.join(unused)} ({len(info['unexpected_keys'])} tensors)" if unused else ""
    return HfVideo(net), f"hf:{path}: {type(net).__name__} loaded, {kept}{dropped}"


def from_config(config_json: str) -> HfVideo:
    """Rebuilds the model (random weights) from the config a checkpoint kept.

    Raises:
        HfModelError: The config is not one transformers knows.
    """
    tr = _transformers()
    try:
        data = json.loads(config_json)
        config = tr.AutoConfig.for_model(data.pop("model_type"), **data)
        return HfVideo(tr.AutoModelForVideoClassification.from_config(config))
    except (KeyError, ValueError) as e:
        raise HfModelError(f"cannot rebuild the Hugging Face model of the checkpoint: {e}") from e
