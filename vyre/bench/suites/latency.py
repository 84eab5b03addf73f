"""Single-op round trip: ``submit`` -> ``wait`` -> read the observable, as a distribution.

Each sample is one op, timed on the host with ``perf_counter_ns`` from before ``submit`` to
after the observable has been read (the quantity a caller waits for, so host clock, not
device time). Samples are kept for the latency CDF plot.

The call path (docs/call.md), same megakernel, same run: ``mk.call`` of NOP, of ATOMIC_ADD
(add 1, the new value comes back in the answer: no observable read needed) and of a
registered user op where the build has the op registry; each sample is one blocking call.

Baselines, same run, same work (add 1 to a counter, then read it on the host):
* CUDA backend: one launch of the equivalent kernel + stream synchronize + read, through
  PyCUDA and through CuPy (see ``_gpu``), run after the megakernel has been shut down;
* CPU backend: ``ThreadPoolExecutor.submit(op).result()`` + read -- the usual way to hand one
  op to another thread and wait for it.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vyre.bench.suites._common import (
    Unavailable,
    expect_u32,
    facade,
    megakernel,
    resolve_backend,
)

NAME = "latency"
DESCRIPTION = "single-op round trip submit -> wait -> read observable (distribution)"


def _min_samples(ctx) -> int:
    # enough samples that p99 is an interpolation between measured tails, not the max
    return 300 if ctx.options.quick else 3000


def run(ctx) -> None:
    """Measure the megakernel's round trip and the backend's natural baselines."""
    fx = facade()
    backend = resolve_backend(ctx)
    now = time.perf_counter_ns
    add_op, word = int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE
    mk = megakernel(fx, backend, slot_count=1024, observable_slots=64)
    with mk:
        ctx.note("backend", mk.backend.describe())
        obs = mk.observables
        done = [0]

        def sample() -> float:
            t0 = now()
            t = mk.submit(add_op, (1, word))
            mk.wait(t)
            obs[0]  # the caller's read of the result is part of the round trip
            t1 = now()
            done[0] += 1
            return t1 - t0

        mega = ctx.bench("megakernel", sample, unit="ns", keep_samples=True,
                         params={"backend": backend}, min_samples=_min_samples(ctx),
                         verify=lambda: expect_u32(obs[0], done[0]))
        subjects = [mega] + _calls(ctx, mk, backend, done)
    if backend == "cuda":
        _gpu_baselines(ctx, subjects)
    else:
        _cpu_baselines(ctx, subjects)


def _calls(ctx, mk, backend: str, done: list) -> list:
    """The call path's round trips (blocking ``mk.call``), as distributions."""
    if not hasattr(mk, "call"):
        ctx.skip("call_*", "this build has no call path (Megakernel.call)")
        return []
    now = time.perf_counter_ns
    fx = facade()
    nop, add_op, word = int(fx.Opcode.NOP), int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE
    call, obs = mk.call, mk.observables
    out = []

    wrong = [0]  # NOP calls that did not answer DONE with result 0

    def call_nop() -> float:
        t0 = now()
        r = call(nop)
        t1 = now()
        wrong[0] += r != 0
        return t1 - t0

    def call_add() -> float:
        t0 = now()
        call(add_op, (1, word))
        t1 = now()
        done[0] += 1
        return t1 - t0

    try:
        out.append(ctx.bench("call_nop", call_nop, unit="ns", keep_samples=True,
                             params={"backend": backend}, min_samples=_min_samples(ctx),
                             verify=lambda: (wrong[0] == 0,
                                             f"{wrong[0]} NOP calls returned a result other than 0"),
                             notes="mk.call(NOP): one request, one answer, no ring slot"))
        out.append(ctx.bench("call_atomic_add", call_add, unit="ns", keep_samples=True,
                             params={"backend": backend}, min_samples=_min_samples(ctx),
                             verify=lambda: expect_u32(obs[0], done[0]),
                             notes="mk.call(ATOMIC_ADD, (1, word)): the new value is the answer"))
    except Exception as exc:  # noqa: BLE001 - this benchmark's error, not the run's
        ctx.error("call_*", exc)
    user = getattr(mk, "register_op", None)
    if user is None:
        ctx.skip("call_user_op", "no user-op registry in this build (Megakernel.register_op)")
    else:
        try:
            op = _user_op(mk)
            def call_user() -> float:
                t0 = now()
                call(op, (1, word))
                t1 = now()
                done[0] += 1
                return t1 - t0
            out.append(ctx.bench("call_user_op", call_user, unit="ns", keep_samples=True,
                                 params={"backend": backend}, min_samples=_min_samples(ctx),
                                 verify=lambda: expect_u32(obs[0], done[0]),
                                 notes="mk.call of a registered user op (add a0 to obs[a1])"))
        except Exception as exc:  # noqa: BLE001 - this benchmark's error, not the run's
            ctx.error("call_user_op", exc)
    return [r for r in out if r is not None]


def _user_op(mk) -> int:
    """The opcode of a registered user op adding a0 to control word a1 and returning the new
    value (ATOMIC_ADD written as a user op, docs/ops.md)."""
    return int(mk.register_op("bench_call_add", """
VYRE_OP(bench_call_add) {
    if (op->lane == 0)
        vyre_op_result(op, 0, vyre_atomic_add_u32(op, 0, vyre_arg(op, 1), vyre_arg(op, 0)) + vyre_arg(op, 0));
}
""").opcode)


def _gpu_baselines(ctx, subjects: list) -> None:
    from vyre.bench.suites._gpu import CuPyLauncher, PyCudaLauncher

    now = time.perf_counter_ns
    for name, cls in (("pycuda_launch_sync", PyCudaLauncher), ("cupy_launch_sync", CuPyLauncher)):
        try:
            lau = cls()
        except Unavailable as why:
            ctx.skip(name, str(why))
            continue
        except Exception as exc:  # compile or driver failure: an error of this baseline
            ctx.error(name, exc)
            continue
        try:
            def sample(lau=lau) -> float:
                t0 = now()
                lau.launch_n(1)
                lau.sync()
                lau.host[0]
                return now() - t0

            base = ctx.bench(name, sample, unit="ns", keep_samples=True,
                             min_samples=_min_samples(ctx),
                             verify=lambda lau=lau: expect_u32(lau.value(), lau.expected),
                             notes="one launch of the equivalent kernel + stream synchronize "
                                   "+ host read of the mapped counter")
        finally:
            lau.close()
        for subject in subjects:
            ctx.compare(subject, base)


def _cpu_baselines(ctx, subjects: list) -> None:
    now = time.perf_counter_ns
    counts = [0]
    lock = threading.Lock()

    def op(a0: int, idx: int) -> None:
        with lock:  # the op must be atomic, like ATOMIC_ADD
            counts[idx] += a0

    done = [0]
    with ThreadPoolExecutor(max_workers=1) as ex:
        ex.submit(op, 0, 0).result()  # start the worker thread outside the measurement

        def sample() -> float:
            t0 = now()
            ex.submit(op, 1, 0).result()
            counts[0]
            t1 = now()
            done[0] += 1
            return t1 - t0

        base = ctx.bench("threadpool_roundtrip", sample, unit="ns", keep_samples=True,
                         min_samples=_min_samples(ctx),
                         verify=lambda: expect_u32(counts[0], done[0]),
                         notes="ThreadPoolExecutor(max_workers=1).submit(op).result()")
    for subject in subjects:
        ctx.compare(subject, base)
