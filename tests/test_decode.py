import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torchcodec.encoders import AudioEncoder, VideoEncoder

from lsvit.pipeline import decode as decode_mod
from lsvit.pipeline.decode import DecodeError, decode_clip, resolve_device
from lsvit.pipeline.errors import LsvitError

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
HMDB = VIDEOS / "hmdb51__April_09_brush_hair_u_nm_np1_ba_goo_0.avi"
XVID = VIDEOS / "mmaction2__test.avi"
MP4 = VIDEOS / "torchcodec__nasa_13013.mp4"
needs_real = pytest.mark.skipif(not HMDB.is_file(), reason=f"real clips not in {VIDEOS}")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed")


def ffmpeg_frames(path: Path, stream: str = "v:0") -> np.ndarray:
    """Every frame of a plain full sequential decode by the FFmpeg CLI, as (N, H, W, 3) RGB."""
    probe = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        stream,
        "-show_entries",
        "stream=width,height",
        "-of",
        "csv=p=0",
    ]
    size = subprocess.run([*probe, str(path)], check=True, capture_output=True, text=True).stdout
    w, h = map(int, size.strip().split(","))
    decode = ["-map", f"0:{stream}", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    cmd = ["ffmpeg", "-v", "error", "-threads", "1", "-i", str(path), *decode]
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)


@pytest.fixture
def tiny_clip(tmp_path: Path) -> Path:
    """5 frames of flat grey levels 20, 60, 100, 140, 180: shorter than 16, each frame recognisable."""
    frames = torch.stack([torch.full((3, 48, 64), 20 + 40 * i, dtype=torch.uint8) for i in range(5)])
    path = tmp_path / "tiny.avi"
    VideoEncoder(frames, frame_rate=10.0).to_file(path, codec="mpeg4")
    return path


@needs_real
def test_hmdb_counts_real_frames() -> None:
    clip = decode_clip(HMDB, 16)
    assert (clip.source_frames, clip.header_frames) == (408, 409)
    assert clip.indices == [12, 38, 63, 89, 114, 140, 165, 191, 216, 242, 267, 293, 318, 344, 369, 395]
    assert clip.padded == 0
    assert clip.frames.shape == (16, 240, 320, 3) and clip.frames.dtype == torch.uint8
    assert clip.frames.device.type == "cpu"
    assert (clip.width, clip.height, clip.fps) == (320, 240, 30.0)
    assert clip.duration == pytest.approx(13.633, abs=0.01)


@needs_real
def test_xvid_and_multistream_mp4() -> None:
    xvid = decode_clip(XVID, 8)
    assert (xvid.source_frames, xvid.header_frames, xvid.fps) == (164, 164, 25.0)
    assert xvid.frames.shape == (8, 240, 320, 3)
    mp4 = decode_clip(MP4, 16)  # streams 0 (320x180) and 3 (480x270): FFmpeg's best is the larger one
    assert (mp4.width, mp4.height, mp4.source_frames) == (480, 270, 390)
    assert mp4.fps == pytest.approx(29.97, abs=0.01)
    assert mp4.frames.shape == (16, 270, 480, 3)


@needs_real
@needs_ffmpeg
@pytest.mark.parametrize(
    ("path", "stream"), [(HMDB, "v:0"), (XVID, "v:0"), (MP4, "3")], ids=["hmdb-divx-packed-b", "xvid", "mp4"]
)
def test_frames_equal_full_sequential_decode(path: Path, stream: str) -> None:
    ref = ffmpeg_frames(path, stream)
    clip = decode_clip(path, 16)
    assert clip.source_frames == len(ref)
    # same decoder (libavcodec) and the same swscale conversion: bit-exact, no tolerance needed
    np.testing.assert_array_equal(clip.frames.numpy(), ref[clip.indices])


@needs_real
@needs_ffmpeg
def test_frames_held_while_later_packets_decode_stay_exact() -> None:
    # one sample per frame: every RawFrame is held until the stream is drained, then converted
    ref = ffmpeg_frames(XVID)
    clip = decode_clip(XVID, len(ref))
    assert clip.indices == list(range(len(ref))) and clip.padded == 0
    np.testing.assert_array_equal(clip.frames.numpy(), ref)


@needs_real
@needs_ffmpeg
def test_second_pass_when_header_is_far_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut = tmp_path / "cut.avi"
    cut.write_bytes(XVID.read_bytes()[:150_000])  # header still says 164 frames; 78 decode
    with pytest.raises(DecodeError, match=r"truncated or corrupt: header says 164 frames but only 78 decode"):
        decode_clip(cut)
    # accepted when the truncation check is relaxed: the frames kept for ~164 are useless, a 2nd pass runs
    monkeypatch.setattr(decode_mod, "TRUNCATION_SLACK", (1000, 0.0))
    clip = decode_clip(cut, 16)
    ref = ffmpeg_frames(cut)
    assert clip.source_frames == len(ref) == 78
    np.testing.assert_array_equal(clip.frames.numpy(), ref[clip.indices])


def test_short_clip_pads_with_last_frame(tiny_clip: Path) -> None:
    clip = decode_clip(tiny_clip, 16)
    assert clip.source_frames == 5 and clip.padded == 11
    assert clip.indices == [0, 1, 2, 3, 4] + [4] * 11
    means = clip.frames.float().mean(dim=(1, 2, 3))
    np.testing.assert_allclose(means[:5].numpy(), [20, 60, 100, 140, 180], atol=3)
    assert torch.equal(clip.frames[5:], clip.frames[4:5].expand(11, -1, -1, -1))
    assert (clip.width, clip.height) == (64, 48)
    # the padding repeats one tensor (converted and JPEG-encoded once); frames stacks the images
    assert all(im is clip.images[4] for im in clip.images[5:]) and len({id(im) for im in clip.images}) == 5
    assert clip.frames.shape == (16, 48, 64, 3) and torch.equal(clip.frames[7], clip.images[7])


@pytest.mark.parametrize(
    ("make", "suffix", "pattern"),
    [
        (lambda p: p.write_bytes(b""), ".avi", r"^empty file \(0 bytes\)$"),
        (lambda p: p.write_bytes(bytes(range(256)) * 200), ".avi", r"^not a readable video \(Invalid data"),
        (lambda p: None, ".avi", r"^cannot read file \(No such file or directory\)$"),
        (
            lambda p: AudioEncoder(torch.zeros(1, 800), sample_rate=8000).to_file(p),
            ".wav",
            r"^no video stream$",
        ),
    ],
    ids=["zero-byte", "garbage", "missing", "audio-only"],
)
def test_unreadable_inputs(tmp_path: Path, make, suffix: str, pattern: str) -> None:
    path = tmp_path / f"x{suffix}"
    make(path)
    with pytest.raises(DecodeError, match=pattern) as e:
        decode_clip(path)
    msg = str(e.value)
    assert "\n" not in msg and ".cpp" not in msg and str(tmp_path) not in msg


def test_truncated_tiny_and_header_only(tmp_path: Path) -> None:
    frames = torch.randint(
        0, 256, (40, 3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    full = tmp_path / "full.avi"
    VideoEncoder(frames, frame_rate=25.0).to_file(full, codec="mpeg4")
    data = full.read_bytes()
    assert decode_clip(full).source_frames == 40
    for n_bytes in (len(data) // 2, 4096):
        cut = tmp_path / f"cut{n_bytes}.avi"
        cut.write_bytes(data[:n_bytes])
        with pytest.raises(
            DecodeError, match=r"truncated or corrupt|no decodable video frames|not a readable"
        ):
            decode_clip(cut)


def test_resolve_device(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(LsvitError, match=r"'gpu' is not valid; allowed: auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    decode_mod._cuda_decode_works.cache_clear()
    decode_mod._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="lsvit.pipeline.decode"):
        assert resolve_device("auto") == "cpu"
        assert resolve_device("auto") == "cpu"
    warnings = [r.getMessage() for r in caplog.records if "decoding on CPU" in r.getMessage()]
    assert warnings == ["decoding on CPU: CUDA not usable (torch.cuda.is_available() is False)"]
    with pytest.raises(LsvitError, match=r"--device cuda:1 cannot be used.*pass --device cpu or auto"):
        resolve_device("cuda:1")
    decode_mod._cuda_decode_works.cache_clear()


def test_cpu_fallback_is_logged_once_per_codec(
    tiny_clip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    opened = []

    class FakeDecoder:  # what VideoDecoder reports when NVDEC cannot take the codec
        def __init__(self, path, **kw) -> None:
            opened.append((path, kw["device"]))
            self.cpu_fallback = "Fallback status: Falling back due to: codec not supported"

    monkeypatch.setattr(decode_mod, "VideoDecoder", FakeDecoder)
    monkeypatch.setattr(decode_mod, "_fallback_checked", set())
    decode_mod._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="lsvit.pipeline.decode"):
        for codec in ("mpeg4", "mpeg4", "h264"):
            decode_mod._warn_on_cpu_fallback(tiny_clip, "cuda", codec)
    assert opened == [(tiny_clip, "cuda")] * 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "torchcodec fell back to CPU decoding for mpeg4",
        "torchcodec fell back to CPU decoding for h264",
    ]


def test_invalid_num_samples(tiny_clip: Path) -> None:
    with pytest.raises(ValueError, match="0"):
        decode_clip(tiny_clip, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_real
@pytest.mark.parametrize("path", [HMDB, XVID, MP4], ids=["hmdb", "xvid", "mp4"])
def test_cuda_matches_cpu(path: Path) -> None:
    cpu = decode_clip(path, 16, "cpu")
    gpu = decode_clip(path, 16, "cuda")
    assert (gpu.source_frames, gpu.indices, gpu.frames.shape) == (
        cpu.source_frames,
        cpu.indices,
        cpu.frames.shape,
    )
    assert gpu.frames.device.type == "cpu"
    # NVDEC and swscale convert YUV->RGB with different rounding/chroma upsampling: small differences only
    diff = (gpu.frames.float() - cpu.frames.float()).abs()
    assert diff.mean() < 3.0, diff.mean()
