"""Dispatch cost of N tiny ops: the megakernel against per-op kernel launches.

Every method performs the same N ops -- add ``a0 = 1`` to one counter in mapped pinned host
memory with a system-scope atomic (see ``_gpu`` for the baseline kernel) -- and each sample is
timed on the host with ``perf_counter_ns`` from the first submit/launch until the host knows
all N are done (``drain`` / stream synchronize): the end-to-end cost a caller pays. Results
are per op (``batch`` = N).

Methods:
* ``megakernel_submit_many``: one ``submit_many`` of N slots + ``drain`` (ring >= N, so no
  backpressure inside a sample);
* ``megakernel_submit_loop``: N ``submit`` calls + ``drain`` (the per-op Python API);
* ``pycuda_launch``: N ``prepared_async_call`` launches on one stream + synchronize;
* ``cupy_launch``: N ``RawKernel`` launches + synchronize;
* ``cuda_graph``: the N CuPy launches captured once into a CUDA graph, one replay +
  synchronize per sample (capture and instantiation time is reported in the suite info, not
  in the samples).

``*_device`` results time the same launches with CUDA events (device-side span). They are
reported for insight and not used in ratios: the megakernel has no comparable device span.
The persistent megakernel is shut down before any baseline runs, so baselines get the whole GPU.
"""
from __future__ import annotations

import time

from vyre.bench.suites._gpu import COUNTER_WORDS
from vyre.bench.suites._common import (atomic_add_ops, expect_u32, facade, megakernel, next_pow2,
                                       resolve_backend, submit_many_sampler, Unavailable,
                                       word_total)

NAME = "dispatch"
#: ops cycle over this many observables (and the baselines over as many counter words)
SPREAD = COUNTER_WORDS  # observables the ops spread over, the same on both sides
DESCRIPTION = ("N tiny ops: megakernel submit_many+drain vs per-op PyCUDA/CuPy launches "
               "and a CUDA graph")


def run(ctx) -> None:
    """Measure each method over the same N ops; ratios are megakernel vs each baseline."""
    fx = facade()
    resolve_backend(ctx, allowed=("cuda",))
    n = 1000 if ctx.options.quick else 100_000
    ctx.note("ops_per_sample", n)
    now = time.perf_counter_ns
    add_op, word = int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE
    opcodes, args = atomic_add_ops(n, add_op, word, spread=SPREAD)
    mk = megakernel(fx, "cuda", slot_count=next_pow2(n), observable_slots=SPREAD)
    with mk:
        ctx.note("backend", mk.backend.describe())
        obs = mk.observables
        done = [0]

        many = submit_many_sampler(mk, opcodes, args, done)

        def loop() -> float:
            submit = mk.submit
            targets = [(1, word + i % SPREAD) for i in range(n)]
            t0 = now()
            for arg in targets:
                submit(add_op, arg)
            mk.drain()
            t1 = now()
            done[0] += n
            return t1 - t0

        check = lambda: (word_total(obs[:SPREAD]) == done[0],  # noqa: E731
                         f"observables sum to {word_total(obs[:SPREAD])}, expected {done[0]}")
        params = {"ops": n, "ring": next_pow2(n)}
        mega = ctx.bench("megakernel_submit_many", many, batch=n, params=params, verify=check)
        mega_loop = ctx.bench("megakernel_submit_loop", loop, batch=n, params=params,
                              verify=check)
    _pycuda(ctx, n, mega, mega_loop)
    _cupy(ctx, n, mega, mega_loop)


def _host_sample(lau, n):
    now = time.perf_counter_ns

    def sample() -> float:
        t0 = now()
        lau.launch_n(n)
        lau.sync()
        return now() - t0

    return sample


def _open(ctx, cls, name):
    try:
        return cls()
    except Unavailable as why:
        ctx.skip(name, str(why))
    except Exception as exc:  # compile or driver failure: an error of this baseline only
        ctx.error(name, exc)
    return None


def _pycuda(ctx, n, mega, mega_loop) -> None:
    from vyre.bench.suites._gpu import PyCudaLauncher

    lau = _open(ctx, PyCudaLauncher, "pycuda_launch")
    if lau is None:
        return
    try:
        check = lambda: expect_u32(lau.value(), lau.expected)  # noqa: E731
        base = ctx.bench("pycuda_launch", _host_sample(lau, n), batch=n, params={"ops": n},
                         verify=check)
        ctx.bench("pycuda_launch_device", lambda: lau.timed_n_events(n), batch=n,
                  clock="cuda_event", params={"ops": n}, verify=check,
                  notes="CUDA-event span of the N launches (device side)")
    finally:
        lau.close()
    ctx.compare(mega, base)
    ctx.compare(mega_loop, base)


def _cupy(ctx, n, mega, mega_loop) -> None:
    from vyre.bench.suites._gpu import CuPyLauncher

    lau = _open(ctx, CuPyLauncher, "cupy_launch")
    if lau is None:
        ctx.skip("cuda_graph", "needs CuPy (stream capture), see cupy_launch")
        return
    try:
        check = lambda: expect_u32(lau.value(), lau.expected)  # noqa: E731
        base = ctx.bench("cupy_launch", _host_sample(lau, n), batch=n, params={"ops": n},
                         verify=check)
        ctx.compare(mega, base)
        ctx.compare(mega_loop, base)
        try:
            ctx.note("cuda_graph_capture_s", lau.capture_graph(n))
        except Exception as exc:  # capture unsupported here: a skip, not a crash
            ctx.skip("cuda_graph", f"stream capture failed ({type(exc).__name__}: {exc})")
            return
        now = time.perf_counter_ns

        def replay() -> float:
            t0 = now()
            lau.replay()
            lau.sync()
            return now() - t0

        graph = ctx.bench("cuda_graph", replay, batch=n, params={"ops": n}, verify=check,
                          notes="one replay of a graph of N captured launches + synchronize")
        ctx.bench("cuda_graph_device", lau.timed_replay_events, batch=n, clock="cuda_event",
                  params={"ops": n}, verify=check,
                  notes="CUDA-event span of one graph replay (device side)")
        ctx.compare(mega, graph)
    finally:
        lau.close()
