"""Kernel drain rate of a held-back burst and submit_many+drain ns/op, per workers value.

    python bench/gpu/drain_workers.py 1,4
"""
import sys
import time

import numpy as np

from vyre import Megakernel, Opcode

for workers in [int(w) for w in sys.argv[1].split(",")]:
    with Megakernel("cuda", slot_count=1 << 17, observable_slots=1024, workers=workers) as mk:
        n = 1 << 17
        for label, op in (("NOP", Opcode.NOP), ("ATOMIC_ADD", Opcode.ATOMIC_ADD)):
            ops = np.full(n, op, np.uint32)
            args = np.stack([np.ones(n, np.uint32), 160 + np.arange(n, dtype=np.uint32) % 1024], 1)
            rates = []
            for _ in range(5):
                target = mk.done_count + n
                mk.submit_many(ops, args, notify=False)
                t0 = time.perf_counter()
                mk.notify()
                while mk.control[1] < target:
                    if time.perf_counter() - t0 > 10:
                        raise TimeoutError("burst not drained in 10 s")
                rates.append(n / (time.perf_counter() - t0) / 1e6)
                mk.drain()
            # submit_many + drain of 100 000 ops, host included (the dispatch suite's method)
            m = 100_000
            t = []
            for _ in range(5):
                t0 = time.perf_counter_ns()
                mk.submit_many(ops[:m], args[:m])
                mk.drain()
                t.append((time.perf_counter_ns() - t0) / m)
            print(f"workers={workers} {label:10s}: kernel drain {np.median(rates):7.1f} M/s "
                  f"(runs {', '.join(f'{r:.1f}' for r in rates)}); "
                  f"submit_many+drain {np.median(t):.1f} ns/op "
                  f"(runs {', '.join(f'{x:.1f}' for x in t)})", flush=True)
