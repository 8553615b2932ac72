"""``just gpu-check``: every CUDA path of lsvit on a GPU machine, offline, in about ten minutes, one report.

Runs with the machine's own Python and torch (standard library only until the installs are done):
1. install what is missing from ``.whl/`` (``pip install --no-index``; lsvit itself editable, without its
   dependencies), and FFmpeg's libraries when torchcodec cannot load them: ``.deb/`` files unpacked with
   ``dpkg -x`` into ``.gpu-prefix/`` (libraries the system already has are left to it) or the FFmpeg bundled
   in a PyAV wheel, put on ``LD_LIBRARY_PATH`` for every later step (``just gpu-prepare`` fetched both);
2. the tests marked ``gpu``;
3. the real clips of ``--videos`` extracted with ``--device cuda`` and ``cpu``: frame counts, sampled
   indices and the stored frames compared;
4. the demo config trained for one epoch with ``--amp bf16 --decode cuda`` (nvJPEG + GPU augmentation)
   and with ``--amp fp16 --decode cpu`` (GradScaler; the workers decode);
5. ``bench/train.py`` (clips/s, MFU, GPU busy per decode path).
Each step has a time limit and its own verdict; the report (``--report``, Markdown) holds the figures and
the tail of each step's output. Without CUDA the GPU steps are reported as skipped, not failed.
``--probe`` prints the machine's facts as JSON for ``gpu/prepare.py --probe``.

    python gpu/check.py [--steps install,tests,extract,train,bench] [--videos DIR] [--report FILE]
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import provision  # noqa: E402  gpu/provision.py: standard library only, like this script
from provision import PROBE_CODEC, PROBE_TORCH, run  # noqa: E402

STEPS = ("install", "tests", "extract", "train", "bench")


class Check:
    """The steps, their verdicts and the report."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a, self.env, self.rows, self.sections = a, dict(os.environ), [], []
        self.env["PYTHONUNBUFFERED"] = "1"
        self.cuda = False

    def record(self, step: str, verdict: str, seconds: float, detail: str, output: str = "") -> None:
        self.rows.append((step, verdict, seconds, detail))
        tail = "\n".join(output.strip().splitlines()[-self.a.tail :])
        self.sections.append(
            f"## {step}: {verdict}\n\n{detail}\n\n```\n{tail}\n```\n"
            if tail
            else f"## {step}: {verdict}\n\n{detail}\n"
        )
        print(f"[gpu-check] {step}: {verdict} ({seconds:.0f} s) {detail}", flush=True)

    def py(self, code: str, timeout: int = 300) -> tuple[int, str]:
        return run([sys.executable, "-c", code], self.env, timeout)

    # --- 1. install -----------------------------------------------------------------------------------
    def install(self) -> None:
        t0, notes, out = time.time(), [], ""
        wheels = self.a.wheels
        missing = [n for n in provision.needed() if not provision.has(n)]
        if missing:
            if not wheels.is_dir():
                return self.record(
                    "install",
                    "FAIL",
                    time.time() - t0,
                    f"missing {missing} and no {wheels}: run `just gpu-prepare` where pip reaches an index",
                )
            code, o = run(
                [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *missing],
                self.env,
                600,
            )
            out += o
            notes.append(
                f"installed {', '.join(missing)} from {wheels.name}/"
                if code == 0
                else f"pip failed for {missing}"
            )
        if not provision.has("lsvit"):
            code, o = run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--no-index",
                    "--find-links",
                    str(wheels),
                    "--no-deps",
                    "-e",
                    str(ROOT),
                ],
                self.env,
                600,
            )
            out += o
            notes.append("lsvit installed (editable)" if code == 0 else "lsvit could not be installed")
        self._cuda_runtime()
        code, o = self.py(PROBE_CODEC, 120)
        if code != 0:
            notes.append(f"torchcodec did not load ({_last(o)}); trying the prepared FFmpeg")
            for how in (self._from_debs, self._from_av):
                note = how()
                if note:
                    notes.append(note)
                    code, o = self.py(PROBE_CODEC, 120)
                    if code == 0:
                        break
        out += o
        code_t, o_t = self.py(PROBE_TORCH, 120)
        info = json.loads(o_t.strip().splitlines()[-1]) if code_t == 0 else [None, None, None]
        self.cuda = bool(info[2])
        if code != 0 and info[0] and not info[1]:
            notes.append(
                "torchcodec's PyPI wheels are CUDA builds: they load with a CUDA build of torch only"
            )
        notes.append(
            f"torch {info[0]} (CUDA {info[1]}), device: {info[2] or 'none'}; torchcodec {'loads' if code == 0 else 'does NOT load'}"
        )
        self.record("install", "ok" if code == 0 else "FAIL", time.time() - t0, "; ".join(notes), out)

    def _lib_path(self, folder: Path) -> None:
        self.env["LD_LIBRARY_PATH"] = f"{folder}:{self.env.get('LD_LIBRARY_PATH', '')}".rstrip(":")

    def _cuda_runtime(self) -> None:
        """torchcodec's CUDA 13 runtime and NVRTC from the nvidia wheels, when torch brought another CUDA."""
        code, o = self.py("import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))", 60)
        if code == 0:
            for lib in sorted(Path(o.strip().splitlines()[-1]).glob("nvidia/cu13/lib")):
                self._lib_path(lib)

    def _from_debs(self) -> str | None:
        note, lib = provision.from_debs(self.a.debs, ROOT / ".gpu-prefix" / "deb")
        if lib is not None:
            self._lib_path(lib)
        return note

    def _from_av(self) -> str | None:
        note, lib = provision.from_av(self.a.wheels, ROOT / ".gpu-prefix" / "av")
        if lib is not None:
            self._lib_path(lib)
        return note

    # --- 2. tests -------------------------------------------------------------------------------------
    def tests(self) -> None:
        t0 = time.time()
        # only the modules holding gpu tests: the others may import the dev extras (gradio, onnx...)
        tests = ROOT / "tests"
        files = sorted(str(f) for f in tests.glob("test_*.py") if "mark.gpu" in f.read_text())
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
        code, out = run(cmd, self.env, 600)
        summary = _last(out)
        verdict = "ok" if code == 0 and self.cuda else ("skipped (no CUDA)" if code in (0, 5) else "FAIL")
        self.record("tests (-m gpu)", verdict, time.time() - t0, summary, out)

    # --- 3. extract -----------------------------------------------------------------------------------
    def extract(self) -> None:
        t0 = time.time()
        if not self.cuda:
            return self.record("extract --device cuda", "skipped (no CUDA)", 0, "")
        cmd = [sys.executable, "gpu/compare_extract.py", "--videos", str(self.a.videos)]
        code, out = run(
            [*cmd, "--work", str(self.a.work / "extract"), "--devices", "cuda,cpu"], self.env, 600
        )
        self.record(
            "extract --device cuda vs cpu", "ok" if code == 0 else "FAIL", time.time() - t0, _last(out), out
        )

    # --- 4. train -------------------------------------------------------------------------------------
    def train(self) -> None:
        if not self.cuda:
            return self.record("train (bf16, fp16)", "skipped (no CUDA)", 0, "")
        work, data, shards = self.a.work, self.a.work / "data", self.a.work / "shards"
        t0 = time.time()
        steps = [["lsvit-pipeline", "synth", "--out", str(data), "--scale", "0.1"]]
        steps += [
            ["lsvit-pipeline", "extract", "--data-root", str(data), "--out", str(shards), "--device", "cuda"]
        ]
        for cmd in steps:
            code, out = run(cmd, self.env, 300)
            if code != 0:
                return self.record("train (bf16, fp16)", "FAIL", time.time() - t0, f"{cmd[1]} failed", out)
        for amp, decode in (("bf16", "cuda"), ("fp16", "cpu")):  # each AMP mode, each input path
            t1 = time.time()
            out_dir = work / f"run-{amp}"
            shutil.rmtree(out_dir, ignore_errors=True)
            cmd = ["lsvit-train", "--shards", str(shards), "--config", "configs/demo.yaml", "--epochs", "1",
                   "--amp", amp, "--device", "cuda", "--decode", decode, "--out", str(out_dir)]  # fmt: skip
            code, out = run(cmd, self.env, 300)
            metrics = (
                (out_dir / "metrics.jsonl").read_text().splitlines()[-1]
                if (out_dir / "metrics.jsonl").exists()
                else ""
            )
            self.record(
                f"train demo 1 epoch --amp {amp} --decode {decode}",
                "ok" if code == 0 else "FAIL",
                time.time() - t1,
                metrics or _last(out),
                out,
            )

    # --- 5. bench -------------------------------------------------------------------------------------
    def bench(self) -> None:
        t0 = time.time()
        if not self.cuda:
            return self.record("bench/train.py", "skipped (no CUDA)", 0, "")
        shards = self.a.work / "shards"
        extra = ["--shards", str(shards)] if (shards / "split1" / "index.json").exists() else []
        code, out = run([sys.executable, "bench/train.py", "--steps", "10", *extra], self.env, 420)
        figures = "\n".join(line for line in out.splitlines() if "clips/s" in line or "device:" in line)
        self.record("bench/train.py", "ok" if code == 0 else "FAIL", time.time() - t0, figures, out)

    def write(self, started: float) -> Path:
        facts = provision.probe()
        head = [
            "# lsvit GPU check",
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {time.time() - started:.0f} s; Python {facts['python']}, torch "
            f"{facts['torch']} (CUDA {facts['torch_cuda']}), GPU: {facts['gpu'] or 'none'}, {facts['glibc']}",
            "",
            "| step | verdict | s | detail |",
            "| --- | --- | --- | --- |",
        ]
        head += [f"| {s} | {v} | {t:.0f} | {d.splitlines()[0] if d else ''} |" for s, v, t, d in self.rows]
        self.a.report.parent.mkdir(parents=True, exist_ok=True)
        self.a.report.write_text("\n".join(head) + "\n\n" + "\n".join(self.sections))
        return self.a.report


def _last(out: str) -> str:
    lines = [x for x in out.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    ap.add_argument("--videos", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    ap.add_argument("--debs", type=Path, default=ROOT / ".deb")
    ap.add_argument("--work", type=Path, default=ROOT / ".gpu-check")
    ap.add_argument("--report", type=Path, default=ROOT / "reports" / "gpu-check.md")
    ap.add_argument("--tail", type=int, default=25, help="lines of each step's output in the report")
    ap.add_argument("--probe", action="store_true", help="print this machine's facts as JSON and exit")
    a = ap.parse_args(argv)
    if a.probe:
        print(json.dumps(provision.probe(), indent=1))
        return 0
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    if unknown := [s for s in steps if s not in STEPS]:
        print(f"error: --steps {','.join(unknown)} unknown; allowed: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    started, check = time.time(), Check(a)
    if "install" not in steps:  # still learn whether CUDA is there
        code, out = check.py(PROBE_TORCH, 120)
        check.cuda = code == 0 and bool(json.loads(out.strip().splitlines()[-1])[2])
    for step in STEPS:
        if step in steps:
            getattr(check, step)()
    report = check.write(started)
    failed = [s for s, v, _, _ in check.rows if v == "FAIL"]
    print(f"[gpu-check] report: {report}; {'FAILED: ' + ', '.join(failed) if failed else 'no failures'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
