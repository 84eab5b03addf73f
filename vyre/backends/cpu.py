"""The CPU backend: native worker threads running the slot interpreter over numpy buffers.

The workers are plain pthreads in ``csrc/cpu_worker.c`` (no GIL) executing the very same
``csrc/vyre_interp.h`` the megakernel runs on the GPU, over host memory: ring, control, debug
log and io queue are zeroed ``uint32`` numpy arrays the host reads and writes directly, and
the buffer table holds host addresses. See docs/interpreter.md.
"""
from __future__ import annotations

import importlib
import os
import platform
import weakref
from typing import Any

import numpy as np

from vyre import argcheck
from vyre.backends.base import Backend
from vyre.errors import BackendError, InvalidTypeError, InvalidValueError

__all__ = ["CpuBackend"]

_BUILD_FIX = ("build the extensions: `python setup.py build_ext --inplace` "
              "(or `pip install -e .`) in the project root")


def _load(test_hooks: bool):
    name = "vyre.backends._cpu_testhooks" if test_hooks else "vyre.backends._cpu"
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise BackendError(f"the CPU backend extension {name} is not built ({err})",
                           _BUILD_FIX) from err


def max_workers() -> int:
    """The most CPU worker threads a pool may have: 4 per core, at least 64, at most 1024.

    Workers poll the ring; beyond a few per core they only contend for the cores (and each
    idle one still wakes up now and then), and starting a pool costs time linear in its
    size. Thousands of threads made start() take minutes on a small machine."""
    return min(1024, max(64, 4 * (os.cpu_count() or 1)))


def _host_view(array: Any, writable: bool) -> tuple[np.ndarray, int, int]:
    """(array to keep alive, address, byte length) of a C-contiguous buffer."""
    try:
        mv = memoryview(array)
    except TypeError:
        raise InvalidTypeError(f"{type(array).__name__} does not expose the buffer protocol",
                               "pass a numpy array, bytearray, memoryview or other buffer"
                               ) from None
    if not mv.c_contiguous:
        raise InvalidValueError("the buffer is not C-contiguous",
                                "pass np.ascontiguousarray(array) (a contiguous copy)")
    flat = np.frombuffer(mv, dtype=np.uint8) if mv.nbytes else np.zeros(0, np.uint8)
    if flat.size and not flat.flags.writeable:
        if writable:
            raise InvalidValueError("the buffer is read-only but writable=True was asked",
                                    "pass a writable buffer (bytearray, numpy array), or "
                                    "register_buffer(..., writable=False) for a copy")
        # the interpreter cannot refuse writes (BUF_COPY): never hand it immutable memory
        flat = flat.copy()
    addr = int(flat.__array_interface__["data"][0]) if flat.size else 0
    return flat, addr, int(flat.nbytes)


_LIVE: weakref.WeakSet[CpuBackend] = weakref.WeakSet()


def _forget_workers_in_child() -> None:
    """After fork(): the child has none of the parent's worker threads. Each pool is marked
    stopped so that nothing in the child (its exit included) waits for them."""
    for be in list(_LIVE):
        pool = getattr(be, "pool", None)
        if pool is not None:
            pool.forget_workers_after_fork()
            be.forked = True


os.register_at_fork(after_in_child=_forget_workers_in_child)


class CpuBackend(Backend):
    """Native CPU workers (default: one per core) over zeroed numpy buffers.

    Options: ``workers`` (threads, default ``os.cpu_count()``), ``test_hooks=True`` to load
    the test build (``vyre.backends._cpu_testhooks``: opcodes ``TEST_OP_SPIN`` and
    ``TEST_OP_STALL``, a short LOAD_MISS wait bound).
    """

    name = "cpu"

    def __init__(self, *, slot_count: int, observable_slots: int, debug_records: int,
                 io_slots: int, workers: int | None = None, test_hooks: bool = False,
                 call_lanes: int | None = None, **options: Any) -> None:
        self._closed = True
        if options:
            raise BackendError(f"unknown CPU backend option(s): {', '.join(sorted(options))}",
                               "the CPU backend takes workers=, test_hooks= and call_lanes= only")
        self.test_hooks = bool(test_hooks)
        self._mod = _load(self.test_hooks)
        abi = self._abi = self._mod.ABI  # vyre_abi.h, through the extension
        self.slot_count = argcheck.count("slot_count", slot_count, 1, abi["MAX_RING_SLOTS"])
        self.observable_slots = argcheck.count("observable_slots", observable_slots, 0,
                                               abi["MAX_OBSERVABLE_SLOTS"])
        self.debug_records = argcheck.count("debug_records", debug_records, 0,
                                            abi["MAX_DEBUG_RECORDS"])
        self.io_slots = argcheck.count("io_slots", io_slots, 0, abi["IO_MAX_SLOTS"])
        cores = os.cpu_count() or 1
        self.workers = (min(cores, max_workers()) if workers is None
                        else argcheck.count("workers", workers, 1, max_workers()))

        self.ring = np.zeros(self.slot_count * abi["SLOT_WORDS"], dtype=np.uint32)
        self.control = np.zeros(abi["CTRL_HEADER_WORDS"] + self.observable_slots, dtype=np.uint32)
        self.debug = np.zeros(abi["DEBUG_HEADER_WORDS"] + abi["DEBUG_RECORD_WORDS"]
                              * self.debug_records + abi["DEBUG_TRAILER_WORDS"], dtype=np.uint32)
        self.ioq = np.zeros(self.io_slots * abi["IO_SLOT_WORDS"], dtype=np.uint32)
        #: buffer table, rows (host address, byte length); row 0 mirrors control (handle 0)
        self.buffer_table = np.zeros((abi["MAX_BUFFERS"], 2), dtype=np.uint64)
        self.buffer_table[0] = (self.control.__array_interface__["data"][0], self.control.nbytes)
        self._buffers: dict[int, np.ndarray] = {}
        self._next_handle = 1
        self.pool = self._mod.CpuWorkers(self.ring, self.control, self.debug, self.ioq,
                                         self.buffer_table)
        self._call_server = self._open_call_path(call_lanes)
        self._started_once = False
        self._ops: Any = None
        if self.test_hooks:
            self.builtin_user_opcodes = frozenset({self._mod.TEST_OP_SPIN, self._mod.TEST_OP_STALL})
        self._closed = False
        #: True in a forked child of the process that made this backend (no workers here)
        self.forked = False
        _LIVE.add(self)

    def _open_call_path(self, call_lanes: int | None) -> Any:
        """The call area and the thread that answers it (docs/call.md); None with 0 lanes."""
        from vyre import _call

        lanes = _call.ABI["CALL_DEFAULT_LANES"] if call_lanes is None else argcheck.count(
            "call_lanes", call_lanes, 0, _call.ABI["CALL_MAX_LANES"])
        if lanes == 0:
            return None
        words = lanes * _call.ABI["CALL_LANE_WORDS"]
        raw = np.zeros(words + 16, dtype=np.uint32)  # 64-byte aligned below (a lane = 2 lines)
        skip = (-raw.ctypes.data % 64) // 4
        self.call_area = raw[skip:skip + words]
        self.call_lanes = lanes
        server = self._mod.CallServer(self.pool, self.call_area, lanes)
        self.call_kick = server.kick_address
        return server

    # ------------------------------------------------------------------ buffers
    def register_buffer(self, array: Any, *, writable: bool = True) -> int:
        """Add a C-contiguous buffer; returns its handle (1..255).

        The memory is used in place (no copy), except a read-only buffer registered with
        ``writable=False``, which is copied once (the interpreter cannot refuse a BUF_COPY
        into it). A reference is kept until :meth:`close`.
        """
        self._check_open()
        if self._next_handle >= self._abi["MAX_BUFFERS"]:
            raise BackendError(f"the buffer table is full ({self._abi['MAX_BUFFERS'] - 1} handles)",
                               "register fewer, larger buffers")
        keep, addr, nbytes = _host_view(array, writable)
        handle = self._next_handle
        self._buffers[handle] = keep
        self.pool.set_buffer(handle, addr, nbytes, keep)
        self._next_handle += 1
        return handle

    def rebind_buffer(self, handle: int, array: Any | None) -> None:
        """Point registered ``handle`` at ``array`` (None: an empty buffer) and drop the
        reference to what it named before. The caller guarantees that no slot in flight
        reads the handle (vyre.ingest.device_source borrows handles this way)."""
        self._check_open()
        if handle not in self._buffers:
            raise BackendError(f"no buffer registered under handle {handle}",
                               "rebind a handle returned by register_buffer()")
        keep, addr, nbytes = _host_view(array, False) if array is not None else (
            np.zeros(0, np.uint8), 0, 0)
        self._buffers[handle] = keep
        self.pool.set_buffer(handle, addr, nbytes, keep)

    def buffer(self, handle: int) -> np.ndarray:
        """The ``uint8`` view of registered buffer ``handle`` (the memory the workers see)."""
        if handle == 0:
            return self.control.view(np.uint8)
        try:
            return self._buffers[handle]
        except KeyError:
            raise BackendError(f"no buffer registered under handle {handle}",
                               "use a handle returned by register_buffer()") from None

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        self._check_open()
        if self.forked:
            raise BackendError("this CPU backend was created before a fork(); its memory is "
                               "the parent's copy", "create a new Megakernel in the child")
        if self.pool.running:
            return
        if self._started_once:
            self.control[self._abi["CTRL_SHUTDOWN"]] = 0  # our own stop() set it: a fresh launch
        self.pool.start(self.workers)
        if self._call_server is not None:
            self._call_server.start()
        self._started_once = True

    def stop(self, timeout: float) -> None:
        if not self.pool.running:
            if self._call_server is not None and self._call_server.running:
                self._call_server.stop(float(timeout))  # a retry after a stop that timed out
            return
        pool_stopped = self.pool.stop(float(timeout))  # sets SHUTDOWN: the call server leaves too
        if self._call_server is not None and not self._call_server.stop(float(timeout)):
            raise BackendError(
                f"the CPU call server did not exit within {timeout} s of SHUTDOWN",
                "a call is executing an op that does not finish; call stop() again to keep "
                "waiting, or end the process")
        if not pool_stopped:
            stuck = self.pool.alive
            raise BackendError(
                f"{stuck} of {self.pool.workers} CPU worker(s) did not exit within {timeout} s "
                "of SHUTDOWN",
                "a slot is executing an op that does not finish; call stop() again to keep "
                "waiting, or end the process")

    def kick(self) -> None:
        self.pool.kick()

    def load_ops(self, ops: Any, cache: Any = None) -> dict[str, Any]:
        """Compile ``ops`` into a shared object (vyre/ops/cpu_build.py, through the pipeline
        cache) and switch the workers to it. While they run, the switch is one atomic pointer
        store: a slot published after it runs the new code, one published before runs the old
        or the new (both hold the same ops it can have), and the old library stays loaded."""
        from vyre.ops import cpu_build
        from vyre.ops.cache import default_cache

        self._check_open()
        cache = cache or default_cache()
        loaded = cpu_build.build_and_load(list(ops), cache)
        self.pool.set_user_dispatch(loaded.dispatch_address, loaded)
        self._ops = loaded
        return dict(cache.last)

    def check(self) -> None:
        pool = self.pool
        if (pool.running and pool.alive < pool.workers
                and not self.control[self._abi["CTRL_SHUTDOWN"]]):
            raise BackendError(
                f"{pool.workers - pool.alive} CPU worker(s) exited without a SHUTDOWN",
                "report this as a bug with the workload that triggered it")

    @property
    def running(self) -> bool:
        pool = getattr(self, "pool", None)
        return pool is not None and bool(pool.running)

    @property
    def progress(self) -> int:
        """Grows while a long slot works (MiBs scanned); see Megakernel's watchdog."""
        return int(self.pool.progress)

    @property
    def heartbeat(self) -> int:
        return int(self.control[self._abi["CTRL_HEARTBEAT"]])

    def describe(self) -> dict[str, Any]:
        return {
            "name": platform.processor() or platform.machine() or "host CPU",
            "workers": self.workers,
            "cores": os.cpu_count(),
            "memory": "host memory (numpy)",
            "test_hooks": self.test_hooks,
            **self.pool.stats(),
        }

    def close(self) -> None:
        if self._closed:
            return
        if self.pool.running:
            self.stop(5.0)
        self._closed = True
        # the arrays stay referenced by the facade's views; registered buffers are released
        for handle in self._buffers:
            self.pool.set_buffer(handle, 0, 0)
        self._buffers.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this CPU backend is closed", "create a new backend")

    def __repr__(self) -> str:
        return (f"CpuBackend(slot_count={self.slot_count}, workers={self.workers}, "
                f"running={self.running})")
