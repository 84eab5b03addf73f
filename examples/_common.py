"""Shared bits of the examples: the --backend flag and device buffers on the GPU."""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np


def parse(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", choices=["cpu", "cuda"], default="cpu",
                   help="where the megakernel runs (default: cpu)")
    return p.parse_args()


def device_array(mk: Any, host: np.ndarray) -> Any:
    """``host`` copied where the backend's workers read it: the array itself on the CPU; a CuPy
    (else PyTorch) device array on the GPU, allocated while the megakernel is paused."""
    if mk.backend.name == "cpu":
        return host
    with mk.paused():
        try:
            import cupy

            return cupy.asarray(host)
        except ImportError:
            import torch

            return torch.from_numpy(host.copy()).cuda()


def to_host(arr: Any) -> np.ndarray:
    """A numpy copy of an array from :func:`device_array`."""
    if isinstance(arr, np.ndarray):
        return arr
    if hasattr(arr, "get"):
        return arr.get()
    return arr.cpu().numpy()
