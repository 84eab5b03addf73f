"""The CPU backend against the ways Python code would do the same ops without vyre.

The same N ops -- add ``a0 = 1`` to a counter -- per sample, host time per op:
* ``vyre_cpu``: one ``submit_many`` of N slots + ``drain`` on the CPU backend (native worker
  threads running the interpreter; default worker count = cores);
* ``threadpool_submit``: a ``concurrent.futures.ThreadPoolExecutor`` with the same number of
  workers, one ``submit`` per op, then wait for all; the op takes a lock because, like
  ATOMIC_ADD, it must be atomic;
* ``python_loop``: a plain single-threaded loop ``counts[idx] += a0`` over the same (a0, idx)
  pairs, prepared before timing as vyre's arrays are (no lock needed: one thread);
* ``numpy_add_at``: ``np.add.at`` over the same arrays, the vectorised way.
Ratios are vyre_cpu vs each; a ratio below 1 means the baseline is faster, and is reported
as such.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from vyre.bench.suites._common import (atomic_add_ops, expect_u32, facade, megakernel, next_pow2,
                                       submit_many_sampler, Unavailable)

NAME = "cpu"
DESCRIPTION = "CPU backend submit_many+drain vs ThreadPoolExecutor and plain Python"


def run(ctx) -> None:
    """Measure the four methods on the same N ops and record vyre_cpu's ratios."""
    if ctx.options.backend == "cuda":
        raise Unavailable("--backend cuda selected; this suite measures the CPU backend")
    fx = facade()
    n = 2000 if ctx.options.quick else 20_000
    workers = os.cpu_count() or 1
    ctx.note("ops_per_sample", n)
    now = time.perf_counter_ns
    opcodes, args = atomic_add_ops(n, int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE)
    params = {"ops": n, "workers": workers}
    mk = megakernel(fx, "cpu", slot_count=next_pow2(n), observable_slots=64, workers=workers)
    with mk:
        ctx.note("backend", mk.backend.describe())
        obs, done = mk.observables, [0]

        many = submit_many_sampler(mk, opcodes, args, done)

        vyre = ctx.bench("vyre_cpu", many, batch=n, params=params,
                         verify=lambda: expect_u32(obs[0], done[0]))

    pairs = [(1, 0)] * n
    counts, lock, ran = [0], threading.Lock(), [0]

    def op(a0: int, idx: int) -> None:
        with lock:
            counts[idx] += a0

    with ThreadPoolExecutor(max_workers=workers) as ex:
        def pool() -> float:
            t0 = now()
            wait([ex.submit(op, a0, idx) for a0, idx in pairs])
            t1 = now()
            ran[0] += n
            return t1 - t0

        base_pool = ctx.bench("threadpool_submit", pool, batch=n, params=params,
                              verify=lambda: expect_u32(counts[0], ran[0]))

    plain, plain_ran = [0], [0]

    def loop() -> float:
        c = plain
        t0 = now()
        for a0, idx in pairs:
            c[idx] += a0
        t1 = now()
        plain_ran[0] += n
        return t1 - t0

    base_loop = ctx.bench("python_loop", loop, batch=n, params={"ops": n},
                          verify=lambda: expect_u32(plain[0], plain_ran[0]))

    acc = np.zeros(1, dtype=np.uint32)
    a0s, idxs, np_ran = args[:, 0].copy(), np.zeros(n, dtype=np.intp), [0]

    def add_at() -> float:
        t0 = now()
        np.add.at(acc, idxs, a0s)
        t1 = now()
        np_ran[0] += n
        return t1 - t0

    base_np = ctx.bench("numpy_add_at", add_at, batch=n, params={"ops": n},
                        verify=lambda: expect_u32(acc[0], np_ran[0]))
    for base in (base_pool, base_loop, base_np):
        ctx.compare(vyre, base)
