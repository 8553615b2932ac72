"""``--init``: map pretrained weights onto a freshly built model, and say exactly what happened.

Steps: unwrap the usual containers (``state_dict``, ``model``, ``module``), strip the usual prefixes
(``module.``, ``model.``, ``backbone.``, ``encoder.``: mmaction2, VideoMAE, DDP), run timm's ViT
``checkpoint_filter_fn`` (resamples the position embedding and patch kernel to the model's grid, converts
CLIP/DINOv2 layouts), then compare tensor by tensor. The trunk (patch embedding, class token, position
embedding, blocks, final norm) must load completely: a missing or mismatched trunk tensor, or a source
tensor with no place in the model (other than a classifier), stops with :class:`InitError` naming them,
unless ``partial`` (``--init-partial``), which loads what fits and lists what stayed random. The motion
modules (SMIF, LMI) start at identity and the head is new when the source has none of the model's size.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from lsvit.trainer.pretrained import InitError, Weights, read_weights

CONTAINERS = ("state_dict", "model", "module")
PREFIXES = ("module.", "model.", "backbone.", "encoder.")
TRUNK = re.compile(r"^(patch_embed\.|cls_token$|pos_embed$|blocks\.\d+\.|norm\.)")
CLASSIFIER = re.compile(r"^(head|head_dist|pre_logits|fc_cls|cls_head)\.")
_MOTION = ("smif.", ".lmi.")


def is_motion(key: str) -> bool:
    """A parameter of the motion modules, which plain ViT weights lack (they start at identity)."""
    return key.startswith(_MOTION[0]) or _MOTION[1] in key


@dataclass
class InitReport:
    """What ``--init`` did to the model."""

    label: str
    trunk_total: int
    trunk_loaded: int = 0
    missing: list[str] = field(default_factory=list)  # model trunk tensors the source lacks
    mismatched: list[str] = field(default_factory=list)  # "key (source shape) vs (model shape)"
    unexpected: list[str] = field(default_factory=list)  # source tensors with no place in the model
    new: list[str] = field(default_factory=list)  # modules started fresh by design
    dropped: list[str] = field(default_factory=list)  # source parts left out by design
    resized: list[str] = field(default_factory=list)
    weights: Weights | None = None

    @property
    def complete(self) -> bool:
        return not (self.missing or self.mismatched or self.unexpected)

    def problems(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing trunk tensors {summarize(self.missing)} ({len(self.missing)})")
        if self.mismatched:
            more = f" and {len(self.mismatched) - 3} more" if len(self.mismatched) > 3 else ""
            parts.append(f"shapes differ: {'; '.join(self.mismatched[:3])}{more}")
        if self.unexpected:
            parts.append(
                f"source tensors with no place in the model {summarize(self.unexpected)} ({len(self.unexpected)})"
            )
        return "; ".join(parts)

    def line(self) -> str:
        """One line for the log, e.g. ``init: 150/150 trunk tensors from X; new: ...; dropped: ...``."""
        out = f"init: {self.trunk_loaded}/{self.trunk_total} trunk tensors from {self.label}"
        for name, items in (("new", self.new), ("dropped", self.dropped), ("resized", self.resized)):
            if items:
                out += f"; {name}: {', '.join(items)}"
        if not self.complete:
            out += f"; stayed random (--init-partial): {self.problems()}"
        return out


def summarize(keys: list[str]) -> str:
    """Module names of state-dict keys, numbered runs collapsed: ``blocks.0-11, norm``."""
    mods: list[str] = []
    for k in keys:
        parts = k.split(".")
        mod = ".".join(parts[:2]) if parts[0] == "blocks" and len(parts) > 2 else parts[0]  # which blocks
        if mod not in mods:
            mods.append(mod)
    runs: dict[str, list[int]] = {}
    out: list[str] = []
    for m in mods:
        if g := re.fullmatch(r"(.*?)(\d+)", m):
            if g[1] not in runs:
                runs[g[1]] = []
                out.append(g[1])
            runs[g[1]].append(int(g[2]))
        else:
            out.append(m)
    return ", ".join(_ranges(o, runs[o]) if o in runs else o for o in out)


def _ranges(stem: str, nums: list[int]) -> str:
    nums, spans = sorted(set(nums)), []
    for n in nums:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return stem + ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def unwrap(obj: Any) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of a possibly wrapped and prefixed state dict, and the keys left out.

    Args:
        obj: A loaded checkpoint: a state dict, or a dict holding one under a container key.

    Returns:
        ``(state dict with prefixes stripped, dropped keys)``: keys outside the chosen prefix (e.g. an
        mmaction2 ``cls_head.`` next to ``backbone.``) are dropped.
    """
    while isinstance(obj, dict):
        inner = next((obj[k] for k in CONTAINERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        return {}, []
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            inside = {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}
            if inside and (len(inside) == len(sd) or any(TRUNK.match(k) for k in inside)):
                dropped += [k for k in sd if not k.startswith(p)]
                sd, changed = inside, True
                break
    return sd, dropped


def load_init(model: torch.nn.Module, spec: str, partial: bool = False) -> InitReport:
    """Loads ``--init`` weights into ``model`` (in place).

    Args:
        model: A freshly built ViT-shaped model (timm ViT key names).
        spec: What :func:`lsvit.trainer.pretrained.read_weights` accepts.
        partial: Load what fits even if trunk tensors are missing or mismatched.

    Returns:
        The report (``report.line()`` is what to print; ``report.weights`` carries the normalisation hint).

    Raises:
        InitError: Unreadable weights, or an incomplete trunk without ``partial``.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    weights = read_weights(spec, model)
    sd, dropped = unwrap(weights.state_dict)
    weights.state_dict = {}  # the tensors live on in sd only
    before = {k: tuple(sd[k].shape) for k in ("pos_embed", "patch_embed.proj.weight") if k in sd}
    try:
        sd = checkpoint_filter_fn(sd, model)
    except Exception as e:  # timm's converters assume ViT-like tensors; anything else fails in many ways
        raise InitError(
            f"--init {weights.label}: timm's ViT filter cannot adapt it ({str(e).splitlines()[0]})"
        ) from e
    target = model.state_dict()
    trunk = [k for k in target if TRUNK.match(k) and not is_motion(k)]
    report = InitReport(weights.label, len(trunk), weights=weights)
    if dropped:
        report.dropped.append(summarize(dropped))
    for k, (old, new) in {k: (v, tuple(sd[k].shape)) for k, v in before.items() if k in sd}.items():
        if old != new and k in target and new == tuple(target[k].shape):
            what = (
                f"grid {_grid(old, model)} -> {_grid(new, model)}"
                if k == "pos_embed"
                else f"kernel {old[-2:]} -> {new[-2:]}"
            )
            report.resized.append(f"{k.split('.')[0]} {what}")
    loadable: dict[str, torch.Tensor] = {}
    source_head = None
    for k, v in sd.items():
        if k in target and tuple(v.shape) == tuple(target[k].shape):
            loadable[k] = v
        elif CLASSIFIER.match(k):
            source_head = source_head or (v.shape[0] if k.endswith((".weight", ".bias")) else None)
        elif k in target:
            report.mismatched.append(f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}")
        else:
            report.unexpected.append(k)
    if source_head is not None:
        report.dropped.append(f"head ({source_head} classes)")
    motion_new = list(  # in model order: smif, then lmi
        dict.fromkeys(
            "smif" if k.startswith("smif.") else "lmi" for k in target if is_motion(k) and k not in loadable
        )
    )
    if motion_new:
        report.new.append(f"{', '.join(motion_new)} (identity start)")
    head_new = [k for k in target if k.startswith("head.") and k not in loadable]
    if head_new:
        report.new.append(f"head ({getattr(model, 'num_classes', '?')} classes)")
    report.missing = [
        k for k in trunk if k not in loadable and not any(m.startswith(k + " ") for m in report.mismatched)
    ]
    report.trunk_loaded = sum(k in loadable for k in trunk)
    if not report.complete and not partial:
        raise InitError(
            f"--init {weights.label} does not fit {_name(model)} "
            f"({report.trunk_loaded}/{report.trunk_total} trunk tensors): {report.problems()}; pass a timm ViT "
            "checkpoint of this model's width, depth and patch layout, or --init-partial to train with what fits"
        )
    model.load_state_dict(loadable, strict=False)
    return report


def _grid(shape: tuple[int, ...], model: torch.nn.Module) -> str:
    n = shape[1] - getattr(model, "num_prefix_tokens", 1)
    side = math.isqrt(n)
    return f"{side}x{side}" if side * side == n else f"{n} tokens"


def _name(model: torch.nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
