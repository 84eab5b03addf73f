"""User ops on the GPU: dispatch cost against the built-in, a hash table against CuPy, start time.

Methods (all on the CUDA backend, one megakernel, the same run):

* ``builtin_atomic_add`` / ``user_add``: one ``submit_many`` of N ops + ``drain``; the user op
  ``uadd`` does what ATOMIC_ADD does (``control[a1] += a0`` on lane 0, the new value as its
  result), so the ratio is the cost of dispatching to fused user code (target: within 20 %).
* ``hashtable_megakernel``: an open-addressing table of (key, value) u32 pairs in device
  memory, driven by the user ops ``ht_insert`` / ``ht_lookup`` (one lane, linear probing with
  a CAS, results in the slot): per sample N inserts of fresh keys (the first 64 samples of a
  round; later ones update earlier keys in place), drained, then N lookups of them, drained
  (ops/s over the 2N ops; each lookup that finds its value bumps an observable, which
  verifies the sample).
* ``hashtable_cupy_per_op``: the same probe code as a CuPy ``RawKernel`` of one thread,
  launched once per op (M ops per sample, M <= N: each launch costs the same) + synchronize.
* ``hashtable_cupy_batched``: what a user would write for a batch: one launch of N threads
  inserting, one of N threads looking up, + synchronize.
* ``start_cold_compile``: one fused build of 3 user ops with an empty pipeline cache (nvcc for
  this GPU), in seconds, noted (one sample: a compile is too slow to repeat; VYRE_BENCH_COLD=0
  skips it);
  ``start_warm``: a fresh process that creates a megakernel, registers the same 3 ops (the
  builds come from the disk cache) and waits for one op's result (the child's own clock, so
  the interpreter's start and imports are excluded).

Measured paired (docs/bench.md, "Method"): builtin_atomic_add and user_add alternate, each
round on a fresh megakernel with the ops registered (from the pipeline cache after the first
build); hashtable_megakernel and the two CuPy tables alternate, the megakernel shut down while
CuPy runs, as in the dispatch suite, each round on a fresh empty table. Cross-checks: the
per-op CuPy table against a floor (one-atomic CuPy launches in a fresh process: no launch is
faster), the batched one against the same two launches alone in a fresh process
(``_reference.hashtable_batched``). builtin_atomic_add is vyre's own path (the call
dispatch/megakernel_submit_many measures), not an outside baseline: it has no cross-check.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vyre.bench.checks import Check, standalone_reference
from vyre.bench.runner import Method
from vyre.bench.suites._common import (
    Unavailable,
    facade,
    megakernel,
    megakernel_session,
    need,
    next_pow2,
    resolve_backend,
    submit_many_sampler,
    word_total,
)
from vyre.bench.suites.dispatch import REFERENCE_OPS

NAME = "userops"
DESCRIPTION = ("user ops on the GPU: custom-op dispatch vs ATOMIC_ADD, a hash table vs CuPy "
               "launches, cold/warm start with 3 ops")

UADD = r"""
VYRE_OP(uadd) {  /* control[a1] += a0; result: the new value (what ATOMIC_ADD does) */
    if (op->lane != 0) return;
    const uint32_t v = vyre_arg(op, 0);
    const uint32_t before = vyre_atomic_add_u32(op, 0, vyre_arg(op, 1), v);
    if (!vyre_op_failed(op)) vyre_op_result(op, 0, before + v);
}
"""
# one probe sequence for all three drivers: slot i of the table is words 2i (key) and 2i+1
# (value); key 0 is empty; keys are never 0
HT_INSERT = r"""
VYRE_OP(ht_insert) {  /* a0 table, a1 capacity (power of 2), a2 key != 0, a3 value */
    if (op->lane != 0) return;
    const uint32_t h = vyre_arg(op, 0), mask = vyre_arg(op, 1) - 1u, key = vyre_arg(op, 2);
    uint32_t i = (key * 2654435761u) & mask;
    for (uint32_t n = 0; n <= mask; ++n, i = (i + 1u) & mask) {
        const uint32_t seen = vyre_atomic_cas_u32(op, h, 2ull * i, 0u, key);
        if (vyre_op_failed(op)) return;
        if (seen == 0u || seen == key) {
            vyre_store_u32(op, h, 2ull * i + 1u, vyre_arg(op, 3));
            vyre_op_result(op, 0, seen == 0u ? 1u : 2u);  /* inserted / updated */
            vyre_op_result(op, 1, n + 1u);                 /* probes */
            return;
        }
    }
    vyre_op_fault(op, 1u);  /* the table is full */
}
"""
HT_LOOKUP = r"""
VYRE_OP(ht_lookup) {  /* a0 table, a1 capacity, a2 key; found with value a3: obs[a4] += 1 */
    if (op->lane != 0) return;
    const uint32_t h = vyre_arg(op, 0), mask = vyre_arg(op, 1) - 1u, key = vyre_arg(op, 2);
    uint32_t i = (key * 2654435761u) & mask;
    for (uint32_t n = 0; n <= mask; ++n, i = (i + 1u) & mask) {
        const uint32_t k = vyre_load_u32(op, h, 2ull * i);
        if (vyre_op_failed(op) || k == 0u) break;
        if (k == key) {
            const uint32_t v = vyre_load_u32(op, h, 2ull * i + 1u);
            vyre_op_result(op, 0, 1u);
            vyre_op_result(op, 1, v);
            if (v == vyre_arg(op, 3)) vyre_obs_add(op, vyre_arg(op, 4), 1u);
            return;
        }
    }
    vyre_op_result(op, 0, 0u);
}
"""
CUPY_SOURCE = r"""
__device__ __forceinline__ void ht_insert(unsigned *tab, unsigned cap, unsigned key, unsigned val) {
    const unsigned mask = cap - 1u;
    unsigned i = (key * 2654435761u) & mask;
    for (unsigned n = 0; n <= mask; ++n, i = (i + 1u) & mask) {
        const unsigned seen = atomicCAS(tab + 2ull * i, 0u, key);
        if (seen == 0u || seen == key) { tab[2ull * i + 1u] = val; return; }
    }
}
__device__ __forceinline__ unsigned ht_lookup(const unsigned *tab, unsigned cap, unsigned key,
                                              unsigned val) {
    const unsigned mask = cap - 1u;
    unsigned i = (key * 2654435761u) & mask;
    for (unsigned n = 0; n <= mask; ++n, i = (i + 1u) & mask) {
        const unsigned k = ((volatile const unsigned *)tab)[2ull * i];
        if (k == 0u) return 0u;
        if (k == key) return tab[2ull * i + 1u] == val;
    }
    return 0u;
}
extern "C" __global__ void ht_insert1(unsigned *tab, unsigned cap, unsigned key, unsigned val) {
    ht_insert(tab, cap, key, val);
}
extern "C" __global__ void ht_lookup1(const unsigned *tab, unsigned cap, unsigned key,
                                      unsigned val, unsigned *found) {
    if (ht_lookup(tab, cap, key, val)) atomicAdd(found, 1u);
}
extern "C" __global__ void ht_insert_n(unsigned *tab, unsigned cap, const unsigned *keys,
                                       const unsigned *vals, unsigned n) {
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) ht_insert(tab, cap, keys[t], vals[t]);
}
extern "C" __global__ void ht_lookup_n(const unsigned *tab, unsigned cap, const unsigned *keys,
                                       const unsigned *vals, unsigned n, unsigned *found) {
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n && ht_lookup(tab, cap, keys[t], vals[t])) atomicAdd(found, 1u);
}
"""
START_OPS = {"uadd": UADD, "ht_insert": HT_INSERT, "ht_lookup": HT_LOOKUP}


def register(mk: Any, name: str, source: str) -> int:
    """Register an op through the facade (``register_op``), or on the backend straight where
    the facade has no ops API; returns its opcode."""
    reg = getattr(mk, "register_op", None)
    if reg is not None:
        return int(reg(name, source))
    ops = getattr(mk, "_bench_ops", [])
    op = types.SimpleNamespace(name=name, opcode=0x100 + len(ops), source=source)
    mk._bench_ops = [*ops, op]
    mk.backend.load_ops(mk._bench_ops)
    return int(op.opcode)


def _keys(n: int, round_: int) -> tuple[np.ndarray, np.ndarray]:
    """n fresh nonzero keys for sample ``round_`` (distinct across rounds) and their values."""
    base = 1 + round_ * n
    keys = ((np.arange(base, base + n, dtype=np.uint64) * 2654435761) % 0xFFFFFFFB + 1)
    keys = keys.astype(np.uint32)
    return keys, keys ^ np.uint32(0x5A5A5A5A)


def register_all(mk: Any) -> dict[str, int]:
    """Register :data:`START_OPS` (one build, where the facade has ``register_ops``: one
    module swap per round instead of three); their opcodes by name."""
    many = getattr(mk, "register_ops", None)
    if many is None:
        return {name: register(mk, name, source) for name, source in START_OPS.items()}
    from vyre.ops import Op

    return {op.name: int(op.opcode)
            for op in many([Op(name, source) for name, source in START_OPS.items()])}


def run(ctx) -> None:
    fx = facade()
    resolve_backend(ctx, allowed=("cuda",))
    n = 2000 if ctx.options.quick else 100_000
    ctx.note("ops_per_sample", n)
    # the table holds every key one round's samples insert (a fresh table per round)
    rounds_cap = 64
    cap = next_pow2(4 * n * rounds_cap) if not ctx.options.quick else next_pow2(8 * n * rounds_cap)
    ctx.note("table_capacity", cap)
    with megakernel(fx, "cuda", slot_count=next_pow2(2 * n),
                    observable_slots=SPREAD + 1) as mk:  # can ops be built here at all?
        ctx.note("backend", mk.backend.describe())
        try:
            register_all(mk)
        except Exception as exc:  # no nvcc, no ops API: the suite cannot run
            raise Unavailable(f"cannot register user ops ({type(exc).__name__}: {exc})") from exc
    res = ctx.paired(_dispatch_methods(fx, n))
    ctx.compare(res.get("user_add"), res.get("builtin_atomic_add"))
    methods = [_megakernel_table(fx, n, cap, rounds_cap)] + _cupy_tables(ctx, n, cap)
    res = ctx.paired(methods)
    for base in ("hashtable_cupy_per_op", "hashtable_cupy_batched"):
        ctx.compare(res.get("hashtable_megakernel"), res.get(base))
    _start(ctx)


#: observables the ATOMIC_ADD ops and uadd spread over (as dispatch spreads them)
SPREAD = 1024


def _dispatch_methods(fx, n: int) -> list[Method]:
    """builtin_atomic_add and user_add: N ops in one submit_many + drain, each round on a
    fresh megakernel with the user ops registered (from the pipeline cache after round 1)."""
    args = np.empty((n, 2), np.uint32)
    args[:, 0] = 1
    args[:, 1] = fx.OBSERVABLE_BASE + np.arange(n, dtype=np.uint32) % SPREAD
    methods = []
    for name in ("builtin_atomic_add", "user_add"):
        state: dict[str, Any] = {}

        @contextmanager
        def session(name=name, state=state) -> Iterator[Any]:
            with megakernel_session(fx, "cuda", state, slot_count=next_pow2(2 * n),
                                    observable_slots=SPREAD + 1) as mk:
                codes = register_all(mk)
                code = int(fx.Opcode.ATOMIC_ADD) if name == "builtin_atomic_add" else \
                    codes["uadd"]
                yield submit_many_sampler(mk, np.full(n, code, np.uint32), args, state)

        def check(state=state) -> tuple[bool, str]:
            total = word_total(state["mk"].observables[:SPREAD])
            return total == state["done"], f"observables sum to {total}, expected {state['done']}"
        methods.append(Method(name, session=session, batch=n,
                              params={"ops": n, "ring": next_pow2(2 * n)}, verify=check))
    return methods


def _megakernel_table(fx, n: int, cap: int, rounds_cap: int) -> Method:
    """hashtable_megakernel: N inserts of fresh keys drained, then N lookups drained, through
    the user ops, on a table in device memory (a fresh one each round)."""
    found_word = SPREAD  # an observable of its own
    state: dict[str, Any] = {}
    now = time.perf_counter_ns

    @contextmanager
    def session() -> Iterator[Any]:
        with megakernel_session(fx, "cuda", state, slot_count=next_pow2(2 * n),
                                observable_slots=SPREAD + 1) as mk:
            codes = register_all(mk)
            h_tab, _tab = mk.alloc_buffer(8 * cap, device=True)
            obs = mk.observables
            state.update(found0=int(obs[found_word]), looked=0, round=0)
            ins_ops = np.full(n, codes["ht_insert"], np.uint32)
            look_ops = np.full(n, codes["ht_lookup"], np.uint32)

            def sample() -> float:
                # sized for rounds_cap samples of fresh keys per round; a sample past that
                # (a fast host, a short sample) re-inserts an earlier sample's keys, which
                # ht_insert updates in place, so the table never fills up
                keys, vals = _keys(n, state["round"] % rounds_cap)
                state["round"] += 1
                a_ins = np.stack([np.full(n, h_tab, np.uint32), np.full(n, cap, np.uint32),
                                  keys, vals], 1)
                a_look = np.stack([np.full(n, h_tab, np.uint32), np.full(n, cap, np.uint32),
                                   keys, vals, np.full(n, found_word, np.uint32)], 1)
                t0 = now()
                mk.submit_many(ins_ops, a_ins)
                mk.drain()
                mk.submit_many(look_ops, a_look)
                mk.drain()
                t1 = now()
                state["looked"] += n
                return t1 - t0
            yield sample

    def check() -> tuple[bool, str]:
        got = int(state["mk"].observables[found_word]) - state["found0"]
        return got == state["looked"], (f"{got} lookups found their value, expected "
                                        f"{state['looked']}")
    return Method("hashtable_megakernel", session=session, batch=2 * n, unit="ops/s",
                  params={"ops": 2 * n, "capacity": cap}, verify=check, min_samples=3,
                  min_time_s=0.1)


def _cupy_tables(ctx, n: int, cap: int) -> list[Method]:
    """The same table driven by CuPy: one launch per op, and one launch of N threads per
    kind; each round on a fresh, empty table (the megakernel is shut down meanwhile)."""
    try:
        cp = need("cupy")
        mod = cp.RawModule(code=CUPY_SOURCE)
        kernels = {k: mod.get_function(k)
                   for k in ("ht_insert1", "ht_lookup1", "ht_insert_n", "ht_lookup_n")}
    except Unavailable as why:
        ctx.skip("hashtable_cupy_per_op", str(why))
        ctx.skip("hashtable_cupy_batched", str(why))
        return []
    m = min(n, 20_000)  # per-op launches: each costs the same, fewer keep the sample short
    now = time.perf_counter_ns
    u32 = np.uint32
    rnd = [1000]  # key rounds apart from the megakernel's (a separate table anyway)
    state: dict[str, Any] = {}

    @contextmanager
    def table() -> Iterator[Any]:
        state.update(tab=cp.zeros(2 * cap, dtype=cp.uint32), found=cp.zeros(1, dtype=cp.uint32),
                     looked=0)
        try:
            yield state
        finally:
            cp.cuda.runtime.deviceSynchronize()
            state.update(tab=None)

    def per_op_session():
        @contextmanager
        def session() -> Iterator[Any]:
            with table() as st:
                tab, found = st["tab"], st["found"]
                ins1, look1 = kernels["ht_insert1"], kernels["ht_lookup1"]

                def per_op() -> float:
                    keys, vals = _keys(m, rnd[0])
                    rnd[0] += 1
                    kl, vl = keys.tolist(), vals.tolist()
                    tab.fill(0)  # each sample starts from an empty table
                    cp.cuda.runtime.deviceSynchronize()
                    t0 = now()
                    for k, v in zip(kl, vl, strict=True):
                        ins1((1,), (1,), (tab, u32(cap), u32(k), u32(v)))
                    for k, v in zip(kl, vl, strict=True):
                        look1((1,), (1,), (tab, u32(cap), u32(k), u32(v), found))
                    cp.cuda.runtime.deviceSynchronize()
                    t1 = now()
                    st["looked"] += m
                    return t1 - t0
                yield per_op
        return session

    def batched_session():
        @contextmanager
        def session() -> Iterator[Any]:
            with table() as st:
                tab, found = st["tab"], st["found"]
                ins_n, look_n = kernels["ht_insert_n"], kernels["ht_lookup_n"]
                grid = ((n + 255) // 256,)

                def batched() -> float:
                    keys, vals = _keys(n, rnd[0])
                    rnd[0] += 1
                    dk, dv = cp.asarray(keys), cp.asarray(vals)
                    tab.fill(0)  # as per_op: a table filled by earlier samples refuses inserts
                    cp.cuda.runtime.deviceSynchronize()
                    t0 = now()
                    ins_n(grid, (256,), (tab, u32(cap), dk, dv, u32(n)))
                    look_n(grid, (256,), (tab, u32(cap), dk, dv, u32(n), found))
                    cp.cuda.runtime.deviceSynchronize()
                    t1 = now()
                    st["looked"] += n
                    return t1 - t0
                yield batched
        return session

    def check() -> tuple[bool, str]:
        got = int(state["found"].get()[0])
        return got == state["looked"], f"{got} lookups found their value, expected " \
                                       f"{state['looked']}"
    launch_ns = standalone_reference("vyre.bench.suites._reference", "cupy_launch",
                                     {"ops": REFERENCE_OPS})
    floor = Check(what=f"{REFERENCE_OPS} launches of a one-atomic CuPy kernel + synchronize, "
                       "alone in a fresh process, as ops/s: no kernel launches faster",
                  reference=lambda: 1e9 / launch_ns(), kind="floor",
                  key=f"standalone:cupy_launch:ops/s:{REFERENCE_OPS}")
    alone = Check(what=f"the same {n} inserts + {n} lookups (two launches of {n} threads) on "
                       "an empty table, alone in a fresh process",
                  reference=standalone_reference("vyre.bench.suites._reference",
                                                 "hashtable_batched",
                                                 {"n": n, "capacity": cap}))
    return [Method("hashtable_cupy_per_op", session=per_op_session(), batch=2 * m,
                   unit="ops/s", params={"ops": 2 * m, "capacity": cap}, verify=check,
                   min_samples=3, check=floor),
            Method("hashtable_cupy_batched", session=batched_session(), batch=2 * n,
                   unit="ops/s", params={"ops": 2 * n, "capacity": cap}, verify=check,
                   min_samples=3, check=alone)]


_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from vyre import Megakernel
from vyre.bench.suites.userops import START_OPS, register
from vyre.protocol import OBSERVABLE_BASE
t_import = time.perf_counter()
with Megakernel(backend="cuda", slot_count=256, observable_slots=16) as mk:
    t1 = time.perf_counter()
    codes = [register(mk, name, src) for name, src in START_OPS.items()]
    t2 = time.perf_counter()
    mk.wait(mk.submit(codes[0], [1, OBSERVABLE_BASE]), timeout=30)
    t3 = time.perf_counter()
print(json.dumps({"start_s": t3 - t_import, "construct_s": t1 - t_import,
                  "register_s": t2 - t1, "first_op_s": t3 - t2, "import_s": t_import - t0}))
"""


def _start(ctx) -> None:
    from vyre.errors import BackendError
    from vyre.ops import cuda_build

    try:
        cuda_build.find_nvcc()
    except BackendError as exc:
        ctx.skip("start_cold_compile", str(exc))
        ctx.skip("start_warm", str(exc))
        return
    import pycuda.driver as drv

    major, minor = drv.Device(0).compute_capability()
    ops = [types.SimpleNamespace(name=name, opcode=0x100 + i, source=src)
           for i, (name, src) in enumerate(START_OPS.items())]
    if os.environ.get("VYRE_BENCH_COLD", "1") == "0":  # a short run: the compile is timed elsewhere
        ctx.skip("start_cold_compile", "VYRE_BENCH_COLD=0")
    else:
        _cold(ctx, ops, f"sm_{major}{minor}")
    _warm(ctx)


def _cold(ctx, ops: list, arch: str) -> None:
    from vyre.ops import cuda_build
    from vyre.ops.cache import PipelineCache

    with tempfile.TemporaryDirectory(prefix="vyre-bench-cache-") as tmp:
        built = cuda_build.build_fused(ops, arch, cache=PipelineCache(tmp))
        ctx.note("start_cold_compile_s", round(built.seconds, 3))
        ctx.note("start_cold_compile_arch", built.arch)
        report = cuda_build.ptxas_report(cuda_build.last_ptxas)
        ctx.note("fused_registers_per_thread",
                 report.get((built.arch, "vyre_megakernel"), {}).get("registers"))


def _warm(ctx) -> None:
    parts: list[dict[str, float]] = []

    def warm() -> float:
        proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                              timeout=120, check=False, env=dict(os.environ))
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        parts.append(got)
        return got["start_s"] * 1e9  # ns per start

    # the first child fills the default pipeline cache with these builds (a warm-up sample)
    ctx.bench("start_warm", warm, batch=1, min_samples=3, min_time_s=0.0,
              notes="megakernel + 3 user ops from the disk cache + first result, in a fresh "
                    "process, imports excluded")
    if parts:
        ctx.note("start_warm_parts_last", parts[-1])
