"""Sustained streaming throughput (ops/s) and how it scales.

A sample streams ``ops_per_sample`` ATOMIC_ADD ops as back-to-back ``submit_many`` calls of
``batch`` ops each (the facade waits for free slots when the ring is full, so the ring
recycles many times within a sample), then ``drain``s; the rate is ops / host time of the
whole sample. ``ops_per_sample`` is much larger than the ring, so the final drain is a small
part of the sample.

Three sweeps, each varying one knob around a default (ring 4096 slots, batch 256, the
backend's default workers):
* ``ring_size``: 256 .. 65536 slots (batch 256);
* ``workers``: CPU worker threads (1, 2, 4, .. up to the core count), or on CUDA blocks per SM
  (1, 2, 4, 8) with 128 threads each;
* ``batch``: 1 .. 4096 ops per ``submit_many`` call (ring 16384), i.e. how much of the cost
  is per call and how much per op.
Each configuration runs in paired rounds, round r of every configuration in a fresh Python
process r (:meth:`Context.paired_in_processes`), each on a freshly started megakernel (start-up
is not timed). A streaming rate depends on the start, the process (where its host thread and
memory landed) and drifts over seconds: with one start per configuration, then with all of a
configuration's rounds in one process within a second, two runs of the same code differed by
more than their spreads and ``compare`` labelled them FASTER/SLOWER (H200, bench/RESULTS.md).
So a configuration's rounds span starts, processes and the whole suite, and its block medians
and CI show that spread.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vyre.bench.runner import Method
from vyre.bench.suites._common import (
    Unavailable,
    atomic_add_ops,
    facade,
    megakernel,
    resolve_backend,
    word_total,
)

NAME = "throughput"
DESCRIPTION = "sustained streaming ops/s vs ring size, workers (blocks per SM) and batch size"

DEFAULT_RING = 4096
#: ops cycle over this many observables (same-word system atomics serialize)
SPREAD = 1024  # 64 cache lines: fewer same-line RMWs on mapped memory
DEFAULT_BATCH = 256
BATCH_SWEEP_RING = 16384


def sweeps(backend: str, quick: bool, cores: int) -> list[tuple[str, int, int | None, int]]:
    """The configurations to run: ``(sweep, ring, workers, batch)``; workers ``None`` means
    the backend's default."""
    if quick:
        rings, batches = [256, 4096], [16, 256]
        workers = [1, 4] if backend == "cuda" else sorted({1, cores})
    else:
        rings, batches = [256, 1024, 4096, 16384, 65536], [1, 16, 256, 4096]
        if backend == "cuda":
            workers = [1, 2, 4, 8]
        else:
            workers = sorted({1 << i for i in range(cores.bit_length())} | {cores})
    out: list[tuple[str, int, int | None, int]] = [
        ("ring_size", r, None, DEFAULT_BATCH) for r in rings]
    out += [("workers", DEFAULT_RING, w, DEFAULT_BATCH) for w in workers]
    out += [("batch", BATCH_SWEEP_RING, None, b) for b in batches]
    return out


def run(ctx) -> None:
    """Run every configuration of :func:`sweeps` on the selected backend."""
    fx = facade()
    backend = resolve_backend(ctx)
    quick = ctx.options.quick
    cores = os.cpu_count() or 1
    ctx.note("workers_meaning", "blocks per SM (128 threads each)" if backend == "cuda"
             else "CPU worker threads")
    if backend == "cuda":
        _drain_rate(ctx, fx, quick)
    configs = []
    for sweep, ring, workers, batch in sweeps(backend, quick, cores):
        name = _name(sweep, ring, workers, batch)
        try:  # a geometry the device refuses is a skip; the other configs run
            megakernel(fx, backend, slot_count=ring, observable_slots=SPREAD,
                       workers=workers).shutdown()
        except Unavailable as why:
            ctx.skip(name, str(why))
            continue
        configs.append([sweep, ring, workers, batch])
    if configs:
        ctx.paired_in_processes(f"{__name__}:methods",
                                {"backend": backend, "quick": quick, "configs": configs})


def _name(sweep: str, ring: int, workers: int | None, batch: int) -> str:
    return f"{sweep}={ {'ring_size': ring, 'workers': workers, 'batch': batch}[sweep]}"


def methods(spec: dict) -> list[Method]:
    """The configurations ``spec["configs"]`` (``[sweep, ring, workers, batch]``) as methods,
    in the parent (for their names) and in each round's process."""
    fx = facade()
    backend, quick = spec["backend"], spec["quick"]
    out = []
    for sweep, ring, workers, batch in spec["configs"]:
        # enough ops that each sample spans many ring cycles, but batch=1 (one call per op)
        # must not make a sample last seconds
        per_sample = min(8192 if quick else 65536, batch * (512 if quick else 2048))
        calls = max(1, per_sample // batch)
        out.append(_method(fx, backend, _name(sweep, ring, workers, batch), ring, workers,
                           calls, batch, {"sweep": sweep, "ring_size": ring, "workers": workers,
                            "batch": batch, "backend": backend}))
    return out


def _method(fx, backend: str, name: str, ring: int, workers: int | None, calls: int,
            batch: int, params: dict) -> Method:
    """One configuration: each round's session starts a megakernel of that geometry."""
    opcodes, args = atomic_add_ops(batch, int(fx.Opcode.ATOMIC_ADD), fx.OBSERVABLE_BASE,
                                   spread=min(SPREAD, batch))
    state: dict = {}

    @contextmanager
    def session() -> Iterator:
        with megakernel(fx, backend, slot_count=ring, observable_slots=SPREAD,
                        workers=workers) as mk:
            params["device"] = mk.backend.describe()
            state["obs"], state["done"] = mk.observables, 0
            submit_many, drain = mk.submit_many, mk.drain

            def sample() -> float:
                t0 = time.perf_counter_ns()
                for _ in range(calls):
                    submit_many(opcodes, args)
                drain()
                t1 = time.perf_counter_ns()
                state["done"] += calls * batch
                return t1 - t0
            yield sample

    def verify() -> tuple[bool, str]:  # this round's megakernel, before it shuts down
        total = word_total(state["obs"][:SPREAD])
        return total == state["done"], f"observables sum to {total}, expected {state['done']}"

    return Method(name, session=session, unit="ops/s", batch=calls * batch, params=params,
                  verify=verify)


def _drain_rate(ctx, fx, quick: bool) -> None:
    """The kernel alone: a burst published with the doorbell held back, then released; timed
    from the doorbell to DONE_COUNT covering the burst (the host's publishing excluded)."""
    n = 1 << (15 if quick else 17)
    try:
        mk = megakernel(fx, "cuda", slot_count=n, observable_slots=SPREAD)
    except Unavailable as why:
        ctx.skip("drain_rate", str(why))
        return
    done_word, u32_max = fx.CTRL_DONE_COUNT, fx.U32_MAX
    with mk:
        for label, op in (("NOP", int(fx.Opcode.NOP)), ("ATOMIC_ADD", int(fx.Opcode.ATOMIC_ADD))):
            opcodes, args = atomic_add_ops(n, op, fx.OBSERVABLE_BASE, spread=SPREAD)
            control, done = mk.control, [0]

            def sample(control=control, opcodes=opcodes, args=args, done=done,
                       adds=n if label == "ATOMIC_ADD" else 0) -> float:
                target = (int(control[done_word]) + n) & u32_max
                mk.submit_many(opcodes, args, notify=False)
                t0 = time.perf_counter_ns()
                mk.notify()
                deadline = t0 + 10_000_000_000
                while (((target - int(control[done_word])) & u32_max) < 1 << 31
                       and int(control[done_word]) != target):
                    if time.perf_counter_ns() > deadline:
                        raise TimeoutError("DONE_COUNT did not cover the burst within 10 s")
                t1 = time.perf_counter_ns()
                mk.drain()
                done[0] += adds
                return t1 - t0

            def check(done=done) -> tuple[bool, str]:
                total = word_total(mk.observables[:SPREAD])
                return total == done[0], f"observables sum to {total}, expected {done[0]}"

            ctx.bench(f"drain_rate_{label}", sample, unit="ops/s", batch=n,
                      params={"ops": n, "ring": n, "spread": SPREAD, "backend": "cuda"},
                      notes="kernel drain of a pre-published burst: doorbell to DONE_COUNT",
                      verify=check)
