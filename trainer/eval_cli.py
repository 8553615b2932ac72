"""``lsvit-eval``: evaluation only, writing the report training writes."""

from pathlib import Path
from typing import Annotated

from lsvit.pipeline import options as o
from lsvit.pipeline.errors import LsvitError

eval_app = o.app("Evaluate a trained checkpoint on the shards of its split.")


@eval_app.command()
def eval_command(
    checkpoint: Annotated[
        Path, o.opt("--checkpoint", "A checkpoint written by lsvit-train, e.g. runs/NAME/best.pt.")
    ],
    shards: o.Shards = "shards",
    subset: Annotated[
        str, o.opt("--subset", "val (the run's hold-out of the train clips), test, train or unused.")
    ] = "test",
    test_views: Annotated[
        str, o.opt("--test-views", "TxS: temporal views x spatial crops, e.g. 2x3.")
    ] = "1x1",
    out: Annotated[
        Path | None, o.opt("--out", "Report folder (default: next to the checkpoint).", envvar="EVAL_OUT")
    ] = None,
    split: Annotated[
        int | None, o.opt("--split", "Split to use when the shard folder holds several.", min=1, max=3)
    ] = None,
    batch_size: Annotated[
        int, o.opt("--batch-size", "Clips per batch (per rank under torchrun).", min=1)
    ] = 8,
    workers: o.Workers = None,
    device: o.Device = "auto",
    amp: Annotated[
        str, o.opt("--amp", "auto, bf16, fp16 or off; auto = bf16/fp16 on CUDA, off on CPU.")
    ] = "auto",
    verbose: Annotated[
        bool, o.opt("--verbose", "Also print the per-class accuracy table (per_class.csv has it).")
    ] = False,
    version: o.Version = None,
) -> None:
    """Evaluate a checkpoint: metrics JSON, confusion PNG and per-class CSV, as training reports them."""
    from lsvit.trainer.eval_checkpoint import evaluate_checkpoint  # torch only once the options parsed
    from lsvit.trainer.temporal import parse_views

    try:
        views = "{}x{}".format(*parse_views(test_views))
    except ValueError as e:
        raise LsvitError(str(e)) from e
    evaluate_checkpoint(
        checkpoint, shards, subset, views, out,
        split=split, batch_size=batch_size, workers=workers, device=device, amp=amp, verbose=verbose,
    )  # fmt: skip


eval_main = o.run_app(eval_app)

if __name__ == "__main__":  # torchrun -m lsvit.trainer.eval_cli ... evaluates on several ranks
    eval_main()
