"""What a CuPy / PyTorch user's call does next to a persistent kernel (one case per process).

Run on a GPU machine, each case under its own time limit (a hang shows as a missing line):
``for c in $(python bench/gpu/coexist_probe.py --list); do timeout 40 python
bench/gpu/coexist_probe.py $c; done``. Cases:

- ``after:<op>``: a spinning kernel K1 runs; another thread starts ``<op>`` (device synchronize,
  cudaFree, a module load, ``empty_cache``, a graph build); 0.3 s later a second spinning kernel
  K2 is launched, then K1 is released. Does ``<op>`` return once K1 has left although K2 (launched
  after the op began) still runs? That decides whether a persistent kernel that leaves and is
  relaunched at once unblocks such calls. Also times the K2 launch call (blocked by the op?).
- ``share:<grid>``: PyTorch bf16 matmul throughput, a small PyTorch op + ``.item()`` and a CuPy
  launch + stream sync, without vyre, with a vyre megakernel of ``<grid>`` blocks resident, and
  with it serving round trips; vyre's round trip and dispatch alone and under a matmul loop.
- ``misc``: pause + relaunch cost and the first op after it; the harness CuPy baseline with its
  argument list rebuilt per launch vs built once; stream memory-op support and a stream wait
  on a mapped host word.
- ``lazy:<grid>``: a never-launched PyTorch op (lazy module load) with a small grid resident.
"""
from __future__ import annotations

import os
import sys
import threading
import time

os.environ.setdefault("CUDA_MODULE_LOADING", "LAZY")  # the default a user's process has

SPIN = r"""
extern "C" __global__ void spin(volatile unsigned int *flag) {
    while (*flag == 0u) __nanosleep(1000);
}
"""


def _mapped_words(cp, n):
    import ctypes

    import numpy as np

    mem = cp.cuda.PinnedMemory(4 * n, flags=cp.cuda.runtime.hostAllocMapped)
    host = np.ctypeslib.as_array((ctypes.c_uint32 * n).from_address(mem.ptr))
    host[:] = 0
    dptr = int(cp.cuda.runtime.pointerGetAttributes(mem.ptr).devicePointer)
    return mem, host, dptr


def case_after(op: str) -> None:
    import cupy as cp
    import numpy as np

    spin = cp.RawKernel(SPIN, "spin")
    mem, flag, dptr = _mapped_words(cp, 4)
    s1, s2 = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    flag[2] = 1
    with s1:
        spin((1,), (1,), (np.uint64(dptr + 8),))  # loaded and run once, before anything spins
    s1.synchronize()
    prep = {}
    if op == "free":
        prep["buf"] = cp.cuda.runtime.malloc(1 << 24)
    elif op in ("torch_empty_cache", "torch_item", "torch_sync", "torch_lazy"):
        import torch

        x = torch.ones(1 << 22, device="cuda")
        (x + 1).sum().item()
        if op == "torch_empty_cache":
            y = torch.empty(1 << 24, device="cuda")
            del y
        prep["x"] = x
    elif op == "graph":
        prep["k"] = cp.ElementwiseKernel("float32 x", "float32 y", "y = x + 1", "vyre_probe_add")
        prep["a"] = cp.ones(1024, cp.float32)
        prep["k"](prep["a"])
        cp.cuda.Stream.null.synchronize()
    with s1:
        spin((1,), (1,), (np.uint64(dptr),))
    done = {}

    def body() -> None:
        t0 = time.perf_counter()
        if op == "devsync":
            cp.cuda.runtime.deviceSynchronize()
        elif op == "free":
            cp.cuda.runtime.free(prep["buf"])
        elif op == "modload":
            m = cp.RawModule(code=SPIN.replace("spin", f"spin_fresh_{os.getpid()}"))
            m.get_function(f"spin_fresh_{os.getpid()}")
        elif op == "torch_empty_cache":
            import torch
            torch.cuda.empty_cache()
        elif op == "torch_item":
            (prep["x"] * 2).sum().item()
        elif op == "torch_sync":
            import torch
            torch.cuda.synchronize()
        elif op == "torch_lazy":
            import torch
            torch.special.erfcx(prep["x"]).sum().item()
        elif op == "graph":
            st = cp.cuda.Stream(non_blocking=True)
            with st:
                st.begin_capture()
                prep["k"](prep["a"])
                g = st.end_capture()
                g.launch(st)
            st.synchronize()
        done["t"] = time.perf_counter()
        done["dt"] = done["t"] - t0

    th = threading.Thread(target=body, daemon=True)
    th.start()
    time.sleep(0.3)
    returned_before_k2 = "t" in done
    t0 = time.perf_counter()
    with s2:
        spin((1,), (1,), (np.uint64(dptr + 4),))
    launch_ms = (time.perf_counter() - t0) * 1e3
    time.sleep(0.3)
    release = time.perf_counter()
    flag[0] = 1
    th.join(3.0)
    if "t" not in done:
        print(f"after:{op} HUNG-with-K2 (K2 launch call {launch_ms:.3f} ms, "
              f"returned before K2: {returned_before_k2})", flush=True)
        flag[1] = 1
        th.join(3.0)
        print(f"after:{op} after K2 left: "
              f"{'returned' if 't' in done else 'still hung'}", flush=True)
        os._exit(0)
    print(f"after:{op} returned {1e3 * (done['t'] - release):.2f} ms after K1 left; "
          f"K2 still running: {int(flag[1]) == 0}; K2 launch call {launch_ms:.3f} ms; "
          f"returned before K2 launched: {returned_before_k2}", flush=True)
    flag[1] = 1
    s2.synchronize()
    os._exit(0)


def _guard(label, fn, *args, limit=12.0):
    """fn(*args) on a thread; a call that does not return within ``limit`` s ends the case."""
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("v", fn(*args)), daemon=True)
    th.start()
    th.join(limit)
    if "v" not in out:
        print(f"{label}: HUNG ({limit} s)", flush=True)
        os._exit(0)
    return out["v"]


def _p50(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _small_ops(torch, cp, small, raw, args, stream, n=1500):
    tt = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        (small + 1).sum().item()
        tt.append(time.perf_counter_ns() - t0)
    tc = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        with stream:
            raw((1,), (1,), args)
        stream.synchronize()
        tc.append(time.perf_counter_ns() - t0)
    return _p50(tt) / 1e3, _p50(tc) / 1e3


def _matmul(torch, a, b, seconds=1.5):
    s = torch.cuda.current_stream()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(5):
            torch.matmul(a, b)
        n += 5
        s.synchronize()
    dt = time.perf_counter() - t0
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] * n / dt / 1e12


def case_share(grid_arg: str) -> None:
    import cupy as cp
    import numpy as np
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    small = torch.ones(256, device="cuda")
    torch.matmul(a, b)
    (small + 1).sum().item()
    torch.cuda.current_stream().synchronize()
    raw = cp.RawKernel(r'extern "C" __global__ void k(unsigned *p){ atomicAdd(p, 1u); }', "k")
    mem, words, dptr = _mapped_words(cp, 4)
    stream = cp.cuda.Stream(non_blocking=True)
    args = (np.uint64(dptr),)
    with stream:
        raw((1,), (1,), args)
    stream.synchronize()
    base_tf = _matmul(torch, a, b)
    base_t, base_c = _small_ops(torch, cp, small, raw, args, stream)
    print(f"share:{grid_arg} no-vyre: matmul {base_tf:.1f} TFLOP/s; torch op+item p50 "
          f"{base_t:.1f} us; cupy launch+stream sync p50 {base_c:.1f} us", flush=True)

    from vyre import Megakernel, Opcode
    from vyre.protocol import OBSERVABLE_BASE

    mk = Megakernel(backend="cuda", slot_count=4096, observable_slots=64)
    sms = mk.backend.grid // mk.backend.blocks_per_sm
    grid = {"full": sms, "half": sms // 2, "quarter": sms // 4, "eighth": sms // 8}[grid_arg]
    mk.backend.grid = grid
    mk.start()

    def rt(n=3000):
        xs = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBSERVABLE_BASE]))
            xs.append(time.perf_counter_ns() - t0)
        return _p50(xs) / 1e3

    ops = np.full(100_000, int(Opcode.ATOMIC_ADD), np.uint32)
    margs = np.stack([np.ones(100_000, np.uint32),
                      OBSERVABLE_BASE + np.arange(100_000, dtype=np.uint32) % 64], 1)

    def dispatch(reps=10):
        xs = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            mk.submit_many(ops, margs)
            mk.drain()
            xs.append((time.perf_counter_ns() - t0) / 100_000)
        return _p50(xs)

    rt0, d0 = rt(), dispatch()
    print(f"share:{grid_arg} grid={grid}/{sms}: vyre round trip p50 {rt0:.1f} us, dispatch "
          f"{d0:.1f} ns/op", flush=True)
    idle_t, idle_c = _guard("small ops, vyre idle", _small_ops, torch, cp, small, raw, args, stream)
    print(f"share:{grid_arg} vyre idle: torch op+item {idle_t:.1f} us, cupy {idle_c:.1f} us",
          flush=True)
    idle_tf = _guard("matmul, vyre idle", _matmul, torch, a, b)
    print(f"share:{grid_arg} vyre idle: matmul {idle_tf:.1f} TFLOP/s", flush=True)
    stop = threading.Event()
    served = [0]

    def serve():
        while not stop.is_set():
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, 161]))
            served[0] += 1
            time.sleep(0.0001)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    busy_tf = _guard("matmul, vyre serving", _matmul, torch, a, b)
    busy_t, busy_c = _guard("small ops, vyre serving", _small_ops, torch, cp, small, raw, args,
                            stream)
    stop.set()
    th.join()
    # vyre while a matmul loop runs on another thread
    stop2 = threading.Event()

    def mm():
        while not stop2.is_set():
            for _ in range(5):
                torch.matmul(a, b)
            torch.cuda.current_stream().synchronize()

    th2 = threading.Thread(target=mm, daemon=True)
    th2.start()
    time.sleep(0.2)
    rt1 = _guard("vyre round trips under matmul", rt)
    d1 = _guard("vyre dispatch under matmul", dispatch)
    stop2.set()
    th2.join()
    print(f"share:{grid_arg} grid={grid}/{sms} SMs: idle vyre: matmul {idle_tf:.1f} TFLOP/s "
          f"({100 * idle_tf / base_tf:.0f} %), torch op+item {idle_t:.1f} us, "
          f"cupy {idle_c:.1f} us; "
          f"vyre serving ({served[0]} round trips): matmul {busy_tf:.1f} TFLOP/s "
          f"({100 * busy_tf / base_tf:.0f} %), torch {busy_t:.1f} us, cupy {busy_c:.1f} us; "
          f"vyre round trip p50 {rt0:.1f} us alone, {rt1:.1f} us under matmul; dispatch "
          f"{d0:.1f} ns/op alone, {d1:.1f} under matmul", flush=True)
    mk.shutdown(timeout=5)
    os._exit(0)


def case_misc() -> None:
    import ctypes

    import cupy as cp
    import numpy as np

    from vyre import Megakernel, Opcode
    from vyre.backends.cuda.backend import quiesced
    from vyre.protocol import OBSERVABLE_BASE

    with Megakernel(backend="cuda", slot_count=1024, observable_slots=64) as mk:
        for _ in range(200):
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBSERVABLE_BASE]))
        steady = []
        for _ in range(2000):
            t0 = time.perf_counter_ns()
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBSERVABLE_BASE]))
            steady.append(time.perf_counter_ns() - t0)
        cyc, first = [], []
        for _ in range(50):
            t0 = time.perf_counter_ns()
            with quiesced():
                pass
            cyc.append(time.perf_counter_ns() - t0)
            t0 = time.perf_counter_ns()
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBSERVABLE_BASE]))
            first.append(time.perf_counter_ns() - t0)
        print(f"misc: round trip p50 {_p50(steady) / 1e3:.1f} us; pause+relaunch p50 "
              f"{_p50(cyc) / 1e3:.1f} us (max {max(cyc) / 1e3:.1f}); first op after it p50 "
              f"{_p50(first) / 1e3:.1f} us", flush=True)
    # the harness's CuPy baseline: its per-call argument list vs one built once
    from vyre.bench.suites._gpu import CuPyLauncher

    lau = CuPyLauncher()
    xs = []
    for _ in range(300):
        t0 = time.perf_counter_ns()
        lau.launch_n(1)
        lau.sync()
        xs.append(time.perf_counter_ns() - t0)
    args = (lau.dptr, np.uint32(1), np.uint32(0))
    ys = []
    for _ in range(3000):
        t0 = time.perf_counter_ns()
        with lau.stream:
            lau.kernel(lau.grid, lau.block, args)
        lau.sync()
        ys.append(time.perf_counter_ns() - t0)
    zs = []
    for _ in range(300):
        t0 = time.perf_counter_ns()
        [(lau.dptr, np.uint32(1), np.uint32(i)) for i in range(1024)]
        zs.append(time.perf_counter_ns() - t0)
    print(f"misc: harness cupy launch_n(1)+sync p50 {_p50(xs) / 1e3:.1f} us; args built once "
          f"{_p50(ys) / 1e3:.1f} us; the 1024-entry argument list alone {_p50(zs) / 1e3:.1f} us",
          flush=True)
    # stream memory operations on a mapped host word
    lib = ctypes.CDLL("libcuda.so.1")
    dev = ctypes.c_int()
    lib.cuCtxGetDevice(ctypes.byref(dev))
    for attr in (92, 93, 98, 122):
        v = ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(v), attr, dev.value)
        print(f"misc: device attribute {attr} = {v.value}", flush=True)
    mem, words, dptr = _mapped_words(cp, 4)
    st = cp.cuda.Stream(non_blocking=True)
    lib.cuStreamWaitValue32_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                           ctypes.c_uint]
    lib.cuStreamWriteValue32_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                            ctypes.c_uint]
    lib.cuStreamWaitValue64_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                           ctypes.c_uint]
    rc1 = lib.cuStreamWaitValue32_v2(ctypes.c_void_p(st.ptr), dptr, 5, 0)  # GEQ
    rc2 = lib.cuStreamWriteValue32_v2(ctypes.c_void_p(st.ptr), dptr + 4, 77, 0)
    time.sleep(0.05)
    before = int(words[1])
    t0 = time.perf_counter_ns()
    words[0] = 5
    while words[1] != 77 and time.perf_counter_ns() - t0 < 1e9:
        pass
    lat = (time.perf_counter_ns() - t0) / 1e3
    st.synchronize()
    rc3 = lib.cuStreamWaitValue64_v2(ctypes.c_void_p(st.ptr), dptr + 8, 0, 0)
    st.synchronize()
    print(f"misc: stream wait32 rc {rc1}, write32 rc {rc2}, wait64 rc {rc3}; write held back "
          f"until the host word moved: {before == 0}; host store -> stream write seen "
          f"{lat:.1f} us", flush=True)
    os._exit(0)


def case_lazy(grid_arg: str) -> None:
    import torch

    from vyre import Megakernel, Opcode

    x = torch.ones(1024, device="cuda")
    (x + 1).sum().item()
    mk = Megakernel(backend="cuda", slot_count=256, observable_slots=64)
    sms = mk.backend.grid // mk.backend.blocks_per_sm
    mk.backend.grid = max(1, sms // 8) if grid_arg == "eighth" else sms
    mk.start()
    mk.wait(mk.submit(Opcode.NOP))
    done = {}

    def body():
        t0 = time.perf_counter()
        torch.special.erfcx(x).sum().item()
        done["dt"] = time.perf_counter() - t0

    th = threading.Thread(target=body, daemon=True)
    th.start()
    th.join(5.0)
    print(f"lazy:{grid_arg} grid {mk.backend.grid}: "
          + (f"returned in {done['dt'] * 1e3:.1f} ms" if done else "HUNG (5 s)"), flush=True)
    os._exit(0)


CASES = ([f"after:{op}" for op in ("devsync", "free", "modload", "torch_empty_cache",
                                   "torch_item", "torch_sync", "torch_lazy", "graph")]
         + [f"share:{g}" for g in ("eighth", "quarter", "full")] + ["misc", "lazy:eighth"])

if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print(" ".join(CASES))
        sys.exit(0)
    kind, _, arg = sys.argv[1].partition(":")
    {"after": case_after, "share": case_share, "lazy": case_lazy}.get(
        kind, lambda _a: case_misc())(arg)
