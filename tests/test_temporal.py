"""Frame sampling modes and test views: index math on literal lists, the loader's picks, multi-view scores."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lsvit.trainer.clips as clips
from lsvit.pipeline.sampling import sample_indices
from lsvit.pipeline.shardindex import read_index
from lsvit.trainer.augment import eval_transform, jpeg_reduction
from lsvit.trainer.clips import CropViews
from lsvit.trainer.data import DataConfig, make_loader
from lsvit.trainer.distributed import Dist
from lsvit.trainer.evaluate import clip_scores, evaluate, summarize
from lsvit.trainer.preprocess import normalize
from lsvit.trainer.samples import decode_clip, read_shard
from lsvit.trainer.temporal import (
    crop_offsets,
    parse_views,
    random_indices,
    stride_indices,
    train_indices,
    view_indices,
)

pytest_plugins = ["fixtures_train"]


def test_random_takes_one_frame_per_segment_and_covers_them():
    rng = np.random.default_rng(0)
    draws = np.array([random_indices(8, 4, rng) for _ in range(200)])
    for i, (lo, hi) in enumerate([(0, 2), (2, 4), (4, 6), (6, 8)]):
        assert set(draws[:, i]) == set(range(lo, hi))
    assert random_indices(3, 5, rng) == [0, 1, 2, 2, 2]  # short clips pad, as extract does
    assert random_indices(4, 4, rng) == [0, 1, 2, 3]


def test_stride_is_dense_with_a_random_start():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(100):
        idx = stride_indices(32, 8, rng)  # default stride 32 // 8 = 4, start in [0, 3]
        assert np.diff(idx).tolist() == [4] * 7
        starts.add(idx[0])
    assert starts == {0, 1, 2, 3}
    assert stride_indices(8, 3, rng, stride=3) in ([0, 3, 6], [1, 4, 7])
    assert stride_indices(8, 8, rng, stride=2) == [0, 2, 4, 6, 7, 7, 7, 7]  # a span longer than the clip
    assert train_indices("uniform", 16, 8, rng) == sample_indices(16, 8) == [1, 3, 5, 7, 9, 11, 13, 15]
    with pytest.raises(ValueError, match="uniform, random, stride"):
        train_indices("dense", 16, 8, rng)


def test_test_views_interleave_and_one_view_is_uniform():
    assert view_indices(8, 4, 0, 2) == [0, 2, 4, 6]
    assert view_indices(8, 4, 1, 2) == [1, 3, 5, 7]
    assert view_indices(32, 8, 2, 4) == [2, 6, 10, 14, 18, 22, 26, 30]
    assert view_indices(3, 5, 1, 2) == [0, 1, 2, 2, 2]
    for n in range(1, 40):
        for k in (1, 4, 8, 16):
            assert view_indices(n, k, 0, 1) == sample_indices(n, k)
    assert crop_offsets(100, 64, 1) == [18] and crop_offsets(100, 64, 3) == [0, 18, 36]
    assert crop_offsets(64, 64, 3) == [0, 0, 0]
    assert parse_views("2x3") == (2, 3) and parse_views(" 1X1 ") == (1, 1) and parse_views((5, 3)) == (5, 3)
    for bad in ("0x3", "2", "2x", "axb"):
        with pytest.raises(ValueError, match="TxS"):
            parse_views(bad)


def _recorded_picks(monkeypatch, loader) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    real = decode_clip  # the original, also when an earlier spy is still patched in

    def spy(sample, num_frames, reduction=None, pick=None):
        def recording(n: int) -> list[int]:
            seen[sample["__key__"]] = list(pick(n)) if pick is not None else sample_indices(n, num_frames)
            return seen[sample["__key__"]]

        return real(sample, num_frames, reduction, recording)

    monkeypatch.setattr(clips, "decode_clip", spy)
    for _ in loader:
        pass
    return seen


def test_random_sampling_differs_between_epochs_and_eval_is_fixed(tiny_shards, monkeypatch):
    cfg = DataConfig(shards=tiny_shards, img_size=16, num_frames=4, batch_size=4, workers=0, balance="none",
                     frame_sampling="random")  # fmt: skip
    e0 = _recorded_picks(monkeypatch, make_loader(cfg, "train", True, epoch=0)[0])
    e0_again = _recorded_picks(monkeypatch, make_loader(cfg, "train", True, epoch=0)[0])
    e1 = _recorded_picks(monkeypatch, make_loader(cfg, "train", True, epoch=1)[0])
    common = sorted(set(e0) & set(e1))
    assert e0 == e0_again  # the same epoch replays exactly (resume)
    assert sum(e0[k] != e1[k] for k in common) > len(common) // 2
    assert all(lo <= i < lo + 2 for p in e0.values() for lo, i in zip((0, 2, 4, 6), p, strict=True))
    t0 = _recorded_picks(monkeypatch, make_loader(cfg, "test", False, epoch=0)[0])
    t1 = _recorded_picks(monkeypatch, make_loader(cfg, "test", False, epoch=1)[0])
    assert t0 == t1 and set(map(tuple, t0.values())) == {(1, 3, 5, 7)}


class _MeanPixel(torch.nn.Module):
    """A deterministic 'model': class scores from per-channel means and a fixed projection."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 5)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):  # (B, T, 3, H, W)
        return self.proj(x.mean(dim=(1, 3, 4)) * 10)


def _reduce(h: int, w: int) -> int:
    return jpeg_reduction(h, w, 16)  # what the evaluation loader decodes at


def _raw_samples(tiny_shards) -> dict[str, dict]:
    index = read_index(tiny_shards / "split1")
    return {s["__key__"]: s for url, _ in index.shard_urls("test") for s in read_shard(url)}


def test_one_view_equals_single_view_evaluation(tiny_shards):
    kw = dict(shards=tiny_shards, img_size=16, num_frames=4, batch_size=3, workers=0)
    loader, _ = make_loader(DataConfig(**kw, test_views="1x1"), "test", False)
    model, ctx = _MeanPixel(), Dist(torch.device("cpu"))
    prep = lambda x: normalize(x, (0.5,) * 3, (0.5,) * 3)  # noqa: E731
    labels, preds, hits, losses = [], [], [], []
    raw = _raw_samples(tiny_shards)
    for frames, y, keys in loader:
        assert frames.dim() == 5
        for f, k in zip(frames, keys, strict=True):  # today's path: uniform frames, resize + centre crop
            ref = eval_transform(16)(decode_clip(raw[k], 4, _reduce)[0])
            assert torch.equal(f.permute(0, 2, 3, 1), torch.from_numpy(ref))
        logits = model(prep(frames))
        labels += y.tolist()
        preds += logits.argmax(1).tolist()
        hits += (logits.topk(5, 1).indices == y[:, None]).any(1).tolist()
        losses += F.cross_entropy(logits, y, reduction="none").tolist()
    ref = summarize(labels, preds, hits, losses, 5)
    got = evaluate(model, *make_loader(DataConfig(**kw), "test", False), prep, torch.no_grad, 5, ctx)
    assert (got.top1, got.top5, got.n) == (ref.top1, ref.top5, ref.n) and got.loss == pytest.approx(
        ref.loss, 1e-6
    )
    assert np.array_equal(got.confusion, ref.confusion)


def test_two_by_three_views_average_six_softmaxes(tiny_shards):
    cfg = DataConfig(shards=tiny_shards, img_size=16, num_frames=4, batch_size=2, workers=0, test_views="2x3")
    frames, _, keys = next(iter(make_loader(cfg, "test", False)[0]))
    assert frames.shape == (2, 6, 4, 3, 16, 16)
    raw = _raw_samples(tiny_shards)[keys[0]]
    for t in range(2):
        clip = decode_clip(raw, 4, _reduce, lambda n, t=t: view_indices(n, 4, t, 2))[0]
        crops = CropViews(16, 3)(clip)  # (3, T, 16, 16, 3): left, centre, right of the 16x21 resize
        assert len({c.tobytes() for c in crops}) == 3
        for s in range(3):
            assert torch.equal(frames[0, 3 * t + s].permute(0, 2, 3, 1), torch.from_numpy(crops[s]))
    centre = eval_transform(16)(decode_clip(raw, 4, _reduce, lambda n: view_indices(n, 4, 0, 2))[0])
    assert torch.equal(frames[0, 1].permute(0, 2, 3, 1), torch.from_numpy(centre))  # crop 1 of 3 = centre
    model = _MeanPixel()
    prep = lambda x: normalize(x, (0.5,) * 3, (0.5,) * 3)  # noqa: E731
    scores, log_probs = clip_scores(model, frames, prep, torch.no_grad)
    manual = torch.stack([model(prep(frames[:, v])).softmax(1) for v in range(6)]).mean(0)
    assert torch.allclose(scores, manual) and torch.allclose(log_probs.exp(), manual)
    assert not torch.allclose(manual, model(prep(frames[:, 1])).softmax(1))  # the views do differ
