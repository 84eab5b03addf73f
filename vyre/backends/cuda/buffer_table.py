"""The buffer table of the CUDA backend and the memory behind it: registering what the
kernel may reach (host pages, device arrays, DLPack tensors), allocating buffers, and
host-to-device copies on a side stream that never waits on the kernel (docs/facade.md,
"Registered buffers and frees"). :class:`vyre.backends.cuda.backend.CudaBackend` sets every
attribute below.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from vyre.backends.base import Backend
from vyre.backends.cuda.memory import (
    DeviceBuffer,
    DeviceCopy,
    device_address,
    dlpack_address,
    host_zeros,
    reachable,
    register_host,
    register_pages,
)
from vyre.backends.cuda.residency import quiesced
from vyre.errors import BackendError
from vyre.protocol import MAX_BUFFERS


class CudaBufferTable(Backend):
    """Buffer-table and copy methods of the CUDA backend, and its context helpers."""

    _cuda: Any  # pycuda.driver
    _ctx: Any  # the backend's pycuda Context
    _copy_stream: Any
    _read_stream: Any
    _events: list[Any]
    _buffers: list[Any]
    _registrations: list[Any]
    _table: np.ndarray

    def _mapped(self, n: int, dtype=np.uint32) -> np.ndarray:
        """Zeroed host memory registered for the GPU (cuMemHostRegister works under a running
        kernel; cuMemHostAlloc does not)."""
        raw = host_zeros(max(n, 1) * np.dtype(dtype).itemsize)
        self._registrations.append(register_host(raw, self._ctx))
        return raw.view(dtype)

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        """Make our context current for a driver call from any thread."""
        if self._cuda.Context.get_current() == self._ctx:
            yield
            return
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def _in_ctx(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` with our context current: ``_active`` without its cost where the
        context already is (the stream thread's per-chunk calls)."""
        if self._cuda.Context.get_current() == self._ctx:
            return fn(*args)
        with self._active():
            return fn(*args)

    def register_buffer(self, array: Any, *, writable: bool = True) -> int:
        """Add ``array`` to the buffer table. Accepted: anything :func:`device_address` takes,
        a NumPy array (page-locked and mapped here; the registration is released with the
        backend, never under a resident kernel) and a ``__dlpack__`` object on the GPU.

        The table holds a reference to what it was given (and to a DLPack capsule): memory a
        user drops stays allocated until :meth:`close`, so the kernel never reads freed
        memory (docs/facade.md, "Registered buffers and frees")."""
        handle = len(self._buffers)
        if handle >= MAX_BUFFERS:
            raise BackendError(f"the buffer table is full ({MAX_BUFFERS} handles)",
                               "reuse handles: register fewer, larger buffers")
        keep: Any = array
        if isinstance(array, np.ndarray) and not reachable(array):
            if not array.flags.c_contiguous:
                raise BackendError("the buffer is not C-contiguous",
                                   "pass np.ascontiguousarray(buffer)")
            with self._active():
                reg, addr = register_pages(array, self._ctx)
            if reg is not None:
                self._registrations.append(reg)
            nbytes = int(array.nbytes)
        elif not isinstance(array, np.ndarray) and not hasattr(array, "__cuda_array_interface__") \
                and not hasattr(array, "gpudata") and hasattr(array, "__dlpack__"):
            addr, nbytes, capsule = dlpack_address(array)
            keep = (array, capsule)
        else:
            addr, nbytes = device_address(array)
        self._buffers.append(keep)  # keeps the memory alive while the kernel may read it
        self._table[2 * handle] = addr
        self._table[2 * handle + 1] = nbytes
        return handle

    def rebind_buffer(self, handle: int, array: Any | None) -> None:
        """Point registered ``handle`` at ``array`` (anything :func:`device_address` takes;
        None: an empty buffer) and drop the reference to what it named before. The caller
        guarantees that no slot in flight reads the handle. A running kernel may hold the
        old table entry in a cache it never drops, so a new binding is written with the
        megakernels paused (a relaunch starts with clean caches); emptying needs no pause,
        since a handle is only read again after its next binding."""
        if not 0 < handle < len(self._buffers):
            raise BackendError(f"no buffer registered under handle {handle}",
                               "rebind a handle returned by register_buffer()")
        if array is None:
            self._table[2 * handle] = 0
            self._table[2 * handle + 1] = 0
            self._buffers[handle] = None
            return
        addr, nbytes = device_address(array)
        with self.quiesce():
            self._table[2 * handle] = addr
            self._table[2 * handle + 1] = nbytes
            self._buffers[handle] = array

    def alloc_buffer(self, nbytes: int, *, device: bool = False) -> Any:
        """Registered host memory (host-visible), or device memory with ``device=True``.

        Device memory is allocated with every megakernel of the process paused (cuMemAlloc
        may wait for the device to go idle) and comes from ``mem_alloc`` + ``memset``, never
        from a helper that loads or launches a kernel.
        """
        if device:
            with quiesced(), self._active():
                alloc = self._cuda.mem_alloc(max(nbytes, 1))
                self._cuda.memset_d8_async(alloc, 0, max(nbytes, 1), self._copy_stream)
                self._copy_stream.synchronize()
            return DeviceBuffer(alloc, nbytes)
        with self._active():
            return self._mapped(nbytes, np.uint8)  # at least 1 byte: a valid device address

    def copy_to_device(self, buffer: Any, offset: int, data: np.ndarray) -> None:
        """Copy page-locked host bytes into device ``buffer`` at ``offset`` with the copy
        engine (DMA, on a side stream that never waits on the kernel); returns once they are
        there, so a slot published next may read them."""
        self.copy_to_device_async(buffer, offset, data).wait()

    def copy_to_device_async(self, buffer: Any, offset: int, data: np.ndarray) -> DeviceCopy:
        """Start :meth:`copy_to_device` and return at once: publish a slot that reads the
        bytes only after the returned copy's ``done()`` (copies finish in the order started).
        ``data`` must stay untouched until then."""
        ptr, nbytes = device_address(buffer)
        if offset < 0 or offset + data.nbytes > nbytes:
            raise BackendError(f"{data.nbytes} bytes at offset {offset} do not fit a buffer of "
                               f"{nbytes}", "copy within the buffer")
        try:
            event = self._in_ctx(self._start_copy, ptr + offset, data)
        except self._cuda.Error as err:
            raise BackendError(f"could not start a {data.nbytes}-byte host-to-device copy "
                               f"({err})", "data must be page-locked host memory (the "
                               "stream's staging); if the context faulted, recreate the "
                               "Megakernel") from err
        return DeviceCopy(self, event, data.nbytes)

    def copy_from_device(self, buffer: Any, offset: int, out: np.ndarray) -> None:
        """Copy ``out.nbytes`` bytes of device ``buffer`` at ``offset`` into ``out`` and return
        once they are there. On a stream of its own: never queued behind the chunk copies, and
        never waiting on the kernel (what the kernel wrote before a slot's status went DONE
        is what a copy started after seeing DONE reads)."""
        ptr, nbytes = device_address(buffer)
        if offset < 0 or offset + out.nbytes > nbytes:
            raise BackendError(f"{out.nbytes} bytes at offset {offset} do not fit a buffer of "
                               f"{nbytes}", "copy within the buffer")
        try:
            self._in_ctx(self._read_copy, ptr + offset, out)
        except self._cuda.Error as err:
            raise BackendError(f"could not copy {out.nbytes} bytes from the device ({err})",
                               "if the context faulted, recreate the Megakernel") from err

    def _read_copy(self, src: int, out: np.ndarray) -> None:
        self._cuda.memcpy_dtoh_async(out, src, self._read_stream)
        self._read_stream.synchronize()

    def _start_copy(self, dst: int, data: np.ndarray) -> Any:
        self._cuda.memcpy_htod_async(dst, data, self._copy_stream)
        try:  # events come back from DeviceCopy.done() on any thread
            event = self._events.pop()
        except IndexError:
            event = self._cuda.Event(self._cuda.event_flags.DISABLE_TIMING)
        event.record(self._copy_stream)
        return event

    def upload(self, buffer: Any, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        if isinstance(buffer, np.ndarray):
            np.copyto(buffer.reshape(-1)[: data.size], data)
            return
        ptr, nbytes = device_address(buffer)
        if data.size > nbytes:
            raise BackendError(f"{data.size} bytes do not fit a buffer of {nbytes}",
                               "allocate a larger buffer")
        with self._active():
            self._cuda.memcpy_htod_async(ptr, data, self._copy_stream)
            self._copy_stream.synchronize()  # complete before any slot may read it
