"""CUDA backend: the persistent megakernel on the GPU through PyCUDA (SPEC §7).

Ring, control, debug log, io queue, buffer table and doorbell live in mapped pinned host
memory (DEVICEMAP), so the host publishes with plain stores and reads results without any
copy. The kernel is launched once, on its own non-blocking stream, and runs until SHUTDOWN.
"""
from __future__ import annotations

import contextlib
import struct
import time
from typing import Any, Iterator

import numpy as np

from vyre.backends.base import Backend
from vyre.backends.cuda_probe import INSTALL_FIX, PTX_PATH, probe
from vyre.errors import BackendError
from vyre.protocol import CTRL_SHUTDOWN, MAX_BUFFERS

# vyre_launch_t of cuda/megakernel.cu: vyre_ctx_t (5 pointers, 6 u32), 7 pointers, u64, 2 u32
_LAUNCH = struct.Struct("<5Q6I7QQII")
# device state: tickets u64 @0, doorbell mirror u64 @8, shutdown mirror u32 @16,
# live worker warps u32 @20, counters (DONE, FAULT, METRICS[32]) @64, tenant mirror @256
_STATE_BYTES = 512
_TENANTS_AT = 256
_LIVE_AT = 20
_COUNTERS_AT = 64
_BLOCK_THREADS = 128
_KERNEL = "vyre_megakernel"
_module_cache: dict[int, Any] = {}

# Freeing device or pinned memory synchronizes the device, which waits for every running
# kernel: with a persistent megakernel running, forever. So memory released while any
# megakernel of this process runs is parked here and freed when the last one has stopped.
_RUNNING: set[int] = set()
_DEFERRED_FREES: list[Any] = []


def _release(allocations: list[Any]) -> None:
    """Free device allocations now, or as soon as no megakernel of the process runs.

    Explicit frees at a safe moment, not at garbage collection, which may come while another
    megakernel runs. (Pinned host arrays are left to their last reference: the facade's views
    of control and ring stay readable after shutdown.)
    """
    _DEFERRED_FREES.extend(allocations)
    if not _RUNNING:
        _free_deferred()


def _free_deferred() -> None:
    while _DEFERRED_FREES:
        alloc = _DEFERRED_FREES.pop()
        with contextlib.suppress(Exception):  # already freed, or its context is gone
            alloc.free()


def _kernel_stopped(backend_id: int) -> None:
    _RUNNING.discard(backend_id)
    if not _RUNNING:
        _free_deferred()


def _cuda():
    ok, why = probe()
    if not ok:
        raise BackendError(f"the CUDA backend is unavailable: {why}", INSTALL_FIX)
    import pycuda.driver as cuda

    return cuda


def device_address(array: Any) -> tuple[int, int]:
    """(device address, byte length) of a buffer the GPU can read.

    Accepts PyCUDA ``GPUArray`` and ``DeviceAllocation`` (with ``nbytes``), mapped pinned numpy
    arrays, and any object with ``__cuda_array_interface__`` (CuPy, PyTorch, Numba).
    """
    cai = getattr(array, "__cuda_array_interface__", None)
    if cai is not None:
        ptr = int(cai["data"][0])
        itemsize = np.dtype(cai["typestr"]).itemsize
        count = int(np.prod(cai["shape"])) if cai["shape"] else 1
        if cai.get("strides") not in (None, ()):
            expect = itemsize
            for dim, stride in zip(reversed(cai["shape"]), reversed(cai["strides"])):
                if stride != expect:
                    raise BackendError("the device buffer is not C-contiguous",
                                       "pass a contiguous array (e.g. .contiguous() / cupy.ascontiguousarray)")
                expect *= dim
        return ptr, count * itemsize
    gpudata = getattr(array, "gpudata", None)
    if gpudata is not None:  # pycuda GPUArray
        return int(gpudata), int(array.nbytes)
    if isinstance(array, np.ndarray):
        base = array.base
        while base is not None and not hasattr(base, "get_device_pointer"):
            base = getattr(base, "base", None)
        if base is None:
            raise BackendError(
                "this numpy array is not mapped into the GPU's address space",
                "allocate it with pycuda.driver.pagelocked_empty(..., mem_flags="
                "pycuda.driver.host_alloc_flags.DEVICEMAP) or register it with "
                "pycuda.driver.register_host_memory(arr, flags=DEVICEMAP)")
        if not array.flags.c_contiguous:
            raise BackendError("the buffer is not C-contiguous", "pass np.ascontiguousarray(buffer)")
        offset = array.__array_interface__["data"][0] - base.__array_interface__["data"][0] \
            if hasattr(base, "__array_interface__") else 0
        return int(base.get_device_pointer()) + offset, int(array.nbytes)
    raise BackendError(f"cannot take a device address of {type(array).__name__}",
                       "pass a GPUArray, a mapped pinned numpy array, or an object with "
                       "__cuda_array_interface__ (CuPy, PyTorch)")


class DeviceBuffer:
    """Device memory from :meth:`CudaBackend.alloc_buffer` (``__cuda_array_interface__``, bytes).

    Freed with the backend (after the kernel stopped): freeing device memory synchronizes the
    device, which would wait for the persistent kernel.
    """

    def __init__(self, alloc: Any, nbytes: int) -> None:
        self.alloc = alloc
        self.nbytes = nbytes

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            _release([self.alloc])  # never freed under a running megakernel

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": (self.nbytes,), "typestr": "|u1", "data": (int(self.alloc), False),
                "version": 3, "strides": None}


class CudaBackend(Backend):
    """One persistent megakernel launch on a CUDA device.

    Options: ``device`` (ordinal, default 0; ignored when a context is already current),
    ``workers`` = blocks per SM (default 1; 4 warps each), ``idle_sleep_ns`` (longest back-off
    of an idle warp, default 2000), ``heartbeat_ms`` (default 1), ``coop_min_bytes`` (DFA_SCAN
    ranges of at least this many bytes are scanned by a whole warp, default 2048).
    """

    name = "cuda"
    #: DONE_COUNT / FAULT_COUNT / METRICS trail slot statuses by one poller pass
    lazy_counters = True

    def __init__(self, *, slot_count: int, observable_slots: int, debug_records: int,
                 io_slots: int, workers: int | None = None, device: int = 0,
                 idle_sleep_ns: int = 2000, heartbeat_ms: float = 1.0,
                 coop_min_bytes: int = 2048, **options: Any) -> None:
        if options:
            raise BackendError(f"unknown CUDA backend option(s): {', '.join(sorted(options))}",
                               "see vyre.backends.cuda.CudaBackend for the options")
        cuda = _cuda()
        self._cuda = cuda
        self._own_ctx = None
        current = cuda.Context.get_current()
        if current is None:
            self._own_ctx = cuda.Device(device).retain_primary_context()
            self._own_ctx.push()
            self._ctx = self._own_ctx
        else:
            self._ctx = current
        self._device = cuda.Context.get_device()
        try:
            self._module = self._load_module()
            self._func = self._module.get_function(_KERNEL)
            sms = self._device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
            self.blocks_per_sm = int(workers) if workers else 1
            self.grid = sms * self.blocks_per_sm
            self.slot_count = slot_count
            self.io_slots = io_slots
            self.debug_records = debug_records
            self._options = dict(idle_sleep_ns=idle_sleep_ns, heartbeat_ms=heartbeat_ms,
                                 coop_min_bytes=coop_min_bytes)
            flags = cuda.host_alloc_flags.DEVICEMAP | cuda.host_alloc_flags.PORTABLE
            self._pinned: list[np.ndarray] = []

            def mapped(n: int, dtype=np.uint32) -> np.ndarray:
                # never sliced: the device address comes from the allocation itself
                arr = cuda.pagelocked_zeros(max(n, 1), dtype, mem_flags=flags)
                self._pinned.append(arr)
                return arr

            self.ring = mapped(slot_count * 16)
            self.control = mapped(160 + observable_slots)
            self.debug = mapped(1 + 4 * debug_records + 1)
            self.ioq = mapped(io_slots * 8)
            self.doorbell = mapped(1, np.uint64)
            self._table = mapped(MAX_BUFFERS * 2, np.uint64)  # (addr, bytes) pairs
            self._buffers: list[Any] = [self.control]
            self._table[0] = self._dptr(self.control)
            self._table[1] = self.control.nbytes
            self._stream = cuda.Stream(flags=1)  # CU_STREAM_NON_BLOCKING: never waits on stream 0
            # host-to-device uploads: ordered and complete before the kernel may read them,
            # without the legacy stream (which would not order them before the kernel's reads)
            self._copy_stream = cuda.Stream(flags=1)
            self._state = cuda.mem_alloc(_STATE_BYTES)
            cuda.memset_d8_async(self._state, 0, _STATE_BYTES, self._copy_stream)
            self._launch = cuda.mem_alloc(_LAUNCH.size)
            self._copy_stream.synchronize()
            self._running = False
            self._closed = False
        except BaseException:
            if self._own_ctx is not None:
                self._own_ctx.pop()
            raise

    # ------------------------------------------------------------------ helpers
    def _load_module(self):
        key = int(self._ctx.handle)
        mod = _module_cache.get(key)
        if mod is None:
            with open(PTX_PATH, "rb") as f:
                ptx = f.read()
            try:
                mod = self._cuda.module_from_buffer(ptx)
            except self._cuda.Error as err:
                raise BackendError(f"the driver could not load the megakernel PTX ({err})",
                                   "update the NVIDIA driver, or rebuild vyre with a PTX target "
                                   "this driver accepts (VYRE_PTX_ARCH)") from err
            _module_cache[key] = mod
        return mod

    @staticmethod
    def _dptr(arr: np.ndarray) -> int:
        return int(arr.base.get_device_pointer()) if arr.base is not None else 0

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

    # ------------------------------------------------------------------ Backend
    def register_buffer(self, array: Any, *, writable: bool = True) -> int:
        handle = len(self._buffers)
        if handle >= MAX_BUFFERS:
            raise BackendError(f"the buffer table is full ({MAX_BUFFERS} handles)",
                               "reuse handles: register fewer, larger buffers")
        addr, nbytes = device_address(array)
        self._buffers.append(array)  # keeps the memory alive while the kernel may read it
        self._table[2 * handle] = addr
        self._table[2 * handle + 1] = nbytes
        return handle

    def alloc_buffer(self, nbytes: int, *, device: bool = False) -> Any:
        """Mapped pinned host memory (host-visible), or device memory with ``device=True``.

        Device memory comes from ``mem_alloc`` + ``memset``, never from a helper that launches
        a kernel: loading or launching another module while the megakernel runs can wait for
        the device to go idle, which a persistent kernel never does (measured: a hang).
        """
        with self._active():
            if device:
                alloc = self._cuda.mem_alloc(max(nbytes, 1))
                self._cuda.memset_d8_async(alloc, 0, max(nbytes, 1), self._copy_stream)
                self._copy_stream.synchronize()
                return DeviceBuffer(alloc, nbytes)
            flags = self._cuda.host_alloc_flags.DEVICEMAP | self._cuda.host_alloc_flags.PORTABLE
            return self._cuda.pagelocked_zeros(max(nbytes, 1), np.uint8, mem_flags=flags)

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

    def start(self) -> None:
        if self._running:
            return
        s = int(self._state)
        params = _LAUNCH.pack(
            self._dptr(self.ring), self._dptr(self.control), self._dptr(self.debug),
            self._dptr(self.ioq), self._dptr(self._table),
            self.slot_count, self.control.size, self.control.size - 160,
            self.debug_records, self.io_slots, MAX_BUFFERS,
            s, s + 8, s + 16, s + _LIVE_AT, self._dptr(self.doorbell), s + _COUNTERS_AT,
            s + _TENANTS_AT,
            int(self._options["heartbeat_ms"] * 1e6), int(self._options["idle_sleep_ns"]),
            int(self._options["coop_min_bytes"]))
        worker_warps = self.grid * (_BLOCK_THREADS // 32) - 2  # the poller and the flusher
        with self._active():
            live = np.array([worker_warps], np.uint32)  # alive until the copy completed
            self._cuda.memcpy_htod_async(int(self._state) + _LIVE_AT, live, self._copy_stream)
            self._cuda.memcpy_htod_async(self._launch, params, self._copy_stream)
            self._copy_stream.synchronize()
            try:
                self._func(self._launch, block=(_BLOCK_THREADS, 1, 1), grid=(self.grid, 1),
                           stream=self._stream)
            except self._cuda.Error as err:
                raise BackendError(f"the megakernel launch failed ({err})",
                                   "lower workers (blocks per SM) or free GPU memory") from err
        self._running = True
        _RUNNING.add(id(self))

    def stop(self, timeout: float) -> None:
        if not self._running:
            return
        self.control[CTRL_SHUTDOWN] = 1
        deadline = time.monotonic() + timeout
        with self._active():
            while True:
                try:
                    if self._stream.is_done():
                        break
                except self._cuda.Error as err:
                    self._running = False
                    _kernel_stopped(id(self))
                    raise BackendError(f"the megakernel faulted ({err})",
                                       "run the workload under compute-sanitizer; the context "
                                       "may need to be recreated") from err
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"the megakernel did not stop within {timeout} s of SHUTDOWN",
                        "a slot never finishes (an op that spins?); the GPU context is still "
                        "busy, restart the process to reclaim it")
                time.sleep(0.0002)
        self._running = False
        _kernel_stopped(id(self))

    def check(self) -> None:
        if not self._running:
            return
        with self._active():
            try:
                finished = self._stream.is_done()
            except self._cuda.Error as err:
                self._running = False
                _kernel_stopped(id(self))
                raise BackendError(f"the megakernel faulted ({err})",
                                   "run the workload under compute-sanitizer to find the bad "
                                   "access; recreate the Megakernel") from err
        if finished and not self.control[CTRL_SHUTDOWN]:
            self._running = False
            _kernel_stopped(id(self))
            raise BackendError("the megakernel exited without a SHUTDOWN",
                               "report this as a bug with the workload that triggered it")

    @property
    def running(self) -> bool:
        return self._running

    def describe(self) -> dict[str, Any]:
        return {
            "name": self._device.name(),
            "grid": self.grid,
            "block": _BLOCK_THREADS,
            "blocks_per_sm": self.blocks_per_sm,
            "memory": "mapped pinned host memory (DEVICEMAP)",
        }

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        if self._running:
            self.stop(5.0)
        self._closed = True
        # another megakernel of this process may still run: never free under it. Pinned
        # arrays go with their last reference (the facade's views stay readable).
        _release([self._state, self._launch,
                  *(b.alloc for b in self._buffers[1:] if isinstance(b, DeviceBuffer))])
        self._buffers = [self.control]
        if self._own_ctx is not None:
            with contextlib.suppress(Exception):
                if self._cuda.Context.get_current() == self._own_ctx:
                    self._cuda.Context.pop()
            self._own_ctx = None
