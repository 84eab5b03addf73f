"""vyre: a persistent GPU megakernel fed by 64-byte ring slots, driven from Python.

The public API: :class:`Megakernel` (the facade), the wire layer :mod:`vyre.wire`, the typed
descriptors :mod:`vyre.descriptors`, the constants :mod:`vyre.protocol`, streaming ingest
(:class:`GpuStream`, :mod:`vyre.ingest.dfa`) and the errors below.
"""
from vyre.descriptors import (  # noqa: F401
    BatchDescriptor,
    PackedOpDescriptor,
    SlotDescriptor,
    SlotOpcode,
    WindowDescriptor,
)
from vyre.errors import (  # noqa: F401
    ArgumentError,
    BackendError,
    InvalidTypeError,
    InvalidValueError,
    IoUringError,
    PipelineError,
    ProtocolError,
    QueueFullError,
    SlotFaultError,
    WaitTimeoutError,
)
from vyre.megakernel import Megakernel, Ticket  # noqa: F401
from vyre.protocol import Opcode, Priority, SlotStatus  # noqa: F401
from vyre.wire import DebugRecord  # noqa: F401

__version__ = "0.1.0"


_LAZY = {
    # streaming ingest pulls in io_uring and staging code: loaded on first use only
    "GpuStream": "vyre.ingest.stream",
    "IoService": "vyre.ioservice",
    "FileChangedError": "vyre.ingest.stream",
    "build_dfa": "vyre.ingest.dfa",
    "Dfa": "vyre.ingest.dfa",
    "PatternError": "vyre.ingest.dfa",
    "load_dfa": "vyre.ingest.dfa",
    "ScanResult": "vyre.ingest.results",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vyre' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
