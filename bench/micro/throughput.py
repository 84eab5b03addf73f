"""Kernel drain rate of a pre-published burst (kernel development; used by ab.sh).

The burst is published with the doorbell held back (`notify=False`), then released; the time
runs from the doorbell to DONE_COUNT covering the burst, so host publishing is excluded. The
harness's `throughput/drain_rate_*` benchmarks measure the same thing with full statistics.
"""
import time
import numpy as np
from vyre import Megakernel, Opcode

with Megakernel("cuda", slot_count=1 << 17, observable_slots=1024) as mk:
    n = 1 << 17
    for label, op in (("NOP", Opcode.NOP), ("ATOMIC_ADD", Opcode.ATOMIC_ADD)):
        ops = np.full(n, op, np.uint32)
        args = np.stack([np.ones(n, np.uint32), 160 + np.arange(n, dtype=np.uint32) % 1024], 1)
        rates = []
        for _ in range(4):
            target = mk.done_count + n
            mk.submit_many(ops, args, notify=False)
            t0 = time.perf_counter()
            mk.notify()
            while mk.control[1] < target:
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError("DONE_COUNT did not cover the burst within 10 s")
            rates.append(n / (time.perf_counter() - t0) / 1e6)
            mk.drain()
        print(f"{label:10s} n={n}: kernel drain {np.median(rates):8.1f} M/s "
              f"(runs {', '.join(f'{r:.1f}' for r in rates)})", flush=True)
