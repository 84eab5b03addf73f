"""vyre: a persistent GPU megakernel fed by 64-byte ring slots, driven from Python."""
from vyre.errors import (  # noqa: F401
    BackendError,
    IoUringError,
    PipelineError,
    ProtocolError,
    QueueFullError,
    SlotFaultError,
    WaitTimeoutError,
)

__version__ = "0.1.0"
