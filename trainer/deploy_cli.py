"""``lsvit-export`` and ``lsvit-demo``: ship a trained model as ONNX, or serve it as a web app.

Like the other commands, these import torch, onnx and Gradio only after their options parsed.
"""

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from lsvit.pipeline import options as o
from lsvit.pipeline.errors import LsvitError

# Shared by lsvit-predict and lsvit-demo: a checkpoint or an exported ONNX file, exactly one of them.
Checkpoint = Annotated[
    Path | None,
    o.opt(
        "--checkpoint",
        "A checkpoint written by lsvit-train, e.g. runs/NAME/best.pt.",
        rich_help_panel="Model",
    ),
]
OnnxModel = Annotated[
    Path | None,
    o.opt(
        "--model",
        "An ONNX file written by lsvit-export, run with onnxruntime (instead of --checkpoint).",
        envvar="ONNX_MODEL",  # LSVIT_MODEL is lsvit-train's model name
        rich_help_panel="Model",
    ),
]
PredictDevice = Annotated[
    str, o.opt("--device", "auto, cuda, cpu (mps for checkpoints).", envvar="DEVICE", rich_help_panel="Model")
]


def need(command: str, *modules: str) -> None:
    """Stops with a one-line hint when the ``deploy`` extra is not installed (checked without importing).

    Raises:
        LsvitError: Naming the missing modules and the install command.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise LsvitError(f"{command} needs {', '.join(missing)}: pip install 'lsvit[deploy]'")


export_app = o.app("Export a checkpoint's model to ONNX.")


@export_app.command()
def export_command(
    checkpoint: Annotated[
        Path, o.opt("--checkpoint", "A checkpoint written by lsvit-train, e.g. runs/NAME/best.pt.")
    ],
    out: Annotated[
        Path | None, o.opt("--out", "The .onnx file to write (default: the checkpoint's name with .onnx).")
    ] = None,
    opset: Annotated[
        int | None, o.opt("--opset", "ONNX operator set, 18 (the default) or newer.", min=1)
    ] = None,
    check: Annotated[
        bool,
        o.opt(
            "--check/--no-check",
            "Compare onnxruntime with PyTorch at batch 1 and 3 (rtol 1e-3, atol 1e-5); fail on a mismatch.",
        ),
    ] = True,
    version: o.Version = None,
) -> None:
    """Export the model for (batch, T, 3, H, W) float clips with a dynamic batch axis; the classes, frames,
    image size, mean/std and training config go into the file's metadata_props."""
    from rich.console import Console

    need("lsvit-export", "onnx", "onnxruntime", "onnxscript")
    out = out or Path(checkpoint).with_suffix(".onnx")
    if out.suffix.lower() != ".onnx":
        raise LsvitError(f"--out {out} must end in .onnx")
    console = Console(stderr=True)
    with console.status(f"exporting {checkpoint} -> {out} (torch.onnx.export, dynamo)"):
        from lsvit.trainer.export import ATOL, RTOL, export_checkpoint

        report = export_checkpoint(checkpoint, out, opset, check)
    meta = f"{out}.json"
    typer.echo(f"wrote {out} ({report.bytes / 2**20:.1f} MiB, opset {report.opset}, {report.seconds:.1f} s)")
    if report.parity:
        rows = "; ".join(f"batch {p.batch}: max |diff| {p.max_abs_diff:.2g}" for p in report.parity)
        typer.echo(f"onnxruntime matches PyTorch within rtol {RTOL:g}, atol {ATOL:g} ({rows})")
    else:
        typer.echo("parity not checked (--no-check)")
    typer.echo(f"metadata (classes, frames, image size, mean/std, config) in the file and in {meta}")
    typer.echo(f"predict with: lsvit-predict --model {out} VIDEO...")


demo_app = o.app("Serve a web demo of a trained model (Gradio).")


@demo_app.command()
def demo_command(
    checkpoint: Checkpoint = None,
    model: OnnxModel = None,
    host: Annotated[
        str, o.opt("--host", "Interface to listen on; 0.0.0.0 serves other machines too.")
    ] = "127.0.0.1",
    port: Annotated[int, o.opt("--port", "TCP port.", min=1, max=65535)] = 7860,
    examples: Annotated[
        list[Path] | None,
        o.opt(
            "--examples",
            "Example clips (files or folders; repeat the option). Default: test clips of the data the "
            "model was trained on, when they are on disk.",
        ),
    ] = None,
    num_examples: Annotated[
        int, o.opt("--num-examples", "How many default examples to offer (0: none).", min=0)
    ] = 4,
    top_k: Annotated[int, o.opt("--top-k", "Classes to show.", min=1)] = 5,
    max_file_size: Annotated[str, o.opt("--max-file-size", "Upload limit, e.g. 500mb or 2gb.")] = "500mb",
    device: PredictDevice = "auto",
    version: o.Version = None,
) -> None:
    """Serve upload -> sampled frames, top-k P(action | clip) and the clip's facts, also as an HTTP API."""
    from lsvit.trainer.predict import load_predictor

    need("lsvit-demo", "gradio", *(["onnxruntime"] if model else []))
    predictor = load_predictor(checkpoint, model, device)
    from lsvit.trainer import webdemo  # Gradio only once the model loaded

    if examples:
        clips = webdemo.expand_examples(examples)
        note = f"{len(clips)} from --examples"
    else:
        clips, note = webdemo.training_examples(getattr(predictor, "config", {}) or {}, num_examples)
    source = f"checkpoint {checkpoint}" if checkpoint else f"ONNX {model}"
    typer.echo(f"model: {source}; examples: {note}", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"listening on {host}: anyone who can reach this machine can use the demo", err=True)
    app = webdemo.build_app(predictor, clips, top_k, source)
    webdemo.serve(app, host, port, clips, max_file_size)


export_main = o.run_app(export_app)
demo_main = o.run_app(demo_app)
