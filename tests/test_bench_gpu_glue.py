"""The GPU suites' glue (dispatch, latency on CUDA), run on the CPU backend with fake launchers.

CI has no GPU, so the real PyCUDA/CuPy launchers cannot run here; these tests drive the
suites' own code (sampling, verification bookkeeping, ratios, skips, clean-up) with stand-ins
that honour the launcher interface of ``vyre.bench.suites._gpu``, so a GPU run does not
discover a plain Python bug. The kernel source itself is checked with nvcc when present.
"""
import shutil
import subprocess
import time

import numpy as np
import pytest

from vyre.bench.runner import Context, Options
from vyre.bench.suites import Unavailable, _common, _gpu, dispatch, latency


class FakeLauncher:
    """Pure-Python launcher: 'launches' add to a host counter immediately."""

    instances = []

    def __init__(self):
        self.host = np.zeros(_gpu.COUNTER_WORDS, dtype=np.uint32)
        self.expected = 0
        self.graph_ops = 0
        self.closed = False
        FakeLauncher.instances.append(self)

    def launch_n(self, n, a0=1, idx=0):
        self.host[idx] += n * a0
        self.expected += n * a0

    def sync(self):
        pass

    def value(self):
        assert not self.closed, "read after close"
        return int(self.host[0])

    def timed_n_events(self, n):
        t0 = time.perf_counter_ns()
        self.launch_n(n)
        return time.perf_counter_ns() - t0

    def capture_graph(self, n):
        self.graph_ops = n
        self.replay()
        return 0.001

    def replay(self):
        self.host[0] += self.graph_ops
        self.expected += self.graph_ops

    def timed_replay_events(self):
        t0 = time.perf_counter_ns()
        self.replay()
        return time.perf_counter_ns() - t0

    def close(self):
        self.closed = True


class NoCupy:
    def __init__(self):
        raise Unavailable("cupy not importable (ModuleNotFoundError: No module named 'cupy')")


@pytest.fixture
def on_cpu(monkeypatch):
    """Make the CUDA-only suites run their megakernel part on the CPU backend."""
    try:
        fx = _common.facade()
        _common.megakernel(fx, "cpu", slot_count=16, observable_slots=4).shutdown()
    except Exception as exc:
        pytest.skip(f"CPU backend not usable here: {exc}")
    real = _common.megakernel
    for mod in (dispatch, latency):
        monkeypatch.setattr(mod, "resolve_backend", lambda ctx, allowed=None: "cuda")
        monkeypatch.setattr(mod, "megakernel", lambda fx, backend, **kw: real(fx, "cpu", **kw))
    FakeLauncher.instances.clear()


def ctx_for(suite):
    ctx = Context(Options(quick=True, min_time_s=0.0, warmup_s=0.0, min_samples=3))
    ctx.suite = suite
    return ctx


def test_dispatch_with_every_baseline(on_cpu, monkeypatch):
    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", FakeLauncher)
    ctx = ctx_for("dispatch")
    dispatch.run(ctx)
    assert ctx.errors == [] and ctx.skipped == []
    names = [r.name for r in ctx.results]
    assert names == ["megakernel_submit_many", "megakernel_submit_loop", "pycuda_launch",
                     "pycuda_launch_device", "cupy_launch", "cuda_graph", "cuda_graph_device"]
    assert all(r.verified for r in ctx.results)
    by = {r.name: r for r in ctx.results}
    assert by["pycuda_launch_device"].clock == "cuda_event"
    assert by["cuda_graph"].batch == 1000  # --quick: N = 1000 ops per sample
    pairs = [(c.subject, c.baseline) for c in ctx.comparisons]
    assert ("dispatch/megakernel_submit_many", "dispatch/pycuda_launch") in pairs
    assert ("dispatch/megakernel_submit_many", "dispatch/cuda_graph") in pairs
    assert all("_device" not in b for _, b in pairs)  # event spans are not compared
    assert all(f.closed for f in FakeLauncher.instances)
    assert ctx.info["dispatch"]["ops_per_sample"] == 1000


def test_dispatch_records_missing_cupy_as_skips(on_cpu, monkeypatch):
    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", NoCupy)
    ctx = ctx_for("dispatch")
    dispatch.run(ctx)
    assert ctx.errors == []
    assert {s["name"]: s["reason"] for s in ctx.skipped} == {
        "cupy_launch": "cupy not importable (ModuleNotFoundError: No module named 'cupy')",
        "cuda_graph": "needs CuPy (stream capture), see cupy_launch"}
    assert "dispatch/pycuda_launch" in [r.id for r in ctx.results]


def test_latency_cuda_baselines(on_cpu, monkeypatch):
    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", NoCupy)
    ctx = ctx_for("latency")
    latency.run(ctx)
    assert ctx.errors == []
    # the ring's round trip, the call path's (docs/call.md), then the baselines
    assert [r.name for r in ctx.results] == ["megakernel", "call_nop", "call_atomic_add",
                                             "call_user_op", "pycuda_launch_sync"]
    assert all(r.samples and r.verified for r in ctx.results)
    assert ctx.results[0].summary["n"] >= 300  # the suite's own minimum count
    assert [s["name"] for s in ctx.skipped] == ["cupy_launch_sync"]
    pairs = [(c.subject, c.baseline) for c in ctx.comparisons]
    assert pairs == [(f"latency/{s}", "latency/pycuda_launch_sync")
                     for s in ("megakernel", "call_nop", "call_atomic_add", "call_user_op")]


def test_a_broken_baseline_is_an_error_of_that_baseline_only(on_cpu, monkeypatch):
    class Broken(FakeLauncher):
        def __init__(self):
            raise RuntimeError("nvcc failed")

    monkeypatch.setattr(_gpu, "PyCudaLauncher", Broken)
    monkeypatch.setattr(_gpu, "CuPyLauncher", FakeLauncher)
    ctx = ctx_for("dispatch")
    dispatch.run(ctx)
    assert [(e["name"], "nvcc failed" in e["error"]) for e in ctx.errors] == [("pycuda_launch", True)]
    assert "dispatch/cuda_graph" in [r.id for r in ctx.results]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_baseline_kernel_compiles_to_a_device_scope_atomic(tmp_path):
    src = tmp_path / "k.cu"
    src.write_text(_gpu.KERNEL_SOURCE)
    subprocess.run(["nvcc", "-ptx", "-arch=compute_90", str(src), "-o", str(tmp_path / "k.ptx")],
                   check=True, capture_output=True, timeout=120)
    ptx = (tmp_path / "k.ptx").read_text()
    assert f".entry {_gpu.KERNEL_NAME}(" in ptx
    # same scope as the megakernel's ATOMIC_ADD: device scope (no .sys), see csrc/vyre_interp.h
    assert "atom.global.add.u32" in ptx and ".sys" not in ptx
