"""Where ``--init`` weights come from: a local file, a Hugging Face style folder, or a timm pretrained name.

Every source yields a plain state dict plus, when the source says, the normalisation its weights expect.
Nothing here touches the network unless the Hugging Face hub is online and the weights are not cached:
a timm name (``vit_small_patch16_224.augreg_in21k``) or ``hf-hub:timm/<repo>`` is looked up in the local
Hugging Face cache first (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), which is
all that ``HF_HUB_OFFLINE=1`` allows. Files load with ``weights_only=True`` (or safetensors): no pickle runs.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lsvit.pipeline.errors import LsvitError

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
WEIGHTS_ORDER = WEIGHT_FILES[:2]  # what timm's hub loader tries for a name


class InitError(LsvitError):
    """``--init`` weights that cannot be found, read or mapped onto the model."""


@dataclass
class Weights:
    """A state dict and what is known about it."""

    state_dict: dict[str, Any]  # may still be wrapped ({"state_dict": ...}) and prefixed ("backbone.")
    label: str  # how messages name the source
    mean: tuple[float, ...] | None = None  # the normalisation the weights expect, when the source says
    std: tuple[float, ...] | None = None
    norm_from: str | None = None  # where mean/std came from


def read_weights(spec: str, model: torch.nn.Module | None = None) -> Weights:
    """Reads ``--init``.

    Args:
        spec: A weights file (``.safetensors``, ``.pth``/``.pt``/``.bin``/... via ``torch.load``, or a
            big_vision ``.npz``), a folder in Hugging Face layout (``model.safetensors`` or
            ``pytorch_model.bin``, optionally ``config.json``), a timm pretrained name, or ``hf-hub:<repo>``.
        model: The model the weights are for (``.npz`` files are converted through a timm ViT of its shape).

    Returns:
        The weights.

    Raises:
        InitError: Not found, not cached, unreadable, or not a known name; the message says what to do.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if path.is_file():
        return _from_file(path, model)
    if spec.startswith("hf-hub:"):
        repo, _, revision = spec[len("hf-hub:") :].partition("@")
        cfg = _hub_json(repo, revision or None)
        return _from_hub(spec, repo, revision or None, WEIGHTS_ORDER, cfg.get("pretrained_cfg") or {})
    import timm

    pcfg = None
    if not re.search(r"[/\\]|\.(safetensors|pth|pt|bin|npz|ckpt|tar)$", spec):
        try:
            pcfg = timm.models.get_pretrained_cfg(spec)
        except RuntimeError as e:  # a known architecture with an unknown tag
            raise InitError(
                f"--init {spec}: {e} (`timm.list_pretrained('{spec.split('.')[0]}*')` lists them)"
            ) from e
    if pcfg is None:
        raise InitError(
            f"--init {spec} does not exist as a file or folder and is not a timm pretrained name "
            "(e.g. vit_small_patch16_224.augreg_in21k); pass a timm ViT checkpoint file or name"
        )
    hint = {"mean": pcfg.mean, "std": pcfg.std, "from": f"timm's pretrained config of {spec}"}
    if pcfg.hf_hub_id:
        files = (pcfg.hf_hub_filename,) if pcfg.hf_hub_filename else WEIGHTS_ORDER
        return _from_hub(spec, pcfg.hf_hub_id, None, files, hint)
    if pcfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(pcfg.url)
        if cached.is_file():
            return _with_hint(_from_file(cached, model), hint, spec)
        raise InitError(f"--init {spec}: weights not cached at {cached}; download {pcfg.url} there")
    raise InitError(f"--init {spec}: timm knows no weights for it; pass a weights file")


def _with_hint(w: Weights, hint: dict, label: str) -> Weights:
    mean, std = hint.get("mean"), hint.get("std")
    if mean and std:
        w.mean, w.std, w.norm_from = tuple(mean), tuple(std), hint.get("from")
    w.label = label
    return w


def _from_folder(path: Path) -> Weights:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            w = _from_file(path / name, None)
            return _with_hint(w, _folder_hint(path), str(path))
    raise InitError(
        f"--init {path}: a folder, but without {' or '.join(WEIGHT_FILES[:2])}; pass the weights file"
    )


def _folder_hint(path: Path) -> dict:
    """mean/std from a timm ``config.json`` (``pretrained_cfg``) or a ``preprocessor_config.json``."""
    for name, keys in (
        ("config.json", ("mean", "std")),
        ("preprocessor_config.json", ("image_mean", "image_std")),
    ):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data = data.get("pretrained_cfg", data) if isinstance(data, dict) else {}
        if isinstance(data, dict) and all(isinstance(data.get(k), list) for k in keys):
            return {"mean": data[keys[0]], "std": data[keys[1]], "from": f"{path / name}"}
    return {}


def _from_file(path: Path, model: torch.nn.Module | None) -> Weights:
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        elif suffix == ".npz":
            sd = _npz_state_dict(path, model)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except InitError:
        raise
    except Exception as e:  # torch/safetensors/numpy raise many types for foreign or corrupt files
        if "weights only load failed" in str(e).lower():
            raise InitError(
                f"--init {path} holds pickled Python objects besides tensors, which lsvit never unpickles; "
                "re-save its weights with torch.save(model.state_dict(), path) or as .safetensors"
            ) from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InitError(f"--init {path}: cannot read it as weights ({first})") from e
    if not isinstance(sd, dict):
        raise InitError(f"--init {path} holds a {type(sd).__name__}, not a state dict")
    w = Weights(sd, str(path))
    if isinstance(sd.get("config"), dict) and "model" in sd:  # an lsvit-train checkpoint: its own contract
        from lsvit.trainer.preprocess import Preprocess

        try:
            pre = Preprocess.from_checkpoint(sd)
        except (KeyError, TypeError, ValueError):
            pre = None
        if pre is not None:
            hint = {"mean": pre.mean, "std": pre.std, "from": f"the preprocess entry of {path}"}
            return _with_hint(w, hint, str(path))
    return _with_hint(w, _folder_hint(path.parent), str(path)) if path.name in WEIGHT_FILES else w


def _npz_state_dict(path: Path, model: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """A big_vision/JAX ``.npz`` read by timm into a plain ViT of ``model``'s trunk shape."""
    import numpy as np
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    if model is None or not hasattr(model, "blocks"):
        raise InitError(f"--init {path}: .npz weights need a ViT-shaped model to be read into")
    with np.load(path) as npz:
        found = {int(m[1]) for k in npz.files if (m := re.search(r"encoderblock_(\d+)/", k))}
    depth = len(model.blocks)
    if found and len(found) != depth:
        raise InitError(
            f"--init {path}: {len(found)} blocks in the .npz, the model has {depth}; match the depth"
        )
    attn = model.blocks[0].attn
    vit = VisionTransformer(
        img_size=model.patch_embed.img_size,
        patch_size=model.patch_embed.patch_size,
        embed_dim=model.embed_dim,
        depth=depth,
        num_heads=attn.num_heads,
        mlp_ratio=model.blocks[0].mlp.fc1.out_features / model.embed_dim,
        qkv_bias=attn.qkv.bias is not None,
        num_classes=0,
    )
    with torch.no_grad():
        _load_weights(vit, str(path))
    return vit.state_dict()


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (as huggingface_hub does at import)."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or huggingface_hub's own setting) forbids network access."""
    from huggingface_hub import constants

    return (
        os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or constants.HF_HUB_OFFLINE
    )


def _cached(repo: str, filename: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hub_cache_dir(), revision=revision)
    return Path(found) if isinstance(found, str) else None


def _hub_json(repo: str, revision: str | None) -> dict:
    path = _cached(repo, "config.json", revision)
    if path is None and not hub_offline():
        path = _download(repo, "config.json", revision)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}


def _download(repo: str, filename: str, revision: str | None) -> Path | None:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=hub_cache_dir()))
    except Exception:  # offline, missing file, no such repo: the caller names the cache to fill
        return None


def _from_hub(spec: str, repo: str, revision: str | None, files: tuple[str, ...], hint: dict) -> Weights:
    for name in files:
        path = _cached(repo, name, revision)
        if path is None and not hub_offline():
            path = _download(repo, name, revision)
        if path is not None:
            w = _from_file(path, None)
            return _with_hint(w, {"from": f"the hub config of {repo}", **hint}, spec)
    mode = "HF_HUB_OFFLINE is set" if hub_offline() else "and could not be downloaded"
    raise InitError(
        f"--init {spec}: {' / '.join(files)} of {repo} not in the Hugging Face cache {hub_cache_dir()} ({mode}); "
        f"fill it on a machine with internet (`hf download {repo} {files[0]}`) and copy the cache here, "
        "or point HF_HUB_CACHE at a copy"
    )
