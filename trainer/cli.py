"""``lsvit-predict`` here; ``lsvit-train`` (``trainer.train_cli``) and ``lsvit-eval`` (``trainer.eval_cli``).

``python -m lsvit.trainer.cli ...`` trains (what ``torchrun -m lsvit.trainer.cli`` runs).
"""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lsvit.pipeline import options as o
from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.config import DEVICES
from lsvit.trainer.deploy_cli import Checkpoint, OnnxModel
from lsvit.trainer.eval_cli import eval_app, eval_main
from lsvit.trainer.train_cli import train_app, train_main

__all__ = ["eval_app", "eval_main", "predict_app", "predict_main", "train_app", "train_main"]

predict_app = typer.Typer(add_completion=False, help="Predict action probabilities for video files.")


@predict_app.command()
def predict_command(
    videos: Annotated[list[Path], typer.Argument(help="Video files (any container/codec FFmpeg reads).")],
    checkpoint: Checkpoint = None,
    model: OnnxModel = None,
    top_k: Annotated[int, o.opt("--top-k", "Classes to show per video.", min=1)] = 5,
    as_json: Annotated[bool, o.opt("--json", "Print one JSON object per video instead of tables.")] = False,
    device: o.Device = "auto",
) -> None:
    """Print P(action | clip) for the top-k classes of each video, from a checkpoint or an ONNX export."""
    from lsvit.trainer.predict import Prediction, load_predictor, predict_many

    if device not in DEVICES:
        raise LsvitError(f"--device {device!r} is not allowed; choose one of: {', '.join(DEVICES)}")
    predictor = load_predictor(checkpoint, model, device)  # a checkpoint, or an ONNX file on onnxruntime
    out = Console()
    failed = 0
    for result in predict_many(predictor, videos):
        if not isinstance(result, Prediction):
            failed += 1
            typer.secho(f"error: {result}", fg=typer.colors.RED, err=True)
            continue
        top = result.top(top_k)
        if as_json:
            rows = [{"class": c, "probability": round(p, 6)} for c, p in top]
            typer.echo(json.dumps({"video": result.video, "top": rows}))
            continue
        out.print(
            result.video, style="bold", markup=False, highlight=False, soft_wrap=True
        )  # names may hold [..]
        table = Table()
        table.add_column("rank", justify="right")
        table.add_column("action")
        table.add_column("P(action | clip)", justify="right")
        for i, (c, p) in enumerate(top, 1):
            table.add_row(str(i), c, f"{p:.4f}")
        out.print(table)
    if failed:
        raise typer.Exit(1)


predict_main = o.run_app(predict_app)

if __name__ == "__main__":  # `python -m lsvit.trainer.cli ...` trains (what torchrun -m runs)
    train_main()
