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
from lsvit.trainer.deploy_cli import Checkpoint, OnnxModel, PredictDevice
from lsvit.trainer.eval_cli import eval_app, eval_main
from lsvit.trainer.train_cli import train_app, train_main

__all__ = ["eval_app", "eval_main", "predict_app", "predict_main", "train_app", "train_main"]

predict_app = o.app("Predict action probabilities for video files and folders.")
OUTPUT = "Output"


@predict_app.command()
def predict_command(
    videos: Annotated[
        list[Path],
        typer.Argument(
            help="Video files (any container/codec FFmpeg reads) and folders (searched recursively)."
        ),
    ],
    checkpoint: Checkpoint = None,
    model: OnnxModel = None,
    device: PredictDevice = "auto",
    top_k: Annotated[int, o.opt("--top-k", "Classes to show per video.", min=1, rich_help_panel=OUTPUT)] = 5,
    as_json: Annotated[
        bool, o.opt("--json", "Print one JSON object per video instead of tables.", rich_help_panel=OUTPUT)
    ] = False,
    output: Annotated[
        Path | None,
        o.opt(
            "--output",
            "Write the predictions to a .csv (a row per clip: path, class, probability, the top-k, error) or "
            ".jsonl file instead of printing them.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    version: o.Version = None,
) -> None:
    """Print P(action | clip) for the top-k classes of each video, from a checkpoint or an ONNX export."""
    from lsvit.trainer.predictions import check_output
    from lsvit.trainer.videos import expand_videos

    files = expand_videos(videos, "VIDEO", missing_ok=True)  # a missing file is reported in its turn
    if device not in DEVICES:
        raise LsvitError(f"--device {device!r} is not allowed; choose one of: {', '.join(DEVICES)}")
    if output is not None:
        check_output(output)  # before the model loads
    failed = _predict(files, checkpoint, model, device, top_k, as_json, output)
    if failed:
        raise typer.Exit(1)


def _predict(files, checkpoint, model, device, top_k, as_json, output) -> int:
    """Predicts every file, printing each result or writing it to ``output``; returns how many failed."""
    from lsvit.pipeline.progress import progress_bar
    from lsvit.trainer import synthetic
    from lsvit.trainer.predict import Prediction, load_predictor, predict_many
    from lsvit.trainer.predictions import PredictionFile, record

    predictor = load_predictor(checkpoint, model, device)  # a checkpoint, or an ONNX file on onnxruntime
    synth = synthetic.info(getattr(predictor, "synthetic", None))
    if synth is not None and synthetic.real_videos(files):
        typer.echo(synthetic.note(synth), err=True)
    k = min(top_k, len(predictor.classes))
    sink = PredictionFile(output, k) if output is not None else None
    out = Console(soft_wrap=True, highlight=False)
    failed = 0
    bar = progress_bar(total=len(files), desc="predict", unit="clip", disable=len(files) < 2, leave=False)
    try:
        for video, result in zip(files, predict_many(predictor, files), strict=True):
            bar.update()
            if not isinstance(result, Prediction):
                failed += 1
                typer.secho(f"error: {result}", fg=typer.colors.RED, err=True)
                if sink is not None:
                    sink.add(None, str(video), str(result).removeprefix(f"{video}: "))
            elif sink is not None:
                sink.add(result)
            elif as_json:
                typer.echo(json.dumps(record(result, k)))
            else:
                out.print(result.video, style="bold", markup=False)  # names may hold [..]
                out.print(_table(result.top(k)))
    except BaseException:
        if sink is not None:
            sink.close(keep=False)
        raise
    finally:
        bar.close()
    if sink is not None:
        sink.close()
        typer.echo(f"{sink.rows - failed} of {sink.rows} clips predicted -> {output}")
    return failed


def _table(top: list[tuple[str, float]]) -> Table:
    table = Table()
    table.add_column("rank", justify="right")
    table.add_column("action")
    table.add_column("P(action | clip)", justify="right")
    for i, (c, p) in enumerate(top, 1):
        table.add_row(str(i), c, f"{p:.4f}")
    return table


predict_main = o.run_app(predict_app)

if __name__ == "__main__":  # `python -m lsvit.trainer.cli ...` trains (what torchrun -m runs)
    train_main()
