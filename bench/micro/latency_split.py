"""Round trip of one slot by opcode (NOP vs ATOMIC_ADD on a mapped observable): how much of
the latency is the op itself and how much the publish -> detect -> claim -> status chain.

    python bench/micro/latency_split.py [--n 5000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from vyre import Megakernel, Opcode
from vyre.protocol import OBSERVABLE_BASE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--idle-sleep-ns", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=None, help="blocks per SM")
    ap.add_argument("--assist", type=int, default=65536, help="assist_part_bytes (0: off; 65536 is the backend default)")
    a = ap.parse_args()
    n = a.n
    print(f"idle_sleep_ns={a.idle_sleep_ns} workers={a.workers} assist_part_bytes={a.assist}")
    with Megakernel("cuda", slot_count=1024, observable_slots=8, workers=a.workers,
                    idle_sleep_ns=a.idle_sleep_ns, assist_part_bytes=a.assist) as mk:
        for name, op, args in (("NOP", Opcode.NOP, []), ("ATOMIC_ADD", Opcode.ATOMIC_ADD, [1, OBSERVABLE_BASE])):
            for _ in range(200):
                mk.wait(mk.submit(op, args))
            t = np.empty(n)
            for i in range(n):
                t0 = time.perf_counter_ns()
                mk.wait(mk.submit(op, args))
                t[i] = time.perf_counter_ns() - t0
            p = np.percentile(t / 1e3, [10, 50, 90, 99, 99.9])
            print(f"{name:10s} n={n} us p10 {p[0]:.2f} p50 {p[1]:.2f} p90 {p[2]:.2f} "
                  f"p99 {p[3]:.2f} p99.9 {p[4]:.2f} max {t.max() / 1e3:.1f}")
        t = np.empty(n)
        for i in range(n):  # host side only: publish + doorbell, no wait
            t0 = time.perf_counter_ns()
            mk.submit(Opcode.NOP, [])
            t[i] = time.perf_counter_ns() - t0
            if i % 512 == 511:
                mk.drain(timeout=10)
        print(f"submit only  us p50 {np.percentile(t / 1e3, 50):.2f}")
        mk.drain(timeout=10)
        done = mk.submit(Opcode.NOP, [])
        mk.wait(done)
        obs = mk.observables
        for i in range(n):  # host side only: a wait that finds its ticket retired, the read
            t0 = time.perf_counter_ns()
            mk.wait(done)
            obs[0]
            t[i] = time.perf_counter_ns() - t0
        print(f"wait(retired ticket) + observable read  us p50 {np.percentile(t / 1e3, 50):.2f}")


if __name__ == "__main__":
    main()
