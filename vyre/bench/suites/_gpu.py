"""The GPU baselines: the same tiny op as the megakernel's ATOMIC_ADD, one kernel launch per op.

Fairness (docs/bench.md, "GPU baselines"): each launch performs exactly the work of one
ATOMIC_ADD slot -- ``atomicAdd(&obs[idx], a0)`` with ``a0`` and ``idx`` passed as
kernel parameters, one thread -- on a counter in *mapped pinned host memory*
(``cuMemHostAlloc`` DEVICEMAP), the same memory kind the megakernel's observables live in,
with the same device-scope atomic (the megakernel's RMWs on host memory are device scope:
csrc/vyre_interp.h says why). The host then reads the counter directly, as
``mk.observables`` does. Both libraries run in the device's primary context (the context the
vyre CUDA backend also uses), and only while no persistent megakernel occupies the GPU.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any

import numpy as np

from vyre.bench.checks import Check, standalone_reference
from vyre.bench.suites._common import Unavailable

KERNEL_NAME = "vyre_bench_atomic_add"
KERNEL_SOURCE = r"""
extern "C" __global__ void vyre_bench_atomic_add(unsigned int *obs, unsigned int a0,
                                                 unsigned int idx)
{
    /* one op = one atomic on mapped host memory, like the megakernel's ATOMIC_ADD */
    atomicAdd(obs + idx, a0);
}
"""
#: words of the baseline's counter array: launch i adds into word i % COUNTER_WORDS, as the
#: megakernel's op i adds into observable i % COUNTER_WORDS (dispatch.SPREAD). 1024 words = 64
#: cache lines: with 64 words (4 lines) both sides measured same-line contention on mapped
#: memory more than dispatch
COUNTER_WORDS = 1024


class PyCudaLauncher:
    """The baseline kernel through PyCUDA: ``prepared_async_call``, the fastest launch path
    PyCUDA has (argument packing done once by ``prepare``)."""

    label = "pycuda"

    def __init__(self) -> None:
        try:
            import pycuda.driver as drv
            from pycuda.compiler import SourceModule
        except Exception as exc:
            raise Unavailable(f"pycuda not importable ({type(exc).__name__}: {exc})") from exc
        drv.init()
        self.drv = drv
        self.ctx = drv.Device(0).retain_primary_context()
        self.ctx.push()
        try:
            mod = SourceModule(KERNEL_SOURCE, no_extern_c=True)
            self.fn = mod.get_function(KERNEL_NAME)
            self.fn.prepare("PII")
            self.host = drv.pagelocked_zeros(COUNTER_WORDS, np.uint32,
                                             mem_flags=drv.host_alloc_flags.DEVICEMAP)
            self.dptr = np.intp(self.host.base.get_device_pointer())
            self.stream = drv.Stream()
            self.start_ev, self.end_ev = drv.Event(), drv.Event()
        except BaseException:
            self.ctx.pop()
            raise
        self._mod = mod
        #: what the counter must hold once every launch so far has run
        self.expected = 0

    def launch_n(self, n: int, a0: int = 1) -> None:
        call, grid, block, stream, p = (self.fn.prepared_async_call, (1, 1), (1, 1, 1),
                                        self.stream, self.dptr)
        for i in range(n):
            call(grid, block, stream, p, a0, i % COUNTER_WORDS)
        self.expected += n * a0

    def sync(self) -> None:
        self.stream.synchronize()

    def timed_n_events(self, n: int) -> float:
        """Device-side span of ``n`` launches, by CUDA events (ns)."""
        self.start_ev.record(self.stream)
        self.launch_n(n)
        self.end_ev.record(self.stream)
        self.end_ev.synchronize()
        return self.end_ev.time_since(self.start_ev) * 1e6

    def value(self) -> int:
        return int(np.asarray(self.host[:COUNTER_WORDS], dtype=np.uint64).sum())

    def close(self) -> None:
        self.sync()
        self.host.base.free()  # while our context is current
        self.ctx.pop()


class CuPyLauncher:
    """The baseline kernel as a CuPy ``RawKernel`` (current stream, default launch path)."""

    label = "cupy"

    def __init__(self) -> None:
        try:
            import cupy as cp
        except Exception as exc:
            raise Unavailable(f"cupy not importable ({type(exc).__name__}: {exc})") from exc
        self.cp = cp
        self.kernel = cp.RawKernel(KERNEL_SOURCE, KERNEL_NAME)
        nbytes = COUNTER_WORDS * 4
        self.mem = cp.cuda.PinnedMemory(nbytes, flags=cp.cuda.runtime.hostAllocMapped)
        words = (ctypes.c_uint32 * COUNTER_WORDS).from_address(self.mem.ptr)
        self.host = np.ctypeslib.as_array(words)
        self.host[:] = 0
        # the device address of the mapped allocation (equal to the host address under
        # unified addressing, but asked for rather than assumed)
        self.dptr = np.uint64(cp.cuda.runtime.pointerGetAttributes(self.mem.ptr).devicePointer)
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.grid, self.block = (1,), (1,)
        with self.stream:
            self.kernel(self.grid, self.block, (self.dptr, np.uint32(0), np.uint32(0)))
        self.stream.synchronize()
        self.graph = None
        self.graph_ops = 0
        #: what the counter must hold once every launch so far has run
        self.expected = 0
        # the launch arguments, built once: building COUNTER_WORDS tuples of numpy scalars
        # costs ~0.5 ms, which inside a one-launch sample made this baseline read 1 ms
        self._args: dict[int, list[tuple]] = {}
        self.args_for(1)

    def args_for(self, a0: int) -> list[tuple]:
        """The argument tuples of launches 0..COUNTER_WORDS-1 adding ``a0`` (cached)."""
        if a0 not in self._args:
            self._args[a0] = [(self.dptr, np.uint32(a0), np.uint32(i))
                              for i in range(COUNTER_WORDS)]
        return self._args[a0]

    def launch_n(self, n: int, a0: int = 1) -> None:
        k, g, b = self.kernel, self.grid, self.block
        args = self.args_for(a0)
        with self.stream:
            for i in range(n):
                k(g, b, args[i % COUNTER_WORDS])
        self.expected += n * a0

    def sync(self) -> None:
        self.stream.synchronize()

    def capture_graph(self, n: int) -> float:
        """Capture ``n`` launches into a CUDA graph (stream capture); returns the seconds the
        capture and instantiation took (reported, not part of the replay numbers)."""
        before = self.expected
        t0 = time.perf_counter()
        self.stream.begin_capture()
        try:
            self.launch_n(n)  # recorded, not executed
        finally:
            graph = self.stream.end_capture()
        self.graph, self.graph_ops, self.expected = graph, n, before
        # the first launch instantiates/uploads; do it here so replays measure replays
        self.replay()
        self.stream.synchronize()
        return time.perf_counter() - t0

    def replay(self) -> None:
        if self.graph is None:
            raise RuntimeError("replay before capture_graph")
        self.graph.launch(self.stream)
        self.expected += self.graph_ops

    def timed_replay_events(self) -> float:
        """Device-side span of one graph replay, by CUDA events (ns)."""
        start, end = self.cp.cuda.Event(), self.cp.cuda.Event()
        start.record(self.stream)
        self.replay()
        end.record(self.stream)
        end.synchronize()
        return self.cp.cuda.get_elapsed_time(start, end) * 1e6

    def value(self) -> int:
        return int(np.asarray(self.host[:COUNTER_WORDS], dtype=np.uint64).sum())

    def close(self) -> None:
        self.stream.synchronize()
        self.graph = None


def standalone_check(name: str, what: str, **args: Any) -> Check:
    """The cross-check of GPU baseline ``name``: the same call measured in a fresh process
    by :mod:`vyre.bench.suites._reference` (which see)."""
    return Check(what=what, key=f"standalone:{name}:{sorted(args.items())}",
                 reference=standalone_reference("vyre.bench.suites._reference", name, args))
