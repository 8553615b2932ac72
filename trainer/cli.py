"""``lsvit-train`` and ``lsvit-predict``.

Every ``lsvit-train`` option may also come from ``--config FILE`` (same names, ``_`` or ``-``) or an
``LSVIT_<NAME>`` environment variable; flags and variables win over the file, the file over the defaults.
"""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lsvit.pipeline import options as o
from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.config import AMP, BALANCE, DEVICES, TrainConfig, resolve_config
from lsvit.trainer.deploy_cli import Checkpoint, OnnxModel

D = TrainConfig  # dataclass defaults, shown in --help


train_app = typer.Typer(add_completion=False, help="Train an LS-ViT on the shards of one split.")


@train_app.command()
def train_command(
    ctx: typer.Context,
    shards: o.Shards = Path(D.shards),
    split: Annotated[
        int | None,
        o.opt(
            "--split",
            "Split to train on when the shard folder holds several (default: the only one).",
            min=1,
            max=3,
        ),
    ] = None,
    config: Annotated[
        Path | None, o.opt("--config", "YAML/JSON file of options (same names); flags override it.")
    ] = None,
    model: Annotated[
        str, o.opt("--model", "A registered lsvit_* model, or a vit_frameavg_* baseline for ablations.")
    ] = D.model,
    model_kwargs: Annotated[
        str | None, o.opt("--model-kwargs", "JSON of extra timm.create_model kwargs, e.g. '{\"depth\": 4}'.")
    ] = None,
    init: Annotated[Path | None, o.opt("--init", "Start from a plain timm ViT checkpoint file.")] = None,
    epochs: Annotated[int, o.opt("--epochs", "Training epochs.", min=1)] = D.epochs,
    batch_size: Annotated[int, o.opt("--batch-size", "Clips per batch and rank.", min=1)] = D.batch_size,
    accum_steps: Annotated[
        int, o.opt("--accum-steps", "Batches per optimizer update.", min=1)
    ] = D.accum_steps,
    lr: Annotated[float, o.opt("--lr", "Peak learning rate (AdamW).")] = D.lr,
    min_lr: Annotated[
        float, o.opt("--min-lr", "Learning rate at the end of the cosine and warmup start.")
    ] = D.min_lr,
    weight_decay: Annotated[
        float, o.opt("--weight-decay", "AdamW weight decay (not on norms, biases, tokens).")
    ] = (D.weight_decay),
    warmup_epochs: Annotated[
        float, o.opt("--warmup-epochs", "Linear warmup length in epochs.")
    ] = D.warmup_epochs,
    label_smoothing: Annotated[float, o.opt("--label-smoothing", "Cross-entropy label smoothing.")] = (
        D.label_smoothing
    ),
    drop_path: Annotated[
        float, o.opt("--drop-path", "Stochastic depth rate of the last block.")
    ] = D.drop_path,
    clip_grad: Annotated[
        float | None,
        o.opt("--clip-grad", "Max gradient norm for clipping (null in a --config file disables clipping)."),
    ] = D.clip_grad,
    img_size: Annotated[int, o.opt("--img-size", "Crop size fed to the model.", min=8)] = D.img_size,
    num_frames: Annotated[
        int, o.opt("--num-frames", "Frames per clip fed to the model.", min=1)
    ] = D.num_frames,
    balance: Annotated[str, o.opt("--balance", f"Class balancing: {', '.join(BALANCE)}.")] = D.balance,
    amp: Annotated[
        str, o.opt("--amp", f"{', '.join(AMP)}; auto = bf16 (else fp16) on CUDA, off on CPU/MPS.")
    ] = D.amp,
    device: o.Device = D.device,
    workers: o.Workers = None,
    seed: o.Seed = D.seed,
    out: Annotated[Path, o.opt("--out", "Run folder: config, metrics, plots, checkpoints.")] = Path(D.out),
    resume: Annotated[
        str | None, o.opt("--resume", "Checkpoint to continue from, or 'auto' = <out>/last.pt.")
    ] = None,
    patience: Annotated[
        int | None, o.opt("--patience", "Stop when top-1 has not improved for N epochs.", min=1)
    ] = None,
    ema: Annotated[
        bool, o.opt("--ema/--no-ema", "Keep an EMA of the weights; evaluate and predict with it.")
    ] = D.ema,
    ema_decay: Annotated[float, o.opt("--ema-decay", "EMA decay per update.")] = D.ema_decay,
    eda: Annotated[
        Path | None, o.opt("--eda", "eda.json whose suggested augmentation ranges to use.")
    ] = None,
) -> None:
    """Train an LS-ViT on the shards of one split, evaluating on its test shards every epoch."""
    from lsvit.trainer.train import train  # heavy imports only once the options parsed

    given = {name: value for name, value in ctx.params.items() if name != "config" and _explicit(ctx, name)}
    if "model_kwargs" in given:
        given["model_kwargs"] = _json_mapping(given["model_kwargs"], "--model-kwargs")
    cfg = resolve_config(config, given)
    train(cfg)


def _explicit(ctx: typer.Context, name: str) -> bool:
    """Whether an option came from the command line or its LSVIT_* variable (so it beats --config)."""
    source = ctx.get_parameter_source(name)  # typer bundles its own click: compare enum names
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _json_mapping(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise LsvitError(f"{flag} {text!r} is not valid JSON ({e}); e.g. {flag} '{{\"depth\": 4}}'") from e
    if not isinstance(value, dict):
        raise LsvitError(f"{flag} must be a JSON object such as '{{\"depth\": 4}}', got {text!r}")
    return value


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


train_main = o.run_app(train_app)
predict_main = o.run_app(predict_app)

if __name__ == "__main__":  # `python -m lsvit.trainer.cli ...` trains (what torchrun -m runs)
    train_main()
