"""Standalone reference measurements of the GPU baselines (docs/bench.md, "Cross-checks").

``python -m vyre.bench.suites._reference NAME '{"ops": 2000}'`` measures one baseline's call
in a fresh process with the least code around it -- no harness, no launcher class, no
megakernel, no other library's context state -- and prints ``{"value": ..., "n": ...}`` in the
baseline's unit. The harness (:func:`vyre.bench.checks.standalone_reference`) runs it once per
run and calls the baseline suspect when the two differ by more than the tolerance.

Each function below is deliberately plain: the same kernel source as the baseline
(``_gpu.KERNEL_SOURCE``), the same memory kind (mapped pinned host memory), the same launch
API, timed with ``perf_counter_ns`` around launch + synchronize.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vyre.bench.suites._gpu import KERNEL_NAME, KERNEL_SOURCE

SAMPLES = 301  # single-op references: enough for a stable median in well under a second
BATCHES = 15   # per-op references: samples of `ops` launches each


def _median(xs: list[int]) -> float:
    xs = sorted(xs)
    return float(xs[len(xs) // 2])


def _pycuda():
    import pycuda.driver as drv
    from pycuda.compiler import SourceModule

    drv.init()
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    fn = SourceModule(KERNEL_SOURCE, no_extern_c=True).get_function(KERNEL_NAME)
    fn.prepare("PII")
    host = drv.pagelocked_zeros(1, np.uint32, mem_flags=drv.host_alloc_flags.DEVICEMAP)
    ptr = np.intp(host.base.get_device_pointer())
    stream = drv.Stream()

    def launch() -> None:
        fn.prepared_async_call((1, 1), (1, 1, 1), stream, ptr, 1, 0)

    return launch, stream.synchronize, lambda: int(host[0]), ctx.pop


def _cupy():
    import cupy as cp

    kernel = cp.RawKernel(KERNEL_SOURCE, KERNEL_NAME)
    mem = cp.cuda.PinnedMemory(4, flags=cp.cuda.runtime.hostAllocMapped)
    host = np.ctypeslib.as_array((ctypes.c_uint32 * 1).from_address(mem.ptr))
    host[0] = 0
    dptr = np.uint64(cp.cuda.runtime.pointerGetAttributes(mem.ptr).devicePointer)
    stream = cp.cuda.Stream(non_blocking=True)
    args = (dptr, np.uint32(1), np.uint32(0))
    stream.use()

    def launch() -> None:
        kernel((1,), (1,), args)

    # `mem` travels with the result: `host` views its memory without holding it, and the
    # kernel writes into it, so freeing it early makes every launch an illegal address
    return launch, stream.synchronize, lambda: int(host[0]), lambda: None, (cp, stream, mem)


def _single(launch: Callable[[], None], sync: Callable[[], None]) -> float:
    now = time.perf_counter_ns
    for _ in range(20):  # module load, first-launch costs
        launch()
        sync()
    times = []
    for _ in range(SAMPLES):
        t0 = now()
        launch()
        sync()
        times.append(now() - t0)
    return _median(times)


def _per_op(launch: Callable[[], None], sync: Callable[[], None], ops: int) -> float:
    now = time.perf_counter_ns
    for _ in range(ops):
        launch()
    sync()
    times = []
    for _ in range(BATCHES):
        t0 = now()
        for _ in range(ops):
            launch()
        sync()
        times.append(now() - t0)
    return _median(times) / ops


def pycuda_launch_sync(args: dict[str, Any]) -> float:
    launch, sync, _value, close = _pycuda()
    try:
        return _single(launch, sync)
    finally:
        close()


def cupy_launch_sync(args: dict[str, Any]) -> float:
    launch, sync, *_keep = _cupy()
    return _single(launch, sync)


def pycuda_launch(args: dict[str, Any]) -> float:
    launch, sync, _value, close = _pycuda()
    try:
        return _per_op(launch, sync, int(args.get("ops", 2000)))
    finally:
        close()


def cupy_launch(args: dict[str, Any]) -> float:
    launch, sync, *_keep = _cupy()
    return _per_op(launch, sync, int(args.get("ops", 2000)))


def cuda_graph(args: dict[str, Any]) -> float:
    launch, sync, _v, _c, (cp, stream, _mem) = _cupy()
    ops = int(args.get("ops", 2000))
    stream.begin_capture()
    for _ in range(ops):
        launch()
    graph = stream.end_capture()
    graph.launch(stream)
    sync()
    return _per_op(lambda: graph.launch(stream), sync, 1) / ops


def pinned_h2d(args: dict[str, Any]) -> float:
    """B/s of ``chunks`` async copies of ``chunk`` bytes from one pinned buffer + a sync."""
    import pycuda.driver as drv

    drv.init()
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    try:
        chunk, chunks = int(args.get("chunk", 1 << 20)), int(args.get("chunks", 256))
        pinned = drv.pagelocked_empty(chunk, np.uint8)
        dev = drv.mem_alloc(chunk)
        stream = drv.Stream()

        def copy() -> None:
            drv.memcpy_htod_async(dev, pinned, stream)

        return 1e9 / _per_op(copy, stream.synchronize, chunks) * chunk
    finally:
        ctx.pop()


def python_gpu_loop(args: dict[str, Any]) -> float:
    """B/s of the ingest suite's launch-per-chunk loop over one file (median of 3 passes)."""
    import pycuda.driver as drv

    from vyre.bench.suites import ingest
    from vyre.ingest.dfa import build_dfa

    drv.init()
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    try:
        dfa = build_dfa(list(ingest.PATTERNS))
        r = ingest.gpu_loop_resources(drv, dfa)
        loop = ingest.gpu_loop_sampler(drv, r["fn"], [args["path"]], dfa, {}, r["stream"],
                                       r["pinned"], r["dev"], r["tab"], r["acc"])
        loop()
        size = os.path.getsize(args["path"])
        rate = size / (_median([int(loop()) for _ in range(3)]) * 1e-9)
        ingest.free_gpu_loop_resources(r)
        return rate
    finally:
        ctx.pop()


def hashtable_batched(args: dict[str, Any]) -> float:
    """ops/s of the userops suite's batched CuPy table: N inserts then N lookups, one launch
    of N threads each, on an empty table (median of BATCHES samples)."""
    import cupy as cp

    from vyre.bench.suites.userops import CUPY_SOURCE, _keys

    n, cap = int(args["n"]), int(args["capacity"])
    mod = cp.RawModule(code=CUPY_SOURCE)
    ins_n, look_n = mod.get_function("ht_insert_n"), mod.get_function("ht_lookup_n")
    tab, found = cp.zeros(2 * cap, dtype=cp.uint32), cp.zeros(1, dtype=cp.uint32)
    keys, vals = _keys(n, 0)
    dk, dv = cp.asarray(keys), cp.asarray(vals)
    grid, u32, now = ((n + 255) // 256,), np.uint32, time.perf_counter_ns
    times = []
    for i in range(BATCHES + 2):  # the first two: module load, first-launch costs
        tab.fill(0)
        cp.cuda.runtime.deviceSynchronize()
        t0 = now()
        ins_n(grid, (256,), (tab, u32(cap), dk, dv, u32(n)))
        look_n(grid, (256,), (tab, u32(cap), dk, dv, u32(n), found))
        cp.cuda.runtime.deviceSynchronize()
        if i >= 2:
            times.append(now() - t0)
    if int(found.get()[0]) != n * (BATCHES + 2):
        raise RuntimeError(f"{int(found.get()[0])} lookups found their value, expected "
                           f"{n * (BATCHES + 2)}")
    return 2 * n / (_median(times) * 1e-9)


REFERENCES: dict[str, Callable[[dict[str, Any]], float]] = {
    f.__name__: f for f in (pycuda_launch_sync, cupy_launch_sync, pycuda_launch, cupy_launch,
                            cuda_graph, pinned_h2d, python_gpu_loop, hashtable_batched)}


def main(argv: list[str]) -> int:
    name = argv[0] if argv else ""
    if name not in REFERENCES:
        print(f"unknown reference {name!r}; known: {', '.join(REFERENCES)}", file=sys.stderr)
        return 2
    args = json.loads(argv[1]) if len(argv) > 1 else {}
    print(json.dumps({"name": name, "value": REFERENCES[name](args)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
