"""``lsvit-predict``: P(action | clip) for video files, with the sampling and transform used in training."""

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer import synthetic
from lsvit.trainer.checkpoint import load_checkpoint, model_from_checkpoint
from lsvit.trainer.distributed import pick_device
from lsvit.trainer.inference import ClipPredictor, Prediction
from lsvit.trainer.preprocess import DEFAULT_SOURCE_FRAMES, Preprocess

__all__ = [
    "DEFAULT_SOURCE_FRAMES",
    "ClipPredictor",
    "Prediction",
    "Predictor",
    "load_predictor",
    "predict_many",
]


class Predictor(ClipPredictor):
    """A trained model rebuilt from a checkpoint (``weights_only`` load) with its input pipeline."""

    def __init__(self, checkpoint: Path, device: str = "auto") -> None:
        """Loads the checkpoint.

        Args:
            checkpoint: ``runs/NAME/best.pt`` or ``last.pt``.
            device: ``auto``, ``cuda``, ``mps`` or ``cpu`` for the model (decoding runs on the CPU).
        """
        ckpt = load_checkpoint(checkpoint)
        self.device = pick_device(device)
        self.model = model_from_checkpoint(ckpt).to(self.device)
        self.classes: list[str] = list(ckpt["classes"])
        self.preprocess = Preprocess.from_checkpoint(ckpt)  # the contract the model was trained under
        self.num_frames = self.preprocess.num_frames
        # Extract stored this many frames per clip and the loader sampled num_frames of those: do the same.
        self.source_frames = self.preprocess.source_frames
        self.transform = self.preprocess.eval_transform()
        self.mean, self.std = self.preprocess.mean, self.preprocess.std
        # What lsvit-export writes next to the network (the preprocessing contract and the run's config).
        self.checkpoint, self.config = Path(checkpoint), dict(ckpt["config"])
        self.img_size = self.preprocess.img_size
        self.epoch = ckpt.get("epoch")
        self.synthetic = synthetic.info(ckpt.get("synthetic"))  # None: trained on real data (or unknown)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of normalised clips (B, T, 3, H, W) on ``self.device``."""
        return self.model(x)


def load_predictor(checkpoint: Path | None, onnx: Path | None, device: str = "auto") -> ClipPredictor:
    """The predictor for a checkpoint or an exported ONNX file (exactly one of them).

    Args:
        checkpoint: ``runs/NAME/best.pt`` (``lsvit-predict --checkpoint``).
        onnx: A file written by ``lsvit-export`` (``lsvit-predict --model``), run with onnxruntime.
        device: ``auto``, ``cuda``, ``cpu`` (and ``mps`` for checkpoints).

    Returns:
        A :class:`Predictor` or an ``OnnxPredictor``.

    Raises:
        LsvitError: Neither or both given, or a file that does not fit its option.
    """
    if (checkpoint is None) == (onnx is None):
        raise LsvitError("pass either --checkpoint runs/NAME/best.pt or --model FILE.onnx (one of them)")
    if onnx is not None:
        from lsvit.trainer.onnxpredict import OnnxPredictor  # onnxruntime only when asked for

        return OnnxPredictor(onnx, device)
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise LsvitError(f"--checkpoint {checkpoint} is an ONNX file; pass it as --model {checkpoint}")
    return Predictor(checkpoint, device)


def predict_many(predictor: Predictor, videos: Sequence[Path]) -> Iterator[Prediction | LsvitError]:
    """Predicts each video in turn; a video that fails yields its error and the others still run.

    Args:
        predictor: The loaded model.
        videos: Video files.

    Yields:
        A :class:`Prediction`, or an ``LsvitError`` whose message names the file.
    """
    for video in videos:
        try:
            yield predictor.predict(video)
        except LsvitError as e:
            yield LsvitError(f"{video}: {e}")
