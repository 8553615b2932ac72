"""--decode: the byte-reading loader with device decoding and tensor augmentation, against the CPU path.

The tensor path runs on CPU tensors here (torchcodec's libjpeg-turbo decoder); the same code decodes with
nvJPEG on CUDA, checked by the tests marked ``gpu``.
"""

import dataclasses
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchcodec.decoders import decode_jpeg

import lsvit.trainer.train as tt
from lsvit.trainer import stepper
from lsvit.trainer.augment import AugConfig
from lsvit.trainer.config import ConfigError, TrainConfig
from lsvit.trainer.data import DataConfig, make_loader
from lsvit.trainer.jpegclips import DecodeError, DeviceFrames, JpegClips, resolve_decode
from lsvit.trainer.samples import decode_clip, pick_jpegs, read_shard
from lsvit.trainer.tensoraug import ClipParams, augment_clip, crop_box, draw_params, eval_views

pytest_plugins = ["fixtures_train"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _samples(shards: Path, n: int = 6) -> list[dict]:
    return [
        s
        for _, s in zip(range(n), read_shard(str(next((shards / "split1").glob("test-*.tar")))), strict=False)
    ]


def _loader_frames(shards: Path, **kw) -> tuple[list[torch.Tensor], list[int], list[str]]:
    cfg = DataConfig(shards=shards, split=1, img_size=32, num_frames=8, batch_size=4, workers=0, **kw)
    loader, _ = make_loader(cfg, "test", train=False)
    frames, labels, keys = [], [], []
    for x, y, k in loader:
        frames.append(x.cpu())
        labels += y.tolist()
        keys += k
    return frames, labels, keys


def test_picked_jpegs_are_the_frames_the_cpu_path_decodes(tiny_shards: Path) -> None:
    for s in _samples(tiny_shards, 3):
        frames, label = decode_clip(s, 5)
        jpegs, label2 = pick_jpegs(s, 5)
        assert label == label2 and len(jpegs) == 5
        ours = np.stack([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR_RGB) for j in jpegs])
        np.testing.assert_array_equal(ours, frames)
        # torchcodec's decoder (libjpeg-turbo on CPU, nvJPEG on CUDA) gives the same pixels here
        tc = torch.stack(decode_jpeg(jpegs)).permute(0, 2, 3, 1).numpy()
        assert np.abs(tc.astype(int) - frames).max() <= 1


def test_evaluation_frames_match_the_cpu_path(tiny_shards: Path) -> None:
    cpu, labels, keys = _loader_frames(tiny_shards)
    dev, labels2, keys2 = _loader_frames(tiny_shards, decode_device="cpu")
    assert (labels, keys) == (labels2, keys2)
    a, b = torch.cat(cpu).int(), torch.cat(dev).int()
    assert a.shape == b.shape == (20, 8, 3, 32, 32) and b.dtype == torch.int32
    diff = (a - b).abs().float()
    assert diff.mean() < 1.0 and torch.quantile(diff.flatten(), 0.99) <= 3, (diff.mean(), diff.max())


def test_multi_view_evaluation_matches_the_cpu_path(tiny_shards: Path) -> None:
    cpu, _, _ = _loader_frames(tiny_shards, test_views=(2, 3))
    dev, _, _ = _loader_frames(tiny_shards, test_views=(2, 3), decode_device="cpu")
    a, b = torch.cat(cpu).float(), torch.cat(dev).float()
    assert a.shape == b.shape == (20, 6, 8, 3, 32, 32)
    assert (a - b).abs().mean() < 1.0


def test_augmentation_is_clip_consistent_and_seeded() -> None:
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.integers(0, 256, (3, 48, 64), dtype=np.uint8))
    clip = frame.expand(6, -1, -1, -1).contiguous()  # six identical frames
    aug = AugConfig(p_blur=1.0, p_brightness_contrast=1.0, p_hue_saturation=1.0, p_rgb_shift=1.0)
    p = draw_params(aug, 48, 64, torch.Generator().manual_seed(3))
    out = augment_clip(clip, p, 32)
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
    assert all(torch.equal(out[0], o) for o in out[1:])  # one set of parameters for every frame
    assert p == draw_params(aug, 48, 64, torch.Generator().manual_seed(3))
    assert p != draw_params(aug, 48, 64, torch.Generator().manual_seed(4))
    moved = torch.cat([clip[:3], torch.roll(clip[3:], shifts=4, dims=-1)])  # motion from frame 3 on
    out2 = augment_clip(moved, p, 32)
    assert torch.equal(out2[0], out[0]) and not torch.equal(out2[3], out2[0])  # and it survives


def test_augmentation_ops_do_what_they_say() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    base = dict(
        box=(0, 0, 8, 8), blur_sigma=None, flip=False, alpha=None, beta=0.0, hue=None, sat=0.0, rgb=None
    )
    P = ClipParams
    assert torch.equal(augment_clip(x, P(**base), 8), x)  # identity
    assert torch.equal(augment_clip(x, P(**{**base, "flip": True}), 8), x.flip(-1))
    bright = augment_clip(x, P(**{**base, "alpha": 1.0, "beta": 0.2}), 8).int()
    assert torch.equal(bright, (x.int() + 51).clamp(max=255))  # beta is a fraction of 255
    shifted = augment_clip(x, P(**{**base, "rgb": (10.0, 0.0, -10.0)}), 8).int()
    assert torch.equal(shifted[:, 0], (x[:, 0].int() + 10).clamp(max=255))
    assert torch.equal(shifted[:, 2], (x[:, 2].int() - 10).clamp(min=0))
    grey = torch.full((1, 3, 4, 4), 128, dtype=torch.uint8)
    assert torch.equal(
        augment_clip(grey, P(**{**base, "box": (0, 0, 4, 4), "hue": 30.0, "sat": 50.0}), 4), grey
    )
    red = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    red[:, 0] = 200
    # OpenCV hue units: 60 = 120 degrees, red -> green
    green = augment_clip(red, P(**{**base, "box": (0, 0, 4, 4), "hue": 60.0, "sat": 0.0}), 4)
    assert green[0, :, 0, 0].tolist() == [0, 200, 0]


def test_crop_box_within_frame_and_ranges() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = crop_box(240, 320, (0.3, 1.0), (3 / 4, 4 / 3), gen)
        assert top >= 0 and top + h <= 240 and left >= 0 and left + w <= 320
        assert 0.3 * 240 * 320 * 0.9 <= h * w <= 240 * 320
    assert crop_box(10, 1000, (1.0, 1.0), (1.0, 1.0), gen) == (0, 495, 10, 10)  # fallback: centre, clamped


def test_eval_views_centre_crop_of_the_short_side() -> None:
    x = torch.zeros(2, 3, 40, 80, dtype=torch.uint8)
    x[..., 30:50] = 255  # a bright vertical band in the middle
    v = eval_views(x, 20, crops=3)
    assert v.shape == (3, 2, 3, 20, 20)
    assert v[1].float().mean() > v[0].float().mean() and v[1].float().mean() > v[2].float().mean()


def test_device_frames_train_batches_are_reproducible(tiny_shards: Path) -> None:
    jpegs = [pick_jpegs(s, 8)[0] for s in _samples(tiny_shards, 4)]
    dev = DeviceFrames("cpu", 32, 8, train=True, aug=AugConfig())
    a, b, c = dev(JpegClips(jpegs, 7)), dev(JpegClips(jpegs, 7)), dev(JpegClips(jpegs, 8))
    assert a.shape == (4, 8, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resolve_decode(caplog: pytest.LogCaptureFixture) -> None:
    cpu = torch.device("cpu")
    assert resolve_decode("cpu", cpu) == "cpu"
    with caplog.at_level(logging.WARNING):
        assert resolve_decode("auto", cpu) == "cpu"
    assert not caplog.text  # the run header says where decoding runs; falling back on CUDA is what warns
    with pytest.raises(DecodeError, match=r"--decode cuda cannot be used: .*pass --decode cpu or auto"):
        resolve_decode("cuda", cpu)
    with pytest.raises(DecodeError, match="allowed: auto, cpu, cuda"):
        resolve_decode("gpu", cpu)
    with pytest.raises(ConfigError, match="decode"):
        TrainConfig(decode="nvjpeg")


@pytest.mark.slow
def test_training_through_the_byte_path_without_a_sync_per_micro_step(
    tiny_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run with the device path (on the CPU here) and accumulation: host syncs once per update."""
    monkeypatch.setattr(tt, "resolve_decode", lambda decode, device: "cuda")  # decode on ctx.device (cpu)
    syncs = {"n": 0, "on": False}
    for name in ("item", "tolist", "__bool__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *a, _real=real, **k):
            # Calls that read device values; the augmentation's parameter draws (a CPU generator), the
            # optimizer's step counters and the DataLoader's base seed are CPU tensors on a GPU too.
            where = sys._getframe(1).f_code.co_filename.rsplit("/", 1)[-1]
            if syncs["on"] and where not in ("tensoraug.py", "optimizer.py", "adamw.py", "dataloader.py"):
                syncs["n"] += 1
                syncs[where] = syncs.get(where, 0) + 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    real_epoch = stepper.Stepper.train_epoch

    def epoch(self, loader, steps, *a, **k):
        syncs["on"], syncs["n"] = True, 0
        try:
            return real_epoch(self, loader, steps, *a, **k)
        finally:
            syncs["on"] = False
            syncs["steps"], syncs["updates"] = steps, -(-steps // self.cfg.accum_steps)

    monkeypatch.setattr(stepper.Stepper, "train_epoch", epoch)
    cfg = TrainConfig(
        shards=str(tiny_shards), out=str(tmp_path / "run"), model="lsvit_tiny_patch16_224", epochs=1,
        model_kwargs=dict(patch_size=8, embed_dim=32, depth=1, num_heads=2), img_size=32, num_frames=8,
        batch_size=2, accum_steps=2, workers=0, device="cpu", decode="cuda", val_fraction=0.0,
    )  # fmt: skip
    result = tt.train(cfg)
    assert result["epochs"] == 1 and (tmp_path / "run" / "best.pt").exists()
    assert syncs["steps"] >= 4
    assert syncs["n"] <= syncs["updates"] + 1, syncs  # one per update, one at the epoch's end


@pytest.mark.gpu
@needs_cuda
def test_cuda_decode_matches_cpu(tiny_shards: Path) -> None:
    jpegs = [pick_jpegs(s, 8)[0] for s in _samples(tiny_shards, 4)]
    cpu = DeviceFrames("cpu", 32, 8, train=False)(JpegClips(jpegs, 0))
    gpu = DeviceFrames("cuda", 32, 8, train=False)(JpegClips(jpegs, 0))
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    assert (gpu.cpu().float() - cpu.float()).abs().mean() < 2.0  # nvJPEG's IDCT/upsampling differ slightly


@pytest.mark.gpu
@needs_cuda
def test_cuda_loader_yields_device_batches(tiny_shards: Path) -> None:
    assert resolve_decode("auto", torch.device("cuda")) == "cuda"
    cfg = DataConfig(shards=tiny_shards, split=1, img_size=32, num_frames=8, batch_size=4, workers=1)
    loader, steps = make_loader(dataclasses.replace(cfg, decode_device="cuda"), "train", train=True)
    batches = list(loader)
    assert len(batches) == steps and all(
        x.device.type == "cuda" and x.dtype == torch.uint8 for x, _, _ in batches
    )
