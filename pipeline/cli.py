"""``lsvit-pipeline``: synth, extract, merge, verify and eda."""

from pathlib import Path
from typing import Annotated

import typer

from lsvit.pipeline import options as o

app = o.app(
    "HMDB51-style clips -> WebDataset shards: synth, extract, merge, verify and eda.", no_args_is_help=True
)


@app.callback()
def _options(version: o.Version = None) -> None:
    pass  # --version is handled (eagerly) by its own callback


# Each stage module owns its work; the commands only parse options and report.


@app.command()
def synth(
    out: Annotated[
        Path, o.opt("--out", "Root of the synthetic HMDB51-shaped tree.", envvar="SYNTH_OUT")
    ] = Path("data/hmdb51"),
    scale: Annotated[
        float, o.opt("--scale", "Fraction of the real per-class clip counts, in (0, 1].", envvar="SCALE")
    ] = 0.1,
    seed: o.Seed = 0,
    workers: o.Workers = None,
) -> None:
    """Write the embedded default dataset: synthetic motion clips and official-format split files (resumable)."""
    from lsvit.pipeline.synth import synthesize

    r = synthesize(out, scale=scale, seed=seed, workers=workers)
    typer.echo(f"{r.classes} classes, {r.clips} clips ({r.written} new) in {r.out} [{r.seconds:.1f}s]")


@app.command()
def extract(
    split: o.Split = 1,
    dataset: o.Dataset = "hmdb51",
    data_root: o.DataRoot = None,
    splits_dir: o.SplitsDir = None,
    out: Annotated[Path, o.opt("--out", "Shard folder; writes <out>/split<N>/.", envvar="SHARDS_OUT")] = Path(
        "shards"
    ),
    frames: o.Frames = 16,
    device: o.Device = "auto",
    workers: o.Workers = None,
    include_unused: Annotated[
        bool,
        o.opt(
            "--include-unused", "Also write HMDB51's flag-0 clips to unused-*.tar.", envvar="INCLUDE_UNUSED"
        ),
    ] = False,
    part: Annotated[
        str, o.opt("--part", "Extract only 0-based part i of N (i/N), then `merge`.", envvar="PART")
    ] = "0/1",
    jpeg_quality: Annotated[
        int,
        o.opt(
            "--jpeg-quality",
            "JPEG quality of the frames (80: ~39 dB PSNR, fewer bytes than the source AVI).",
            envvar="JPEG_QUALITY",
            min=1,
            max=100,
        ),
    ] = 80,
    shard_size: Annotated[int, o.opt("--shard-size", "Clips per shard.", envvar="SHARD_SIZE", min=1)] = 128,
    balance_target: Annotated[
        int | None,
        o.opt(
            "--balance-target",
            "Per-class target of the hybrid manifest (default: median).",
            envvar="BALANCE_TARGET",
            min=1,
        ),
    ] = None,
    seed: o.Seed = 0,
) -> None:
    """Decode the clips of one split into 16-frame JPEG WebDataset shards (resumable)."""
    from lsvit.pipeline.extract import ExtractConfig, run_extract

    cfg = ExtractConfig(
        dataset=dataset,
        data_root=data_root,
        splits_dir=splits_dir,
        out=out,
        split=split,
        frames=frames,
        device=device,
        workers=workers,
        include_unused=include_unused,
        part=part,
        jpeg_quality=jpeg_quality,
        shard_max_samples=shard_size,
        seed=seed,
        balance_target=balance_target,
    )
    r = run_extract(cfg)
    typer.echo(
        f"{r['samples']} samples in {r['shards']} shards ({r['resumed']} resumed) -> {r['split_dir']}/{r['index']}; "
        f"{r['failures']} failures listed in {r['split_dir']}/failures*.jsonl"
    )
    if cfg.part[1] > 1:
        typer.echo(f"when all {cfg.part[1]} parts are done: lsvit-pipeline merge {r['split_dir']}")


@app.command()
def merge(
    split_dir: Annotated[
        Path, typer.Argument(help="Split folder holding index-p<i>of<N>.json of every part.")
    ],
    dataset: Annotated[
        str | None,
        o.opt(
            "--dataset",
            "Check that the parts were extracted from this dataset (default: any).",
            envvar="DATASET",
        ),
    ] = None,
) -> None:
    """Merge the outputs of `extract --part i/N` runs into index.json, failures.jsonl and manifests."""
    from lsvit.pipeline.merge import merge_parts

    index = merge_parts(split_dir, dataset)
    n = sum(s["count"] for s in index["shards"])
    typer.echo(
        f"{n} samples in {len(index['shards'])} shards, {index['num_failures']} failures -> {split_dir}/index.json"
    )


@app.command()
def verify(
    split_dir: Annotated[
        Path, typer.Argument(help="Split folder (shards/split1), or a shard folder holding one split.")
    ],
) -> None:
    """Check every shard against the size and sha256 in the index; exit 2 naming each one that differs."""
    from lsvit.pipeline.verify import VerifyError, verify_split

    report = verify_split(split_dir)
    for name, problem in report.bad:
        typer.echo(f"bad: {name}: {problem}", err=True)
    if report.bad:
        raise VerifyError(report.summary())
    typer.echo(report.summary())


@app.command()
def eda(
    ctx: typer.Context,
    shards: o.Shards = "shards",
    splits_dir: Annotated[
        Path | None,
        o.opt(
            "--splits-dir",
            "Split files, lists or CSV of --dataset (as for extract): class counts per split, without shards.",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        o.opt(
            "--dataset",
            "Format of --splits-dir: hmdb51 (default), ucf101 or folder; with --shards, index.json says.",
            envvar="DATASET",
        ),
    ] = None,
    out: Annotated[Path, o.opt("--out", "Report folder.", envvar="EDA_OUT")] = Path("reports/eda"),
) -> None:
    """Class balance and photometric statistics of the shards (or class counts of the split files alone)."""
    from lsvit.pipeline.eda import run_eda
    from lsvit.pipeline.eda_plots import print_summary

    # --splits-dir means split-file mode; the default --shards only applies without it, and a value
    # typed on the command line wins over one from the environment (both typed: run_eda refuses).
    typed = {p: ctx.get_parameter_source(p).name == "COMMANDLINE" for p in ("shards", "splits_dir")}
    if splits_dir is not None and typed["shards"] and not typed["splits_dir"]:
        splits_dir = None
    elif splits_dir is not None and not typed["shards"]:
        shards = None
    report = run_eda(shards, splits_dir, out, dataset)
    for note in report.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    print_summary(report, out)


main = o.run_app(app)

if __name__ == "__main__":
    main()
