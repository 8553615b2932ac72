"""Helpers for the trainer's hostile-input tests: CLI runs in-process, one-line errors, damaged files."""

import io
import struct
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import torch

TINY = dict(
    model="lsvit_tiny_patch16_224",
    model_kwargs=dict(patch_size=8, embed_dim=64, depth=2, num_heads=2),
    img_size=32,
    num_frames=8,
    batch_size=4,
    epochs=1,
    workers=0,
    device="cpu",
)
TINY_YAML = (
    "model_kwargs: {patch_size: 8, embed_dim: 64, depth: 2, num_heads: 2}\n"
    "img_size: 32\nnum_frames: 8\nbatch_size: 4\nepochs: 1\nworkers: 0\ndevice: cpu\n"
)


def run_main(main: Callable[[], None], monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Runs a console-script entry point in-process, as the shell would: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lsvit", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error(err: str) -> str:
    """The single `error:` line of a failed command; no traceback, nothing after it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def files(folder: Path) -> list[str]:
    """The names in a folder (none when it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def edit_checkpoint(src: Path, dst: Path, **changes: object) -> Path:
    """Saves a copy of a checkpoint with fields replaced (``...`` removes a field)."""
    ckpt = torch.load(src, weights_only=True)
    for k, v in changes.items():
        if v is ...:
            ckpt.pop(k)
        else:
            ckpt[k] = v
    torch.save(ckpt, dst)
    return dst


def bomb(jpeg: bytes, height: int = 60000, width: int = 60000) -> bytes:
    """The JPEG with its frame header (SOF0) claiming another size; the image data stay as they were."""
    i = jpeg.find(b"\xff\xc0")
    assert i > 0
    data = bytearray(jpeg)
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def edit_sample(shard: Path, nth: int, member: str, edit: Callable[[bytes], bytes]) -> str:
    """Rewrites one member (e.g. ``f03.jpg``) of the ``nth`` sample of a tar in place.

    Returns:
        The sample's key.
    """
    with tarfile.open(shard) as tf:
        items = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]
    key = list(dict.fromkeys(m.name.split(".", 1)[0] for m, _ in items))[nth]
    with tarfile.open(shard, "w") as tf:
        for m, data in items:
            if m.name == f"{key}.{member}":
                data = edit(data)
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    return key
