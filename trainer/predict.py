"""``lsvit-predict``: P(action | clip) for video files, with the sampling and transform used in training."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lsvit.pipeline.decode import decode_clip
from lsvit.pipeline.errors import LsvitError
from lsvit.pipeline.sampling import sample_indices
from lsvit.trainer.augment import eval_transform
from lsvit.trainer.checkpoint import load_checkpoint, model_from_checkpoint
from lsvit.trainer.data import normalize
from lsvit.trainer.distributed import pick_device

DEFAULT_SOURCE_FRAMES = 16  # what `lsvit-pipeline extract --frames` writes unless told otherwise


@dataclass
class Prediction:
    """The class probabilities of one video."""

    video: str
    probs: list[float]  # one per class, in the checkpoint's class order; sums to 1
    classes: list[str]

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most likely classes with their probabilities, most likely first."""
        order = sorted(range(len(self.probs)), key=lambda i: -self.probs[i])[:k]
        return [(self.classes[i], self.probs[i]) for i in order]


class Predictor:
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
        cfg = ckpt["config"]
        self.num_frames = int(cfg["num_frames"])
        # Extract stored this many frames per clip and the loader sampled num_frames of those: do the same.
        self.source_frames = int(ckpt.get("source_frames") or DEFAULT_SOURCE_FRAMES)
        self.transform = eval_transform(int(cfg["img_size"]))
        self.mean, self.std = self.model.pretrained_cfg["mean"], self.model.pretrained_cfg["std"]

    @torch.no_grad()
    def predict(self, video: Path) -> Prediction:
        """Class probabilities for one video file.

        Args:
            video: Any container/codec FFmpeg reads.

        Returns:
            The prediction.

        Raises:
            DecodeError: The file cannot be decoded.
        """
        clip = decode_clip(Path(video), num_samples=self.source_frames)
        frames = clip.frames.numpy()[sample_indices(self.source_frames, self.num_frames)]
        x = torch.from_numpy(self.transform(frames)).permute(0, 3, 1, 2)[None]  # (1, T, 3, H, W)
        logits = self.model(normalize(x, self.mean, self.std, device=self.device))
        probs = logits.float().softmax(dim=-1)[0].cpu().tolist()
        return Prediction(str(video), probs, self.classes)


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
