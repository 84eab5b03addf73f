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
as such. The four are measured paired (alternating rounds, a fresh CPU megakernel per round),
and each baseline is cross-checked against the same call timed by a bare loop.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import numpy as np

from vyre.bench.checks import Check, loop_reference
from vyre.bench.runner import Method
from vyre.bench.suites._common import (
    Unavailable,
    atomic_add_ops,
    expect_u32,
    facade,
    megakernel,
    megakernel_session,
    next_pow2,
    submit_many_sampler,
)

NAME = "cpu"
DESCRIPTION = "CPU backend submit_many+drain vs ThreadPoolExecutor and plain Python"

#: each method in words, for reports that speak to people (``python -m vyre demo``)
PHRASES = {
    "vyre_cpu": "tiny ops through one submit_many + drain on the CPU backend",
    "threadpool_submit": "one ThreadPoolExecutor.submit per op",
    "python_loop": "a plain Python loop doing the adds",
    "numpy_add_at": "numpy's np.add.at",
}


def run(ctx) -> None:
    """Measure the four methods on the same N ops, paired, and record vyre_cpu's ratios."""
    if ctx.options.backend == "cuda":
        raise Unavailable("--backend cuda selected; this suite measures the CPU backend")
    fx = facade()
    n = 2000 if ctx.options.quick else 20_000
    workers = os.cpu_count() or 1
    ctx.note("ops_per_sample", n)
    now = time.perf_counter_ns
    opcodes, args = atomic_add_ops(n, int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE)
    params = {"ops": n, "workers": workers}
    geometry = {"slot_count": next_pow2(n), "observable_slots": 64, "workers": workers}
    megakernel(fx, "cpu", **geometry).shutdown()  # Unavailable here skips the whole suite
    state: dict[str, Any] = {}

    @contextmanager
    def vyre_session() -> Iterator[Any]:
        with megakernel_session(fx, "cpu", state, **geometry) as mk:
            ctx.note("backend", mk.backend.describe())
            yield submit_many_sampler(mk, opcodes, args, state)

    pairs = [(1, 0)] * n
    counts, lock, ran = [0], threading.Lock(), [0]

    def op(a0: int, idx: int) -> None:
        with lock:
            counts[idx] += a0

    def pool_once(ex) -> None:
        wait([ex.submit(op, a0, idx) for a0, idx in pairs])

    @contextmanager
    def pool_session() -> Iterator[Any]:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            def pool() -> float:
                t0 = now()
                pool_once(ex)
                t1 = now()
                ran[0] += n
                return t1 - t0
            yield pool

    def pool_reference() -> float:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            return loop_reference(lambda: pool_once(ex), per_call=n, samples=5)()

    plain, plain_ran = [0], [0]

    def loop_once(c: list[int]) -> None:
        for a0, idx in pairs:
            c[idx] += a0

    def loop() -> float:
        c = plain
        t0 = now()
        for a0, idx in pairs:
            c[idx] += a0
        t1 = now()
        plain_ran[0] += n
        return t1 - t0

    acc = np.zeros(1, dtype=np.uint32)
    a0s, idxs, np_ran = args[:, 0].copy(), np.zeros(n, dtype=np.intp), [0]

    def add_at() -> float:
        t0 = now()
        np.add.at(acc, idxs, a0s)
        t1 = now()
        np_ran[0] += n
        return t1 - t0

    scratch = np.zeros(1, dtype=np.uint32)
    res = ctx.paired([
        Method("vyre_cpu", session=vyre_session, batch=n, params=params,
               verify=lambda: expect_u32(state["mk"].observables[0], state["done"])),
        Method("threadpool_submit", session=pool_session, batch=n, params=params,
               verify=lambda: expect_u32(counts[0], ran[0]),
               check=Check(f"the same {n} submits + wait in a bare loop", pool_reference)),
        Method("python_loop", loop, batch=n, params={"ops": n},
               verify=lambda: expect_u32(plain[0], plain_ran[0]),
               check=Check(f"the same {n}-iteration loop timed bare",
                           loop_reference(lambda: loop_once([0]), per_call=n))),
        Method("numpy_add_at", add_at, batch=n, params={"ops": n},
               verify=lambda: expect_u32(acc[0], np_ran[0]),
               check=Check(f"np.add.at over the same {n} indices timed bare",
                           loop_reference(lambda: np.add.at(scratch, idxs, a0s), per_call=n))),
    ])
    for base in ("threadpool_submit", "python_loop", "numpy_add_at"):
        ctx.compare(res["vyre_cpu"], res[base])
