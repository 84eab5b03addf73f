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
All methods are measured paired (``ctx.paired``): alternating rounds, each method in its own
session (a freshly started megakernel, or a launcher in the primary context), so drift lands
on every side and no baseline ever shares the GPU with a resident persistent kernel. Each
host-timed baseline is cross-checked against the same launches timed alone in a fresh process
(``_reference``).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vyre.bench.runner import Method
from vyre.bench.suites import _gpu
from vyre.bench.suites._common import (
    Unavailable,
    atomic_add_ops,
    expect_u32,
    facade,
    megakernel_session,
    next_pow2,
    resolve_backend,
    submit_many_sampler,
    word_total,
)

NAME = "dispatch"
#: ops cycle over this many observables (and the baselines over as many counter words)
SPREAD = _gpu.COUNTER_WORDS  # observables the ops spread over, the same on both sides
DESCRIPTION = ("N tiny ops: megakernel submit_many+drain vs per-op PyCUDA/CuPy launches "
               "and a CUDA graph")
#: launches per sample of the standalone references (enough that the launch queue is full)
REFERENCE_OPS = 4096

#: each method in words, for reports that speak to people (``python -m vyre demo``)
PHRASES = {
    "megakernel_submit_many": "tiny ops through one submit_many + drain",
    "megakernel_submit_loop": "tiny ops through one submit call each + drain",
    "pycuda_launch": "launching one PyCUDA kernel per op",
    "cupy_launch": "launching one CuPy kernel per op",
    "cuda_graph": "replaying the ops as one CUDA graph",
}


def run(ctx) -> None:
    """Measure each method over the same N ops, paired; ratios are megakernel vs each
    baseline."""
    fx = facade()
    resolve_backend(ctx, allowed=("cuda",))
    n = 1000 if ctx.options.quick else 100_000
    ctx.note("ops_per_sample", n)
    methods = _megakernel_methods(ctx, fx, n)
    baselines = _pycuda_methods(ctx, n) + _cupy_methods(ctx, n)
    res = ctx.paired(methods + baselines)
    for base in ("pycuda_launch", "cupy_launch", "cuda_graph"):
        if base in res:
            ctx.compare(res["megakernel_submit_many"], res[base])
            if base != "cuda_graph":
                ctx.compare(res["megakernel_submit_loop"], res[base])


def _megakernel_methods(ctx, fx, n: int) -> list[Method]:
    now = time.perf_counter_ns
    add_op, word = int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE
    opcodes, args = atomic_add_ops(n, add_op, word, spread=SPREAD)
    targets = [(1, word + i % SPREAD) for i in range(n)]
    state: dict[str, Any] = {}

    @contextmanager
    def session() -> Iterator[Any]:
        with megakernel_session(fx, "cuda", state, slot_count=next_pow2(n),
                                observable_slots=SPREAD) as mk:
            ctx.note("backend", mk.backend.describe())
            yield mk

    @contextmanager
    def many() -> Iterator[Any]:
        with session() as mk:
            yield submit_many_sampler(mk, opcodes, args, state)

    @contextmanager
    def loop() -> Iterator[Any]:
        with session() as mk:
            submit = mk.submit

            def sample() -> float:
                t0 = now()
                for arg in targets:
                    submit(add_op, arg)
                mk.drain()
                t1 = now()
                state["done"] += n
                return t1 - t0
            yield sample

    def check() -> tuple[bool, str]:
        total = word_total(state["mk"].observables[:SPREAD])
        return total == state["done"], f"observables sum to {total}, expected {state['done']}"

    params = {"ops": n, "ring": next_pow2(n)}
    return [Method("megakernel_submit_many", session=many, batch=n, params=params,
                   verify=check),
            Method("megakernel_submit_loop", session=loop, batch=n, params=params,
                   verify=check)]


def _probe(ctx, cls, names: tuple[str, ...]) -> bool:
    """Whether a launcher can be built here; a missing library skips ``names``, any other
    failure is an error of the first."""
    try:
        cls().close()
        return True
    except Unavailable as why:
        for name in names:
            ctx.skip(name, str(why) if name == names[0] else f"needs {names[0]}: {why}")
    except Exception as exc:  # compile or driver failure: an error of this baseline only
        ctx.error(names[0], exc)
    return False


def _launcher_session(cls, holder: dict, prepare=None):
    @contextmanager
    def session() -> Iterator[Any]:
        lau = holder["lau"] = cls()
        try:
            if prepare is not None:
                prepare(lau)
            yield lau
        finally:
            lau.close()
    return session


def _host_sampler(session, n: int):
    now = time.perf_counter_ns

    @contextmanager
    def wrapped() -> Iterator[Any]:
        with session() as lau:
            def sample() -> float:
                t0 = now()
                lau.launch_n(n)
                lau.sync()
                return now() - t0
            yield sample
    return wrapped


def _device_sampler(session, n: int):
    @contextmanager
    def wrapped() -> Iterator[Any]:
        with session() as lau:
            yield lambda: lau.timed_n_events(n)
    return wrapped


def _checked(holder: dict):
    return lambda: expect_u32(holder["lau"].value(), holder["lau"].expected)


def _pycuda_methods(ctx, n: int) -> list[Method]:
    if not _probe(ctx, _gpu.PyCudaLauncher, ("pycuda_launch", "pycuda_launch_device")):
        return []
    holder: dict[str, Any] = {}
    session = _launcher_session(_gpu.PyCudaLauncher, holder)
    check = _gpu.standalone_check("pycuda_launch", f"{REFERENCE_OPS} PyCUDA prepared_async_call "
                                  "launches + synchronize, timed alone in a fresh process",
                                  ops=REFERENCE_OPS)
    return [Method("pycuda_launch", session=_host_sampler(session, n), batch=n,
                   params={"ops": n}, verify=_checked(holder), check=check),
            Method("pycuda_launch_device", session=_device_sampler(session, n), batch=n,
                   clock="cuda_event", params={"ops": n}, verify=_checked(holder),
                   notes="CUDA-event span of the N launches (device side)")]


def _cupy_methods(ctx, n: int) -> list[Method]:
    if not _probe(ctx, _gpu.CuPyLauncher, ("cupy_launch", "cuda_graph", "cuda_graph_device")):
        return []
    holder: dict[str, Any] = {}
    session = _launcher_session(_gpu.CuPyLauncher, holder)
    now = time.perf_counter_ns

    def capture(lau) -> None:
        t = lau.capture_graph(n)
        ctx.info.setdefault(ctx.suite, {}).setdefault("cuda_graph_capture_s", t)

    graph_holder: dict[str, Any] = {}
    graph_session = _launcher_session(_gpu.CuPyLauncher, graph_holder, prepare=capture)

    @contextmanager
    def replay() -> Iterator[Any]:
        with graph_session() as lau:
            def sample() -> float:
                t0 = now()
                lau.replay()
                lau.sync()
                return now() - t0
            yield sample

    @contextmanager
    def replay_events() -> Iterator[Any]:
        with graph_session() as lau:
            yield lau.timed_replay_events

    return [Method("cupy_launch", session=_host_sampler(session, n), batch=n, params={"ops": n},
                   verify=_checked(holder),
                   check=_gpu.standalone_check(
                       "cupy_launch", f"{REFERENCE_OPS} CuPy RawKernel launches + synchronize, "
                       "timed alone in a fresh process", ops=REFERENCE_OPS)),
            Method("cuda_graph", session=replay, batch=n, params={"ops": n},
                   verify=_checked(graph_holder),
                   notes="one replay of a graph of N captured launches + synchronize",
                   check=_gpu.standalone_check(
                       "cuda_graph", f"one replay of a graph of {REFERENCE_OPS} captured CuPy "
                       "launches + synchronize, timed alone in a fresh process",
                       ops=REFERENCE_OPS)),
            Method("cuda_graph_device", session=replay_events, batch=n, clock="cuda_event",
                   params={"ops": n}, verify=_checked(graph_holder),
                   notes="CUDA-event span of one graph replay (device side)")]
