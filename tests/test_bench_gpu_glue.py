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

from vyre.bench.checks import Check
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
    monkeypatch.setattr(_common, "megakernel", lambda fx, backend, **kw: real(fx, "cpu", **kw))
    # the standalone references need a GPU; here a reference is 1 us with a tolerance no
    # fake can miss (the check passes) unless a test sets REFERENCE[name] = (value, tol)
    checks = []

    def fake_check(name, what, **args):
        value, tol = REFERENCE.get(name, (1000.0, 1e12))
        checks.append(name)
        return Check(what=f"fake reference of {name}", reference=lambda: value, tolerance=tol,
                     key=name)

    REFERENCE.clear()
    monkeypatch.setattr(_gpu, "standalone_check", fake_check)
    FakeLauncher.instances.clear()
    return checks


#: (reference value, tolerance) of the fake standalone checks, by baseline name
REFERENCE = {}


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
    why = "cupy not importable (ModuleNotFoundError: No module named 'cupy')"
    assert {s["name"]: s["reason"] for s in ctx.skipped} == {
        "cupy_launch": why, "cuda_graph": f"needs cupy_launch: {why}",
        "cuda_graph_device": f"needs cupy_launch: {why}"}
    assert "dispatch/pycuda_launch" in [r.id for r in ctx.results]


def test_latency_cuda_baselines(on_cpu, monkeypatch):
    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", NoCupy)
    ctx = ctx_for("latency")
    latency.run(ctx)
    assert ctx.errors == []
    # the ring's round trip, the call path's where the build has one (docs/call.md), then
    # the baselines
    from vyre.megakernel import Megakernel

    subjects = ["megakernel"]
    if hasattr(Megakernel, "call"):
        subjects += ["call_nop", "call_atomic_add", "call_user_op"]
    assert [r.name for r in ctx.results] == [*subjects, "pycuda_launch_sync"]
    assert all(r.samples and r.verified for r in ctx.results)
    assert ctx.results[0].summary["n"] >= 300  # the suite's own minimum count
    assert [s["name"] for s in ctx.skipped if s["name"] != "call_*"] == ["cupy_launch_sync"]
    pairs = [(c.subject, c.baseline) for c in ctx.comparisons]
    assert pairs == [(f"latency/{s}", "latency/pycuda_launch_sync") for s in subjects]


def test_a_broken_baseline_is_an_error_of_that_baseline_only(on_cpu, monkeypatch):
    class Broken(FakeLauncher):
        def __init__(self):
            raise RuntimeError("nvcc failed")

    monkeypatch.setattr(_gpu, "PyCudaLauncher", Broken)
    monkeypatch.setattr(_gpu, "CuPyLauncher", FakeLauncher)
    ctx = ctx_for("dispatch")
    dispatch.run(ctx)
    got = [(e["name"], "nvcc failed" in e["error"]) for e in ctx.errors]
    assert got == [("pycuda_launch", True)]
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


def test_every_host_timed_gpu_baseline_is_cross_checked(on_cpu, monkeypatch):
    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", FakeLauncher)
    ctx = ctx_for("dispatch")
    dispatch.run(ctx)
    checked = {r.name: r.check["status"] for r in ctx.results if r.check}
    assert checked == {"pycuda_launch": "ok", "cupy_launch": "ok", "cuda_graph": "ok"}
    # paired: every method ran in the same number of alternating rounds
    assert {r.rounds for r in ctx.results} == {2}
    assert all(c.paired and c.ci_low <= c.ratio <= c.ci_high for c in ctx.comparisons)


def test_a_suspect_baseline_is_excluded_from_ratios_with_the_reason(on_cpu, monkeypatch):
    """A fake CuPy baseline that measures 100x slower than its standalone reference (what
    the 1 ms launch + sync looked like) is flagged and not compared."""
    class SlowLauncher(FakeLauncher):
        def sync(self):
            time.sleep(0.002)  # a 2 ms "synchronize"

    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", SlowLauncher)
    REFERENCE["cupy_launch_sync"] = (20_000.0, 2.0)  # the standalone call: 20 us
    ctx = ctx_for("latency")
    latency.run(ctx)
    by = {r.name: r for r in ctx.results}
    check = by["cupy_launch_sync"].check
    assert check["status"] == "suspect" and check["factor"] > 50
    assert "slower than its reference (fake reference of cupy_launch_sync)" in check["reason"]
    assert by["pycuda_launch_sync"].check["status"] == "ok"
    comps = {c.baseline: c for c in ctx.comparisons}
    bad = comps["latency/cupy_launch_sync"]
    assert bad.ratio is None and bad.ci_low is None
    assert bad.excluded.startswith("cupy_launch_sync failed its cross-check: measured")
    assert "not compared" in bad.text
    assert comps["latency/pycuda_launch_sync"].ratio is not None


def test_a_reference_that_cannot_run_leaves_the_baseline_unchecked(on_cpu, monkeypatch):
    def broken(name, what, **args):
        def ref():
            raise RuntimeError("no GPU in the reference process")
        return Check(what=what, reference=ref)

    monkeypatch.setattr(_gpu, "standalone_check", broken)
    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", NoCupy)
    ctx = ctx_for("latency")
    latency.run(ctx)
    (check,) = [r.check for r in ctx.results if r.check is not None]
    assert check["status"] == "unchecked" and "no GPU in the reference process" in check["reason"]
    assert ctx.comparisons[0].ratio is not None  # unchecked is said, not excluded


class CountingNumpy:
    """numpy, counting the numpy scalars built through it."""

    def __init__(self):
        self.scalars = 0

    def uint32(self, v):
        self.scalars += 1
        return np.uint32(v)

    def __getattr__(self, name):
        return getattr(np, name)


def test_cupy_launch_builds_no_arguments_per_call(monkeypatch):
    """The CuPy baseline read 1 ms per launch + sync on the H200 (11 us standalone): each
    launch_n rebuilt 1024 argument tuples of numpy scalars inside the timed region."""
    counting = CountingNumpy()
    monkeypatch.setattr(_gpu, "np", counting)
    lau = object.__new__(_gpu.CuPyLauncher)
    calls = []
    lau.kernel = lambda g, b, args: calls.append(args)
    lau.grid, lau.block, lau.dptr, lau.expected = (1,), (1,), np.uint64(0), 0
    lau.stream = __import__("contextlib").nullcontext()
    lau._args = {}
    lau.launch_n(1)  # the first call may build what later calls reuse
    built = counting.scalars
    for _ in range(3):
        lau.launch_n(1)
    assert counting.scalars == built  # no scalar built per launch
    assert [c[2] for c in calls] == [0, 0, 0, 0] and lau.expected == 4
    lau.launch_n(2, a0=5)  # another a0: built once, then cached
    assert calls[-1][1] == 5 and calls[-1][2] == 1


def test_the_summary_names_an_excluded_baseline_and_why(on_cpu, monkeypatch):
    from vyre.bench.report import build_document, format_summary

    class SlowLauncher(FakeLauncher):
        def sync(self):
            time.sleep(0.002)

    monkeypatch.setattr(_gpu, "PyCudaLauncher", FakeLauncher)
    monkeypatch.setattr(_gpu, "CuPyLauncher", SlowLauncher)
    REFERENCE["cupy_launch_sync"] = (20_000.0, 2.0)
    ctx = ctx_for("latency")
    latency.run(ctx)
    doc = build_document(environment={}, options={}, suites=[],
                         results=[r.as_dict() for r in ctx.results],
                         comparisons=[c.as_dict() for c in ctx.comparisons], skipped=[],
                         errors=[])
    text = format_summary(doc, {f"latency/{k}": v for k, v in latency.PHRASES.items()})
    assert "\n    not compared with one CuPy kernel launch + synchronize (" in text
    assert "cupy_launch_sync failed its cross-check: measured" in text
    assert "than one PyCUDA kernel launch + synchronize (" in text
    assert "1 of 2 agree within 2x (the others are named above, or unchecked)" in text
