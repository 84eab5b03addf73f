"""Backends: where slots execute. See :mod:`vyre.backends.base` for the shared interface."""
from __future__ import annotations

from typing import Any

from vyre.backends.base import Backend
from vyre.errors import BackendError

__all__ = ["Backend", "make_backend", "cuda_available", "BACKENDS"]

BACKENDS = ("auto", "cpu", "cuda")


def cuda_available() -> tuple[bool, str]:
    """(True, device name) when the CUDA backend can run here, else (False, why not)."""
    from vyre.backends.cuda import probe as cuda_probe

    return cuda_probe.probe()


def make_backend(kind: str, **options: Any) -> Backend:
    """Build a backend by name; ``"auto"`` takes CUDA when it can run here, else the CPU."""
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r}", f"use one of {', '.join(BACKENDS)}")
    if kind == "auto":
        kind = "cuda" if cuda_available()[0] else "cpu"
    if kind == "cpu":
        from vyre.backends.cpu import CpuBackend

        return CpuBackend(**options)
    from vyre.backends.cuda import CudaBackend

    return CudaBackend(**options)
