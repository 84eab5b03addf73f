"""Staging memory for streaming ingest: a ring of fixed-size chunk slots in one mapping.

One page-aligned anonymous ``mmap`` holds ``depth`` slots of ``stride`` bytes. Slot ``i``
starts at byte ``i * stride``; its chunk data starts ``data_offset`` bytes into the slot, and
the ``data_offset`` bytes before it hold up to ``context`` bytes of the file that precede the
chunk (so a DFA_SCAN over the slot can re-read its context, see docs/ingest.md)::

    slot i:  [ pad | context bytes | chunk data (<= chunk_bytes) | pad to the page ]
             ^ i*stride             ^ i*stride + data_offset

On the CPU backend the mapping is used as is (the buffer table holds its host address). On
the CUDA backend the same mapping is page-locked and mapped into the device address space
with ``cuMemHostRegister(DEVICEMAP | PORTABLE)`` (``vyre.backends.cuda.register_host``; the
registration works while a megakernel runs, and unregistering is done with the megakernels
paused, since it waits for the device to go idle), so io_uring writes straight into
GPU-visible memory and the kernel reads it over PCIe / C2C with no copy. PyCUDA is imported
only then.
"""
from __future__ import annotations

import mmap
from typing import TYPE_CHECKING, Any

import numpy as np

from vyre.errors import BackendError, PipelineError

__all__ = ["PAGE_SIZE", "StagingRing"]

if TYPE_CHECKING:
    from typing_extensions import Self

PAGE_SIZE = mmap.PAGESIZE
_LINE = 64  # chunk data starts on a cache line


def _round_up(x: int, to: int) -> int:
    return (x + to - 1) // to * to


class StagingRing:
    """``depth`` chunk slots of ``chunk_bytes`` (plus ``context`` bytes before each).

    Args:
        chunk_bytes: payload bytes per slot (> 0).
        depth: number of slots (> 0): the most chunks in flight (reading or being scanned).
        context: bytes reserved before each chunk for the file bytes that precede it.
        cuda: page-lock and map the memory for the device (needs PyCUDA and a current CUDA
            context; ``activate`` is a context manager that makes it current, e.g. the CUDA
            backend's ``_active``).

    Attributes:
        array: the whole mapping as a ``uint8`` numpy array.
        stride, data_offset, size: layout in bytes.
        device_pointer: device address of byte 0 (CUDA) or the host address (CPU).
    """

    def __init__(self, chunk_bytes: int, depth: int, *, context: int = 0, cuda: bool = False,
                 activate: Any = None) -> None:
        chunk_bytes, depth, context = int(chunk_bytes), int(depth), int(context)
        if chunk_bytes <= 0 or depth <= 0 or context < 0:
            raise PipelineError(
                f"invalid staging geometry chunk_bytes={chunk_bytes} depth={depth} "
                f"context={context}", "use chunk_bytes > 0, depth > 0 and context >= 0")
        self.chunk_bytes = chunk_bytes
        self.depth = depth
        self.context = context
        self.data_offset = _round_up(context, _LINE)
        self.stride = _round_up(self.data_offset + chunk_bytes, PAGE_SIZE)
        self.size = self.stride * depth
        if self.size >= 1 << 32:
            raise PipelineError(
                f"the staging ring needs {self.size} bytes, over the 4 GiB a u32 DFA_SCAN "
                "offset can address", "use smaller chunk_bytes or a smaller depth")
        self.cuda = bool(cuda)
        self._mm: mmap.mmap | None = mmap.mmap(
            -1, self.size, flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20),
            prot=mmap.PROT_READ | mmap.PROT_WRITE)
        host = np.frombuffer(self._mm, dtype=np.uint8)
        self._host = host
        self.array = host
        self._registered: Any = None  # the CUDA host registration, if any
        if self.cuda:
            self._register_cuda(activate)
        self.device_pointer = self._pointer()

    def _register_cuda(self, activate: Any) -> None:
        from vyre.backends.cuda import register_host

        ctx = activate() if activate is not None else None
        try:
            if ctx is not None:
                ctx.__enter__()
            try:
                self._registered = register_host(self._host)
            except BackendError as err:  # pragma: no cover - needs a GPU
                raise BackendError(f"page-locking {self.size} staging bytes failed: {err}",
                                   "create the GpuStream after the Megakernel started (a CUDA "
                                   "context must be current) and check free pinned memory "
                                   "(smaller chunk_bytes or depth)") from err
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)

    def _pointer(self) -> int:
        if self._registered is not None:  # pragma: no cover - needs a GPU
            return int(self._registered.device_pointer)
        return int(self._host.ctypes.data)

    @property
    def host_pointer(self) -> int:
        """Host address of byte 0 (page-aligned)."""
        return int(self._host.ctypes.data)

    def slot_offset(self, i: int) -> int:
        """Byte offset of slot ``i`` in :attr:`array`."""
        if not 0 <= i < self.depth:
            raise IndexError(f"staging slot {i} out of range 0..{self.depth - 1}")
        return i * self.stride

    def data_start(self, i: int) -> int:
        """Byte offset in :attr:`array` where slot ``i``'s chunk data starts."""
        return self.slot_offset(i) + self.data_offset

    def read_target(self, i: int, context: int, nbytes: int) -> np.ndarray:
        """The bytes a read fills: ``context`` bytes before the chunk, then ``nbytes``."""
        if context > self.data_offset or nbytes > self.chunk_bytes or context < 0 or nbytes < 0:
            raise PipelineError(
                f"a read of {context}+{nbytes} bytes does not fit staging slot {i} "
                f"(context room {self.data_offset}, chunk {self.chunk_bytes})",
                "create the staging ring with a larger context / chunk_bytes")
        start = self.data_start(i)
        return self._host[start - context:start + nbytes]

    @property
    def closed(self) -> bool:
        return self._mm is None

    def close(self) -> None:
        """Unregister (CUDA) and unmap. Views handed out keep the mapping alive until dropped."""
        if self._mm is None:
            return
        if self._registered is not None:  # pragma: no cover - needs a GPU
            from vyre.backends.cuda import release_host

            release_host(self._registered)  # keeps the mapping alive until unregistered
            self._registered = None
        mm, self._mm = self._mm, None
        self.array = None  # type: ignore[assignment]
        self._host = None  # type: ignore[assignment]
        try:
            mm.close()
        except BufferError:
            pass  # a view is still exported (io_uring registration, user array): freed by GC

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"StagingRing(chunk_bytes={self.chunk_bytes}, depth={self.depth}, "
                f"context={self.context}, stride={self.stride}, cuda={self.cuda})")
