"""trainer.data: streaming loader over tiny contract-conformant shards written with wds.TarWriter."""

import functools
import http.server
import io
import json
import pickle
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from lsvit.pipeline.balance import write_manifests
from lsvit.pipeline.eda import suggest_augmentation
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.sampling import sample_indices
from lsvit.pipeline.shardindex import resolve_split_dir
from lsvit.pipeline.shards import clip_key
from lsvit.trainer.augment import AugConfig, aug_from_eda, eval_transform, jpeg_reduction
from lsvit.trainer.data import DataConfig, make_loader, normalize
from lsvit.trainer.samples import SampleError, decode_clip
from lsvit.trainer.shardset import eval_counts, eval_steps, train_steps, worker_quotas

CLASSES = ["brush_hair", "cartwheel", "catch"]
# subset -> shards -> clips as (class index, clip number); uneven shard sizes on purpose
LAYOUT = {
    "train": [[(0, 0), (0, 1), (1, 0), (0, 2)], [(0, 3), (2, 0), (1, 1)], [(0, 4)]],
    "test": [[(0, 5), (1, 2), (2, 1)], [(1, 3), (2, 2)]],
}
T, IMG = 4, 32


def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class _Touch:
    """Unpickling this creates a file: proves whether the loader ever unpickles a member."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def write_split(root: Path, pickle_target: Path | None = None) -> Path:
    """Writes ``root/split1`` with index.json and manifests; every clip repeats one random 64x48 frame."""
    split_dir = root / "split1"
    split_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards, counts, manifests = [], {}, {}
    for subset, shard_list in LAYOUT.items():
        key_to_class = {}
        for i, clips in enumerate(shard_list):
            name = f"{subset}-{i:06d}.tar"
            with wds.TarWriter(str(split_dir / name)) as w:
                for label, n in clips:
                    cls = CLASSES[label]
                    key = clip_key(cls, f"{cls}_clip{n}.avi")
                    frame = _jpeg(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
                    sample = {
                        "__key__": key,
                        "cls": str(label),
                        "json": json.dumps({"key": key, "label": label}),
                    }
                    sample.update({f"f{j:02d}.jpg": frame for j in range(T)})
                    if pickle_target is not None:
                        sample["pyd"] = pickle.dumps(_Touch(pickle_target))
                    w.write(sample)
                    key_to_class[key] = cls
            shards.append({"url": name, "subset": subset, "count": len(clips)})
        counts[subset] = {c: sum(v == c for v in key_to_class.values()) for c in CLASSES}
        manifests[subset] = write_manifests(split_dir, subset, key_to_class, CLASSES, seed=0)
    index = {
        "version": "1",
        "split": 1,
        "classes": CLASSES,
        "subsets": list(LAYOUT),
        "shards": shards,
        "counts": counts,
        "num_failures": 0,
        "config": {"frames": T},
        "manifests": manifests,
    }
    (split_dir / "index.json").write_text(json.dumps(index))
    return split_dir


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_split(tmp_path_factory.mktemp("shards"))


def cfg(shards, **kw) -> DataConfig:
    base = {"img_size": IMG, "num_frames": T, "batch_size": 2, "workers": 0, "shuffle_buffer": 4}
    return DataConfig(shards=shards, **{**base, **kw})


def keys_of(loader) -> list[str]:
    return [k for _, _, keys in loader for k in keys]


def test_batches_have_shapes_dtypes_and_shared_clip_augmentation(split_dir):
    loader, steps = make_loader(cfg(split_dir.parent, balance="none"), "train", train=True)
    batches = list(loader)
    assert steps == 8 // 2 and len(batches) == steps == len(loader)
    for frames, labels, keys in batches:
        assert frames.shape == (2, T, 3, IMG, IMG) and frames.dtype == torch.uint8
        assert labels.shape == (2,) and labels.dtype == torch.int64 and len(keys) == 2
        # each clip repeats one frame in the shard: one crop/flip/colour draw per clip keeps them equal
        assert torch.equal(frames, frames[:, :1].expand_as(frames))
        assert frames.float().std() > 10  # not blank
        assert frames.stride(2) == 1  # channels-last memory: (B, T, H, W, 3) underneath
        assert normalize(frames, (0.5,) * 3, (0.5,) * 3).stride() == frames.stride()


def test_manifest_counts_are_honoured_over_an_epoch(split_dir):
    for strategy in ("oversample", "undersample", "hybrid"):
        manifest = json.loads((split_dir / f"balanced-{strategy}-train.json").read_text())
        want = {k: d["count"] for k, d in manifest["draws"].items() if d["count"]}
        loader, steps = make_loader(cfg(split_dir, balance=strategy, batch_size=1), "train", train=True)
        assert steps == sum(want.values())
        assert Counter(keys_of(loader)) == want, strategy


def test_epochs_reshuffle(split_dir):
    c = cfg(split_dir, balance="oversample", batch_size=1)
    orders = [keys_of(make_loader(c, "train", True, epoch=e)[0]) for e in (0, 0, 1)]
    assert orders[0] == orders[1] and orders[0] != orders[2]


@pytest.mark.parametrize("workers", [0, 2])  # 3 shards: by shards with 0 workers, by samples with 2
def test_ranks_run_the_same_steps_with_uneven_shards(split_dir, workers):
    c = cfg(split_dir, balance="oversample", workers=workers)  # 15 draws; rank shards hold 10 and 5
    runs = [make_loader(c, "train", True, rank=r, world_size=2) for r in (0, 1)]
    assert [s for _, s in runs] == [15 // 4] * 2
    assert [len(list(loader)) for loader, _ in runs] == [3, 3]


@pytest.mark.parametrize(("world_size", "workers"), [(1, 0), (2, 0), (3, 0), (2, 2)])
def test_eval_covers_every_test_sample_once(split_dir, world_size, workers):
    want = {clip_key(CLASSES[c], f"{CLASSES[c]}_clip{n}.avi") for s in LAYOUT["test"] for c, n in s}
    c = cfg(split_dir, workers=workers)  # 2 test shards: split by shards for 2x1, by samples for 3x1 and 2x2
    runs = [make_loader(c, "test", False, rank=r, world_size=world_size) for r in range(world_size)]
    steps = {s for _, s in runs}
    assert len(steps) == 1
    assert [len(list(loader)) for loader, _ in runs] == [steps.pop()] * world_size
    per_rank = [keys_of(loader) for loader, _ in runs]
    firsts = [k for keys in per_rank for k in dict.fromkeys(keys)]  # padding repeats a rank's own keys
    assert sorted(firsts) == sorted(want)
    if world_size == 1:
        assert len(per_rank[0]) == len(want)


def test_workers_start_after_opencv_ran_threaded_in_the_parent(split_dir):
    """OpenCV's thread pool, once used in the parent, made forked workers hang in cv2.setNumThreads."""
    script = f"""
import cv2, numpy as np
from lsvit.trainer.data import DataConfig, make_loader
img = np.zeros((1500, 1500, 3), np.uint8)
for _ in range(3):
    cv2.GaussianBlur(img, (9, 9), 3)  # parallel: the pool's threads now wait in the parent
c = DataConfig(shards={str(split_dir)!r}, img_size={IMG}, num_frames={T}, batch_size=2, workers=2)
loader, _ = make_loader(c, "test", False)
print(sum(len(keys) for _, _, keys in loader))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["5"], out.stderr[-2000:]


def test_eval_is_deterministic_centre_crop(split_dir):
    a = [f for f, _, _ in make_loader(cfg(split_dir), "test", False)[0]]
    b = [f for f, _, _ in make_loader(cfg(split_dir), "test", False, epoch=3)[0]]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_pickle_members_are_never_unpickled(tmp_path):
    target, proof = tmp_path / "pwned", tmp_path / "proof"
    pickle.loads(pickle.dumps(_Touch(proof)))
    assert proof.exists()  # the payload works when unpickled
    split = write_split(tmp_path / "shards", pickle_target=target)
    assert len(keys_of(make_loader(cfg(split, balance="none"), "train", True)[0])) == 8
    assert not target.exists()


def test_pipe_urls_work(split_dir):
    local = keys_of(make_loader(cfg(split_dir), "test", False)[0])
    piped = keys_of(make_loader(cfg(f"pipe:cat {split_dir.parent}/", split=1), "test", False)[0])
    assert piped == local
    loader, steps = make_loader(cfg(f"pipe:cat {split_dir}/", balance="oversample"), "train", True)
    assert len(list(loader)) == steps == 15 // 2


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset fetches http(s) URLs with curl")
def test_http_urls_work(split_dir):
    handler = functools.partial(_QuietHandler, directory=str(split_dir.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            loader, steps = make_loader(cfg(url, split=1, balance="oversample"), "train", True)
            assert len(list(loader)) == steps == 15 // 2
        finally:
            server.shutdown()


def _copy(split_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(split_dir, tmp_path / "s" / "split1"))


def test_missing_or_mismatched_files_raise(split_dir, tmp_path):
    bad = _copy(split_dir, tmp_path)
    (bad / "balanced-hybrid-train.json").unlink()
    with pytest.raises(LsvitError, match="missing balancing manifest"):
        make_loader(cfg(bad), "train", True)
    make_loader(cfg(bad, balance="none"), "train", True)  # no manifest needed

    m = json.loads((bad / "balanced-oversample-train.json").read_text())
    key = next(iter(m["draws"]))
    m["draws"]["other__clip__00000000"] = m["draws"].pop(key)  # a manifest key absent from the shards
    (bad / "balanced-oversample-train.json").write_text(json.dumps(m))
    with pytest.raises(LsvitError, match=r"missing from balanced-oversample-train\.json"):
        list(make_loader(cfg(bad, balance="oversample", batch_size=1), "train", True)[0])

    m = json.loads((bad / "balanced-undersample-train.json").read_text())
    m["before"]["extra"] = m["after"]["extra"] = 0
    (bad / "balanced-undersample-train.json").write_text(json.dumps(m))
    with pytest.raises(LsvitError, match="classes differ"):
        make_loader(cfg(bad, balance="undersample"), "train", True)

    index = json.loads((bad / "index.json").read_text())
    index["shards"][-1]["count"] += 1  # a stale count: ranks would plan the wrong number of steps
    (bad / "index.json").write_text(json.dumps(index))
    with pytest.raises(LsvitError, match=r"holds 2 samples but index\.json says 3"):
        list(make_loader(cfg(bad), "test", False)[0])

    index["shards"][0]["count"] -= 1  # train-000000 holds 4
    (bad / "index.json").write_text(json.dumps(index))
    with pytest.raises(LsvitError, match=r"train-000000\.tar holds 4 samples but index\.json says 3"):
        list(make_loader(cfg(bad, balance="none", batch_size=1), "train", True)[0])

    (bad / "test-000001.tar").unlink()
    with pytest.raises(LsvitError, match=r"test-000001\.tar listed in index\.json is missing"):
        make_loader(cfg(bad), "test", False)
    with pytest.raises(LsvitError, match="no 'unused' shards"):
        make_loader(cfg(bad), "unused", False)


def test_unsafe_or_malformed_index_is_refused(split_dir, tmp_path):
    bad = _copy(split_dir, tmp_path)
    index = json.loads((bad / "index.json").read_text())
    index["shards"][0]["url"] = "train-000000.tar; touch pwned"  # would run inside a pipe: URL
    (bad / "index.json").write_text(json.dumps(index))
    with pytest.raises(LsvitError, match=r"not a plain \.tar name"):
        make_loader(cfg(f"pipe:cat {bad}/"), "train", True)
    (bad / "index.json").write_text(json.dumps({"classes": CLASSES}))
    with pytest.raises(LsvitError, match="no list of shards"):
        make_loader(cfg(bad), "train", True)


def test_split_resolution(split_dir, tmp_path):
    assert resolve_split_dir(split_dir.parent, None) == split_dir
    assert resolve_split_dir(split_dir, None) == split_dir
    two = tmp_path / "two"
    for n in (1, 2):
        (two / f"split{n}").mkdir(parents=True)
        (two / f"split{n}" / "index.json").write_text("{}")
    with pytest.raises(LsvitError, match="several splits"):
        resolve_split_dir(two, None)
    assert resolve_split_dir(two, 2) == two / "split2"
    with pytest.raises(LsvitError, match="no split3"):
        resolve_split_dir(two, 3)
    with pytest.raises(LsvitError, match="does not exist"):
        resolve_split_dir(tmp_path / "nope", None)


def test_config_validation():
    with pytest.raises(LsvitError, match=r"balance='tilt'; allowed: none, oversample, undersample, hybrid"):
        DataConfig(shards="x", balance="tilt")
    with pytest.raises(LsvitError, match="batch_size=0"):
        DataConfig(shards="x", batch_size=0)
    with pytest.raises(LsvitError, match="hflip"):
        AugConfig(hflip=1.5)
    assert isinstance(DataConfig(shards="pipe:cat x/").shards, str)
    assert isinstance(DataConfig(shards="x").shards, Path)


def test_aug_from_eda():
    stats = {"brightness": {"overall": {"mean": 100.0, "std": 30.0}}, "contrast": {"overall": {"n": 0}}}
    eda = {"stats": stats, "augmentation": {"hue": 5, "blur_sigma": [0.1, 2.5]}}
    aug = aug_from_eda(eda, overrides={"p_blur": 0.0})
    assert (aug.brightness, aug.hue, aug.p_blur, aug.blur_sigma) == (0.3, 5, 0.0, (0.1, 2.5))
    assert aug.contrast == AugConfig().contrast  # no usable stats: default
    assert aug_from_eda({"stats": stats, "augmentation": {"brightness": 0.1}}).brightness == 0.1
    rng = np.random.default_rng(0)  # what `lsvit-pipeline eda` suggests must be accepted as is
    table = {n: rng.uniform(20, 200, 50) for n in ("brightness", "contrast", "blur")}
    table.update({f"{c}_mean": table["brightness"] + rng.normal(0, 5, 50) for c in ("red", "green", "blue")})
    assert aug_from_eda({"augmentation": suggest_augmentation(table)}) != AugConfig()
    with pytest.raises(LsvitError, match="unknown augmentation setting"):
        aug_from_eda(None, {"hue_limit": 3})


def test_step_math_on_literals():
    assert train_steps(15, 2, 2) == 3
    with pytest.raises(LsvitError):
        train_steps(3, 2, 2)
    assert worker_quotas(7, 3) == [3, 2, 2] and worker_quotas(2, 0) == [2]
    assert eval_counts([3, 2, 4], 2, 1, by_samples=False) == [[7], [2]]
    assert eval_counts([5], 2, 2, by_samples=True) == [[2, 1], [1, 1]]
    assert eval_steps([[7], [2]], 2) == 4 and eval_steps([[2, 1], [1, 1]], 2) == 2
    with pytest.raises(LsvitError):
        eval_steps([[3], [0]], 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_batches_normalise_on_the_gpu(split_dir):
    loader, _ = make_loader(cfg(split_dir, workers=1), "test", False)  # pin_memory defaults to on with CUDA
    frames, _, _ = next(iter(loader))
    assert frames.is_pinned()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    on_gpu = normalize(frames, mean, std, device="cuda")
    assert on_gpu.is_cuda and torch.allclose(on_gpu.cpu(), normalize(frames, mean, std), atol=1e-5)


def test_normalize():
    x = torch.full((1, 2, 3, 4, 4), 255, dtype=torch.uint8)
    y = normalize(x, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.5))
    assert y.dtype == torch.float32 and torch.allclose(y[0, 0, :, 0, 0], torch.tensor([2.0, 1.0, 1.0]))


def test_jpeg_reduction_on_literals():
    # eval: the short side must stay >= img_size (240 / 2 = 120 >= 64, 240 / 4 = 60 < 64)
    assert [jpeg_reduction(240, 320, n) for n in (224, 112, 64, 56, 32, 30, 300)] == [1, 2, 2, 4, 4, 8, 1]
    # train: smallest crop side sqrt(0.6 * 240 * 320 * 3/4) = 185.9 -> 92.9 at 1/2, 46.5 at 1/4
    assert jpeg_reduction(240, 320, 64, AugConfig(scale=(0.6, 1.0))) == 2
    assert jpeg_reduction(240, 320, 56, AugConfig(scale=(0.6, 1.0))) == 2
    assert jpeg_reduction(240, 320, 64, AugConfig(scale=(0.08, 1.0))) == 1  # 67.9 at full size
    assert jpeg_reduction(240, 320, 40, AugConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0))) == 4  # side 240


def _smooth_clip_sample(frames: int = 16, h: int = 240, w: int = 320) -> tuple[dict, np.ndarray]:
    """A shard sample of smooth frames (a gradient shifted per frame) and the frames as encoded."""
    y, x = np.mgrid[:h, :w].astype(np.float32)
    clip = np.stack(
        [np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 8 * t], -1) for t in range(frames)]
    ).astype(np.uint8)
    sample = {"__key__": "k", "cls": b"3", **{f"f{t:02d}.jpg": _jpeg(f) for t, f in enumerate(clip)}}
    return sample, clip


def test_reduced_decode_keeps_rgb_order_picks_and_pixels():
    sample, clip = _smooth_clip_sample()
    full, label = decode_clip(sample, 8)
    assert label == 3 and full.shape == (8, 240, 320, 3)
    assert np.abs(full.astype(int) - clip[sample_indices(16, 8)]).mean() < 2  # RGB, only the picks
    for factor in (2, 4):
        small, _ = decode_clip(sample, 8, lambda h, w, f=factor: f if (h, w) == (240, 320) else 1)
        assert small.shape == (8, 240 // factor, 320 // factor, 3) and small.dtype == np.uint8
        ref = np.stack([cv2.resize(f, small.shape[2:0:-1], interpolation=cv2.INTER_AREA) for f in full])
        assert np.abs(small.astype(int) - ref).mean() < 2  # same picks, same channel order, close pixels
    # what the model sees after the eval transform barely changes
    t = eval_transform(64)
    reduced = t(decode_clip(sample, 8, lambda h, w: jpeg_reduction(h, w, 64))[0])
    assert np.abs(reduced.astype(int) - t(full)).mean() < 3
    with pytest.raises(ValueError, match="allowed: \\[1, 2, 4, 8\\]"):
        decode_clip(sample, 8, lambda h, w: 3)
    with pytest.raises(SampleError, match=r"f\d\d\.jpg is not a JPEG .*the shard is damaged"):
        decode_clip({**sample, f"f{sample_indices(16, 8)[0]:02d}.jpg": b"junk"}, 8, lambda h, w: 2)
