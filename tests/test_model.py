"""LS-ViT: identity start, timm loading, motion learning, checkpointing, autocast, compile."""

import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

import lsvit  # noqa: F401  registers the models
from lsvit.trainer.lsvit import LSViT, ModelConfigError

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5)


def tiny(name: str = "lsvit_tiny_patch16_224", num_frames: int = 4, **kw) -> LSViT:
    torch.manual_seed(0)
    return timm.create_model(name, num_frames=num_frames, **{**TINY, **kw})


def clip(b: int = 2, t: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(1))


def motion_params(model: LSViT) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if n.startswith("smif.") or ".lmi." in n}


def test_presets_registered_with_vit_dims() -> None:
    names = set(timm.list_models("lsvit_*")) | set(timm.list_models("vit_frameavg_*"))
    dims = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}
    for size, (dim, depth, heads) in dims.items():
        for prefix, motion in (("lsvit", True), ("vit_frameavg", False)):
            assert f"{prefix}_{size}_patch16_224" in names
            with torch.device("meta"):
                m = timm.create_model(f"{prefix}_{size}_patch16_224")
            assert (m.embed_dim, len(m.blocks), m.blocks[0].attn.num_heads) == (dim, depth, heads)
            assert (m.num_classes, m.num_frames, bool(motion_params(m))) == (51, 16, motion)


def test_identity_start_equals_frame_averaged_timm_vit() -> None:
    model = tiny().eval()
    vit = timm.create_model("vit_tiny_patch16_224", **TINY).eval()
    missing, unexpected = vit.load_state_dict(model.state_dict(), strict=False)
    assert not missing and set(unexpected) == set(motion_params(model))
    x = clip()
    with torch.no_grad():
        expected = torch.stack([vit(x[:, t]) for t in range(x.shape[1])]).mean(0)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        baseline = tiny("vit_frameavg_tiny_patch16_224").eval()
        baseline.load_state_dict(vit.state_dict())
        torch.testing.assert_close(baseline(x), expected, rtol=1e-5, atol=1e-5)


def test_smif_on_patches_equals_fusing_the_pixels() -> None:
    model = tiny()
    with torch.no_grad():
        model.smif.alpha.fill_(0.7)
        model.smif.weight.copy_(torch.tensor([0.3, -1.0, 0.5, 2.0]))
        x = clip()
        B, T = x.shape[:2]
        fused = x + 0.7 * model.smif.motion(x)  # (B, T, C, H, W): the definition, in pixel space
        pixels = model.patch_embed(fused.flatten(0, 1))  # (B*T, P, D)
        patches = model.smif(model.patch_embed(x.flatten(0, 1)).view(B, T, -1, 64)).flatten(0, 1)
    torch.testing.assert_close(patches, pixels, rtol=1e-5, atol=1e-5)


def test_smif_motion_is_temporal_slope_and_edge_padded() -> None:
    smif = tiny(num_frames=6).smif
    ramp = torch.arange(6.0).view(1, 6, 1).expand(1, 6, 3) * 2.0  # x_t = 2t
    m = smif.motion(ramp)[0, :, 0]
    # Interior frames see all 4 neighbours: the least-squares slope start gives exactly dx/dt = 2.
    torch.testing.assert_close(m[2:4], torch.full((2,), 2.0))
    assert 0 < m[0] < 2 and 0 < m[-1] < 2  # missing neighbours contribute zero difference
    assert smif.motion(torch.ones(1, 6, 3)).abs().max() < 1e-6  # a still clip has no motion


def test_motion_parameters_receive_gradient() -> None:
    model = tiny()
    x, y = clip(), torch.tensor([1, 3])
    F.cross_entropy(model(x), y).backward()
    params = motion_params(model)
    gates = ["smif.alpha"] + [n for n in params if n.endswith("gate.fc2.weight")]
    for name in gates:  # zero-initialised, yet they learn from step 0
        assert params[name].grad.abs().sum() > 0, name
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for name, p in params.items():  # once the gates open, the whole of each module learns
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.fixture(scope="module")
def vit_checkpoints(tmp_path_factory) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A randomly initialised timm vit_tiny_patch16_224 state dict, saved as .pth and .safetensors."""
    torch.manual_seed(0)
    sd = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()
    root = tmp_path_factory.mktemp("vit")
    torch.save(sd, root / "vit.pth")
    safetensors.torch.save_file(sd, root / "vit.safetensors")
    return sd, {suffix: str(root / f"vit{suffix}") for suffix in (".pth", ".safetensors")}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_plain_timm_vit_checkpoint(vit_checkpoints, suffix: str) -> None:
    sd, paths = vit_checkpoints
    overlay = dict(file=paths[suffix])

    model = timm.create_model(
        "lsvit_tiny_patch16_224",
        pretrained=True,
        pretrained_cfg_overlay=overlay,
        num_classes=1000,
        num_frames=2,
    )
    loaded = model.state_dict()
    for k, v in sd.items():  # every ViT weight, the head included
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)
    assert model.smif.alpha == 0 and all(b.lmi.gate.fc2.weight.abs().sum() == 0 for b in model.blocks)

    small = timm.create_model(
        "lsvit_tiny_patch16_224",
        pretrained=True,
        pretrained_cfg_overlay=overlay,
        num_classes=7,
        img_size=32,
        num_frames=2,
    )
    assert small.head.weight.shape == (7, 192)  # ImageNet head dropped, fresh 7-class head
    assert not torch.equal(small.head.weight.data, sd["head.weight"][:7])
    pos = resample_abs_pos_embed(sd["pos_embed"], new_size=(2, 2), old_size=(14, 14), num_prefix_tokens=1)
    torch.testing.assert_close(small.pos_embed.data, pos)  # 14x14 grid resized to 2x2
    torch.testing.assert_close(small.blocks[3].attn.qkv.weight.data, sd["blocks.3.attn.qkv.weight"])


def test_grad_checkpointing_gives_same_outputs_and_gradients() -> None:
    x, y = clip(), torch.tensor([0, 4])
    results = []
    for enable in (False, True):
        model = tiny()
        with torch.no_grad():  # open the gates so that the motion paths are exercised too
            model.smif.alpha.fill_(0.5)
            for p in motion_params(model).values():
                p.add_(0.05)
        model.set_grad_checkpointing(enable)
        out = model(x)
        F.cross_entropy(out, y).backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, msg=name)


def test_bf16_autocast_on_cpu() -> None:
    model = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.smif.alpha.grad != 0


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ModelConfigError, match="smif_window=4"):
        tiny(smif_window=4)
    with pytest.raises(ModelConfigError, match="num_frames=4"):
        tiny()(clip(t=5))
    assert tiny()(clip(t=3)).shape == (2, 5)  # shorter clips are fine


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    model = tiny(depth=1).eval()  # one block keeps inductor's compile time down
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_forward_backward(dtype: torch.dtype) -> None:
    model = tiny().cuda()
    with torch.autocast("cuda", dtype=dtype):
        loss = F.cross_entropy(model(clip().cuda()), torch.tensor([1, 2], device="cuda"))
    loss.backward()
    assert torch.isfinite(loss) and model.smif.alpha.grad != 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


DIRECTIONS = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # right, left, down, up


def moving_blobs(
    n: int, g: torch.Generator, frames: int = 8, size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of one Gaussian blob moving 2 px a frame in one of 4 directions (the label), plus noise."""
    labels = torch.randint(0, 4, (n,), generator=g)
    step = DIRECTIONS[labels] * 2.0  # (n, 2) as (dx, dy)
    travel = 2.0 * (frames - 1)
    start = 5 + torch.rand(n, 2, generator=g) * (size - 10 - travel)
    start = torch.where(step < 0, start + travel, start)  # the whole path stays inside the frame
    pos = start[:, None] + step[:, None] * torch.arange(frames)[None, :, None]  # (n, T, 2)
    c = torch.arange(size, dtype=torch.float32)
    gx = torch.exp(-((c - pos[..., :1]) ** 2) / 12.5)  # (n, T, W), sigma 2.5 px
    gy = torch.exp(-((c - pos[..., 1:]) ** 2) / 12.5)  # (n, T, H)
    img = gy[..., :, None] * gx[..., None, :] + 0.05 * torch.randn(n, frames, size, size, generator=g)
    return img[:, :, None].expand(-1, -1, 3, -1, -1).contiguous(), labels  # (n, T, 3, H, W)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_lsvit_learns_motion_direction_that_frame_averaging_cannot() -> None:
    g = torch.Generator().manual_seed(0)
    x_train, y_train = moving_blobs(1024, g)
    x_test, y_test = moving_blobs(128, g)
    # Each test clip with its time reversal: the same frames, the opposite direction. A frame average
    # gives both the same prediction, so it is right on at most half of them, whatever it learns.
    x_test, y_test = torch.cat([x_test, x_test.flip(1)]), torch.cat([y_test, y_test ^ 1])
    acc = {}
    for name in ("lsvit_tiny_patch16_224", "vit_frameavg_tiny_patch16_224"):
        model = tiny(name, num_frames=8, num_classes=4)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        for _ in range(250):
            idx = torch.randint(0, len(x_train), (32,), generator=g)
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc[name] = (model.eval()(x_test).argmax(1) == y_test).float().mean().item()
    print(f"held-out accuracy: {acc}")
    assert acc["lsvit_tiny_patch16_224"] >= 0.9, acc
    assert acc["vit_frameavg_tiny_patch16_224"] <= 0.5 + 1 / len(y_test), acc
