"""A quick look at GPU latency/throughput before the full harness (prints, records nothing)."""
import time
import numpy as np
from vyre import Megakernel, Opcode


def pct(a, q):
    return np.percentile(np.asarray(a) / 1e3, q)


with Megakernel("cuda", slot_count=1 << 17, observable_slots=1024) as mk:
    print(mk.backend.describe())
    lat = []
    for i in range(20000):
        t0 = time.perf_counter_ns()
        t = mk.submit(Opcode.ATOMIC_ADD, (1, 160))
        mk.wait(t)
        lat.append(time.perf_counter_ns() - t0)
    lat = lat[2000:]
    print("roundtrip us p10 %.2f p50 %.2f p90 %.2f p99 %.2f min %.2f" % tuple(
        [pct(lat, q) for q in (10, 50, 90, 99)] + [min(lat) / 1e3]))
    n = 100_000
    ops = np.full(n, Opcode.ATOMIC_ADD, np.uint32)
    args = np.stack([np.ones(n, np.uint32), 160 + np.arange(n, dtype=np.uint32) % 1024], 1).astype(np.uint32)
    for rep in range(5):
        target = mk.done_count + n
        t0 = time.perf_counter()
        mk.submit_many(ops, args)
        t1 = time.perf_counter()
        while mk.control[1] < target:
            pass
        tg = time.perf_counter()
        mk.drain()
        t2 = time.perf_counter()
        print(f"100k ATOMIC_ADD: publish {1e3*(t1-t0):.2f} ms, gpu done at {1e3*(tg-t0):.2f} ms, total {1e3*(t2-t0):.2f} ms, {n/(t2-t0)/1e6:.1f} M ops/s")
    nops = np.zeros(1 << 17, np.uint32)
    for rep in range(3):
        target = mk.done_count + len(nops)
        t0 = time.perf_counter()
        mk.submit_many(nops)
        t1 = time.perf_counter()
        while mk.control[1] < target:
            pass
        print(f"   gpu done at {1e3*(time.perf_counter()-t0):.2f} ms")
        mk.drain()
        t2 = time.perf_counter()
        print(f"131k NOP: publish {1e3*(t1-t0):.2f} ms, total {1e3*(t2-t0):.2f} ms, {len(nops)/(t2-t0)/1e6:.1f} M ops/s")
    print("done_count", mk.done_count, "telemetry", mk.telemetry())

import pycuda.autoinit  # noqa
from pycuda.compiler import SourceModule
import pycuda.driver as cuda
mod = SourceModule("__global__ void k(){}")
k = mod.get_function("k")
for _ in range(100):
    k(block=(1, 1, 1), grid=(1, 1)); cuda.Context.synchronize()
ts = []
for _ in range(5000):
    t0 = time.perf_counter_ns(); k(block=(1, 1, 1), grid=(1, 1)); cuda.Context.synchronize(); ts.append(time.perf_counter_ns() - t0)
print("pycuda empty launch+sync us p50 %.2f" % pct(ts, 50))
