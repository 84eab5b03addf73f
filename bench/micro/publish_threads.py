"""How the host's slot writer scales with threads (before building a parallel publish).

The C writer of stream_publish.c (ordinary 16-byte stores), T threads on disjoint quarters
of N slots (ctypes drops the GIL in the call), into the megakernel's mapped ring and into a
plain numpy array; the GPU is not told (no doorbell), so only the host's stores are timed.
    python bench/micro/publish_threads.py [--n 131072] [--reps 30] [--threads 1,2,4,8]
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from vyre import Megakernel, Opcode

from dispatch_split import _stream_lib  # noqa: E402  (same directory)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=131072)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--backend", default="cuda")
    a = ap.parse_args()
    lib = _stream_lib()
    n = a.n
    ops = np.full(n, int(Opcode.NOP), np.uint32)
    args = np.ones((n, 2), np.uint32)
    plain = np.zeros(n * 16, np.uint32)
    with Megakernel(a.backend, slot_count=n, observable_slots=4) as mk:
        for where, ring in (("mapped", mk._ring), ("plain", plain)):
            for t in (int(x) for x in a.threads.split(",")):
                times = []
                for _ in range(a.reps):
                    ring[0::16] = 0  # EMPTY: nothing runs them (no doorbell)
                    bounds = [n * i // t for i in range(t + 1)]

                    def part(i: int) -> None:
                        lo, hi = bounds[i], bounds[i + 1]
                        lib.publish(ring.ctypes.data, n, lo, ops.ctypes.data + 4 * lo,
                                    args.ctypes.data + 8 * lo, 2, 0, 2, hi - lo, None, 0, 0, 0)

                    ths = [threading.Thread(target=part, args=(i,)) for i in range(t)]
                    t0 = time.perf_counter_ns()
                    for th in ths:
                        th.start()
                    for th in ths:
                        th.join()
                    times.append((time.perf_counter_ns() - t0) / n)
                ring[0::16] = 0
                q = np.percentile(times, [10, 50, 90])
                print(f"{where:6s} threads={t}  ns/slot p10 {q[0]:6.2f} p50 {q[1]:6.2f} "
                      f"p90 {q[2]:6.2f} min {min(times):6.2f} (n={len(times)}, N={n})", flush=True)


if __name__ == "__main__":
    main()
