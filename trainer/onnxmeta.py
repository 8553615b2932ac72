"""The preprocessing contract that an exported ONNX file carries in its ``metadata_props``.

``lsvit-export`` writes it and every reader of an exported file (``lsvit-predict --model``, ``lsvit-demo
--model``, your own onnxruntime code) reads it through :meth:`ExportMeta.from_props`, so a consumer needs
nothing but the ``.onnx`` file. Values are strings (ONNX allows no other type); lists and mappings are JSON:

=================  ==========================================================================================
key                value
=================  ==========================================================================================
``lsvit_format``   ``1``: the version of this table
``classes``        JSON list of class names, in logit order
``num_frames``     T, frames per clip the network takes
``source_frames``  frames spread uniformly over the clip first (as extract stores them); T of those are fed
``img_size``       H = W of the input frames
``mean``, ``std``  JSON lists, per RGB channel, 0-1 units: input = (pixel / 255 - mean) / std
``input``          the input's name, layout and dtype, in words
``output``         the output's name and meaning, in words
``preprocess``     the frame sampling and resize, in words
``model``          the model name the checkpoint was trained with
``config``         JSON of the source checkpoint's resolved training config
``checkpoint``     the source checkpoint's path, ``checkpoint_sha256`` its SHA-256, ``epoch`` its epoch
``lsvit_version``  the lsvit version that exported it
``synthetic``      JSON of how the training clips were generated (``lsvit-pipeline synth``), or empty for
                   real data: a model trained on synthetic clips says nothing about real video
=================  ==========================================================================================
"""

import json
from dataclasses import dataclass, field
from typing import Any

from lsvit.pipeline.errors import LsvitError

FORMAT = "1"
INPUT_NAME, OUTPUT_NAME = "video", "logits"
PREPROCESS = (
    "decode every frame; take source_frames frames at the centres of equal segments of the clip (a clip "
    "shorter than that repeats its last frame), then num_frames of those the same way; resize the shorter "
    "side to img_size (bilinear) and centre-crop img_size x img_size"
)
_REQUIRED = ("lsvit_format", "classes", "num_frames", "source_frames", "img_size", "mean", "std")


class OnnxMetaError(LsvitError, ValueError):
    """An ONNX file without (or with unusable) lsvit metadata."""


@dataclass(frozen=True)
class ExportMeta:
    """What a consumer of an exported model needs besides the network."""

    classes: list[str]
    num_frames: int
    source_frames: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    epoch: int | None = None
    lsvit_version: str = ""
    synthetic: dict[str, Any] | None = None

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings)."""
        return {
            "lsvit_format": FORMAT,
            "classes": json.dumps(self.classes),
            "num_frames": str(self.num_frames),
            "source_frames": str(self.source_frames),
            "img_size": str(self.img_size),
            "mean": json.dumps([float(v) for v in self.mean]),
            "std": json.dumps([float(v) for v in self.std]),
            "input": f"{INPUT_NAME}: float32 (batch, {self.num_frames}, 3, {self.img_size}, {self.img_size}), "
            "RGB, (pixel / 255 - mean) / std",
            "output": f"{OUTPUT_NAME}: float32 (batch, {len(self.classes)}); softmax over the last axis "
            "gives P(action | clip) in the order of classes",
            "preprocess": PREPROCESS,
            "model": self.model,
            "config": json.dumps(self.config, sort_keys=True, default=str),
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "epoch": "" if self.epoch is None else str(self.epoch),
            "lsvit_version": self.lsvit_version,
            "synthetic": json.dumps(self.synthetic, sort_keys=True, default=str) if self.synthetic else "",
        }

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> "ExportMeta":
        """Parses and checks the metadata of an exported file.

        Args:
            props: The file's ``metadata_props`` (onnxruntime: ``custom_metadata_map``).
            where: The file, for messages.

        Returns:
            The metadata.

        Raises:
            OnnxMetaError: Entries missing or malformed.
        """
        missing = [k for k in _REQUIRED if k not in props]
        if missing:
            raise OnnxMetaError(
                f"{where} has no lsvit metadata (missing {', '.join(missing)}); export the checkpoint with "
                "`lsvit-export --checkpoint runs/NAME/best.pt`"
            )
        if props["lsvit_format"] != FORMAT:
            raise OnnxMetaError(
                f"{where} has lsvit metadata format {props['lsvit_format']!r}, this lsvit reads {FORMAT!r}; "
                "export it again with this version"
            )
        try:
            classes = json.loads(props["classes"])
            mean = tuple(float(v) for v in json.loads(props["mean"]))
            std = tuple(float(v) for v in json.loads(props["std"]))
            ints = {k: int(props[k]) for k in ("num_frames", "source_frames", "img_size")}
            config = json.loads(props.get("config") or "{}")
            epoch = int(props["epoch"]) if props.get("epoch") else None
            synthetic = json.loads(props["synthetic"]) if props.get("synthetic") else None
        except (ValueError, TypeError) as e:
            raise OnnxMetaError(f"{where}: malformed lsvit metadata ({e}); export it again") from e
        bad = not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes))
        bad = bad or len(mean) != 3 or len(std) != 3 or min(std) <= 0 or min(ints.values()) < 1
        if bad or not isinstance(config, dict) or not isinstance(synthetic, (dict, type(None))):
            raise OnnxMetaError(
                f"{where}: malformed lsvit metadata (classes, mean/std or sizes); export it again"
            )
        return cls(
            classes=classes,
            mean=mean,
            std=std,
            model=props.get("model", ""),
            config=config,
            checkpoint=props.get("checkpoint", ""),
            checkpoint_sha256=props.get("checkpoint_sha256", ""),
            epoch=epoch,
            lsvit_version=props.get("lsvit_version", ""),
            synthetic=synthetic,
            **ints,
        )
