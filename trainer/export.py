"""``lsvit-export``: a checkpoint -> an ONNX file with a dynamic batch axis, its preprocessing contract
embedded, checked against eager PyTorch with onnxruntime.

The exporter is torch's current one (``torch.onnx.export(..., dynamo=True)``, i.e. ``torch.export`` +
onnxscript) and works on any ``torch.nn.Module`` that takes ``(B, T, 3, H, W)`` float clips and returns
``(B, num_classes)`` logits, not only LS-ViT. The example batch has 2 clips: from a batch of 1 the tracer
may specialise the batch size to 1 and the "dynamic" axis would reject any other size.
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import lsvit
from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.onnxmeta import INPUT_NAME, OUTPUT_NAME, ExportMeta
from lsvit.trainer.predict import Predictor

MIN_OPSET = 18  # the dynamo exporter's own operator set; older ones cannot be converted reliably
EXAMPLE_BATCH = 2
PARITY_BATCHES = (1, 3)
RTOL, ATOL = 1e-3, 1e-5  # on the logits, as numpy.allclose: |onnx - torch| <= ATOL + RTOL * |torch|


class ExportError(LsvitError):
    """The model cannot be exported, or the exported file does not match it."""


@dataclass
class Parity:
    """onnxruntime against eager PyTorch on one random batch."""

    batch: int
    max_abs_diff: float
    ok: bool


@dataclass
class ExportReport:
    """What :func:`export_checkpoint` wrote and checked."""

    out: str
    opset: int
    bytes: int
    seconds: float
    parity: list[Parity] = field(default_factory=list)


def max_opset() -> int:
    """The newest operator set the installed onnx package knows."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A folder beside ``out`` whose files replace ``out`` (and a ``<out>.data``) when the block succeeds.

    A failure or an interrupt leaves nothing new at ``out``: a half-written or unchecked file is never seen.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"  # a folder: external data is named after the file
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == out.name):  # the .onnx last: it is complete
            os.replace(f, out.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_model(
    model: torch.nn.Module,
    input_shape: tuple[int, int, int, int],
    out: Path,
    props: dict[str, str],
    opset: int | None = None,
    doc: str = "",
) -> int:
    """Exports a clip classifier to one ONNX file, atomically (a failed export leaves nothing at ``out``).

    Args:
        model: Any module taking float32 ``(B, T, 3, H, W)`` and returning ``(B, num_classes)``.
        input_shape: ``(T, 3, H, W)`` of one clip.
        out: The ``.onnx`` file to write (a large model's weights go to ``<out>.data`` beside it).
        props: String ``metadata_props`` to embed.
        opset: ONNX operator set (default: the exporter's, 18).
        doc: The model's ``doc_string``.

    Returns:
        The operator set written.

    Raises:
        ExportError: The exporter failed, or could not write the requested opset.
    """
    want = MIN_OPSET if opset is None else opset
    if not MIN_OPSET <= want <= max_opset():
        raise ExportError(f"--opset {want} is not supported; choose {MIN_OPSET} to {max_opset()}")
    model = model.eval()
    x = torch.randn(EXAMPLE_BATCH, *input_shape)
    batch = torch.export.Dim("batch", min=1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its steps: ours say enough
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=want,
                verbose=False,
            )
    except Exception as e:  # torch.export / onnxscript raise many types; all mean "cannot export"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"cannot export {type(model).__name__} to ONNX: {first[:300]}") from e
    got = int(program.model.opset_imports.get("", 0))
    if got != want:
        raise ExportError(f"the exporter could not convert the model to opset {want} (it wrote {got}); "
                          f"use --opset {got}")  # fmt: skip
    program.model.metadata_props.update(props)
    program.model.doc_string = doc
    out = Path(out)
    with staged(out) as stage:
        program.save(stage / out.name)
    return got


def check_parity(
    model: torch.nn.Module,
    onnx_file: Path,
    input_shape: tuple[int, int, int, int],
    batches: tuple[int, ...] = PARITY_BATCHES,
    seed: int = 0,
) -> list[Parity]:
    """Runs random clips through eager PyTorch and through onnxruntime (CPU) and compares the logits.

    Args:
        model: The exported module.
        onnx_file: Its export.
        input_shape: ``(T, 3, H, W)``.
        batches: Batch sizes to try (at least one other than the export's example batch).
        seed: For the random clips.

    Returns:
        One :class:`Parity` per batch size; ``ok`` is ``numpy.allclose(rtol=RTOL, atol=ATOL)``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    results = []
    for b in batches:
        x = torch.randn(b, *input_shape, generator=gen)
        with torch.no_grad():
            want = model.eval()(x).float().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        ok = got.shape == want.shape and bool(np.allclose(got, want, rtol=RTOL, atol=ATOL))
        results.append(Parity(b, diff, ok))
    return results


def export_metadata(predictor: Predictor) -> ExportMeta:
    """The preprocessing contract of a checkpoint's predictor."""
    digest = hashlib.sha256()
    with open(predictor.checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return ExportMeta(
        classes=list(predictor.classes),
        num_frames=predictor.num_frames,
        source_frames=predictor.source_frames,
        img_size=predictor.img_size,
        mean=tuple(float(v) for v in predictor.mean),
        std=tuple(float(v) for v in predictor.std),
        model=str(predictor.config.get("model", type(predictor.model).__name__)),
        config=predictor.config,
        checkpoint=str(predictor.checkpoint),
        checkpoint_sha256=digest.hexdigest(),
        epoch=None if predictor.epoch is None else int(predictor.epoch),
        lsvit_version=lsvit.__version__,
        synthetic=predictor.synthetic,
    )


def export_checkpoint(
    checkpoint: Path, out: Path, opset: int | None = None, check: bool = True
) -> ExportReport:
    """Exports a checkpoint's model (EMA weights when the run kept them) with its metadata.

    Writes ``out`` and ``<out>.json`` (the metadata, opset, versions and parity results, for people).

    Args:
        checkpoint: ``runs/NAME/best.pt``.
        out: The ``.onnx`` file.
        opset: ONNX operator set (default 18).
        check: Compare onnxruntime with eager PyTorch at batch 1 and 3 before the file is published; a
            mismatch writes nothing and raises.

    Returns:
        The report.

    Raises:
        ExportError: Export failed or the outputs differ beyond rtol/atol.
    """
    t0 = time.perf_counter()
    predictor = Predictor(checkpoint, device="cpu")
    meta = export_metadata(predictor)
    shape = (predictor.num_frames, 3, predictor.img_size, predictor.img_size)
    model = predictor.model.float().eval()
    doc = f"lsvit {meta.model}: video clips -> action logits over {len(meta.classes)} classes"
    out = Path(out)
    with staged(out) as stage:  # checked before it is published
        opset_written = export_model(model, shape, stage / out.name, meta.to_props(), opset, doc)
        report = ExportReport(str(out), opset_written, (stage / out.name).stat().st_size, 0.0)
        if check:
            report.parity = check_parity(model, stage / out.name, shape)
            bad = [p for p in report.parity if not p.ok]
            if bad:
                detail = ", ".join(f"batch {p.batch}: max |diff| {p.max_abs_diff:.3g}" for p in bad)
                raise ExportError(
                    f"onnxruntime's logits differ from PyTorch's beyond rtol={RTOL}, atol={ATOL} ({detail}); "
                    f"{out} was not written. Try another --opset, or --no-check to keep it anyway"
                )
    report.seconds = time.perf_counter() - t0
    _write_sidecar(Path(f"{out}.json"), meta, report)
    return report


def _write_sidecar(path: Path, meta: ExportMeta, report: ExportReport) -> None:
    import onnxruntime as ort

    record = {
        "metadata": asdict(meta),
        "export": asdict(report),
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "versions": {"lsvit": lsvit.__version__, "torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
