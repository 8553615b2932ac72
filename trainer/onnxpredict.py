"""Prediction with an exported ONNX file on onnxruntime: the same decode, sampling, crop and softmax as a
checkpoint (`lsvit.trainer.inference`), with the preprocessing read from the file's metadata."""

from pathlib import Path

import torch

from lsvit.pipeline.errors import LsvitError
from lsvit.trainer.augment import eval_transform
from lsvit.trainer.inference import ClipPredictor
from lsvit.trainer.onnxmeta import ExportMeta

ONNX_DEVICES = ("auto", "cuda", "cpu")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format: a checkpoint, not an ONNX file


class OnnxModelError(LsvitError):
    """An ONNX file that cannot be loaded or does not fit lsvit's input contract."""


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for a ``--device`` value.

    Args:
        device: ``auto`` (CUDA when onnxruntime has it, else CPU), ``cuda`` or ``cpu``.

    Returns:
        Provider names, preferred first.

    Raises:
        OnnxModelError: An unknown device, or ``cuda`` without onnxruntime's CUDA provider.
    """
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device not in ONNX_DEVICES:
        raise OnnxModelError(
            f"--device {device!r} is not allowed with --model; choose one of: auto, cuda, cpu"
        )
    if device == "cuda" and not has_cuda:
        raise OnnxModelError(
            "--device cuda was asked for but this onnxruntime has no CUDA provider "
            "(pip install onnxruntime-gpu); use --device auto or cpu"
        )
    if device == "cpu" or not has_cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxPredictor(ClipPredictor):
    """An ``lsvit-export`` file run with onnxruntime (inputs are prepared and normalised on the CPU)."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        """Opens the file and reads its metadata.

        Args:
            path: A ``.onnx`` file written by ``lsvit-export``.
            device: ``auto``, ``cuda`` or ``cpu``.

        Raises:
            OnnxModelError: Missing, not ONNX, or its input does not match its metadata.
            OnnxMetaError: No lsvit metadata.
        """
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise OnnxModelError("--model needs onnxruntime: pip install 'lsvit[deploy]'") from e
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(
                f"--model {self.path} does not exist; pass a .onnx file written by lsvit-export"
            )
        with open(self.path, "rb") as f:
            if f.read(4) == _ZIP_MAGIC:
                raise OnnxModelError(f"--model {self.path} is a PyTorch checkpoint; pass it as --checkpoint")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no per-node placement notes on stderr
        providers = providers_for(device)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OnnxModelError(f"--model {self.path} is not a loadable ONNX model ({first[:200]})") from e
        if device == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise OnnxModelError("onnxruntime could not start its CUDA provider; use --device auto or cpu")
        self.providers = self.session.get_providers()
        self.meta = ExportMeta.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        m = self.meta
        self.classes, self.num_frames, self.source_frames = list(m.classes), m.num_frames, m.source_frames
        self.img_size, self.mean, self.std, self.config = m.img_size, m.mean, m.std, m.config
        self.synthetic = m.synthetic
        self.transform = eval_transform(m.img_size)
        self.device = torch.device("cpu")
        self._check_signature()

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want = [self.num_frames, 3, self.img_size, self.img_size]
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 5 or list(shape[1:]) != want:
            got = [(i.name, i.shape) for i in inputs]
            raise OnnxModelError(
                f"{self.path}: input {got} does not take (batch, {', '.join(map(str, want))}) clips as its "
                "metadata says; export it again with lsvit-export"
            )
        classes = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if isinstance(classes, int) and classes != len(self.classes):
            raise OnnxModelError(
                f"{self.path}: the network has {classes} outputs but its metadata lists {len(self.classes)} "
                "classes; export it again with lsvit-export"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of normalised float32 clips (B, T, 3, H, W) on the CPU."""
        out = self.session.run([self.output_name], {self.input_name: x.contiguous().numpy()})[0]
        return torch.from_numpy(out)
