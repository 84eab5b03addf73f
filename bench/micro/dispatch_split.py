"""Where `submit_many` + `drain` of N tiny ops spends its time (the dispatch suite's sample).

Per op, medians of --reps:
* ``plain_publish``: the Cython writer into a plain host array;
* ``mapped_publish`` / ``notify_drain``: publishing into the mapped ring without telling the
  GPU (``notify=False``), then notify + drain (the GPU's drain plus the host's retire walk);
* ``sm_drain`` with its two parts ``sm_drain.publish`` / ``sm_drain.drain``: the suite's sample
  (submit_many + drain, GPU told every ``_DOORBELL_EVERY`` slots) timed at the boundary;
* ``sm_drain.gpu_behind``: slots not yet DONE when ``submit_many`` returned (a count, not ns);
* ``scan_wait`` / ``scan_retire``: the host's two status walks over N slots already DONE
  (what ``drain`` costs when the GPU has nothing left to do);
* ``sm_drain@K``: the suite's sample with the doorbell rung every K slots.
    python bench/micro/dispatch_split.py [--n 100000] [--reps 20] [--spread 1024]
Each ATOMIC_ADD lands on one of --spread observables (the dispatch suite: 1024); with few,
the GPU's atomics on the same few lines of mapped control memory serialise and the drain slows.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from vyre import Megakernel, Opcode, megakernel as mkmod, wire
from vyre.bench.suites._gpu import COUNTER_WORDS
from vyre.protocol import OBSERVABLE_BASE, SlotStatus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--spread", type=int, default=COUNTER_WORDS)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--doorbells", default="1024,8192,32768",
                    help="comma list of doorbell spacings to time (sm_drain@K)")
    a = ap.parse_args()
    n = a.n
    ring_slots = 1 << (n - 1).bit_length()
    ops = np.full(n, int(Opcode.ATOMIC_ADD), np.uint32)
    args = np.stack([np.ones(n, np.uint32), OBSERVABLE_BASE + np.arange(n, dtype=np.uint32) % a.spread],
                    1).astype(np.uint32)
    now = time.perf_counter_ns
    res: dict[str, list[float]] = {}

    def put(key: str, v: float) -> None:
        res.setdefault(key, []).append(v)

    plain = np.zeros(ring_slots * 16, np.uint32)
    submitted = 0
    with Megakernel(a.backend, slot_count=ring_slots, observable_slots=a.spread) as mk:
        ring = mk._ring
        status = ring[0::16]
        for _ in range(a.reps):
            plain[:] = 0
            t0 = now()
            wire.publish_many(plain, 0, 0, ops, args)
            put("plain_publish", (now() - t0) / n)

            t0 = now()
            mk.submit_many(ops, args, notify=False)
            t1 = now()
            mk.notify()
            mk.drain()
            t2 = now()
            put("mapped_publish", (t1 - t0) / n)
            put("notify_drain", (t2 - t1) / n)
            submitted += n

            start = mk._published % ring_slots
            t0 = now()
            mk.submit_many(ops, args)
            t1 = now()
            mk.drain()
            t2 = now()
            put("sm_drain", (t2 - t0) / n)
            put("sm_drain.publish", (t1 - t0) / n)
            put("sm_drain.drain", (t2 - t1) / n)
            submitted += n

            # the walks of a drain with nothing left to wait for (read-only: all DONE)
            t0 = now()
            wire.wait_retire(ring, start, n, 1.0)
            t1 = now()
            count, faults = wire.retire(ring, start, n)
            t2 = now()
            assert count == n and not faults, (count, faults)
            put("scan_wait", (t1 - t0) / n)
            put("scan_retire", (t2 - t1) / n)

            # how far behind the GPU is when the host has published the last slot
            start = mk._published % ring_slots
            mk.submit_many(ops, args)
            idx = (start + np.arange(n)) % ring_slots
            put("sm_drain.gpu_behind", float(np.count_nonzero(status[idx] != SlotStatus.DONE)))
            mk.drain()
            submitted += n

            for k in (int(x) for x in a.doorbells.split(",") if x):
                saved = mkmod._DOORBELL_EVERY
                mkmod._DOORBELL_EVERY = k
                try:
                    t0 = now()
                    mk.submit_many(ops, args)
                    mk.drain()
                    put(f"sm_drain@{k}", (now() - t0) / n)
                finally:
                    mkmod._DOORBELL_EVERY = saved
                submitted += n
        total = int(mk.observables[:a.spread].astype(np.uint64).sum())
        assert total == submitted, (total, submitted)
    for k, v in res.items():
        q = np.percentile(v, [10, 50, 90])
        unit = "slots" if k.endswith("gpu_behind") else "ns/op"
        print(f"{k:22s} {unit:5s} p10 {q[0]:9.2f} p50 {q[1]:9.2f} p90 {q[2]:9.2f} "
              f"min {min(v):9.2f} (n={len(v)}, N={n})", flush=True)


if __name__ == "__main__":
    main()
