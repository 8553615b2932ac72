"""``just gpu-prepare``: fetch, on a machine with a package index, what ``gpu/check.py`` installs offline.

The GPU machine may hold another Python and torch build and lack torchcodec, webdataset, albumentations or
FFmpeg's libraries, with no network. This downloads, for that target:

- ``.whl/``: wheels of every runtime dependency of lsvit except torch and torchvision (the target keeps its
  own builds), for the target's Python (``--python``; ``pip download --only-binary``), plus setuptools to
  build lsvit itself; torchcodec at the project's pin, after checking it suits the target's torch (torchcodec
  0.17's packet API needs torch >= 2.11); when the target's torch is built for another CUDA major than
  torchcodec's CUDA build (13), the CUDA 13 runtime and NVRTC wheels it loads; ``--have`` names packages
  the target already has (skipped);
- ``.deb/`` (``--ffmpeg deb``, the default): this machine's Debian FFmpeg libraries and the libraries they
  need (``apt-get download``; packages of priority required/important are left out: every Debian-like
  system has them), with ``MANIFEST.json`` saying which glibc they need; ``--ffmpeg wheel`` instead takes
  PyAV's wheel, whose bundled FFmpeg runs on any glibc >= 2.28 (the check links its sonames), ``none``
  nothing.

Run ``python gpu/check.py --probe`` on the target first and pass its output with ``--probe FILE``: it
sets ``--python``, ``--torch``, ``--cuda`` and ``--have`` from what is really there.

    python gpu/prepare.py [--probe target.json] [--python 3.12] [--torch 2.11] [--cuda 12.8] [--ffmpeg deb]
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCHCODEC_MIN_TORCH = (2, 11)  # torchcodec >= 0.12 uses torch's stable ABI from 2.11 on
TORCHCODEC_CUDA = 13  # the CUDA major of torchcodec's PyPI wheels
SKIP = {"torch", "torchvision"}  # the target's own builds
FFMPEG_DEBS = (
    "libavcodec",
    "libavformat",
    "libavutil",
    "libswscale",
    "libswresample",
    "libavfilter",
    "libavdevice",
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


class PrepareError(Exception):
    """A target this preparation cannot serve."""


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:2])


def requirements(have: set[str]) -> list[str]:
    """lsvit's runtime requirements (pyproject) minus torch, torchvision and what the target has."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if _name(d) not in SKIP | have]


def check_torch(torch_version: str) -> None:
    if _version(torch_version) < TORCHCODEC_MIN_TORCH:
        need = ".".join(map(str, TORCHCODEC_MIN_TORCH))
        raise PrepareError(
            f"the target's torch {torch_version} is older than {need}: torchcodec's packet API (0.17, what "
            f"lsvit decodes with) needs torch >= {need}; install a newer torch there"
        )


def pip_download(reqs: list[str], python: str, dest: Path, deps: bool = True) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(dest), "--only-binary=:all:"]
    cmd += ["--python-version", python, "--implementation", "cp"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [] if deps else ["--no-deps"]
    subprocess.run(cmd + reqs, check=True)


def download_debs(dest: Path) -> dict:
    """The FFmpeg library packages of this machine's Debian and their library dependencies (first choices)."""
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True, text=True, check=True
    ).stdout.split()
    roots = [p for p in installed if p.startswith(FFMPEG_DEBS) and re.search(r"\d+$", p)]
    if not roots:
        raise PrepareError(
            "this machine has no FFmpeg library packages (apt-get install ffmpeg), or use --ffmpeg wheel"
        )
    seen, todo, keep = set(), list(roots), []
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        show = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", pkg], capture_output=True, text=True
        ).stdout
        if re.search(r"^(Priority: (required|important)|Essential: yes)", show, re.M) or not show:
            continue
        keep.append(pkg)
        depends = re.search(r"^(?:Pre-)?Depends: (.*)$", show, re.M)
        for alt in depends[1].split(",") if depends else []:
            todo.append(alt.split("|")[0].split("(")[0].split(":")[0].strip())
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *sorted(keep)], cwd=dest, check=True, capture_output=True)
    glibc = max(
        (
            _version(m)
            for d in dest.glob("*.deb")
            for m in re.findall(r"libc6 \(>= ([\d.]+)\)", _deb_depends(d))
        ),
        default=(2, 17),
    )
    release = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    return {"debian": release, "packages": sorted(keep), "roots": roots, "glibc": ".".join(map(str, glibc))}


def _deb_depends(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True).stdout


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", type=Path, help="JSON printed by `python gpu/check.py --probe` on the target")
    ap.add_argument("--python", help="the target's Python, e.g. 3.12 (default: this one)")
    ap.add_argument("--torch", help="the target's torch version, e.g. 2.11.0 (checks torchcodec suits it)")
    ap.add_argument("--cuda", help="the CUDA version the target's torch was built for, e.g. 12.8")
    ap.add_argument("--have", default="", help="comma-separated packages the target already has")
    ap.add_argument("--ffmpeg", choices=["deb", "wheel", "none"], default="deb")
    ap.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    ap.add_argument("--debs", type=Path, default=ROOT / ".deb")
    a = ap.parse_args(argv)
    probe = json.loads(a.probe.read_text()) if a.probe else {}
    python = a.python or probe.get("python") or f"{sys.version_info.major}.{sys.version_info.minor}"
    torch_version, cuda = a.torch or probe.get("torch"), a.cuda or probe.get("torch_cuda")
    have = {_name(n) for n in a.have.split(",") if n} | {_name(n) for n in probe.get("have", [])}
    try:
        if torch_version:
            check_torch(torch_version)
        reqs = requirements(have)
        if any(_name(r) == "timm" for r in reqs):  # timm names torch as a dependency: fetch it alone
            reqs = [r for r in reqs if _name(r) != "timm"]
            pip_download(
                [next(d for d in requirements(set()) if _name(d) == "timm")], python, a.wheels, deps=False
            )
            reqs += ["huggingface-hub", "pyyaml", "safetensors"]
        extra = ["setuptools>=77", "pytest>=8", "pytest-timeout>=2.3"]  # builds lsvit offline; runs the tests
        if cuda and _version(cuda)[:1] not in ((), (TORCHCODEC_CUDA,)):  # a CPU torch needs none
            extra += [f"nvidia-cuda-runtime=={TORCHCODEC_CUDA}.*", f"nvidia-cuda-nvrtc=={TORCHCODEC_CUDA}.*"]
        if a.ffmpeg == "wheel":
            extra.append("av>=19")  # FFmpeg 9 sonames, which torchcodec 0.17's core9 loads
        a.wheels.mkdir(parents=True, exist_ok=True)
        pip_download(reqs + extra, python, a.wheels)
        keep = {_name(r) for r in extra}  # e.g. setuptools: pip's isolated build of lsvit needs it here
        for w in sorted(a.wheels.glob("*.whl")):  # the target keeps its own torch and what it has
            if _name(w.name.split("-")[0]) in (SKIP | have) - keep:
                w.unlink()
        manifest = {
            "python": python,
            "torch": torch_version,
            "cuda": cuda,
            "ffmpeg": a.ffmpeg,
            "have": sorted(have),
        }
        if a.ffmpeg == "deb":
            shutil.rmtree(a.debs, ignore_errors=True)
            manifest["debs"] = download_debs(a.debs)
            (a.debs / "MANIFEST.json").write_text(json.dumps(manifest["debs"], indent=1))
        (a.wheels / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    except (PrepareError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    wheels = sorted(p.name for p in a.wheels.glob("*.whl"))
    print(f"{len(wheels)} wheels in {a.wheels} ({size_mb(a.wheels):.0f} MiB) for Python {python}")
    if a.ffmpeg == "deb":
        print(
            f"{len(list(a.debs.glob('*.deb')))} .deb files in {a.debs} ({size_mb(a.debs):.0f} MiB), glibc >= {manifest['debs']['glibc']}"
        )
    print("copy the repository with .whl/ (and .deb/) to the GPU machine, then: just gpu-check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
