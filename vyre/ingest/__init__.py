"""Streaming ingest: file bytes into GPU-visible staging memory, scanned by DFA_SCAN slots.

``stream`` (GpuStream: arguments, lifetime, what a scan publishes), ``pipeline`` (one call's
chunk pipeline), ``leases`` (what the streams of one megakernel share), ``readers`` (io_uring
or a preadv pool), ``staging`` (page-locked chunk ring), ``dfa`` (pattern tables), ``args``
(argument checks), ``dfa_file`` (saved pattern sets), ``results`` (:class:`ScanResult`),
``_uring`` (the io_uring extension over csrc/uring.c).

``build_dfa``, ``load_dfa``, ``Dfa``, ``ScanResult`` and ``GpuStream`` are importable from here;
they load on first use, so importing :mod:`vyre.ingest.dfa` does not pull in io_uring.
"""
from typing import Any

_LAZY = {
    "build_dfa": "vyre.ingest.dfa",
    "load_dfa": "vyre.ingest.dfa",
    "Dfa": "vyre.ingest.dfa",
    "count_per_pattern": "vyre.ingest.dfa",
    "find_matches": "vyre.ingest.dfa",
    "ScanResult": "vyre.ingest.results",
    "GpuStream": "vyre.ingest.stream",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vyre.ingest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
