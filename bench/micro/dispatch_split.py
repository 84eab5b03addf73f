"""Where `submit_many` + `drain` of N tiny ops spends its time (the dispatch suite's sample).

Per op, medians of --reps: publishing into a plain host array (the Cython writer alone),
publishing into the mapped ring without telling the GPU (`notify=False`), the GPU's drain of
what was published (notify + drain), and the suite's sample (submit_many + drain, GPU told
every 8192 slots):
    python bench/micro/dispatch_split.py [--n 100000] [--reps 20] [--spread 1024]
Each ATOMIC_ADD lands on one of --spread observables (the dispatch suite: 1024); with few,
the GPU's atomics on the same few lines of mapped control memory serialise and the drain slows.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from vyre import Megakernel, Opcode, wire
from vyre.bench.suites._gpu import COUNTER_WORDS
from vyre.protocol import OBSERVABLE_BASE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--spread", type=int, default=COUNTER_WORDS)
    a = ap.parse_args()
    n = a.n
    ring_slots = 1 << (n - 1).bit_length()
    ops = np.full(n, int(Opcode.ATOMIC_ADD), np.uint32)
    args = np.stack([np.ones(n, np.uint32), OBSERVABLE_BASE + np.arange(n, dtype=np.uint32) % a.spread],
                    1).astype(np.uint32)
    now = time.perf_counter_ns
    res: dict[str, list[float]] = {k: [] for k in ("plain_publish", "mapped_publish",
                                                   "notify_drain", "submit_many_drain")}
    plain = np.zeros(ring_slots * 16, np.uint32)
    with Megakernel("cuda", slot_count=ring_slots, observable_slots=a.spread) as mk:
        for _ in range(a.reps):
            plain[:] = 0
            t0 = now()
            wire.publish_many(plain, 0, 0, ops, args)
            res["plain_publish"].append((now() - t0) / n)
            t0 = now()
            mk.submit_many(ops, args, notify=False)
            t1 = now()
            mk.notify()
            mk.drain()
            t2 = now()
            res["mapped_publish"].append((t1 - t0) / n)
            res["notify_drain"].append((t2 - t1) / n)
            t0 = now()
            mk.submit_many(ops, args)
            mk.drain()
            res["submit_many_drain"].append((now() - t0) / n)
        total = int(mk.observables[:a.spread].astype(np.uint64).sum())
        assert total == 2 * a.reps * n, (total, 2 * a.reps * n)
    for k, v in res.items():
        q = np.percentile(v, [10, 50, 90])
        print(f"{k:18s} ns/op p10 {q[0]:7.2f} p50 {q[1]:7.2f} p90 {q[2]:7.2f} min {min(v):7.2f} "
              f"(n={len(v)}, N={n})", flush=True)


if __name__ == "__main__":
    main()
