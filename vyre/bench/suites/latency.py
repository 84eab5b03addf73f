"""Single-op round trip: ``submit`` -> ``wait`` -> read the observable, as a distribution.

Each sample is one op, timed on the host with ``perf_counter_ns`` from before ``submit`` to
after the observable has been read (the quantity a caller waits for, so host clock, not
device time). Samples are kept for the latency CDF plot.

The call path (docs/call.md), where the build has it, same run: ``mk.call`` of NOP, of
ATOMIC_ADD (add 1, the new value comes back in the answer: no observable read needed) and of
a registered user op where the build has the op registry; each sample is one blocking call.

Baselines, same run, same work (add 1 to a counter, then read it on the host):
* CUDA backend: one launch of the equivalent kernel + stream synchronize + read, through
  PyCUDA and through CuPy (see ``_gpu``), each cross-checked against the same launch +
  synchronize in a fresh process (``_reference``);
* CPU backend: ``ThreadPoolExecutor.submit(op).result()`` + read -- the usual way to hand one
  op to another thread and wait for it -- cross-checked by a bare loop of the same call.

The megakernel and its baselines are measured paired (``ctx.paired``): alternating rounds,
each with a freshly started megakernel that is shut down before the baselines' round, so the
GPU baselines never share the device with a resident persistent kernel.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from vyre.bench.checks import Check, loop_reference
from vyre.bench.runner import Method
from vyre.bench.suites._common import (
    Unavailable,
    expect_u32,
    facade,
    megakernel_session,
    resolve_backend,
)

NAME = "latency"
DESCRIPTION = "single-op round trip submit -> wait -> read observable (distribution)"

#: each method in words, for reports that speak to people (``python -m vyre demo``)
PHRASES = {
    "megakernel": "one op's round trip through the megakernel (submit, wait, read)",
    "pycuda_launch_sync": "one PyCUDA kernel launch + synchronize",
    "cupy_launch_sync": "one CuPy kernel launch + synchronize",
    "threadpool_roundtrip": "handing one op to a ThreadPoolExecutor and waiting for it",
}


def _min_samples(ctx) -> int:
    # enough samples that p99 is an interpolation between measured tails, not the max
    return 300 if ctx.options.quick else 3000


def megakernel_method(ctx, fx, backend: str) -> Method:
    """The megakernel's round trip as a paired method (other methods may join it)."""
    now = time.perf_counter_ns
    add_op, word = int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE
    state: dict[str, Any] = {}

    @contextmanager
    def session() -> Iterator[Any]:
        with megakernel_session(fx, backend, state, slot_count=1024,
                                observable_slots=64) as mk:
            ctx.note("backend", mk.backend.describe())
            obs, submit, wait = mk.observables, mk.submit, mk.wait

            def sample() -> float:
                t0 = now()
                wait(submit(add_op, (1, word)))
                obs[0]  # the caller's read of the result is part of the round trip
                t1 = now()
                state["done"] += 1
                return t1 - t0

            yield sample

    return Method("megakernel", session=session, unit="ns", keep_samples=True,
                  params={"backend": backend}, min_samples=_min_samples(ctx),
                  verify=lambda: expect_u32(state["mk"].observables[0], state["done"]))


def run(ctx) -> None:
    """Measure the megakernel's round trip and the backend's natural baselines, paired."""
    fx = facade()
    backend = resolve_backend(ctx)
    subjects = [megakernel_method(ctx, fx, backend), *call_methods(ctx, fx, backend)]
    baselines = _gpu_baselines(ctx) if backend == "cuda" else _cpu_baselines(ctx)
    res = ctx.paired([*subjects, *baselines])
    for b in baselines:
        for s in subjects:
            ctx.compare(res[s.name], res[b.name])


#: the user op of ``call_user_op``: adds a0 to control word a1 and returns the new value
#: (ATOMIC_ADD written as a user op, docs/ops.md); vyre.bench.prewarm builds it ahead of a run
CALL_ADD_OP_NAME = "bench_call_add"
CALL_ADD_OP = """
VYRE_OP(bench_call_add) {
    if (op->lane == 0)
        vyre_op_result(op, 0, vyre_atomic_add_u32(op, 0, vyre_arg(op, 1), vyre_arg(op, 0))
                              + vyre_arg(op, 0));
}
"""


def call_methods(ctx, fx, backend: str) -> list[Method]:
    """The call path's round trips (blocking ``mk.call``) as paired methods, each round on a
    fresh megakernel; none where the build has no call path."""
    if not hasattr(fx.Megakernel, "call"):
        ctx.skip("call_*", "this build has no call path (Megakernel.call)")
        return []
    now = time.perf_counter_ns
    nop, add_op, word = int(fx.Opcode.NOP), int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE
    kinds = ["call_nop", "call_atomic_add"]
    if hasattr(fx.Megakernel, "register_op"):
        kinds.append("call_user_op")
    else:
        ctx.skip("call_user_op", "no user-op registry in this build (Megakernel.register_op)")
    notes = {"call_nop": "mk.call(NOP): one request, one answer, no ring slot",
             "call_atomic_add": "mk.call(ATOMIC_ADD, (1, word)): the new value is the answer",
             "call_user_op": "mk.call of a registered user op (add a0 to obs[a1])"}
    out = []
    for kind in kinds:
        state: dict[str, Any] = {}

        @contextmanager
        def session(kind=kind, state=state) -> Iterator[Any]:
            with megakernel_session(fx, backend, state, slot_count=1024,
                                    observable_slots=64) as mk:
                call = mk.call
                code, args = {"call_nop": (nop, ()), "call_atomic_add": (add_op, (1, word))}.get(
                    kind, (None, (1, word)))
                if code is None:
                    code = int(mk.register_op(CALL_ADD_OP_NAME, CALL_ADD_OP).opcode)

                def sample() -> float:
                    t0 = now()
                    call(code, args) if args else call(code)
                    t1 = now()
                    state["done"] += 1
                    return t1 - t0
                yield sample

        def verify(kind=kind, state=state) -> tuple[bool, str]:
            if kind == "call_nop":
                return True, ""
            return expect_u32(state["mk"].observables[0], state["done"])

        out.append(Method(kind, session=session, unit="ns", keep_samples=True,
                          params={"backend": backend}, min_samples=_min_samples(ctx),
                          verify=verify, notes=notes[kind]))
    return out


def _gpu_baselines(ctx) -> list[Method]:
    from vyre.bench.suites import _gpu

    now = time.perf_counter_ns
    out = []
    for name, cls, lib in (("pycuda_launch_sync", _gpu.PyCudaLauncher, "PyCUDA"),
                           ("cupy_launch_sync", _gpu.CuPyLauncher, "CuPy")):
        try:  # probe once: a missing library is a skip, not an error in every round
            cls().close()
        except Unavailable as why:
            ctx.skip(name, str(why))
            continue
        except Exception as exc:  # compile or driver failure: an error of this baseline
            ctx.error(name, exc)
            continue
        holder: dict[str, Any] = {}

        def verify(h: dict[str, Any] = holder) -> tuple[bool, str]:
            return expect_u32(h["lau"].value(), h["lau"].expected)

        @contextmanager
        def session(cls=cls, holder=holder) -> Iterator[Any]:
            lau = holder["lau"] = cls()
            try:
                def sample() -> float:
                    t0 = now()
                    lau.launch_n(1)
                    lau.sync()
                    lau.host[0]
                    return now() - t0

                yield sample
            finally:
                lau.close()

        out.append(Method(
            name, session=session, unit="ns", keep_samples=True,
            min_samples=_min_samples(ctx),
            verify=verify,
            notes="one launch of the equivalent kernel + stream synchronize + host read of "
                  "the mapped counter",
            check=_gpu.standalone_check(name, f"one {lib} launch + stream synchronize, "
                                              "timed alone in a fresh process")))
    return out


def _cpu_baselines(ctx) -> list[Method]:
    now = time.perf_counter_ns
    counts = [0]
    lock = threading.Lock()

    def op(a0: int, idx: int) -> None:
        with lock:  # the op must be atomic, like ATOMIC_ADD
            counts[idx] += a0

    done = [0]

    @contextmanager
    def session() -> Iterator[Any]:
        with ThreadPoolExecutor(max_workers=1) as ex:
            ex.submit(op, 0, 0).result()  # start the worker thread outside the measurement

            def sample() -> float:
                t0 = now()
                ex.submit(op, 1, 0).result()
                counts[0]
                t1 = now()
                done[0] += 1
                return t1 - t0

            yield sample

    def reference() -> float:
        with ThreadPoolExecutor(max_workers=1) as ex:
            return loop_reference(lambda: ex.submit(op, 0, 0).result(), unit="ns",
                                  samples=301)()

    return [Method("threadpool_roundtrip", session=session, unit="ns", keep_samples=True,
                   min_samples=_min_samples(ctx),
                   verify=lambda: expect_u32(counts[0], done[0]),
                   notes="ThreadPoolExecutor(max_workers=1).submit(op).result()",
                   check=Check("the same submit().result() in a bare loop, 301 calls",
                               reference))]
