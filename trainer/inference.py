"""The model-independent half of prediction: decode -> sample -> transform -> normalise -> softmax.

``lsvit-predict``, ``lsvit-demo`` and the ONNX runtime path all go through :class:`ClipPredictor`, so a clip
gets the same frames, crop and normalisation whatever runs the network: a torch model rebuilt from a
checkpoint (`lsvit.trainer.predict.Predictor`) or an exported ONNX file
(`lsvit.trainer.onnxpredict.OnnxPredictor`). Subclasses set the attributes and implement :meth:`logits`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lsvit.pipeline.decode import DecodedClip, decode_clip
from lsvit.pipeline.sampling import sample_indices
from lsvit.trainer.augment import ClipTransform
from lsvit.trainer.preprocess import normalize


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


@dataclass
class PreparedClip:
    """A decoded clip as the model sees it, with what a person may want to know about it."""

    video: str
    decoded: DecodedClip  # the ``source_frames`` frames spread over the clip (as extract stores them)
    pick: list[int]  # positions in ``decoded.frames`` of the ``num_frames`` frames fed to the model
    frames: torch.Tensor  # (1, T, 3, H, W) uint8 after the evaluation resize and centre crop

    @property
    def indices(self) -> list[int]:
        """The source frame number (0-based, in decode order) of each frame the model sees."""
        return [self.decoded.indices[p] for p in self.pick]

    @property
    def padded(self) -> int:
        """How many of the model's frames repeat the clip's last frame (clips shorter than the sampling)."""
        first_pad = len(self.decoded.indices) - self.decoded.padded
        return sum(p >= first_pad for p in self.pick)

    def source_frames(self) -> list[Any]:
        """The model's frames at the clip's own resolution, before resize and crop: (H, W, 3) uint8 arrays."""
        return [self.decoded.frames[p].numpy() for p in self.pick]

    def facts(self) -> dict[str, Any]:
        """What decoding learnt about the clip (frames that decode, fps, size, padding), JSON-ready."""
        d = self.decoded
        return {
            "frames_decoded": d.source_frames,
            "frames_in_header": d.header_frames,
            "fps": round(d.fps, 3),
            "duration_s": round(d.duration, 3),
            "width": d.width,
            "height": d.height,
            "frames_sampled": len(self.pick),
            "source_indices": self.indices,
            "padded": self.padded,
        }


class ClipPredictor:
    """Turns video files into :class:`Prediction` s; subclasses provide the network.

    Attributes (set by subclasses): ``classes`` (label order), ``num_frames`` (frames the model takes),
    ``source_frames`` (frames extract stored per clip; the model's frames are sampled from those, as in
    training), ``mean``/``std`` (0-1 units), ``transform`` (the evaluation resize + centre crop),
    ``device`` (where the input is normalised) and ``synthetic`` (None unless trained on synthetic data).
    """

    classes: list[str]
    num_frames: int
    source_frames: int
    mean: Sequence[float]
    std: Sequence[float]
    transform: ClipTransform
    device: torch.device = torch.device("cpu")
    synthetic: dict[str, Any] | None = None  # how the training clips were generated (lsvit.trainer.synthetic)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the network.

        Args:
            x: Normalised float32 clips (B, T, 3, H, W) on ``self.device``.

        Returns:
            Logits (B, num_classes).
        """
        raise NotImplementedError

    def prepare(self, video: Path | str) -> PreparedClip:
        """Decodes a video and builds the model's input, as evaluation does.

        Args:
            video: Any container/codec FFmpeg reads.

        Returns:
            The clip's frames and facts.

        Raises:
            DecodeError: The file cannot be decoded (the message is the reason).
        """
        decoded = decode_clip(Path(video), num_samples=self.source_frames)
        pick = sample_indices(self.source_frames, self.num_frames)
        frames = decoded.frames.numpy()[pick]  # (T, H, W, 3)
        x = torch.from_numpy(self.transform(frames)).permute(0, 3, 1, 2)[None]  # (1, T, 3, H, W)
        return PreparedClip(str(video), decoded, pick, x)

    @torch.no_grad()
    def predict_clip(self, clip: PreparedClip) -> Prediction:
        """Class probabilities of a prepared clip.

        Args:
            clip: What :meth:`prepare` returned.

        Returns:
            The prediction.
        """
        logits = self.logits(normalize(clip.frames, self.mean, self.std, device=self.device))
        probs = logits.float().softmax(dim=-1)[0].cpu().tolist()
        return Prediction(clip.video, probs, list(self.classes))

    def predict(self, video: Path | str) -> Prediction:
        """Class probabilities for one video file.

        Args:
            video: Any container/codec FFmpeg reads.

        Returns:
            The prediction.

        Raises:
            DecodeError: The file cannot be decoded.
        """
        return self.predict_clip(self.prepare(video))
