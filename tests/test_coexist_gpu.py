"""vyre next to CuPy and PyTorch in one process, on the GPU.

Each case runs in its own Python process under a time limit: a call that hangs (what a
resident persistent kernel did to a device synchronize, a cudaFree, a lazily loaded module)
fails that case instead of stopping the suite. Skipped without a GPU, CuPy or PyTorch.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gpu
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 90

needs_cupy = pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="no CuPy")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no PyTorch")

PRELUDE = """
import os, sys, threading, time
import numpy as np
from vyre import Megakernel, Opcode
OBS = 160
"""


def run_case(body: str, limit: float = LIMIT) -> str:
    """Run ``body`` in a fresh process; it must print OK. Returns its output."""
    code = PRELUDE + textwrap.dedent(body) + "\nprint('OK', flush=True)\n"
    env = dict(os.environ, CUDA_MODULE_LOADING=os.environ.get("CUDA_MODULE_LOADING", "LAZY"))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=limit, cwd=ROOT, env=env, check=False)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"hung: no exit within {limit} s\n{err.stdout or ''}{err.stderr or ''}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "OK" in proc.stdout, out
    print(out)  # the figures a case reports (pytest -s shows them)
    return out


@needs_cupy
def test_cupy_kernels_compiled_after_start_and_device_synchronize():
    run_case("""
    import cupy as cp
    with Megakernel("cuda", slot_count=256, observable_slots=8) as mk:
        mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=10)
        # a kernel compiled and loaded now (a module load), then a device-wide synchronize
        k = cp.ElementwiseKernel("float32 x", "float32 y", "y = x * 3", "vyre_t_triple")
        a = cp.arange(1000, dtype=cp.float32)
        b = k(a)
        cp.cuda.Device().synchronize()
        assert float(b[10]) == 30.0
        for _ in range(20):  # interleaved: vyre op, CuPy launch + device synchronize
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=10)
            k(a, b)
            cp.cuda.runtime.deviceSynchronize()
        assert mk.observables[0] == 21
    """)


@needs_cupy
def test_cupy_frees_without_a_pool_and_graphs():
    run_case("""
    import cupy as cp
    cp.cuda.set_allocator(None)  # every free is a cudaFree (synchronizes the device)
    with Megakernel("cuda", slot_count=256, observable_slots=8) as mk:
        mk.wait(mk.submit(Opcode.NOP), timeout=10)
        for i in range(20):
            x = cp.empty(1 << 20, cp.uint8)
            del x
            mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=10)
        k = cp.ElementwiseKernel("float32 x", "float32 y", "y = x + 1", "vyre_t_inc")
        a = cp.zeros(256, cp.float32)
        st = cp.cuda.Stream(non_blocking=True)
        with st:
            st.begin_capture()
            k(a, a)
            g = st.end_capture()
        for _ in range(5):
            g.launch(st)
        st.synchronize()
        assert float(a[0]) == 5.0 and mk.observables[0] == 20
    """)


@needs_torch
def test_torch_item_synchronize_empty_cache_lazy_ops_and_graphs():
    run_case("""
    import torch
    x = torch.ones(1 << 16, device="cuda")
    with Megakernel("cuda", slot_count=256, observable_slots=8) as mk:
        mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=10)
        assert (x + 1).sum().item() == 2 * (1 << 16)
        torch.cuda.synchronize()
        y = torch.empty(16 << 20, dtype=torch.uint8, device="cuda")
        del y
        torch.cuda.empty_cache()
        # ops whose kernels were never launched in this process (lazy module loading)
        v, _ = torch.sort(torch.arange(1000, 0, -1, device="cuda", dtype=torch.float32))
        assert v[0].item() == 1.0
        assert torch.cumsum(x, 0)[-1].item() == float(1 << 16)
        s = torch.cuda.Stream()
        static = torch.zeros(64, device="cuda")
        with torch.cuda.stream(s):
            static.add_(1)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static.mul_(2)
        g.replay(); g.replay()
        torch.cuda.synchronize()
        assert static[0].item() == 4.0
        mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=10)
        assert mk.observables[0] == 2
    """)


@needs_torch
def test_blocking_calls_return_while_vyre_is_kept_busy():
    """A thread keeps vyre busy without pause; the residency quantum lets a device-wide
    synchronize and an empty_cache through."""
    run_case("""
    import torch
    x = torch.ones(1024, device="cuda")
    (x + 1).sum().item()
    with Megakernel("cuda", slot_count=1024, observable_slots=8) as mk:
        stop, n = threading.Event(), [0]
        def busy():
            while not stop.is_set():
                mk.wait(mk.submit(Opcode.ATOMIC_ADD, [1, OBS]), timeout=30)
                n[0] += 1
        th = threading.Thread(target=busy); th.start()
        time.sleep(0.2)
        worst = 0.0
        for _ in range(10):
            t0 = time.perf_counter()
            torch.cuda.synchronize()
            y = torch.empty(8 << 20, dtype=torch.uint8, device="cuda"); del y
            torch.cuda.empty_cache()
            worst = max(worst, time.perf_counter() - t0)
        stop.set(); th.join(30)
        mk.drain(timeout=30)
        assert mk.observables[0] == n[0] and n[0] > 0
        print("worst blocking call under load", round(worst * 1e3, 2), "ms; relaunches",
              mk.backend.relaunches)
    """)


def test_idle_exits_under_bursts_lose_and_repeat_nothing():
    """Bursts with gaps around the idle period, and a racing multi-threaded stream with a tiny
    idle period and quantum: exact totals, and the kernel did leave and come back."""
    out = run_case("""
    rng = np.random.default_rng(7)
    with Megakernel("cuda", slot_count=512, observable_slots=8, idle_exit_ms=0.2) as mk:
        total = 0
        for _ in range(150):
            k = int(rng.integers(1, 40))
            ops = np.full(k, int(Opcode.ATOMIC_ADD), np.uint32)
            args = np.stack([np.ones(k, np.uint32), np.full(k, OBS, np.uint32)], 1)
            mk.submit_many(ops, args)
            total += k
            if rng.random() < 0.5:
                mk.drain(timeout=10)
            time.sleep(float(rng.choice([0, 0.0001, 0.0003, 0.001])))
        mk.drain(timeout=10)
        assert int(mk.observables[0]) == total, (int(mk.observables[0]), total)
        assert mk.backend.relaunches > 0
        print("bursts relaunches", mk.backend.relaunches, "idle exits", mk.backend.idle_exits)
    with Megakernel("cuda", slot_count=256, observable_slots=8, idle_exit_ms=0.005,
                    yield_ms=0.3) as mk:
        def worker(w):
            for i in range(3000):
                t = mk.submit(Opcode.ATOMIC_ADD, [1, OBS + 1 + w])
                if i % 7 == 0:
                    mk.wait(t, timeout=20)
        ths = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
        for t in ths: t.start()
        for t in ths: t.join(60)
        mk.drain(timeout=20)
        assert [int(v) for v in mk.observables[1:4]] == [3000] * 3
        print("race relaunches", mk.backend.relaunches, "idle exits", mk.backend.idle_exits)
    """)
    assert re.search(r"race relaunches [1-9]", out), out


def test_register_buffer_takes_numpy_arrays_on_cuda():
    run_case("""
    with Megakernel("cuda", slot_count=64, observable_slots=8) as mk:
        src = np.arange(16, dtype=np.uint32) + 100
        dst = np.zeros(16, np.uint32)
        hs, hd = mk.register_buffer(src), mk.register_buffer(dst)
        mk.wait(mk.submit(Opcode.BUF_COPY, [hs, 8, hd, 0, 16]), timeout=10)
        assert dst[:4].tolist() == [102, 103, 104, 105]
        del src  # the table holds it: the kernel may still read it
        mk.wait(mk.submit(Opcode.BUF_COPY, [hs, 0, hd, 0, 4]), timeout=10)
        assert dst[0] == 100
    """)


@needs_cupy
@needs_torch
def test_cupy_torch_and_dlpack_buffers_are_shared_and_pinned():
    run_case("""
    import cupy as cp, torch
    class OnlyDLPack:
        def __init__(self, t): self.t = t
        def __dlpack__(self, **kw): return self.t.__dlpack__(**kw)
        def __dlpack_device__(self): return self.t.__dlpack_device__()
    with Megakernel("cuda", slot_count=64, observable_slots=8) as mk:
        c = cp.arange(8, dtype=cp.uint32) + 7
        t = torch.zeros(8, dtype=torch.int32, device="cuda")
        hc, ht = mk.register_buffer(c), mk.register_buffer(OnlyDLPack(t))
        cp.cuda.Device().synchronize()
        mk.wait(mk.submit(Opcode.BUF_COPY, [hc, 0, ht, 0, 32]), timeout=10)
        assert t.tolist() == list(range(7, 15))
        del c  # freed by the user: vyre holds it, so the pool cannot hand it out
        cp.get_default_memory_pool().free_all_blocks()
        mk.wait(mk.submit(Opcode.BUF_COPY, [ht, 0, hc, 0, 32]), timeout=10)
        mk.wait(mk.submit(Opcode.BUF_COPY, [hc, 4, 0, OBS * 4, 4]), timeout=10)
        assert mk.observables[0] == 8
    """)


@needs_cupy
def test_a_stream_waits_for_a_ticket_on_the_gpu_and_an_op_waits_for_a_stream():
    run_case("""
    import cupy as cp
    with Megakernel("cuda", slot_count=64, observable_slots=8) as mk:
        mark = cp.zeros(1, cp.uint32)
        st = cp.cuda.Stream(non_blocking=True)
        with st:
            mark += 1  # compiled and loaded now, not inside the block below
            mark -= 1
        st.synchronize()
        hm = mk.register_buffer(mark)
        side = cp.cuda.Stream(non_blocking=True)
        with mk.paused():  # the ticket is published but cannot run until the block ends
            t = mk.submit(Opcode.ATOMIC_ADD, [5, OBS])
            mk.stream_wait(st, t)
            with st:
                mark += 1
            time.sleep(0.2)
            assert int(mark.get(stream=side)[0]) == 0  # the stream holds behind the ticket
        st.synchronize()
        assert int(mark[0]) == 1 and mk.observables[0] == 5
        # the other way: a vyre op after a slow kernel queued on the stream
        slow = cp.RawKernel(r'''extern "C" __global__ void slow(unsigned *m) {
            long long t0 = clock64(); while (clock64() - t0 < 200000000LL) {}
            m[0] = 42u; }''', "slow")
        with st:
            slow((1,), (1,), (mark,))
        t = mk.submit_after(st, Opcode.BUF_COPY, [hm, 0, 0, (OBS + 1) * 4, 4], timeout=30)
        mk.wait(t, timeout=10)
        assert mk.observables[1] == 42
    """)


def test_readme_coexistence_snippet_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("## Using vyre with CuPy and PyTorch", 1)[1]
    snippet = section.split("```python", 1)[1].split("```", 1)[0]
    if importlib.util.find_spec("cupy") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("the snippet uses CuPy and PyTorch")
    out = run_case(snippet)
    assert "[0, 2, 4, 6, 8, 10, 12, 14]" in out, out
