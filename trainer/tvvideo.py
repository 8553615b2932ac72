"""torchvision's video classifiers as ``--model tv:<name>``, on the same shards, loader and evaluation.

The network is torchvision's own (``torchvision.models.get_model``), built with our class count; the wrapper
only turns our ``(B, T, 3, H, W)`` clips into torchvision's ``(B, C, T, H, W)``. ``--init FILE`` loads a
torchvision weights file (``r3d_18-b3b3357e.pth``: torchvision's download, saved on a machine with internet)
with ``weights_only=True``: the trunk must load completely, the Kinetics head is dropped when the class
count differs. Defaults (frames, crop, normalisation) are those of torchvision's Kinetics-400 weights.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.preprocess import IMAGENET_MEAN, IMAGENET_STD

PREFIX = "tv:"
_KINETICS_MEAN, _KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class TvSpec:
    """What a torchvision video model expects (from its ``KINETICS400_V1`` weights' metadata)."""

    num_frames: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head: tuple[str, ...]  # state-dict prefixes of the classifier
    weights: str  # the Kinetics-400 weights file torchvision downloads
    fixed: bool = False  # the architecture is built for exactly this input (MViT's position tables)
    min_frames: int = 1
    min_size: int = 1


SPECS = {
    "r3d_18": TvSpec(16, 112, _KINETICS_MEAN, _KINETICS_STD, ("fc.",), "r3d_18-b3b3357e.pth"),
    "mc3_18": TvSpec(16, 112, _KINETICS_MEAN, _KINETICS_STD, ("fc.",), "mc3_18-a90a0ba3.pth"),
    "r2plus1d_18": TvSpec(16, 112, _KINETICS_MEAN, _KINETICS_STD, ("fc.",), "r2plus1d_18-91a641e6.pth"),
    "s3d": TvSpec(
        16, 224, _KINETICS_MEAN, _KINETICS_STD, ("classifier.",), "s3d-d76dad2f.pth", False, 14, 224
    ),
    "mvit_v2_s": TvSpec(16, 224, (0.45,) * 3, (0.225,) * 3, ("head.",), "mvit_v2_s-ae3be167.pth", True),
    "swin3d_t": TvSpec(16, 224, IMAGENET_MEAN, IMAGENET_STD, ("head.",), "swin3d_t-7615ae03.pth"),
}
WEIGHTS_URL = "https://download.pytorch.org/models/"


class TvInitError(LsvitError):
    """A torchvision model name, input size or ``--init`` file that does not fit."""


def spec(model: str) -> TvSpec:
    """The spec of ``tv:<name>``.

    Raises:
        TvInitError: An unknown name (the message lists the known ones).
    """
    name = model.removeprefix(PREFIX)
    if name not in SPECS:
        raise TvInitError(f"--model {model}: not a torchvision video model; choose tv:{', tv:'.join(SPECS)}")
    return SPECS[name]


class TorchvisionVideo(nn.Module):
    """A torchvision video classifier fed ``(B, T, 3, H, W)`` clips.

    Args:
        name: ``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v2_s`` or ``swin3d_t``.
        num_classes: Classes of the new head.
        num_frames: T (checked against what the architecture accepts).
        img_size: H = W.
        drop_path: Stochastic depth of the last block of MViT and Swin3D (the ResNets and S3D have none),
            the others scaled as torchvision scales them.
        **kwargs: Passed on to torchvision's builder (``--model-kwargs``).
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        num_frames: int,
        img_size: int,
        drop_path: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from torchvision.models import get_model

        s = spec(name)
        if s.fixed and (num_frames, img_size) != (s.num_frames, s.img_size):
            raise TvInitError(
                f"tv:{name} is built for {s.num_frames} frames of {s.img_size}px only; pass --num-frames "
                f"{s.num_frames} --img-size {s.img_size}"
            )
        if num_frames < s.min_frames or img_size < s.min_size:
            raise TvInitError(
                f"tv:{name} needs at least {s.min_frames} frames of {s.min_size}px; got {num_frames} of {img_size}px"
            )
        try:
            self.net = get_model(name, weights=None, num_classes=num_classes, **kwargs)
        except TypeError as e:
            raise TvInitError(f"cannot build tv:{name} with model_kwargs={kwargs}: {e}") from e
        self.drop_path = _set_drop_path(self.net, drop_path)
        self.name, self.num_frames, self.img_size = name, num_frames, img_size
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, num_classes)``."""
        return self.net(x.transpose(1, 2))  # (B, 3, T, H, W): torchvision's layout

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping (``--layer-decay``): the stem, then each stage or block, then the head."""
        return {
            "stem": r"^net\.(?:stem|conv_proj|pos_encoding|patch_embed)",
            "blocks": [(r"^net\.(?:layer|features\.|blocks\.)(\d+)", None), (r"^net\.norm", (99999,))],
        }


def _set_drop_path(net: nn.Module, rate: float) -> bool:
    """Scales torchvision's per-block stochastic depth so that the last block's is ``rate``.

    Returns:
        Whether the architecture has stochastic depth at all.
    """
    from torchvision.ops import StochasticDepth

    layers = [m for m in net.modules() if isinstance(m, StochasticDepth)]
    top = max((m.p for m in layers), default=0.0)
    for m in layers:
        m.p = m.p / top * rate if top > 0 else rate
    return bool(layers)


def load_tv_init(model: TorchvisionVideo, path: str) -> str:
    """Loads a torchvision weights file into ``model.net``; the head only when its shape fits.

    Args:
        model: The freshly built model.
        path: A ``.pth`` state dict as torchvision downloads it (or a ``.safetensors`` file).

    Returns:
        One line saying what was loaded.

    Raises:
        TvInitError: Missing or unreadable file, or a trunk tensor that is missing or of another shape.
    """
    file = Path(path)
    if not file.is_file():
        raise TvInitError(
            f"--init {path} does not exist; download {WEIGHTS_URL}{spec(model.name).weights} on a machine with "
            "internet and pass the file"
        )
    from lsvit.trainer.pretrained import read_weights  # weights_only: nothing is unpickled
    from lsvit.trainer.transfer import unwrap

    state, _ = unwrap(read_weights(str(file)).state_dict)  # containers and module./model. prefixes go
    own = model.net.state_dict()
    head = spec(model.name).head
    is_head = [k for k in own if k.startswith(head)]
    head_fits = all(k in state and state[k].shape == own[k].shape for k in is_head)
    missing = [k for k in own if k not in state and k not in is_head]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and k not in is_head and state[k].shape != own[k].shape]  # fmt: skip
    unexpected = [k for k in state if k not in own]
    if missing or mismatched or unexpected:
        raise TvInitError(
            f"--init {path} does not fit tv:{model.name} (missing: {', '.join(missing[:3]) or '-'}; shapes differ: "
            f"{'; '.join(mismatched[:3]) or '-'}; unexpected: {', '.join(unexpected[:3]) or '-'}); pass torchvision's "
            f"{spec(model.name).weights}"
        )
    load = {k: v for k, v in state.items() if head_fits or k not in is_head}
    model.net.load_state_dict(load, strict=False)
    kept = "its head too" if head_fits else f"a new {model.num_classes}-class head"
    return f"--init {path}: loaded {len(load)} tensors into tv:{model.name}, {kept}"
