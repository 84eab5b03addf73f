"""GPU drain rate of a pre-published burst, timed on DONE_COUNT (kernel development)."""
import time
import numpy as np
from vyre import Megakernel, Opcode

with Megakernel("cuda", slot_count=1 << 18, observable_slots=1024) as mk:
    for label, n, op, args in [
        ("NOP", 1 << 18, Opcode.NOP, None),
        ("ATOMIC_ADD", 100_000, Opcode.ATOMIC_ADD,
         lambda n: np.stack([np.ones(n, np.uint32), 160 + np.arange(n, dtype=np.uint32) % 1024], 1).astype(np.uint32)),
    ]:
        ops = np.full(n, op, np.uint32)
        a = args(n) if args else None
        rates = []
        for _ in range(4):
            target = mk.done_count + n
            t0 = time.perf_counter()
            mk.submit_many(ops, a)
            t1 = time.perf_counter()
            while mk.control[1] < target:
                pass
            t2 = time.perf_counter()
            mk.drain()
            rates.append(n / (t2 - t1) / 1e6)
        print(f"{label:10s} n={n}: gpu drain after publish {np.median(rates):8.1f} M/s  (runs {', '.join(f'{r:.1f}' for r in rates)})", flush=True)
