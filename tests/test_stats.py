import json

import numpy as np
import pytest
import torch

from lsvit.pipeline.stats import STAT_FRAMES, STAT_NAMES, clip_stats, stat_frames


def grey(values: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 grey levels -> (T, H, W, 3) RGB with equal channels."""
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=-1)


def checkerboard(t: int = 2, h: int = 32, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return grey(np.broadcast_to(((yy + xx) % 2) * 255, (t, h, w)))


def test_keys_and_json_ready() -> None:
    s = clip_stats(np.zeros((2, 8, 8, 3), np.uint8))
    assert set(s) == {*STAT_NAMES, "color_mean", "color_std", "color_hist"}
    assert json.loads(json.dumps(s)) == s
    assert len(s["color_mean"]) == len(s["color_std"]) == 3
    assert [len(h) for h in s["color_hist"]] == [8, 8, 8]


@pytest.mark.parametrize("v", [0, 37, 128, 255])
def test_constant_image(v: int) -> None:
    s = clip_stats(grey(np.full((3, 16, 20), v)))
    assert s["brightness"] == pytest.approx(v, abs=1e-3)  # BT.601 weights sum to 1
    assert s["contrast"] == pytest.approx(0, abs=1e-4)
    assert s["blur"] == pytest.approx(0, abs=1e-4)
    assert s["color_mean"] == pytest.approx([v] * 3)
    assert s["color_std"] == pytest.approx([0] * 3, abs=1e-6)
    expected = [0.0] * 8
    expected[v // 32] = 1.0
    assert s["color_hist"] == [expected] * 3


def test_pure_red() -> None:
    frames = np.zeros((2, 10, 12, 3), np.uint8)
    frames[..., 0] = 255
    s = clip_stats(torch.from_numpy(frames))  # torch input too
    assert s["color_mean"] == pytest.approx([255, 0, 0])
    assert s["brightness"] == pytest.approx(0.299 * 255, abs=1e-3)
    assert s["color_hist"][0] == [0] * 7 + [1.0]
    assert s["color_hist"][1] == s["color_hist"][2] == [1.0] + [0] * 7


def test_checkerboard_exact_and_sharper_than_blurred() -> None:
    board = checkerboard()
    s = clip_stats(board)
    # every interior pixel: 4 neighbours of the other colour -> Laplacian ±1020, variance 1020²
    assert s["blur"] == pytest.approx(1020.0**2, rel=1e-5)
    assert s["contrast"] == pytest.approx(127.5, rel=1e-5)
    assert s["brightness"] == pytest.approx(127.5, rel=1e-5)
    f = board[..., 0].astype(np.float64)  # 3x3 box blur of the same frames
    pad = np.pad(f, ((0, 0), (1, 1), (1, 1)), mode="edge")
    blurred = sum(pad[:, i : i + 32, j : j + 32] for i in range(3) for j in range(3)) / 9
    sb = clip_stats(grey(np.round(blurred)))
    assert 0 < sb["blur"] < s["blur"] / 10
    assert sb["contrast"] < s["contrast"]


def test_ramp_has_contrast_but_no_laplacian() -> None:
    ramp = grey(np.broadcast_to(np.arange(64) * 4, (2, 16, 64)))  # luma is linear in x
    s = clip_stats(ramp)
    assert s["blur"] == pytest.approx(0, abs=1e-3)
    assert s["contrast"] == pytest.approx(np.arange(64).std() * 4, rel=1e-5)


def test_per_frame_contrast_ignores_light_changes() -> None:
    frames = grey(np.stack([np.full((8, 8), 50), np.full((8, 8), 200)]))
    s = clip_stats(frames)
    assert s["contrast"] == pytest.approx(0, abs=1e-4)
    assert s["blur"] == pytest.approx(0, abs=1e-4)  # no Laplacian across the border between two frames
    assert s["brightness"] == pytest.approx(125, abs=1e-3)
    assert s["color_std"] == pytest.approx([75] * 3)  # colour moments pool all pixels


def test_random_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 23, 37, 3), dtype=np.uint8)  # odd sizes: SIMD tails, borders
    s = clip_stats(frames)
    # float32 luma with double sums: relative errors ~1e-7, well inside the tolerances below
    pix = frames.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(s["color_mean"], pix.mean(0), rtol=1e-9)
    np.testing.assert_allclose(s["color_std"], pix.std(0), rtol=1e-9)
    hist = np.array(s["color_hist"])
    np.testing.assert_allclose(hist.sum(1), 1.0)
    for c in range(3):
        np.testing.assert_allclose(
            hist[c], np.histogram(frames[..., c], bins=8, range=(0, 256))[0] / len(pix)
        )
    luma = frames.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert s["brightness"] == pytest.approx(luma.mean(), rel=1e-5)
    assert s["contrast"] == pytest.approx(luma.reshape(4, -1).std(1).mean(), rel=1e-5)
    lap = (
        luma[:, :-2, 1:-1]
        + luma[:, 2:, 1:-1]
        + luma[:, 1:-1, :-2]
        + luma[:, 1:-1, 2:]
        - 4 * luma[:, 1:-1, 1:-1]
    )
    assert s["blur"] == pytest.approx(lap.reshape(4, -1).var(1).mean(), rel=1e-4)


def test_strided_and_torch_views_give_the_same_stats() -> None:
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (6, 20, 50, 4), dtype=np.uint8)
    view = big[::2, :, 5:45, 1:]  # not contiguous
    assert clip_stats(view) == clip_stats(np.ascontiguousarray(view))
    assert clip_stats(torch.from_numpy(big).permute(0, 2, 1, 3)[..., :3]) == clip_stats(
        np.ascontiguousarray(big.transpose(0, 2, 1, 3)[..., :3])
    )


def test_tiny_frames_have_zero_blur() -> None:
    assert clip_stats(np.full((1, 2, 2, 3), 9, np.uint8))["blur"] == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 8, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((2, 8, 8, 4), np.uint8),
        np.zeros((0, 8, 8, 3), np.uint8),
    ],
)
def test_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8, got"):
        clip_stats(bad)


def test_stat_frames_spread_evenly_and_all_when_few() -> None:
    assert STAT_FRAMES == 4
    assert stat_frames(16) == [2, 6, 10, 14]  # the centre of each quarter
    assert stat_frames(3) == [0, 1, 2] and stat_frames(4) == [0, 1, 2, 3]
    assert stat_frames(16, None) == list(range(16)) and stat_frames(10, 2) == [2, 7]


def test_stats_look_at_four_of_sixteen_frames_and_take_lists() -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (16, 12, 10, 3), dtype=np.uint8)
    frames[[0, 1, 15]] = 255  # frames outside the four looked at change nothing
    picked = clip_stats(frames[[2, 6, 10, 14]], None)
    assert clip_stats(frames) == picked
    assert (
        clip_stats(list(torch.from_numpy(frames))) == picked
    )  # a list of (H, W, 3) frames, as extract passes
    assert clip_stats(frames, None) != picked
    assert clip_stats(frames, None)["color_mean"] == pytest.approx(frames.reshape(-1, 3).mean(0))
