"""``lsvit-train``: every option also from ``--config FILE`` (same names) or ``LSVIT_<NAME>``.

Flags and variables win over the file, the file over the defaults; with ``--resume`` the run's saved config
takes the place of the defaults (``trainer.resolve``). Heavy imports wait until the options have parsed.
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from lsvit.pipeline import options as o
from lsvit.pipeline.errors import LsvitError, clip, short
from lsvit.trainer.config import AMP, BALANCE, DECODE, FRAME_SAMPLING, MIXUP_MODES, TrainConfig

D = TrainConfig  # dataclass defaults, shown in --help
DATA, MODEL, OPTIM, AUG, EVAL = "Data", "Model", "Optimisation", "Augmentation", "Validation and test"
CKPT, HARDWARE, RUN = "Checkpointing", "Hardware", "Run"
# AugConfig's fields (trainer.augment, not imported: albumentations is heavy); a test keeps them in step.
AUG_KEYS = (
    "scale", "ratio", "hflip", "brightness", "contrast", "p_brightness_contrast", "blur_sigma", "p_blur", "hue",
    "saturation", "p_hue_saturation", "rgb_shift", "p_rgb_shift",
)  # fmt: skip
# Options of this invocation only: not training settings, so not in TrainConfig, config.json or checkpoints.
RUN_ONLY = ("config", "max_steps", "verbose", "version")
EPILOG = (
    f"Crop, flip and colour augmentation are set in a --config file's aug: mapping, keys {', '.join(AUG_KEYS)} "
    "(README: Training). Every option is also a --config key (same name, _ for -) and an LSVIT_<NAME> variable."
)


def _o(name: str, help: str, panel: str, **kw) -> typer.models.OptionInfo:
    return o.opt(name, help, rich_help_panel=panel, **kw)


train_app = o.app("Train an LS-ViT on the shards of one split.")


@train_app.command(epilog=EPILOG)
def train_command(
    ctx: typer.Context,
    shards: Annotated[
        str,
        _o(
            "--shards",
            "Shard folder of `lsvit-pipeline extract`, or a URL prefix (https://..., pipe:...).",
            DATA,
        ),
    ] = D.shards,
    split: Annotated[
        int | None, _o("--split", "Split to use when the shard folder holds several.", DATA, min=1, max=3)
    ] = None,
    balance: Annotated[str, _o("--balance", f"Class balancing: {', '.join(BALANCE)}.", DATA)] = D.balance,
    verify_shards: Annotated[
        bool,
        _o(
            "--verify-shards/--no-verify-shards",
            "Check local shards' sizes and sha256 against index.json before training (~1 s/GB).",
            DATA,
        ),
    ] = D.verify_shards,
    model: Annotated[
        str,
        _o(
            "--model",
            "An lsvit_* model or vit_frameavg_* baseline, tv:<torchvision video model> (r2plus1d_18, r3d_18, "
            "mc3_18, s3d, mvit_v2_s, swin3d_t) or hf:<folder saved with save_pretrained>.",
            MODEL,
        ),
    ] = D.model,
    model_kwargs: Annotated[
        str | None,
        _o(
            "--model-kwargs",
            "JSON of extra model kwargs (timm.create_model, torchvision's builder, or hf: config fields), "
            "e.g. '{\"depth\": 4}'.",
            MODEL,
        ),
    ] = None,
    init: Annotated[
        str | None,
        _o(
            "--init",
            "Start from: a weights file (.safetensors/.pth/.bin/.npz), a Hugging Face style folder, or a timm "
            "pretrained name (vit_small_patch16_224.augreg_in21k, hf-hub:timm/...) from the local HF cache.",
            MODEL,
        ),
    ] = None,
    init_partial: Annotated[
        bool, _o("--init-partial/--init-strict", "Train even if --init leaves trunk tensors random.", MODEL)
    ] = D.init_partial,
    mean: Annotated[
        str | None, _o("--mean", "Input normalisation mean, 'r,g,b' in 0-1 (default: from --init).", MODEL)
    ] = None,
    std: Annotated[
        str | None, _o("--std", "Input normalisation std, 'r,g,b' (default: from --init).", MODEL)
    ] = None,
    img_size: Annotated[
        int | None,
        _o("--img-size", "Crop size fed to the model (default: the model's, e.g. 224).", MODEL, min=8),
    ] = None,
    num_frames: Annotated[
        int | None,
        _o("--num-frames", "Frames per clip fed to the model (default: the model's).", MODEL, min=1),
    ] = None,
    drop_path: Annotated[
        float, _o("--drop-path", "Stochastic depth rate of the last block.", MODEL)
    ] = D.drop_path,
    epochs: Annotated[int, _o("--epochs", "Training epochs.", OPTIM, min=1)] = D.epochs,
    max_steps: Annotated[
        int | None,
        _o(
            "--max-steps",
            "Stop after N optimizer updates of the run (a smoke test): evaluate, checkpoint and report then; "
            "the lr schedule still spans --epochs.",
            OPTIM,
            min=1,
        ),
    ] = None,
    batch_size: Annotated[int, _o("--batch-size", "Clips per batch and rank.", OPTIM, min=1)] = D.batch_size,
    accum_steps: Annotated[
        int, _o("--accum-steps", "Batches per optimizer update.", OPTIM, min=1)
    ] = D.accum_steps,
    lr: Annotated[float, _o("--lr", "Peak learning rate (AdamW).", OPTIM)] = D.lr,
    min_lr: Annotated[
        float, _o("--min-lr", "Learning rate at the end of the cosine and warmup start.", OPTIM)
    ] = (D.min_lr),
    weight_decay: Annotated[
        float, _o("--weight-decay", "AdamW weight decay (not on norms, biases, tokens).", OPTIM)
    ] = D.weight_decay,
    warmup_epochs: Annotated[float, _o("--warmup-epochs", "Linear warmup length in epochs.", OPTIM)] = (
        D.warmup_epochs
    ),
    layer_decay: Annotated[
        float | None,
        _o("--layer-decay", "Layer-wise lr decay, e.g. 0.75 (head 1, each block below x0.75).", OPTIM),
    ] = None,
    label_smoothing: Annotated[float, _o("--label-smoothing", "Cross-entropy label smoothing.", OPTIM)] = (
        D.label_smoothing
    ),
    clip_grad: Annotated[
        float | None, _o("--clip-grad", "Max gradient norm (null in a --config file: no clipping).", OPTIM)
    ] = D.clip_grad,
    ema: Annotated[
        bool, _o("--ema/--no-ema", "Keep an EMA of the weights; evaluate and predict with it.", OPTIM)
    ] = (D.ema),
    ema_decay: Annotated[float, _o("--ema-decay", "EMA decay per update.", OPTIM)] = D.ema_decay,
    eda: Annotated[
        Path | None, _o("--eda", "eda.json whose suggested photometric ranges to use (then aug: keys).", AUG)
    ] = None,
    frame_sampling: Annotated[
        str,
        _o("--frame-sampling", f"Training frames: {', '.join(FRAME_SAMPLING)} (eval: uniform).", AUG),
    ] = D.frame_sampling,
    frame_stride: Annotated[
        int | None,
        _o("--frame-stride", "Stored frames between picks for 'stride' (default: fit).", AUG, min=1),
    ] = None,
    mixup: Annotated[float, _o("--mixup", "Mixup alpha (0: off), e.g. 0.8.", AUG)] = D.mixup,
    cutmix: Annotated[float, _o("--cutmix", "CutMix alpha (0: off), e.g. 1.0; one box per clip.", AUG)] = (
        D.cutmix
    ),
    mixup_prob: Annotated[float, _o("--mixup-prob", "Probability of mixing a batch.", AUG)] = D.mixup_prob,
    mixup_switch_prob: Annotated[
        float, _o("--mixup-switch-prob", "Probability of CutMix instead of mixup when both are on.", AUG)
    ] = D.mixup_switch_prob,
    mixup_mode: Annotated[
        str, _o("--mixup-mode", f"One lambda per {', '.join(MIXUP_MODES)} (elem: per clip).", AUG)
    ] = D.mixup_mode,
    val_fraction: Annotated[
        float,
        _o(
            "--val-fraction",
            "Train clips held out (whole source videos) to select best.pt; 0: last epoch.",
            EVAL,
        ),
    ] = D.val_fraction,
    patience: Annotated[
        int | None, _o("--patience", "Stop when validation top-1 has not improved for N epochs.", EVAL, min=1)
    ] = None,
    test_views: Annotated[
        str, _o("--test-views", "Final test views TxS: temporal x spatial crops, e.g. 2x3.", EVAL)
    ] = D.test_views,
    out: Annotated[
        Path, _o("--out", "Run folder: config, metrics, TensorBoard events, plots, checkpoints.", CKPT)
    ] = Path(D.out),
    resume: Annotated[
        str | None,
        _o("--resume", "Continue a run: 'auto' (= <out>/last.pt) or a checkpoint; flags override.", CKPT),
    ] = None,
    device: Annotated[str, _o("--device", "auto, cuda, mps or cpu.", HARDWARE)] = D.device,
    amp: Annotated[
        str, _o("--amp", f"{', '.join(AMP)}; auto = bf16 (else fp16) on CUDA, off on CPU.", HARDWARE)
    ] = (D.amp),
    workers: Annotated[
        int | None, _o("--workers", "Loader processes per rank (default: cores).", HARDWARE, min=0)
    ] = None,
    decode: Annotated[
        str,
        _o(
            "--decode",
            f"JPEG decoding and augmentation: {', '.join(DECODE)}; cuda = nvJPEG and GPU augmentation "
            "(workers only read bytes), auto = cuda when training on CUDA and nvJPEG works.",
            HARDWARE,
        ),
    ] = D.decode,
    config: Annotated[
        Path | None, _o("--config", "YAML/JSON file of options (same names); flags override it.", RUN)
    ] = None,
    seed: Annotated[int, _o("--seed", "Random seed; the same seed gives the same run.", RUN)] = D.seed,
    verbose: Annotated[
        bool, _o("--verbose", "Also print the per-class accuracy table (per_class.csv has it).", RUN)
    ] = False,
    version: o.Version = None,
) -> None:
    """Train an LS-ViT on one split: select on a validation hold-out, report the test split.

    Results (the run header, one line per epoch, the summary) go to stdout; progress and notes to stderr.
    """
    from lsvit.trainer.resolve import resolve_config
    from lsvit.trainer.train import train  # heavy imports only once the options parsed

    given = {
        name: value for name, value in ctx.params.items() if name not in RUN_ONLY and _explicit(ctx, name)
    }
    if "model_kwargs" in given:
        given["model_kwargs"] = _json_mapping(given["model_kwargs"], "--model-kwargs")
    train(resolve_config(config, given), max_steps=max_steps, verbose=verbose)


def _explicit(ctx: typer.Context, name: str) -> bool:
    """Whether an option came from the command line or its LSVIT_* variable (so it beats --config)."""
    source = ctx.get_parameter_source(name)  # typer bundles its own click: compare enum names
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _json_mapping(text: str, flag: str) -> dict:
    example = f"e.g. {flag} '{{\"depth\": 4}}'"
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:
        raise LsvitError(f"{flag} {short(text)} is not valid JSON ({clip(str(e))}); {example}") from e
    if not isinstance(value, dict):
        raise LsvitError(f"{flag} must be a JSON object, got {short(text)}; {example}")
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {short(k, 40)} is given twice")
        out[k] = v
    return out


train_main = o.run_app(train_app)
