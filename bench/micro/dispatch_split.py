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
* ``sm_drain@K``: the suite's sample with the doorbell rung every K slots;
* with ``--stream`` (an experiment, bench/micro/stream_publish.c built with cc): the same
  writer in C with ordinary 16-byte stores or streaming ones, into a plain array
  (``c_store_plain`` / ``c_stream_plain``) and into the ring + drain (``c_store_drain`` /
  ``c_stream_drain``, doorbell every 8192 behind an sfence).
    python bench/micro/dispatch_split.py [--n 100000] [--reps 20] [--spread 1024] [--stream]
Each ATOMIC_ADD lands on one of --spread observables (the dispatch suite: 1024); with few,
the GPU's atomics on the same few lines of mapped control memory serialise and the drain slows.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import tempfile
import time

import numpy as np

from vyre import Megakernel, Opcode, megakernel as mkmod, wire
from vyre.bench.suites._gpu import COUNTER_WORDS
from vyre.protocol import OBSERVABLE_BASE, SlotStatus


def _stream_lib():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(tempfile.mkdtemp(), "stream_publish.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", out,
                    os.path.join(here, "stream_publish.c")], check=True)
    lib = ctypes.CDLL(out)
    lib.publish.restype = None
    lib.publish.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32,
                            ctypes.c_size_t, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t,
                            ctypes.c_int]
    return lib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--spread", type=int, default=COUNTER_WORDS)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--doorbells", default="1024,8192,32768",
                    help="comma list of doorbell spacings to time (sm_drain@K)")
    ap.add_argument("--stream", action="store_true", help="also time the C writers (see above)")
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
    lib = _stream_lib() if a.stream else None
    ptr = lambda arr: arr.ctypes.data  # noqa: E731
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
            for mode, name in ((0, "store"), (1, "stream")) if lib else ():
                plain[:] = 0
                t0 = now()
                lib.publish(ptr(plain), ring_slots, 0, ptr(ops), ptr(args), 2, 0, 2, n,
                            None, 0, 0, mode)
                put(f"c_{name}_plain", (now() - t0) / n)
                # the facade's bookkeeping, advanced by hand: these slots are retired (DONE)
                with mk._lock:
                    first = mk._published
                    assert first == mk._retired
                    t0 = now()
                    lib.publish(ptr(ring), ring_slots, first % ring_slots, ptr(ops), ptr(args), 2,
                                0, 2, n, None if mk._doorbell is None else ptr(mk._doorbell),
                                first, 8192, mode)
                    mk._published = mk._notified = first + n
                mk.backend.kick()
                mk.drain()
                put(f"c_{name}_drain", (now() - t0) / n)
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
