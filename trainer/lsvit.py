"""LS-ViT: a per-frame ViT with short- and long-term motion modules, registered with timm.

Clips are (B, T, 3, H, W) and the output is (B, num_classes). Every frame goes through timm's ViT
(PatchEmbed, class token, position embedding, ``Block``); the class tokens are averaged over the frames.

SMIF (short-term motion, before the patch embedding): for every frame, the differences to the other frames of
a small window (default 5: offsets -2, -1, +1, +2; edge-padded in time, so a neighbour beyond the clip's end
gives a zero difference) are weighed by learnt per-offset taps into a motion map, i.e. a temporal conv over
the frames, ``m_t = sum_k w_k (x_{t+k} - x_t)``, fused into the frame as ``x_t + alpha * m_t``. The patch
embedding is linear and each row of the filter sums to zero (its bias cancels), so
``PatchEmbed(x_t + alpha * m_t) = P_t + alpha * sum_k w_k (P_{t+k} - P_t)`` with ``P = PatchEmbed(x)``: SMIF is
applied to the embedded patches, which gives the same tokens as fusing the pixels at a fraction of the cost
(no second pixel-space pass and no gradient through the patch convolution's input).

LMI (long-term motion, at the start of every block): the tokens of each frame are mean-pooled to
(B, T, D); each frame's differences to all T frames of the clip are weighed by a learnt per-channel weight
of their signed temporal offset (so the direction of time matters), and a bottleneck MLP turns the result
into a sigmoid channel gate that excites the frame's tokens as a residual: ``x + x * (2 * sigmoid(z) - 1)``.

Identity start: ``alpha = 0`` and the gate MLP's last layer is zero (``z = 0``, so the gate is 0), hence an
untrained LS-ViT is exactly a frame-averaged ViT and plain ImageNet ViT weights are a safe starting point.
The zero-initialised parameters still get gradient (``alpha`` through the motion map, the gate's last layer
through its input), and the rest of each module does from the first update on.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm, Mlp, PatchEmbed, calculate_drop_path_rates, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._manipulate import named_apply
from timm.models.vision_transformer import Block, init_weights_vit_timm
from timm.models.vision_transformer import checkpoint_filter_fn as _vit_filter_fn

from lsvit.pipeline.errors import LsvitError

__all__ = ["LMI", "SMIF", "LSViT", "LSViTBlock", "ModelConfigError", "checkpoint_filter_fn"]

_MOTION_KEYS = ("smif.", ".lmi.")  # state-dict keys that a plain ViT checkpoint lacks


class ModelConfigError(LsvitError, ValueError):
    """An LS-ViT hyper-parameter is out of range."""


class SMIF(nn.Module):
    """Short-term motion: adds ``alpha`` times a learnt mix of each frame's differences to its neighbours."""

    def __init__(self, window: int = 5) -> None:
        super().__init__()
        if window < 3 or window % 2 == 0:
            raise ModelConfigError(f"smif_window={window} is invalid; use an odd number >= 3 (e.g. 3, 5, 7)")
        r = window // 2
        self.offsets = [k for k in range(-r, r + 1) if k != 0]
        self.weight = nn.Parameter(torch.empty(len(self.offsets)))  # w_k, one tap per neighbour offset
        self.alpha = nn.Parameter(torch.zeros(()))

    def init_weights(self) -> None:
        # An odd start (the least-squares temporal slope) so that the motion map tells the direction of time
        # from step 0: with symmetric taps it would not, alpha would have no reason to grow, nor the taps a
        # gradient to break the symmetry.
        k = torch.tensor(self.offsets, dtype=self.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(k / k.square().sum())
        nn.init.zeros_(self.alpha)  # identity start

    def motion(self, x: torch.Tensor) -> torch.Tensor:
        """Motion map ``m_t = sum_k w_k (x_{t+k} - x_t)`` of any (B, T, ...) tensor (frames or patches)."""
        T = x.shape[1]
        t = torch.arange(T, device=x.device)
        eye = torch.eye(T, device=x.device, dtype=x.dtype)
        # Row t of eye[clamp(t + k)] picks frame t + k; clamping replicates the end frames (zero difference).
        shifts = torch.stack([eye[(t + k).clamp(0, T - 1)] - eye for k in self.offsets])  # (K, T, T)
        filt = torch.einsum("k,kts->ts", self.weight.to(x.dtype), shifts)  # (T, T), rows sum to 0
        return torch.einsum("ts,bs...->bt...", filt, x)  # (B, T, ...)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha.to(x.dtype) * self.motion(x)  # (B, T, ...)


class LMI(nn.Module):
    """Long-term motion: a channel gate from each frame's pooled token differences to the whole clip."""

    def __init__(self, dim: int, num_frames: int, reduction: int = 4, act_layer=nn.GELU) -> None:
        super().__init__()
        self.num_frames = num_frames
        # offset_weight[s - t + num_frames - 1, d]: weight of (frame s - frame t) in frame t's descriptor.
        self.offset_weight = nn.Parameter(torch.empty(2 * num_frames - 1, dim))
        self.gate = Mlp(dim, hidden_features=max(dim // reduction, 1), out_features=dim, act_layer=act_layer)

    def init_weights(self) -> None:
        # Half the channels start as the clip-wide temporal slope (odd in the offset, so direction-aware, see
        # SMIF.init_weights), half as the frame's mean difference to the clip.
        o = torch.arange(1 - self.num_frames, self.num_frames, dtype=self.offset_weight.dtype)  # (2T-1,)
        with torch.no_grad():
            self.offset_weight[:, 0::2] = (o / o.square().sum().clamp(min=1))[:, None]
            self.offset_weight[:, 1::2] = 1.0 / self.num_frames
        trunc_normal_(self.gate.fc1.weight, std=0.02)
        nn.init.zeros_(self.gate.fc1.bias)
        nn.init.zeros_(self.gate.fc2.weight)  # gate == 0: identity start
        nn.init.zeros_(self.gate.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        # Pooling is linear, so pooling first and differencing after equals pooling the token differences.
        # All tokens are pooled: slicing off the class token would cost a full-size copy in the backward pass.
        p = x.mean(2)  # (B, T, D)
        t = torch.arange(T, device=x.device)
        w = self.offset_weight[t[None, :] - t[:, None] + self.num_frames - 1]  # (T, T, D): [t, s] -> s - t
        # sum_s w[t, s] * (p_s - p_t) without materialising the (B, T, T, D) differences.
        m = torch.einsum("tsd,bsd->btd", w.to(p.dtype), p) - p * w.sum(1).to(p.dtype)  # (B, T, D)
        gate = 2 * torch.sigmoid(self.gate(m)) - 1  # (B, T, D), in (-1, 1)
        return x * (1 + gate).unsqueeze(2)  # x + x * gate in one pass; (B, T, 1, D) broadcast over tokens


class LSViTBlock(Block):
    """timm's ViT ``Block`` on (B, T, N, D) clips: LMI, then attention and MLP within each frame.

    Stochastic depth (DropPath) is drawn per frame, as the block runs on the (B*T, N, D) frames.
    """

    def __init__(
        self, dim: int, num_heads: int, num_frames: int, lmi: bool = True, lmi_reduction: int = 4, **kw
    ) -> None:
        super().__init__(dim, num_heads, **kw)
        self.lmi = LMI(dim, num_frames, lmi_reduction) if lmi else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lmi(x)  # (B, T, N, D)
        return super().forward(x.flatten(0, 1)).view_as(x)  # (B*T, N, D) -> (B, T, N, D)


class LSViT(nn.Module):
    """LS-ViT (or, with ``smif=False, lmi=False``, a frame-averaged ViT) for (B, T, C, H, W) clips."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 51,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_frames: int = 16,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        smif: bool = True,
        lmi: bool = True,
        smif_window: int = 5,
        lmi_reduction: int = 4,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ModelConfigError(
                f"num_frames={num_frames} is invalid; use a positive frame count (e.g. 16)"
            )
        if lmi_reduction < 1 or embed_dim // lmi_reduction < 1:
            raise ModelConfigError(f"lmi_reduction={lmi_reduction} is invalid; use 1..embed_dim (e.g. 4)")
        if embed_dim % num_heads:
            raise ModelConfigError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.no_embed_class = False  # read by timm's checkpoint filter
        self.grad_checkpointing = False

        self.smif = SMIF(smif_window) if smif else nn.Identity()
        self.patch_embed = PatchEmbed(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )
        self.cls_token = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.empty(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        dpr = calculate_drop_path_rates(drop_path_rate, depth)
        kw = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate, attn_drop=attn_drop_rate)
        kw.update(num_frames=num_frames, lmi=lmi, lmi_reduction=lmi_reduction)
        self.blocks = nn.Sequential(
            *[LSViTBlock(embed_dim, num_heads, drop_path=dpr[i], depth=i, **kw) for i in range(depth)]
        )
        self.norm = LayerNorm(embed_dim)  # timm ViT's default norm layer
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        # Depth-first: Linear layers get timm's ViT init, then SMIF/LMI.init_weights zero their gates.
        named_apply(partial(init_weights_vit_timm, needs_reset=False), self)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "smif.alpha"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^cls_token|pos_embed|patch_embed|smif",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool not in (None, "token"):
            raise ModelConfigError(f"global_pool={global_pool!r} is not supported; LS-ViT pools 'token'")
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B*T, N, D)
        return self.pos_drop(x + self.pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) clips -> normalised tokens (B, T, N, D), N = 1 + patches."""
        B, T = x.shape[:2]
        if x.shape[1] > self.num_frames:
            raise ModelConfigError(
                f"clip has T={T} frames but the model was built for num_frames={self.num_frames}"
            )
        x = self.patch_embed(x.flatten(0, 1))  # (B*T, C, H, W) -> (B*T, P, D), P patches
        # SMIF on the patches equals SMIF on the pixels: the patch embedding is linear (no norm layer).
        x = self.smif(x.view(B, T, *x.shape[1:])).flatten(0, 1)  # (B, T, P, D) -> (B*T, P, D)
        x = self._pos_embed(x)  # (B*T, N, D), N = 1 + P
        x = x.view(B, T, *x.shape[1:])  # (B, T, N, D)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, T, N, D) -> logits (B, num_classes), or pooled features (B, D) if ``pre_logits``."""
        x = self.head_drop(x[:, :, 0].mean(1))  # (B, D): class tokens averaged over the frames
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: LSViT) -> dict[str, torch.Tensor]:
    """Adapts a timm ViT (or LS-ViT) state dict to ``model``.

    timm's ViT filter resizes the position embedding (and patch kernel) to the model; the motion parameters a
    plain ViT lacks are taken from the model's own identity initialisation, so the trunk still loads strictly.

    Args:
        state_dict: A timm ``VisionTransformer`` or ``LSViT`` state dict.
        model: The model it is loaded into.

    Returns:
        The state dict to load.
    """
    out = _vit_filter_fn(state_dict, model)
    for k, v in model.state_dict().items():
        if k not in out and any(m in k for m in _MOTION_KEYS):
            out[k] = v
    return out


# num_classes / input_size describe the source weights (timm's ImageNet ViTs): their head is dropped when
# the model's class count differs. Pass pretrained_cfg_overlay=dict(file=..., num_classes=51) for LS-ViT's own.
_CFG = dict(url="", num_classes=1000, input_size=(3, 224, 224), crop_pct=0.9, interpolation="bicubic")
_CFG.update(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj")
_CFG.update(classifier="head", fixed_input_size=True, license="apache-2.0", paper_name="LS-ViT")
_PRESETS = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}
default_cfgs = generate_default_cfgs(
    {f"{p}_{s}_patch16_224": dict(_CFG) for p in ("lsvit", "vit_frameavg") for s in _PRESETS}
)


def _create(variant: str, pretrained: bool, motion: bool, **kwargs) -> LSViT:
    size = variant.split("_")[-3]
    dim, depth, heads = _PRESETS[size]
    args = dict(patch_size=16, embed_dim=dim, depth=depth, num_heads=heads, num_classes=51)
    if not motion:
        args.update(smif=False, lmi=False)
    return build_model_with_cfg(
        LSViT, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **dict(args, **kwargs)
    )


@register_model
def lsvit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> LSViT:
    """LS-ViT-Ti/16 (ViT-Tiny trunk: 192 dim, 12 blocks, 3 heads)."""
    return _create("lsvit_tiny_patch16_224", pretrained, True, **kwargs)


@register_model
def lsvit_small_patch16_224(pretrained: bool = False, **kwargs) -> LSViT:
    """LS-ViT-S/16 (ViT-Small trunk: 384 dim, 12 blocks, 6 heads)."""
    return _create("lsvit_small_patch16_224", pretrained, True, **kwargs)


@register_model
def lsvit_base_patch16_224(pretrained: bool = False, **kwargs) -> LSViT:
    """LS-ViT-B/16 (ViT-Base trunk: 768 dim, 12 blocks, 12 heads)."""
    return _create("lsvit_base_patch16_224", pretrained, True, **kwargs)


@register_model
def vit_frameavg_tiny_patch16_224(pretrained: bool = False, **kwargs) -> LSViT:
    """Frame-averaged ViT-Ti/16 baseline (LS-ViT without SMIF and LMI)."""
    return _create("vit_frameavg_tiny_patch16_224", pretrained, False, **kwargs)


@register_model
def vit_frameavg_small_patch16_224(pretrained: bool = False, **kwargs) -> LSViT:
    """Frame-averaged ViT-S/16 baseline (LS-ViT without SMIF and LMI)."""
    return _create("vit_frameavg_small_patch16_224", pretrained, False, **kwargs)


@register_model
def vit_frameavg_base_patch16_224(pretrained: bool = False, **kwargs) -> LSViT:
    """Frame-averaged ViT-B/16 baseline (LS-ViT without SMIF and LMI)."""
    return _create("vit_frameavg_base_patch16_224", pretrained, False, **kwargs)
