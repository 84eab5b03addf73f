"""Your own op (``vyre-bench --op MODULE:NAME``): the megakernel against launching its C source.

The op is a ``vyre.ops.Op`` (docs/ops.md). Its argument rows come from ``<NAME>_args(n)`` in
the same module when there is one (a ``(n, k)`` uint32 array, ``k <= 12``), else every op gets
no arguments. Methods, same op, same arguments, same run:

* ``megakernel_submit_many``: the op registered with a megakernel of the selected backend,
  N slots of it in one ``submit_many`` + ``drain`` (verified: no slot faulted);
* ``megakernel_call``: one ``mk.call`` per op, where the build has the call path;
* CUDA only, the *same C source* compiled by nvcc into a standalone kernel (``vyre_op.h``, one
  warp = the op's 32 lanes, control words in mapped pinned host memory as the megakernel's
  are, no registered buffers): ``op_kernel_launch``, N PyCUDA launches (one per op) +
  one synchronize; ``op_kernel_launch_sync``, one launch + synchronize per op, a round trip
  like ``megakernel_call`` and its baseline (as many ops as the call method makes);
  ``op_cuda_graph``, the N launches captured once into a CUDA graph (CuPy), one replay +
  synchronize per sample. Both verified: no lane faulted. An op that uses registered buffers
  faults there (handle out of range) and these two are errors of the run, saying so;
* CPU backend only, ``op_c_loop``: the same C source in a plain C loop over the N argument
  rows (32 lanes per op, as a CPU worker runs it), built with the CPU backend's compiler and
  flags, one ctypes call per sample: the op without the megakernel around it.

Measured paired, like every suite. The launch baselines are checked against a floor: the same
number of launches of an empty-bodied one-atomic kernel in a fresh process
(``_reference``); an op's kernel cannot be launched faster than that. The C loop is checked
against the same call timed bare.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np

from vyre.bench.runner import Method
from vyre.bench.suites import _gpu
from vyre.bench.suites._common import (
    Unavailable,
    facade,
    megakernel_session,
    need,
    next_pow2,
    resolve_backend,
)

NAME = "op"
DESCRIPTION = "your op (--op MODULE:NAME): megakernel submit_many/call vs its C source launched"

PHRASES = {
    "megakernel_submit_many": "your op through one submit_many + drain",
    "megakernel_call": "your op through one mk.call each",
    "op_kernel_launch": "launching your op's C source as one CUDA kernel per op",
    "op_kernel_launch_sync": "launching your op's C source and synchronizing, op by op",
    "op_cuda_graph": "replaying your op's launches as one CUDA graph",
    "op_c_loop": "running your op's C source in a plain C loop (no megakernel)",
}

KERNEL = "vyre_bench_op"
#: control words of the standalone kernel: the observables the megakernel gets here
OBSERVABLES = 1024


def kernel_source(op: Any) -> str:
    """The CUDA source of the standalone baseline: the op's own source after ``vyre_op.h``,
    and a kernel that runs it as one warp (lane = thread) on launch ``i``'s argument row."""
    return "\n".join([
        '#include "vyre_op.h"',
        f'#line 1 "op:{op.name}"',
        op.source.rstrip("\n"),
        f'#line 1 "{KERNEL}"',
        f'extern "C" __global__ void {KERNEL}(uint32_t *control, uint32_t control_words,',
        "        uint32_t observable_slots, const uint32_t *args, uint32_t nargs, uint32_t i,",
        "        uint32_t *faults)",
        "{",
        "    vyre_op_t op = {};",
        "    for (uint32_t k = 0; k < VYRE_SLOT_ARG_COUNT; ++k)",
        "        op.args[k] = k < nargs ? args[(uint64_t)i * nargs + k] : 0u;",
        f"    op.opcode = {int(op.opcode or 0):#x}u;",
        "    op.slot = i;",
        "    op.lane = threadIdx.x;",
        "    op.lane_end_ = threadIdx.x + 1u;  /* one lane per thread, as on the megakernel */",
        "    op.lanes = VYRE_OP_LANES;",
        "    op.control_words_ = control_words;",
        "    op.observable_slots_ = observable_slots;",
        "    op.control_ = control;",
        f"    vyre_op_run_lanes(&op, vyre_op_{op.name});",
        "    if (op.fault_kept_[0] != VYRE_FAULT_NONE) atomicAdd(faults, 1u);",
        "}",
        ""])


C_LOOP = "vyre_bench_op_loop"


def c_loop_source(op: Any) -> str:
    """The C source of the CPU baseline: the op's own source after ``vyre_op.h`` and a plain
    loop that runs it on ``n`` argument rows, all 32 lanes each (as a CPU worker runs an op),
    on the control words it is given; returns how many ops faulted."""
    return "\n".join([
        '#include "vyre_op.h"',
        f'#line 1 "op:{op.name}"',
        op.source.rstrip("\n"),
        f'#line 1 "{C_LOOP}"',
        f'__attribute__((visibility("default"))) uint32_t {C_LOOP}(uint32_t *control,',
        "        uint32_t control_words, uint32_t observable_slots, const uint32_t *args,",
        "        uint32_t nargs, uint32_t n)",
        "{",
        "    uint32_t faults = 0;",
        "    for (uint32_t i = 0; i < n; ++i) {",
        "        vyre_op_t op;",
        "        memset(&op, 0, sizeof op);",
        "        for (uint32_t k = 0; k < VYRE_SLOT_ARG_COUNT; ++k)",
        "            op.args[k] = k < nargs ? args[(uint64_t)i * nargs + k] : 0u;",
        f"        op.opcode = {int(op.opcode or 0):#x}u;",
        "        op.slot = i;",
        "        op.lanes = VYRE_OP_LANES;",
        "        op.lane_end_ = VYRE_OP_LANES;  /* lanes 0..31 in turn, as a CPU worker */",
        "        op.control_words_ = control_words;",
        "        op.observable_slots_ = observable_slots;",
        "        op.control_ = control;",
        f"        vyre_op_run_lanes(&op, vyre_op_{op.name});",
        "        if (op.fault_kept_[0] != VYRE_FAULT_NONE) ++faults;",
        "    }",
        "    return faults;",
        "}",
        ""])


def compile_c_loop(op: Any, out_dir: str) -> str:
    """The CPU baseline's shared object, built with the compiler and flags of the CPU
    backend's user-op build (``$CC``, vyre.ops.cpu_build.CFLAGS); its path."""
    import shutil

    from vyre.ops import cpu_build, include_dir

    src = os.path.join(out_dir, f"{C_LOOP}_{op.name}.c")
    lib = src[:-2] + ".so"
    with open(src, "w", encoding="utf-8") as f:
        f.write(c_loop_source(op))
    cc = cpu_build.compiler_command()
    exe = shutil.which(cc[0])
    if exe is None:
        raise RuntimeError(f"no C compiler {cc[0]!r} on PATH for op {op.name!r}'s C loop "
                           "(the CPU backend's user ops need one too)")
    p = subprocess.run([exe, *cc[1:], *cpu_build.CFLAGS, "-I", include_dir(), "-o", lib, src,
                        "-lm"], capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"the C compiler could not build op {op.name!r} in a plain loop: "
                           + (p.stderr.strip().splitlines() or ["no output"])[-1])
    return lib


def _c_loop_method(ctx, op: Any, rows: np.ndarray, n: int) -> list[Method]:
    """CPU backend: the op's C source run by a plain C loop over the N argument rows, one
    ctypes call per sample: what the op costs without the megakernel around it."""
    import ctypes

    from vyre.bench.checks import Check, loop_reference
    from vyre.protocol import OBSERVABLE_BASE

    tmp = tempfile.mkdtemp(prefix="vyre-bench-op-")
    try:
        lib = ctypes.CDLL(compile_c_loop(op, tmp))
    except Exception as exc:
        ctx.error("op_c_loop", exc)
        return []
    fn = getattr(lib, C_LOOP)
    u32, ptr = ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)
    fn.argtypes = [ptr, u32, u32, ptr, u32, u32]
    fn.restype = u32
    control_words = OBSERVABLE_BASE + OBSERVABLES
    control = np.zeros(control_words, np.uint32)
    nargs = int(rows.shape[1])
    flat = np.ascontiguousarray(rows.reshape(-1) if nargs else np.zeros(1, np.uint32))
    cptr, aptr = control.ctypes.data_as(ptr), flat.ctypes.data_as(ptr)
    faults = [0]

    def run_all() -> None:
        faults[0] += fn(cptr, control_words, OBSERVABLES, aptr, nargs, n)

    def sample() -> float:
        t0 = time.perf_counter_ns()
        run_all()
        return time.perf_counter_ns() - t0

    def no_faults() -> tuple[bool, str]:
        return faults[0] == 0, (f"{faults[0]} ops of the C loop faulted (an op that uses "
                                "registered buffers cannot run there: it has no buffer table)")

    check = Check(f"the same C loop over {n} ops called bare", loop_reference(run_all,
                  per_call=n, samples=15))
    return [Method("op_c_loop", sample, batch=n, params={"op": op.name, "ops": n},
                   verify=no_faults, check=check,
                   notes="the op's C source in a plain C loop, 32 lanes per op, no megakernel")]


def compile_ptx(op: Any, arch: str, out_dir: str) -> str:
    """nvcc -ptx of :func:`kernel_source` for ``arch`` (e.g. ``compute_90``); the PTX path."""
    from vyre.ops import include_dir
    from vyre.ops.cuda_build import find_nvcc

    src = os.path.join(out_dir, f"{KERNEL}_{op.name}.cu")
    ptx = src[:-3] + ".ptx"
    with open(src, "w", encoding="utf-8") as f:
        f.write(kernel_source(op))
    # the nvcc the fused megakernel build uses (VYRE_NVCC, PATH, CUDA_HOME, /usr/local/cuda)
    p = subprocess.run([find_nvcc(), "-ptx", f"-arch={arch}", "-std=c++17", "-I", include_dir(),
                        src, "-o", ptx], capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"nvcc could not compile op {op.name!r} as a standalone kernel: "
                           + (p.stderr.strip().splitlines() or ["no output"])[-1])
    return ptx


def op_args(ctx, n: int) -> np.ndarray:
    """The ``(n, k)`` argument rows: ``<NAME>_args(n)`` from the op's module, else ``(n, 0)``."""
    make = ctx.cache.get("user_op_args")
    if make is None:
        return np.zeros((n, 0), np.uint32)
    rows = np.ascontiguousarray(make(n), dtype=np.uint32)
    if rows.ndim != 2 or rows.shape[0] != n or rows.shape[1] > 12:
        raise ValueError(f"the op's argument function returned shape {rows.shape}; it must "
                         f"return ({n}, k) with k <= 12")
    return rows


def run(ctx) -> None:
    """Measure the ``--op`` op through the megakernel and, on CUDA, as launched kernels."""
    from vyre.bench import userop

    op = ctx.cache.get("user_op")
    if op is None:
        raise Unavailable("measures the op named by --op MODULE:NAME; none was given")
    need("vyre.ops")
    fx = facade()
    backend = resolve_backend(ctx)
    n = 1000 if ctx.options.quick else 100_000
    rows = op_args(ctx, n)
    ctx.note("op", {"name": op.name, "ops_per_sample": n, "arg_words": int(rows.shape[1]),
                    "source_sha256": hashlib.sha256(op.source.encode()).hexdigest()[:16]})
    state: dict[str, Any] = {}

    @contextmanager
    def session() -> Iterator[Any]:
        with megakernel_session(fx, backend, state, slot_count=next_pow2(n),
                                observable_slots=OBSERVABLES) as mk:
            code = mk.register_op(op)
            opcodes = np.full(n, int(code), np.uint32)
            faults0 = mk.fault_count
            state["faults0"] = faults0

            def sample() -> float:
                t0 = time.perf_counter_ns()
                mk.submit_many(opcodes, rows)
                mk.drain()
                return time.perf_counter_ns() - t0
            yield sample

    def no_faults() -> tuple[bool, str]:
        faulted = state["mk"].fault_count - state["faults0"]
        return faulted == 0, f"{faulted} slots of the op faulted"

    methods = [Method("megakernel_submit_many", session=session, batch=n,
                      params={"op": op.name, "ops": n}, verify=no_faults)]
    methods += _call_method(ctx, fx, backend, op, rows, state)
    if backend == "cuda":
        methods += _launch_methods(ctx, op, rows, n, call_ops(ctx, n))
    else:
        for name in ("op_kernel_launch", "op_kernel_launch_sync", "op_cuda_graph"):
            ctx.skip(name, "launching the op's C source as CUDA kernels needs the cuda backend")
        methods += _c_loop_method(ctx, op, rows, n)
    res = ctx.paired(methods)
    ctx.cache[userop.MEASURED] = res.get("megakernel_submit_many") is not None
    # submit_many (a stream of ops) against streams of launches; call (one round trip per op)
    # against round trips: a launch + synchronize per op, or the C loop on the CPU
    for base in ("op_kernel_launch", "op_cuda_graph", "op_c_loop"):
        if base in res:
            ctx.compare(res["megakernel_submit_many"], res[base])
    for base in ("op_kernel_launch_sync", "op_c_loop"):
        if base in res and "megakernel_call" in res:
            ctx.compare(res["megakernel_call"], res[base])


def call_ops(ctx, n: int) -> int:
    """Ops per sample of the round-trip methods (megakernel_call, op_kernel_launch_sync)."""
    return min(n, 2000 if ctx.options.quick else 20_000)


def _call_method(ctx, fx, backend: str, op: Any, rows: np.ndarray, state: dict) -> list[Method]:
    if not hasattr(fx.Megakernel, "call"):  # the call path, where the build has it
        ctx.skip("megakernel_call", "this build's Megakernel has no call() (the call path)")
        return []
    m = call_ops(ctx, len(rows))
    arg_rows = [list(map(int, r)) for r in rows[:m]]
    call_state: dict[str, Any] = {}

    @contextmanager
    def session() -> Iterator[Any]:
        with megakernel_session(fx, backend, call_state, slot_count=4096,
                                observable_slots=OBSERVABLES) as mk:
            code = mk.register_op(op)
            call = mk.call
            call_state["faults0"] = mk.fault_count

            def sample() -> float:
                t0 = time.perf_counter_ns()
                for r in arg_rows:
                    call(code, r)
                return time.perf_counter_ns() - t0
            yield sample

    def no_faults() -> tuple[bool, str]:
        faulted = call_state["mk"].fault_count - call_state["faults0"]
        return faulted == 0, f"{faulted} calls of the op faulted"

    return [Method("megakernel_call", session=session, batch=m,
                   params={"op": op.name, "ops": m}, verify=no_faults)]


def _launch_methods(ctx, op: Any, rows: np.ndarray, n: int, m: int) -> list[Method]:
    """The op's C source as a standalone kernel: per-op PyCUDA launches (``n`` then one
    synchronize; ``m`` each synchronized) and a CuPy graph."""
    try:
        import pycuda.driver as drv
    except Exception as exc:
        for name in ("op_kernel_launch", "op_kernel_launch_sync", "op_cuda_graph"):
            ctx.skip(name, f"pycuda not importable ({exc})")
        return []
    drv.init()
    major, minor = drv.Device(0).compute_capability()
    tmp = tempfile.mkdtemp(prefix="vyre-bench-op-")
    try:
        ptx = compile_ptx(op, f"compute_{major}{minor}", tmp)
    except Exception as exc:
        ctx.error("op_kernel_launch", exc)
        return []
    ctx.note("op_kernel_ptx_bytes", os.path.getsize(ptx))
    from vyre.protocol import OBSERVABLE_BASE

    control_words = OBSERVABLE_BASE + OBSERVABLES  # the kernel's accessors check this bound
    nargs = int(rows.shape[1])
    flat = rows.reshape(-1) if nargs else np.zeros(1, np.uint32)
    holder: dict[str, Any] = {}

    @contextmanager
    def pycuda_session(sync_each: bool) -> Iterator[Any]:
        ctx_ = drv.Device(0).retain_primary_context()
        ctx_.push()
        try:
            mod = drv.module_from_file(ptx)
            fn = mod.get_function(KERNEL)
            fn.prepare("PIIPIIP")
            control = drv.pagelocked_zeros(control_words, np.uint32,
                                           mem_flags=drv.host_alloc_flags.DEVICEMAP)
            faults = drv.pagelocked_zeros(1, np.uint32, mem_flags=drv.host_alloc_flags.DEVICEMAP)
            dargs = drv.to_device(flat)
            stream = drv.Stream()
            cptr = np.intp(control.base.get_device_pointer())
            fptr = np.intp(faults.base.get_device_pointer())
            aptr = np.intp(int(dargs))
            holder["faults"] = faults

            ops = m if sync_each else n

            def sample() -> float:
                t0 = time.perf_counter_ns()
                for i in range(ops):
                    fn.prepared_async_call((1, 1), (32, 1, 1), stream, cptr, control_words,
                                           OBSERVABLES, aptr, nargs, i, fptr)
                    if sync_each:
                        stream.synchronize()
                stream.synchronize()
                return time.perf_counter_ns() - t0
            try:
                yield sample
            finally:
                stream.synchronize()
                dargs.free()
                control.base.free()
                faults.base.free()
        finally:
            ctx_.pop()

    def launch_ok() -> tuple[bool, str]:
        f = int(holder["faults"][0])
        return f == 0, (f"{f} standalone launches of the op faulted (an op that uses registered "
                        "buffers cannot run standalone: the kernel has no buffer table)")

    floor = _gpu.standalone_check("pycuda_launch", "4096 launches of a one-atomic kernel + "
                                  "synchronize in a fresh process: no kernel launches faster",
                                  ops=4096)
    floor.kind = "floor"
    sync_floor = _gpu.standalone_check("pycuda_launch_sync", "one launch of a one-atomic "
                                       "kernel + stream synchronize in a fresh process: no "
                                       "launch + synchronize is faster")
    sync_floor.kind = "floor"
    methods = [Method("op_kernel_launch", session=partial(pycuda_session, False), batch=n,
                      params={"op": op.name, "ops": n}, verify=launch_ok, check=floor,
                      notes="the op's C source as one 32-thread kernel per op (PyCUDA)"),
               Method("op_kernel_launch_sync", session=partial(pycuda_session, True), batch=m,
                      params={"op": op.name, "ops": m}, verify=launch_ok, check=sync_floor,
                      notes="one launch + stream synchronize per op: a round trip, as a call "
                            "is")]
    methods += _graph_method(ctx, op, ptx, flat, nargs, n, control_words)
    return methods


def _graph_method(ctx, op, ptx: str, flat, nargs: int, n: int, control_words: int) -> list[Method]:
    try:
        import cupy as cp
    except Exception as exc:
        ctx.skip("op_cuda_graph", f"cupy not importable ({exc})")
        return []
    holder: dict[str, Any] = {}

    @contextmanager
    def session() -> Iterator[Any]:
        import ctypes

        fn = cp.RawModule(path=ptx).get_function(KERNEL)
        words = control_words + 1
        mem = cp.cuda.PinnedMemory(4 * words, flags=cp.cuda.runtime.hostAllocMapped)
        host = np.ctypeslib.as_array((ctypes.c_uint32 * words).from_address(mem.ptr))
        host[:] = 0
        dptr = cp.cuda.runtime.pointerGetAttributes(mem.ptr).devicePointer
        control, faults = np.uint64(dptr), np.uint64(dptr + 4 * control_words)
        dargs = cp.asarray(flat)
        holder["host"], holder["words"] = host, words
        stream = cp.cuda.Stream(non_blocking=True)
        launch_args = [(control, np.uint32(control_words), np.uint32(OBSERVABLES), dargs,
                        np.uint32(nargs), np.uint32(i), faults) for i in range(n)]
        with stream:
            stream.begin_capture()
            try:
                for a in launch_args:
                    fn((1,), (32,), a)
            finally:
                graph = stream.end_capture()
        graph.launch(stream)  # the first replay instantiates and uploads
        stream.synchronize()

        def sample() -> float:
            t0 = time.perf_counter_ns()
            graph.launch(stream)
            stream.synchronize()
            return time.perf_counter_ns() - t0
        try:
            yield sample
        finally:
            stream.synchronize()

    def graph_ok() -> tuple[bool, str]:
        f = int(holder["host"][holder["words"] - 1])
        return f == 0, f"{f} graph launches of the op faulted"

    floor = _gpu.standalone_check("cuda_graph", "one replay of 4096 captured one-atomic "
                                  "launches in a fresh process: no graph replays faster",
                                  ops=4096)
    floor.kind = "floor"
    return [Method("op_cuda_graph", session=session, batch=n, params={"op": op.name, "ops": n},
                   verify=graph_ok, check=floor,
                   notes="the N launches of the op's kernel captured once, one replay")]
