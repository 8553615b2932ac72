"""Every random generator's state (Python, NumPy, torch, CUDA), for an exact resume: capture, check, restore.

The states are tensors and plain types, so checkpoints holding them load with ``weights_only=True``.
"""

import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as tensors and plain types."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),  # (int, tuple[int, ...], float | None)
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` captured (CUDA states only where the devices exist)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def rng_problem(state: Any) -> str | None:
    """What is wrong with one rank's RNG states (the layout of :func:`rng_state`), or None."""
    if not isinstance(state, dict) or not {"python", "numpy", "torch", "cuda"} <= set(state):
        return "must be a mapping with python, numpy, torch and cuda states"
    py = state["python"]
    if not (
        isinstance(py, (tuple, list))
        and len(py) == 3
        and _is_int(py[0])
        and isinstance(py[1], (tuple, list))
        and len(py[1]) == 625
        and all(_is_int(x) for x in py[1])
    ):
        return "python must be random.getstate()'s (version, 625 integers, gauss)"
    n = state["numpy"]
    key = n.get("key") if isinstance(n, dict) else None
    if not (isinstance(key, torch.Tensor) and key.shape == (624,) and _is_int(n.get("pos"))):
        return "numpy must hold the MT19937 key (624 integers) and pos"
    t = state["torch"]
    if not (
        isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.shape == torch.get_rng_state().shape
    ):
        return "torch must be torch.get_rng_state()'s byte tensor"
    if not (isinstance(state["cuda"], list) and all(isinstance(c, torch.Tensor) for c in state["cuda"])):
        return "cuda must be a list of byte tensors"
    return None
