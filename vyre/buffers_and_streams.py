"""Memory the workers reach (the buffer table) and ordering against CUDA streams, for a
megakernel (docs/facade.md).
"""
from __future__ import annotations

import operator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from vyre import argcheck
from vyre.errors import (
    InvalidTypeError,
    InvalidValueError,
)
from vyre.protocol import (
    SLOT_OPCODE,
    SLOT_WORDS,
    Opcode,
)
from vyre.readout import Readout


class BuffersAndStreams(Readout):
    """The buffer and CUDA-stream methods of :class:`vyre.Megakernel`."""

    def register_buffer(self, array: Any, *, writable: bool = True) -> int:
        """Add a buffer to the buffer table (handle 1..255; handle 0 is control).

        On the CPU any C-contiguous host buffer works; on CUDA also a NumPy array (page-locked
        and mapped for the GPU), a GPUArray, host memory from :meth:`alloc_buffer`, an object
        with ``__cuda_array_interface__`` (CuPy, PyTorch) or a ``__dlpack__`` tensor on the
        GPU. The megakernel keeps a reference until it closes, so a buffer the caller drops is
        never freed under it. :meth:`alloc_buffer` makes one that suits the backend in use.
        A read-only buffer (``bytes``, a read-only array) needs ``writable=False``: it is then
        copied once, since ops such as BUF_COPY cannot be refused a write into it.
        """
        if not isinstance(writable, bool):
            raise InvalidTypeError(f"writable={writable!r} is not a bool",
                                   "pass writable=True or writable=False")
        self._check_usable()
        return self._backend.register_buffer(array, writable=writable)

    def alloc_buffer(self, data: np.ndarray | int, *, device: bool = False) -> tuple[int, Any]:
        """Allocate a buffer the workers can reach, fill it, register it: ``(handle, buffer)``.

        ``data`` is an array (copied in as raw bytes) or a byte count (zero-filled). The buffer
        is a host-visible uint8 numpy array, except with ``device=True`` on CUDA, where it is
        device memory (a GPUArray: fastest for tables the kernel reads often).
        """
        self._check_usable()
        if isinstance(data, (int, np.integer)) and not isinstance(data, bool):
            nbytes, payload = argcheck.count("data (a byte count)", data, 0, 1 << 48), None
        elif isinstance(data, (str, bool)) or data is None:
            raise InvalidTypeError(f"alloc_buffer takes an array or a byte count, not "
                                   f"{type(data).__name__}",
                                   "pass a numpy array (copied in as bytes), bytes, or an int "
                                   "byte count; encode text first (s.encode())")
        else:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = np.frombuffer(data, np.uint8)
            arr = np.ascontiguousarray(data)
            if arr.dtype.hasobject or arr.dtype.kind in "USM":
                raise InvalidTypeError(f"alloc_buffer cannot copy an array of dtype "
                                       f"{arr.dtype} as raw bytes",
                                       "pass a numeric numpy array or bytes")
            payload = arr.view(np.uint8).reshape(-1)
            nbytes = payload.size
        buf = self._backend.alloc_buffer(nbytes, device=device)
        if payload is not None and payload.size:
            self._backend.upload(buf, payload)
        return self._backend.register_buffer(buf), buf

    def stream_wait(self, stream: Any, ticket: int) -> None:
        """Make a CUDA ``stream`` (CuPy, PyTorch, PyCUDA, or a CUstream int) wait until
        ``ticket`` finished, before the work queued on it after this call.

        On CUDA the wait runs on the GPU (no host round trip): the stream waits on the ticket's
        slot status. A ticket that FAULTs also releases the stream (``wait`` reports the
        fault). On the CPU backend this waits for the ticket on the host. LOAD_MISS tickets
        are refused (their slot passes through WAIT_IO). See docs/facade.md."""
        ticket = operator.index(ticket)
        if not 0 <= ticket < self._published:
            raise InvalidValueError(f"ticket {ticket} was never published",
                                    "pass a ticket returned by submit")
        slot = ticket % self.slot_count
        if self._retired > ticket:
            return  # finished: nothing to wait for
        if int(self._ring[slot * SLOT_WORDS + SLOT_OPCODE]) == int(Opcode.LOAD_MISS):
            raise InvalidValueError("a LOAD_MISS ticket cannot be waited for by a stream",
                                    "wait for it with mk.wait(ticket) before queuing the "
                                    "stream's work")
        self._ring_doorbell_if_behind()
        if not self._backend.stream_wait(stream, slot):
            self.wait(ticket)

    def paused(self) -> AbstractContextManager[None]:
        """A ``with`` block during which no megakernel of this process runs on the GPU.

        On CUDA, allocating or freeing device or page-locked memory and loading modules wait
        for the device to go idle: for a megakernel to leave the GPU, which it does by itself
        when idle and every ``yield_ms`` when busy (never, with ``idle_exit_ms=0,
        yield_ms=0``). To have such calls wait for nothing, make them inside this block: every
        running megakernel finishes what was published, exits, and is relaunched when the
        block ends; nothing is lost or run twice. Slots published inside the block run after
        it. The megakernel's CUDA context is current inside the block. Re-entrant; a no-op on
        the CPU backend. vyre's own allocations (``alloc_buffer``, ``GpuStream``) do this
        themselves.
        """
        return self._backend.quiesce()
