"""What a GPU machine has and lacks, and FFmpeg's libraries for torchcodec from what ``gpu/prepare.py`` fetched.

Standard library only: ``gpu/check.py`` runs it before anything is installed. ``from_debs`` and
``from_av`` unpack into their own prefix and return ``(what they did or why not, the folder to put on
LD_LIBRARY_PATH or None)``.
"""

import ctypes.util
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FFMPEG = re.compile(r"lib(avcodec|avformat|avutil|swscale|swresample|avfilter|avdevice)\b")


def _ver(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


def from_debs(debs: Path, prefix: Path) -> tuple[str | None, Path | None]:
    """``dpkg -x`` every ``.deb`` into ``prefix``; libraries the system already has are left to it.

    Skipped (with the reason) when this machine's glibc is older than the one the packages were built for
    (``MANIFEST.json``), or without ``dpkg``.
    """
    files = sorted(debs.glob("*.deb")) if debs.is_dir() else []
    if not files or not shutil.which("dpkg"):
        return None, None
    manifest = json.loads((debs / "MANIFEST.json").read_text()) if (debs / "MANIFEST.json").exists() else {}
    glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0").split()[-1]
    if _ver(glibc) < _ver(manifest.get("glibc", "0")):
        return f".deb libraries need glibc >= {manifest['glibc']}, this machine has {glibc}: skipped", None
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    for deb in files:
        p = subprocess.run(["dpkg", "-x", str(deb), str(prefix)], capture_output=True, text=True)
        if p.returncode != 0:
            return f"dpkg -x {deb.name} failed ({(p.stderr.strip().splitlines() or ['?'])[-1]})", None
    lib = prefix / "usr/lib/x86_64-linux-gnu"
    system = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for so in lib.glob("*.so*"):  # fill gaps only: the system's own copies stay in charge
        if not FFMPEG.match(so.name) and f"{so.name} " in system:
            so.unlink()
    return f"unpacked {len(files)} .deb files into {prefix} (Debian {manifest.get('debian', '?')})", lib


def from_av(wheels: Path, prefix: Path) -> tuple[str | None, Path | None]:
    """The FFmpeg bundled in a PyAV wheel of ``wheels``, with the sonames torchcodec looks for linked in."""
    wheel = next(iter(sorted(wheels.glob("av-*.whl"))), None) if wheels.is_dir() else None
    if wheel is None:
        return None, None
    shutil.rmtree(prefix, ignore_errors=True)
    shutil.unpack_archive(str(wheel), str(prefix), "zip")
    libs = prefix / "av.libs"
    for so in libs.glob("*.so*"):  # libavcodec-d61378e8.so.63.1.102 -> libavcodec.so.63, the soname
        m = re.match(r"(lib[\w+]+?)-[0-9a-f]{8}\.so\.(\d+)", so.name)
        if m and not (libs / f"{m[1]}.so.{m[2]}").exists():
            (libs / f"{m[1]}.so.{m[2]}").symlink_to(so.name)
    return f"linked the FFmpeg bundled in {wheel.name}", libs


TEST_TOOLS = ("pytest", "pytest-timeout")


def needed() -> list[str]:
    """lsvit's runtime dependencies (pyproject.toml) except torch and torchvision, plus the test tools."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)[1]  # no tomllib before 3.11
    names = [re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0] for d in re.findall(r'"([^"]+)"', block)]
    return [n for n in names if n.lower() not in ("torch", "torchvision")] + list(TEST_TOOLS)


PROBE_TORCH = "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0)]))"
PROBE_CODEC = (
    "from torchcodec.decoders import Demuxer, decode_jpeg; import torchcodec; print(torchcodec.__version__)"
)


def run(cmd: list[str], env: dict, timeout: int, cwd: Path = ROOT) -> tuple[int, str]:
    """(exit status, combined output) of a command; a time-out is status 124."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        return 124, out + f"\n[timed out after {timeout} s]"


def has(dist: str) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def probe() -> dict:
    """Python, torch (version, CUDA, device), installed distributions, glibc and FFmpeg libraries present."""
    code, out = run([sys.executable, "-c", PROBE_TORCH], dict(os.environ), 120)
    torch_v, cuda, gpu = json.loads(out.strip().splitlines()[-1]) if code == 0 else (None, None, None)
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "torch": torch_v,
        "torch_cuda": cuda,
        "gpu": gpu or None,
        "glibc": os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None,
        "platform": platform.platform(),
        "have": sorted({d.metadata["Name"].lower() for d in md.distributions() if d.metadata["Name"]}),
        "ffmpeg": {n: ctypes.util.find_library(n) for n in ("avcodec", "avformat", "avutil", "swscale")},
    }
