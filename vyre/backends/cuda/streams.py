"""Ordering between vyre tickets and a CuPy / PyTorch / PyCUDA stream.

- :func:`stream_wait_ticket`: the stream waits *on the GPU* until a ticket finished, with no
  host round trip: ``cuStreamWaitValue32(status word of the ticket's slot, DONE, GEQ)`` on the
  ring in mapped host memory. A slot's status goes EMPTY(0) -> PUBLISHED(1) -> CLAIMED(2) ->
  DONE(3) or FAULT(7) for every op but LOAD_MISS (which parks in WAIT_IO(4) meanwhile, so it
  is refused here); ``>= DONE`` is therefore "finished". If the host retires the ticket and
  republishes its slot before the stream reaches the wait, the stream waits for the newer
  ticket of that slot: later, never earlier.
- :func:`stream_event_done`: the host side of the other direction: a vyre op published only
  after the work queued on the stream so far has finished (an event recorded on the stream,
  polled; a host round trip: the workers never re-read a published slot's status, so a
  stream cannot hold a published slot back without a change to the kernel's worker loop).

The driver calls go through ``ctypes`` on ``libcuda`` (the library :mod:`host` loads), in the
megakernel's context: streams of CuPy and PyTorch live in the device's primary context, which
is the one vyre uses when it finds none current.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any

from vyre.backends.cuda.host import _check, _driver
from vyre.errors import InvalidTypeError, WaitTimeoutError

_WAIT_GEQ = 0x0  # CU_STREAM_WAIT_VALUE_GEQ: (int32)(*addr - value) >= 0
_EVENT_DISABLE_TIMING = 0x2
_NOT_READY = 600  # CUDA_ERROR_NOT_READY
_prototyped = False


def _lib() -> Any:
    global _prototyped
    lib = _driver()
    if not _prototyped:
        lib.cuStreamWaitValue32_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                               ctypes.c_uint]
        lib.cuEventCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint]
        lib.cuEventRecord.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cuEventQuery.argtypes = [ctypes.c_void_p]
        lib.cuEventDestroy_v2.argtypes = [ctypes.c_void_p]
        _prototyped = True
    return lib


def stream_handle(stream: Any) -> int:
    """The ``CUstream`` of a CuPy ``Stream`` (``.ptr``), a ``torch.cuda.Stream``
    (``.cuda_stream``), a PyCUDA ``Stream`` (``.handle``) or a plain integer handle."""
    if isinstance(stream, int) and not isinstance(stream, bool):
        return stream
    for attr in ("cuda_stream", "ptr", "handle"):
        value = getattr(stream, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise InvalidTypeError(f"{type(stream).__name__} is not a CUDA stream",
                           "pass a cupy.cuda.Stream, a torch.cuda.Stream, a pycuda Stream or "
                           "an integer CUstream handle")


def stream_wait_ticket(stream: Any, status_address: int) -> None:
    """Queue on ``stream`` a wait until the 32-bit status word at device address
    ``status_address`` is at least DONE. The caller's context must be current."""
    from vyre.protocol import SlotStatus

    _check(_lib().cuStreamWaitValue32_v2(ctypes.c_void_p(stream_handle(stream)),
                                         status_address, int(SlotStatus.DONE), _WAIT_GEQ),
           "cuStreamWaitValue32 on the ticket's slot status",
           "pass a stream of the device and context the megakernel runs in (CuPy and "
           "PyTorch use the device's primary context, as vyre does)")


def stream_event_done(stream: Any, timeout: float | None) -> None:
    """Block until the work queued on ``stream`` so far has finished (an event recorded on
    it, polled; the caller's context must be current). Raises :class:`WaitTimeoutError`."""
    lib = _lib()
    event = ctypes.c_void_p()
    _check(lib.cuEventCreate(ctypes.byref(event), _EVENT_DISABLE_TIMING), "cuEventCreate",
           "make the megakernel's context current (start the Megakernel first)")
    try:
        _check(lib.cuEventRecord(event, ctypes.c_void_p(stream_handle(stream))), "cuEventRecord",
               "pass a stream of the context the megakernel runs in")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = lib.cuEventQuery(event)
            if rc == 0:
                return
            if rc != _NOT_READY:
                _check(rc, "cuEventQuery on the stream's event",
                       "the stream's work failed: check that library's error first")
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(
                    f"the stream's queued work did not finish within {timeout} s",
                    "raise the timeout; check that the stream does not wait for a vyre ticket "
                    "that is only published after it (a cycle)")
            time.sleep(0)
    finally:
        lib.cuEventDestroy_v2(event)

