"""The model families ``--model`` names, each trained on the same shards with the same loader and evaluation.

- LS-ViT and its frame-averaged ViT baseline: timm names, ``lsvit_small_patch16_224``,
  ``vit_frameavg_small_patch16_224`` (``lsvit.trainer.lsvit``).
- torchvision's video models: ``tv:r2plus1d_18``, ``tv:r3d_18``, ``tv:mc3_18``, ``tv:s3d``, ``tv:mvit_v2_s``,
  ``tv:swin3d_t`` (``lsvit.trainer.tvvideo``).
- Hugging Face video classifiers saved with ``save_pretrained``: ``hf:<folder>`` (``lsvit.trainer.hfvideo``).

Every model takes ``(B, T, 3, H, W)`` clips normalised by the checkpoint's preprocessing contract and returns
``(B, classes)`` logits, so checkpoints, predict, eval and export treat them alike. A family's default input
(frames, crop, normalisation) is what its pretrained weights were trained with.
"""

from collections.abc import Callable
from typing import Any

from lsvit.pipeline.errors import LsvitError

LSVIT_FRAMES, LSVIT_SIZE = 16, 224
TV, HF = "tv:", "hf:"


def family(model: str) -> str:
    """``"timm"``, ``"tv"`` or ``"hf"``."""
    return "tv" if model.startswith(TV) else "hf" if model.startswith(HF) else "timm"


def check_name(model: str, timm_models: Callable[[], list[str]]) -> str | None:
    """Why ``model`` is no model name, or None.

    Args:
        model: The ``--model`` value.
        timm_models: The registered timm names (called only for a timm name: it imports timm).
    """
    kind = family(model)
    if kind == "tv":
        from lsvit.trainer.tvvideo import SPECS

        return None if model[len(TV) :] in SPECS else f"choose one of: tv:{', tv:'.join(SPECS)}"
    if kind == "hf":
        return (
            None if model[len(HF) :].strip() else "hf: takes a folder written by save_pretrained, hf:<folder>"
        )
    names = timm_models()
    if model in names:
        return None
    return f"allowed: {', '.join(names)}, tv:<torchvision video model>, hf:<Hugging Face folder>"


def default_input(model: str) -> tuple[int, int]:
    """``(frames, crop size)`` the family's weights expect (for ``hf:``, read from the folder's config).

    Raises:
        LsvitError: An ``hf:`` folder without a readable config.
    """
    kind = family(model)
    if kind == "tv":
        from lsvit.trainer.tvvideo import spec

        s = spec(model)
        return s.num_frames, s.img_size
    if kind == "hf":
        from lsvit.trainer.hfvideo import folder, read_spec

        s = read_spec(folder(model))
        return s.num_frames, s.img_size
    return LSVIT_FRAMES, LSVIT_SIZE


def build_video_model(
    cfg: Any,
    num_classes: int,
    pretrained: bool,
    say: Callable[[str], None],
    classes: list[str] | None = None,
    model_config: str | None = None,
) -> tuple[Any, tuple[tuple[float, ...], tuple[float, ...]]]:
    """Builds a ``tv:`` or ``hf:`` model and returns it with its default normalisation ``(mean, std)``.

    Args:
        cfg: The resolved ``TrainConfig``.
        num_classes: Classes in the shards.
        pretrained: Load ``--init`` (tv) or the folder's weights (hf); False when a checkpoint's follow.
        say: Where the report line goes.
        classes: Our class names (an ``hf:`` head that names them is kept).
        model_config: The Hugging Face config a checkpoint kept (``hf:`` without ``pretrained``).

    Raises:
        LsvitError: A model, input size, ``--init`` or folder that does not fit.
    """
    if family(cfg.model) == "tv":
        from lsvit.trainer.tvvideo import TorchvisionVideo, load_tv_init, spec

        model = TorchvisionVideo(
            cfg.model[len(TV) :], num_classes, cfg.num_frames, cfg.img_size, cfg.drop_path, **cfg.model_kwargs
        )
        if pretrained and cfg.init is not None:
            say(load_tv_init(model, cfg.init))
        if pretrained and cfg.drop_path and not model.drop_path:
            say(f"note: --drop-path does not apply to {cfg.model}: it has no stochastic depth")
        s = spec(cfg.model)
        return model, (s.mean, s.std)
    from lsvit.trainer import hfvideo

    if cfg.init is not None:
        raise LsvitError(f"--init {cfg.init}: an hf: model starts from its folder's weights; drop --init")
    path = hfvideo.folder(cfg.model)
    if pretrained or model_config is None:
        s = hfvideo.read_spec(path)
        if (cfg.num_frames, cfg.img_size) != (s.num_frames, s.img_size):
            raise LsvitError(
                f"--model {cfg.model} takes {s.num_frames} frames of {s.img_size}px (its config); drop "
                f"--num-frames/--img-size or save the model with another config"
            )
    if not pretrained and model_config is not None:
        return hfvideo.from_config(model_config), (tuple(cfg.mean or ()), tuple(cfg.std or ()))
    model, line = hfvideo.load_pretrained(
        path, list(classes or [str(i) for i in range(num_classes)]), cfg.model_kwargs
    )
    say(line)
    if not s.norm_from:
        say(
            f"warning: {path} has no preprocessor_config.json: assuming ImageNet mean/std (pass --mean/--std)"
        )
    elif s.resize != s.img_size:
        say(
            f"note: its processor resizes to {s.resize}px before cropping {s.img_size}px; lsvit crops the whole "
            f"short side (resized to {s.img_size}px)"
        )
    if cfg.drop_path:
        say("note: --drop-path does not apply to hf: models; set the config's own rate with --model-kwargs")
    return model, (s.mean, s.std)
