"""Call path on the CPU backend (docs/call.md): latency against the usual ways to hand one op to
another thread, lanes against a lock with many threads, and asyncio's per-call overhead.

    python bench/gpu/call_cpu.py [--n 20000] [--workers 1]

Prints distributions (p50 / p90 / p99, microseconds) of:
  call_nop, call_atomic_add       mk.call, one op, blocking (GIL released while it spins)
  ring_roundtrip                  mk.submit + mk.wait + read (the ring, for reference)
  threadpool                      ThreadPoolExecutor(1).submit(op).result()
and, per thread count, the wall time per call of T threads calling at once with
  lanes   each call takes its own lane (the call path as built)
  lock    the same calls behind one threading.Lock (one call in flight at a time)
and for asyncio: sequential `await mk.acall` latency, and N concurrent acalls' time per call.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import vyre
from vyre import Opcode

OBS = vyre.protocol.OBSERVABLE_BASE
ADD = int(Opcode.ATOMIC_ADD)


def dist(samples_ns: list[float]) -> str:
    a = np.asarray(samples_ns) / 1e3
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return f"p50 {p50:7.2f}  p90 {p90:7.2f}  p99 {p99:8.2f} us  (n={a.size})"


def timed(fn, n: int) -> list[float]:
    now = time.perf_counter_ns
    out = []
    for _ in range(n // 10):  # warm up
        fn()
    for _ in range(n):
        t0 = now()
        fn()
        out.append(now() - t0)
    return out


def threads_bench(mk, threads: int, per: int, lock: threading.Lock | None) -> float:
    """Wall seconds per call with `threads` threads each making `per` calls."""
    barrier = threading.Barrier(threads + 1)
    call = mk.call

    def worker():
        barrier.wait()
        if lock is None:
            for _ in range(per):
                call(ADD, (1, OBS))
        else:
            for _ in range(per):
                with lock:
                    call(ADD, (1, OBS))

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return (time.perf_counter() - t0) / (threads * per)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    n = args.n
    print(f"# call path, CPU backend: {platform.node()} {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, workers={args.workers}")
    with vyre.Megakernel(backend="cpu", slot_count=1024, observable_slots=64,
                         workers=args.workers) as mk:
        print("call_nop        ", dist(timed(lambda: mk.call(0), n)))
        print("call_atomic_add ", dist(timed(lambda: mk.call(ADD, (1, OBS)), n)))
        obs = mk.observables

        def ring():
            mk.wait(mk.submit(ADD, (1, OBS)))
            obs[0]
        print("ring_roundtrip  ", dist(timed(ring, n)))
        with ThreadPoolExecutor(max_workers=1) as ex:
            lk = threading.Lock()
            box = [0]

            def op():
                with lk:
                    box[0] += 1
            print("threadpool      ", dist(timed(lambda: ex.submit(op).result(), n)))

        per = max(200, n // 20)
        for threads in (1, 2, 4, 8):
            lanes = threads_bench(mk, threads, per, None)
            locked = threads_bench(mk, threads, per, threading.Lock())
            print(f"threads={threads}: lanes {lanes * 1e6:7.2f} us/call   "
                  f"lock {locked * 1e6:7.2f} us/call")

        async def seq_acalls() -> list[float]:
            now = time.perf_counter_ns
            out = []
            for _ in range(200):
                await mk.acall(0)
            for _ in range(min(n, 5000)):
                t0 = now()
                await mk.acall(0)
                out.append(now() - t0)
            return out
        print("acall sequential", dist(asyncio.run(seq_acalls())))

        async def concurrent_acalls(k: int) -> float:
            base = int(mk.observables[0])
            t0 = time.perf_counter()
            res = await asyncio.gather(*[mk.acall(ADD, (1, OBS)) for _ in range(k)])
            dt = time.perf_counter() - t0
            # every add answered once, with its own new value
            if sorted(res) != list(range(base + 1, base + k + 1)):
                raise SystemExit(f"acall x{k}: results are not {base + 1}..{base + k} once each")
            return dt / k
        for k in (100, 10_000):
            per_call = statistics.median(asyncio.run(concurrent_acalls(k)) for _ in range(3))
            print(f"acall x{k:<6} concurrent: {per_call * 1e6:7.2f} us/call (median of 3)")


if __name__ == "__main__":
    main()
