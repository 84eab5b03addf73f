"""CUDA backend: the persistent megakernel on the GPU through PyCUDA (spec §7).

Ring, control, debug log, io queue, buffer table and doorbell live in mapped pinned host
memory (DEVICEMAP), so the host publishes with plain stores and reads results without any
copy. The kernel is launched once, on its own non-blocking stream, and runs until SHUTDOWN.
"""
from __future__ import annotations

import contextlib
import mmap
import struct
import threading
import time
from typing import Any, Iterator

import numpy as np

from vyre._wire import store_release
from vyre.backends.base import Backend
from vyre.backends.cuda.host import HostRegistration
from vyre.backends.cuda.probe import INSTALL_FIX, PTX_PATH, probe
from vyre.errors import BackendError
from vyre.protocol import CTRL_SHUTDOWN, MAX_BUFFERS

# vyre_launch_t of cuda/megakernel.cu: vyre_ctx_t (5 pointers, 6 u32), 9 pointers, u64, 4 u32
_LAUNCH = struct.Struct("<5Q6I9QQIIII")
# device state: tickets u64 @0, doorbell mirror u64 @8, shutdown mirror u32 @16,
# live worker warps u32 @20, tickets the tenant mirror covers u64 @24,
# counters (DONE, FAULT, METRICS[32]) @64, tenant mirror @256, assist board @512
# (struct vyre_assist, _ASSIST_BYTES: a static_assert in the kernel keeps the two in step)
_ASSIST_AT = 512
_ASSIST_BYTES = 8832
_ASSIST_HELPED_AT = _ASSIST_AT + 4  # struct vyre_assist::helped
_STATE_BYTES = _ASSIST_AT + _ASSIST_BYTES
_TENANTS_AT = 256
_LIVE_AT = 20
_TENANTS_ASOF_AT = 24
_COUNTERS_AT = 64
_BLOCK_THREADS = 128
_KERNEL = "vyre_megakernel"
_PAUSE_TIMEOUT = 10.0
_COPY_TIMEOUT = 10.0
_module_cache: dict[int, Any] = {}

# Measured (bench/micro/blocking_calls.py, docs/decisions.md): while any kernel runs,
# cuMemHostAlloc, cuMemFreeHost, cuMemHostUnregister, cuMemAlloc (when it needs new memory),
# cuMemFree and module loading wait for the device to go idle, which a persistent kernel
# never does: they hang. So every such call is made inside quiesced(), which pauses every
# running megakernel of the process (each drains what was published) and relaunches them
# afterwards; releases that come from garbage collection, where pausing is not safe, are
# parked in _DEFERRED_FREES until no kernel is resident.
_RESIDENT: dict[int, "CudaBackend"] = {}
_DEFERRED_FREES: list[Any] = []
_QUIESCE = threading.RLock()
_quiesce_depth = 0
_PAUSED: list["CudaBackend"] = []  # paused by the outermost quiesced() block, resumed at its end
# registered host memory: host address -> registration (device_address looks arrays up here)
_REGISTERED: dict[int, HostRegistration] = {}


@contextlib.contextmanager
def quiesced() -> Iterator[None]:
    """Pause every running megakernel of the process for the block (re-entrant).

    Inside, allocating, freeing or loading modules cannot wait on a persistent kernel. Work
    published meanwhile waits and runs after the block; a megakernel started inside the block
    is launched at its end.
    """
    global _quiesce_depth
    with _QUIESCE:
        if _quiesce_depth == 0:
            try:
                for backend in list(_RESIDENT.values()):
                    backend._pause()
                    _PAUSED.append(backend)
            except BaseException:
                _resume_paused()
                raise
        _quiesce_depth += 1
        try:
            if not _RESIDENT:
                _free_deferred()
            yield
        finally:
            _quiesce_depth -= 1
            if _quiesce_depth == 0:
                _resume_paused()


def _resume_paused() -> None:
    errors: list[BaseException] = []
    while _PAUSED:
        try:
            _PAUSED.pop(0)._resume()
        except Exception as err:  # every paused backend gets its relaunch attempt
            errors.append(err)
    if errors:
        raise errors[0]


def _release(allocations: list[Any], *, now: bool = False) -> None:
    """Free device allocations and unregister host memory safely.

    ``now``: pause the running megakernels and free at once (explicit close). Otherwise (from
    a finalizer) free only if no kernel is resident, else park until the last one stops.
    """
    _DEFERRED_FREES.extend(allocations)
    if now:
        with quiesced():
            pass  # quiesced() frees the deferred list with no kernel resident
    elif _QUIESCE.acquire(blocking=False):
        try:  # checked under the lock: a launch registers as resident before it launches
            if not _RESIDENT:
                _free_deferred()
        finally:
            _QUIESCE.release()


def _free_deferred() -> None:
    while _DEFERRED_FREES:
        alloc = _DEFERRED_FREES.pop()
        if isinstance(alloc, HostRegistration):
            _REGISTERED.pop(alloc.host_pointer, None)
        with contextlib.suppress(Exception):  # already freed, or its context is gone
            alloc.free()


def register_host(array: np.ndarray, context: Any = None) -> HostRegistration:
    """Page-lock and map ``array`` for the GPU; :func:`release_host` undoes it safely."""
    reg = HostRegistration(array, context)
    _REGISTERED[reg.host_pointer] = reg
    return reg


def release_host(reg: HostRegistration) -> None:
    """Unregister host memory from :func:`register_host`, never under a running kernel."""
    _release([reg], now=True)


def host_zeros(nbytes: int) -> np.ndarray:
    """Zeroed, page-aligned host memory (anonymous mmap) as a flat uint8 array."""
    mm = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20),
                   prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(mm, dtype=np.uint8)[:max(nbytes, 1)]


def _registered_address(ptr: int, nbytes: int) -> int | None:
    for reg in _REGISTERED.values():
        if reg.registered and reg.host_pointer <= ptr and ptr + nbytes <= reg.host_pointer + max(reg.nbytes, 1):
            return reg.device_pointer + (ptr - reg.host_pointer)
    return None


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
    if type(array) is DeviceBuffer:  # the stream's device mirror: once per chunk
        return int(array.alloc), array.nbytes
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
        if array.flags.c_contiguous:
            found = _registered_address(int(array.ctypes.data), int(array.nbytes))
            if found is not None:
                return found, int(array.nbytes)
        base = array.base
        while base is not None and not hasattr(base, "get_device_pointer"):
            base = getattr(base, "base", None)
        if base is None:
            raise BackendError(
                "this numpy array is not mapped into the GPU's address space",
                "use Megakernel.alloc_buffer (host memory the GPU can reach), or "
                "pycuda.driver.pagelocked_empty(..., mem_flags=host_alloc_flags.DEVICEMAP) "
                "created before the megakernel starts")
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
            _release([self.alloc])  # a finalizer: parked while a megakernel is resident

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": (self.nbytes,), "typestr": "|u1", "data": (int(self.alloc), False),
                "version": 3, "strides": None}


class DeviceCopy:
    """A host-to-device copy in flight (:meth:`CudaBackend.copy_to_device_async`)."""

    __slots__ = ("_backend", "_event", "nbytes")

    def __init__(self, backend: "CudaBackend", event: Any, nbytes: int) -> None:
        self._backend, self._event, self.nbytes = backend, event, nbytes

    def done(self) -> bool:
        """True once the bytes are in device memory (a non-blocking event query).

        Raises :class:`BackendError` when the query fails (the context faulted)."""
        if self._event is None:
            return True
        try:
            landed = self._backend._in_ctx(self._event.query)
        except self._backend._cuda.Error as err:
            raise BackendError(f"a {self.nbytes}-byte host-to-device copy failed ({err})",
                               "the CUDA context faulted: check the megakernel's error "
                               "(check()), dmesg (Xid); recreate the Megakernel") from err
        if not landed:
            return False
        self._backend._events.append(self._event)  # reused by the next copy
        self._event = None
        return True

    def wait(self, timeout: float = _COPY_TIMEOUT) -> None:
        """Block until :meth:`done` (polled: a driver-side wait could not be bounded).

        Raises :class:`BackendError` after ``timeout`` s; the copy engine never waits on the
        megakernel, so that means the device stopped making progress."""
        start = time.monotonic()
        while not self.done():
            waited = time.monotonic() - start
            if waited > timeout:
                raise BackendError(
                    f"a {self.nbytes}-byte host-to-device copy did not finish in {timeout} s",
                    "the GPU stopped making progress: check nvidia-smi and dmesg (Xid)")
            # a chunk's copy is ~0.1 ms: yield the core between queries (a sleep would add
            # the timer slack, ~50 us), and sleep only once it is clearly late
            time.sleep(0 if waited < 0.005 else 0.0005)


class CudaBackend(Backend):
    """One persistent megakernel launch on a CUDA device.

    Options: ``device`` (ordinal, default 0; ignored when a context is already current),
    ``workers`` = blocks per SM (default 1; 4 warps each), ``idle_sleep_ns`` (longest back-off
    of an idle warp, default 2000), ``heartbeat_ms`` (default 1), ``coop_min_bytes`` (DFA_SCAN
    ranges of at least this many bytes are scanned by a whole warp, default 2048),
    ``assist_part_bytes`` (such a scan is cut into parts of this many bytes that idle warps
    help with, default 65536; 0 keeps each scan on the warp that holds it).
    """

    name = "cuda"
    #: DONE_COUNT / FAULT_COUNT / METRICS trail slot statuses by one poller pass
    lazy_counters = True

    def __init__(self, *, slot_count: int, observable_slots: int, debug_records: int,
                 io_slots: int, workers: int | None = None, device: int = 0,
                 idle_sleep_ns: int = 2000, heartbeat_ms: float = 1.0,
                 coop_min_bytes: int = 2048, assist_part_bytes: int = 65536,
                 **options: Any) -> None:
        if options:
            raise BackendError(f"unknown CUDA backend option(s): {', '.join(sorted(options))}",
                               "see vyre.backends.cuda.CudaBackend for the options")
        if not 0 <= int(assist_part_bytes) < 1 << 32:
            raise BackendError(f"assist_part_bytes={assist_part_bytes} is outside 0 .. 2**32-1",
                               "use 0 (no assist) or a part size in bytes, e.g. 65536 (the default)")
        cuda = _cuda()
        self._cuda = cuda
        self._own_ctx = None
        self._closed = True
        self._running = False
        self._failed: BackendError | None = None
        self._helped = 0  # assist_helped() of launches that have left
        current = cuda.Context.get_current()
        if current is None:
            self._own_ctx = cuda.Device(device).retain_primary_context()
            self._own_ctx.push()
            self._ctx = self._own_ctx
        else:
            self._ctx = current
        self._device = cuda.Context.get_device()
        self._registrations: list[HostRegistration] = []
        self._device_allocs: list[Any] = []
        try:
            with quiesced():  # module loads and allocations would wait on running kernels
                self._module = self._load_module()
                self._func = self._module.get_function(_KERNEL)
                sms = self._device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
                self.blocks_per_sm = int(workers) if workers else 1
                self.grid = sms * self.blocks_per_sm
                self.slot_count = slot_count
                self.io_slots = io_slots
                self.debug_records = debug_records
                self._options = dict(idle_sleep_ns=idle_sleep_ns, heartbeat_ms=heartbeat_ms,
                                     coop_min_bytes=coop_min_bytes,
                                     assist_part_bytes=assist_part_bytes)
                self.ring = self._mapped(slot_count * 16)
                self.control = self._mapped(160 + observable_slots)
                self.debug = self._mapped(1 + 4 * debug_records + 1)
                self.ioq = self._mapped(io_slots * 8)
                # [0] tickets published, [1] pause request: one 16-byte line the poller reads
                self.doorbell = self._mapped(2, np.uint64)
                self._table = self._mapped(MAX_BUFFERS * 2, np.uint64)  # (addr, bytes) pairs
                self._buffers: list[Any] = [self.control]
                self._table[0], self._table[1] = self._dptr(self.control), self.control.nbytes
                self._stream = cuda.Stream(flags=1)  # CU_STREAM_NON_BLOCKING: never waits on stream 0
                # host-to-device uploads: ordered and complete before the kernel may read them
                self._copy_stream = cuda.Stream(flags=1)
                self._events: list[Any] = []  # finished copy events, reused
                self._state = cuda.mem_alloc(_STATE_BYTES)
                self._launch = cuda.mem_alloc(_LAUNCH.size)
                self._device_allocs += [self._state, self._launch]
                self._write_state(np.zeros(_STATE_BYTES // 4, np.uint32))
        except BaseException:
            self._free_memory(now=True)
            if self._own_ctx is not None:
                self._own_ctx.pop()
            raise
        self._closed = False

    # ------------------------------------------------------------------ helpers
    def _mapped(self, n: int, dtype=np.uint32) -> np.ndarray:
        """Zeroed host memory registered for the GPU (cuMemHostRegister works under a running
        kernel; cuMemHostAlloc does not)."""
        raw = host_zeros(max(n, 1) * np.dtype(dtype).itemsize)
        self._registrations.append(register_host(raw, self._ctx))
        return raw.view(dtype)

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
        found = _registered_address(int(arr.ctypes.data), int(arr.nbytes))
        if found is None:
            raise BackendError("internal: host memory is not registered", "report this as a bug")
        return found

    def _write_state(self, words: np.ndarray) -> None:
        with self._active():
            self._cuda.memcpy_htod_async(self._state, words, self._copy_stream)
            self._copy_stream.synchronize()  # complete before the kernel may read it

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

    def _free_memory(self, *, now: bool) -> None:
        allocs = [*self._device_allocs, *self._registrations]
        self._device_allocs, self._registrations = [], []
        _release(allocs, now=now)

    # ------------------------------------------------------------------ Backend
    @contextlib.contextmanager
    def quiesce(self) -> Iterator[None]:
        """quiesced(), with this megakernel's CUDA context current in the block."""
        with quiesced(), self._active():
            yield

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

    def copy_to_device_async(self, buffer: Any, offset: int, data: np.ndarray) -> "DeviceCopy":
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

    def _worker_warps(self) -> int:
        return self.grid * (_BLOCK_THREADS // 32) - 2  # minus the poller and the flusher

    @property
    def assist_part_bytes(self) -> int:
        """Part size long DFA_SCANs are cut into for idle warps to help (0: off)."""
        return int(self._options["assist_part_bytes"])

    def assist_helped(self) -> int:
        """Parts of split DFA_SCANs that warps other than the scan's owner scanned since
        :meth:`start` (a diagnostic: the count lives in device memory the kernel keeps
        writing, so a running kernel is read through ``quiesced()``, which pauses and
        relaunches every megakernel of the process)."""
        if self._running and not self.paused:
            with quiesced():
                pass  # the pause's relaunch adds the count of the launch that left
        elif self._running:  # paused: the launch that left is banked at its relaunch
            return self._helped + self._helped_in_state()
        return self._helped

    def _helped_in_state(self) -> int:
        """The board's count in device state (the kernel must not be resident)."""
        word = np.zeros(1, np.uint32)
        with self._active():
            self._cuda.memcpy_dtoh_async(word, int(self._state) + _ASSIST_HELPED_AT,
                                         self._copy_stream)
            self._copy_stream.synchronize()
        return int(word[0])

    def start(self) -> None:
        if self._running:
            return
        self._helped = 0
        s = int(self._state)
        params = _LAUNCH.pack(
            self._dptr(self.ring), self._dptr(self.control), self._dptr(self.debug),
            self._dptr(self.ioq), self._dptr(self._table),
            self.slot_count, self.control.size, self.control.size - 160,
            self.debug_records, self.io_slots, MAX_BUFFERS,
            s, s + 8, s + 16, s + _LIVE_AT, self._dptr(self.doorbell), s + _COUNTERS_AT,
            s + _TENANTS_AT, s + _TENANTS_ASOF_AT, s + _ASSIST_AT,
            int(self._options["heartbeat_ms"] * 1e6), int(self._options["idle_sleep_ns"]),
            int(self._options["coop_min_bytes"]), int(self._options["assist_part_bytes"]), 0)
        with self._active():
            self._cuda.memcpy_htod_async(self._launch, params, self._copy_stream)
            self._copy_stream.synchronize()
        with _QUIESCE:  # never launch into another thread's quiesced() block
            if _quiesce_depth:  # started inside a quiesced() block: launched at its end
                self._running = self.paused = True
                _PAUSED.append(self)
                return
            self._launch_kernel(np.zeros(_STATE_BYTES // 4, np.uint32))

    def _launch_kernel(self, state: np.ndarray) -> None:
        """Launch with ``state`` (device-state words) written first; live = the worker warps."""
        state[_LIVE_AT // 4] = self._worker_warps()
        self._write_state(state)
        _RESIDENT[id(self)] = self  # before the launch: no free may start under it
        with self._active():
            try:
                self._func(self._launch, block=(_BLOCK_THREADS, 1, 1), grid=(self.grid, 1),
                           stream=self._stream)
            except self._cuda.Error as err:
                _RESIDENT.pop(id(self), None)
                raise BackendError(f"the megakernel launch failed ({err})",
                                   "lower workers (blocks per SM) or free GPU memory") from err
        self._running = True
        self.paused = False

    def _left(self) -> None:
        """The kernel is no longer resident (stopped, paused or faulted)."""
        _RESIDENT.pop(id(self), None)
        if not _RESIDENT and not _quiesce_depth:
            _release([])

    def _stream_done(self, fix: str) -> bool:
        """Has the kernel's stream finished? A kernel fault raises (the kernel is gone)."""
        with self._active():
            try:
                return bool(self._stream.is_done())
            except self._cuda.Error as err:
                self._running = False
                self._left()
                raise BackendError(f"the megakernel faulted ({err})", fix) from err

    def _wait_exit(self, timeout: float, what: str) -> None:
        """Poll the stream until the kernel has exited; a fault or the timeout raises."""
        deadline = time.monotonic() + timeout
        while not self._stream_done("run the workload under compute-sanitizer; the context "
                                    "may need to be recreated"):
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the megakernel did not {what} within {timeout} s",
                    "a slot never finishes (an op that spins?); the GPU context is still "
                    "busy, restart the process to reclaim it")
            time.sleep(0.0002)

    def _pause(self, timeout: float = _PAUSE_TIMEOUT) -> None:
        """Stop the kernel after it finished every slot it had seen published (quiesced())."""
        if not self._running or self.paused or self._failed is not None:
            return  # a failed kernel is not waited on again by every later quiesce
        self.paused = True  # from the request on: the watchdog and check() stand aside
        store_release(self.doorbell, 1, 1)  # seen by the poller with what came before
        try:
            self._wait_exit(timeout, "pause")
        except BackendError as err:
            # the poller has (or will have) left; the kernel cannot be un-paused. Stop it
            # for good and report the cause to every later call.
            self.control[CTRL_SHUTDOWN] = 1
            self._failed = BackendError(
                f"the megakernel could not pause: {err}",
                "a slot never finishes (or waits on I/O nobody serves while paused); "
                "recreate the Megakernel")
            self.paused = False
            _RESIDENT.pop(id(self), None)
            raise self._failed from err
        _RESIDENT.pop(id(self), None)

    def _resume(self) -> None:
        """Relaunch a paused kernel: tickets restart at the last doorbell value it mirrored
        (every ticket below it finished; none above it was claimed), counters at zero (the
        flusher folded them into control before the kernel left)."""
        if not self.paused or not self._running:
            return
        try:
            old = np.zeros(_STATE_BYTES // 4, np.uint32)
            with self._active():
                self._cuda.memcpy_dtoh_async(old, self._state, self._copy_stream)
                self._copy_stream.synchronize()
            self._helped += int(old[_ASSIST_HELPED_AT // 4])  # the relaunch starts at zero
            state = np.zeros_like(old)
            state[0:2] = state[2:4] = old[2:4]  # tickets = mirror = the final mirror (u64 each)
            store_release(self.doorbell, 1, 0)
            self._launch_kernel(state)
        except Exception as err:
            self._running = False
            self.paused = False
            self._failed = BackendError(f"the megakernel could not be relaunched after a pause "
                                        f"({err})", "recreate the Megakernel")
            raise self._failed from err
        self.pauses += 1

    def stop(self, timeout: float) -> None:
        # never between a pause and its relaunch; bounded: a quiesced() block of another
        # thread (an allocation) may hold it
        # (at least 50 ms: a watchdog check() holds it briefly; no limit past TIMEOUT_MAX)
        wait = -1.0 if timeout >= threading.TIMEOUT_MAX else max(timeout, 0.05)
        if not _QUIESCE.acquire(timeout=wait):
            raise BackendError(f"could not stop the megakernel within {timeout} s: another "
                               "thread is inside quiesced() (allocating, freeing or loading)",
                               "retry the shutdown once that call returns, or raise the timeout")
        try:
            self._stop_locked(timeout)
        finally:
            _QUIESCE.release()

    def _stop_locked(self, timeout: float) -> None:
        if not self._running:
            return
        self.control[CTRL_SHUTDOWN] = 1
        if not self.paused:
            self._wait_exit(timeout, "stop after SHUTDOWN")
        with contextlib.suppress(Exception):  # a diagnostic: never fails a stop
            self._helped += self._helped_in_state()  # the last launch (a pause keeps it)
        self._running = False
        self.paused = False
        self._left()

    def check(self) -> None:
        if self._failed is not None:
            # the same error every time, without each raise growing its traceback
            raise self._failed.with_traceback(None)
        if not self._running or self.paused:
            return
        if not _QUIESCE.acquire(blocking=False):
            return  # a pause or a stop is under way: its own checks report
        try:
            if not self._running or self.paused:
                return
            finished = self._stream_done("run the workload under compute-sanitizer to find "
                                         "the bad access; recreate the Megakernel")
            if finished and not self.control[CTRL_SHUTDOWN]:
                self._running = False
                self._left()
                raise BackendError("the megakernel exited without a SHUTDOWN",
                                   "report this as a bug with the workload that triggered it")
        finally:
            _QUIESCE.release()

    @property
    def running(self) -> bool:
        return self._running

    def describe(self) -> dict[str, Any]:
        return {
            "name": self._device.name(),
            "grid": self.grid,
            "block": _BLOCK_THREADS,
            "blocks_per_sm": self.blocks_per_sm,
            "memory": "registered host memory (cuMemHostRegister DEVICEMAP)",
        }

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        if self._running:
            self.stop(5.0)
        self._closed = True
        # other megakernels are paused for the frees. The host arrays stay valid for the
        # facade's views (unregistering does not unmap them).
        self._buffers = [self.control]
        self._events = []  # destroyed while the context is still ours
        self._free_memory(now=True)
        if self._own_ctx is not None:
            with contextlib.suppress(Exception):
                if self._cuda.Context.get_current() == self._own_ctx:
                    self._cuda.Context.pop()
            self._own_ctx = None
