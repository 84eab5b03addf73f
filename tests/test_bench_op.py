"""The ``op`` suite (``vyre-bench --op``): a user op through the megakernel, and its C source
as the standalone CUDA kernel of the launch baselines (compiled with nvcc where present)."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vyre.bench import suites, userop
from vyre.bench.__main__ import run_suites
from vyre.bench.runner import Options
from vyre.bench.suites import op as op_suite

ops = pytest.importorskip("vyre.ops")

BUMP = r"""
VYRE_OP(bump) {  /* obs[a1 % 64] += a0, from lane 0 */
    if (op->lane != 0) return;
    vyre_obs_add(op, vyre_arg(op, 1) % 64u, vyre_arg(op, 0));
}
"""
BAD = r"""
VYRE_OP(bad) {  /* a store through a buffer handle nobody registered: the slot faults */
    if (op->lane == 0) vyre_store_u32(op, 7u, 0u, 1u);
}
"""


def bump_args(n):
    return np.stack([np.ones(n, np.uint32), np.arange(n, dtype=np.uint32)], axis=1)


def cpu_ops_work():
    try:
        from vyre import Megakernel

        with Megakernel(backend="cpu", slot_count=16, observable_slots=4) as mk:
            mk.register_op(ops.Op("bump", BUMP))
    except Exception:
        return False
    return True


def run_op(op, args=None):
    opts = Options(suites=["op"], backend="cpu", quick=True, min_time_s=0.0, warmup_s=0.0,
                   min_samples=3)
    return run_suites(opts, argv=["vyre-bench"], user_op=op, user_op_args=args)


def test_op_on_the_cpu_backend():
    if not cpu_ops_work():
        pytest.skip("user ops on the CPU backend need a C compiler")
    doc = run_op(ops.Op("bump", BUMP), bump_args)
    assert doc["errors"] == [], doc["errors"]
    by_id = {r["id"]: r for r in doc["results"]}
    r = by_id["op/megakernel_submit_many"]
    assert r["verified"] and r["batch"] == 1000
    assert set(by_id) - {"op/megakernel_call"} == {"op/megakernel_submit_many", "op/op_c_loop"}
    # the CPU baseline: the same C source in a plain C loop, paired, checked, compared
    base = by_id["op/op_c_loop"]
    assert base["verified"] and base["batch"] == 1000 and base["rounds"] == 2
    assert base["check"]["kind"] == "reference" and base["check"]["reference"] > 0
    pairs = {(c["subject"], c["baseline"]) for c in doc["comparisons"]}
    assert ("op/megakernel_submit_many", "op/op_c_loop") in pairs
    assert all(c["paired"] for c in doc["comparisons"])
    import hashlib

    assert doc["suites"][0]["info"]["op"] == {
        "name": "bump", "ops_per_sample": 1000, "arg_words": 2,
        "source_sha256": hashlib.sha256(BUMP.encode()).hexdigest()[:16]}
    skipped = {s["name"]: s["reason"] for s in doc["skipped"]}
    assert "needs the cuda backend" in skipped["op_kernel_launch"]
    assert "op_cuda_graph" in skipped


def test_an_op_that_faults_is_an_error_not_a_number():
    if not cpu_ops_work():
        pytest.skip("user ops on the CPU backend need a C compiler")
    doc = run_op(ops.Op("bad", BAD))
    assert doc["results"] == []
    assert any("slots of the op faulted" in e["error"] for e in doc["errors"]), doc["errors"]
    assert any(e["name"] == "op_c_loop" and "ops of the C loop faulted" in e["error"]
               for e in doc["errors"]), doc["errors"]
    assert any("did not measure it" in e["error"] for e in doc["errors"])


def test_op_suite_is_on_request_only():
    assert "op" in suites.SUITES and "op" not in suites.DEFAULT
    doc = run_suites(Options(suites=["op"], quick=True), argv=["vyre-bench"])
    assert doc["suites"][0]["status"] == "skipped"
    assert "--op MODULE:NAME" in doc["suites"][0]["reason"]


def test_args_function_is_found_beside_the_op(tmp_path, monkeypatch):
    (tmp_path / "my_bench_ops.py").write_text(textwrap.dedent(f'''
        import numpy as np
        from vyre.ops import Op
        bump = Op("bump", {BUMP!r})
        def bump_args(n):
            return np.zeros((n, 2), np.uint32)
        plain = Op("plain", {BUMP.replace("bump", "plain")!r})
        noisy = Op("noisy", {BUMP.replace("bump", "noisy")!r})
        noisy_args = 3
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    op, suite = userop.resolve("my_bench_ops:bump")
    assert suite == "op" and op.name == "bump"
    assert userop.args_function("my_bench_ops:bump")(4).shape == (4, 2)
    assert userop.args_function("my_bench_ops:plain") is None
    with pytest.raises(userop.UserOpError, match="noisy_args is not callable"):
        userop.args_function("my_bench_ops:noisy")
    sys.modules.pop("my_bench_ops", None)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_the_standalone_kernel_compiles_from_the_ops_own_source(tmp_path):
    bump = ops.Op("bump", BUMP, opcode=0x123)
    ptx = op_suite.compile_ptx(bump, "compute_90", str(tmp_path))
    text = open(ptx).read()
    assert f".entry {op_suite.KERNEL}(" in text
    src = op_suite.kernel_source(bump)
    assert BUMP.strip() in src and "vyre_op_run_lanes(&op, vyre_op_bump);" in src
    assert "op.opcode = 0x123u;" in src
    with pytest.raises(RuntimeError, match="nvcc could not compile op 'broken'"):
        op_suite.compile_ptx(ops.Op("broken", "VYRE_OP(broken) { not C }"), "compute_90",
                             str(tmp_path))
    subprocess.run(["ptxas", "-arch=sm_90", ptx, "-o", str(tmp_path / "k.cubin")], check=True,
                   capture_output=True, timeout=300)
    from vyre.bench import sample_op

    assert ".entry" in open(op_suite.compile_ptx(sample_op.bump, "compute_90",
                                                 str(tmp_path))).read()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_the_standalone_kernel_uses_the_nvcc_the_fused_build_finds(tmp_path, monkeypatch):
    # nvcc off PATH but named by VYRE_NVCC, as the fused megakernel build accepts it
    real = os.path.realpath(shutil.which("nvcc"))
    monkeypatch.setenv("VYRE_NVCC", real)
    # the host compiler stays reachable (nvcc runs it); nvcc itself does not
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(d, "nvcc")))
    monkeypatch.setenv("PATH", path)
    assert shutil.which("nvcc") is None
    from vyre.bench import sample_op

    ptx = op_suite.compile_ptx(sample_op.bump, "compute_90", str(tmp_path))
    assert f".entry {op_suite.KERNEL}(" in open(ptx).read()


def test_the_c_loop_runs_the_ops_own_source_on_every_row(tmp_path):
    import ctypes

    if shutil.which(os.environ.get("CC", "cc").split()[0]) is None:
        pytest.skip("no C compiler")
    from vyre.protocol import OBSERVABLE_BASE

    src = op_suite.c_loop_source(ops.Op("bump", BUMP, opcode=0x123))
    assert BUMP.strip() in src and "op.opcode = 0x123u;" in src
    fn = getattr(ctypes.CDLL(op_suite.compile_c_loop(ops.Op("bump", BUMP), str(tmp_path))),
                 op_suite.C_LOOP)
    ptr = ctypes.POINTER(ctypes.c_uint32)
    fn.argtypes = [ptr, ctypes.c_uint32, ctypes.c_uint32, ptr, ctypes.c_uint32, ctypes.c_uint32]
    fn.restype = ctypes.c_uint32
    control = np.zeros(OBSERVABLE_BASE + 64, np.uint32)
    rows = np.ascontiguousarray(bump_args(200).reshape(-1))  # (a0, a1) = (1, i)
    assert fn(control.ctypes.data_as(ptr), control.size, 64, rows.ctypes.data_as(ptr), 2,
              200) == 0
    # bump: obs[a1 % 64] += a0 from lane 0 only, once per op though 32 lanes ran
    want = np.bincount(np.arange(200) % 64, minlength=64).astype(np.uint32)
    assert np.array_equal(control[OBSERVABLE_BASE:], want)
    assert not control[:OBSERVABLE_BASE].any()
    # an observable past the bound faults the op (and only counts it)
    assert fn(control.ctypes.data_as(ptr), OBSERVABLE_BASE + 8, 8, rows.ctypes.data_as(ptr), 2,
              64) == 56
    with pytest.raises(RuntimeError, match="could not build op 'broken'"):
        op_suite.compile_c_loop(ops.Op("broken", "VYRE_OP(broken) { not C }"), str(tmp_path))


def test_latency_measures_the_call_path_where_the_build_has_one(monkeypatch):
    """With a stand-in Megakernel.call (submit + wait + result), the latency suite adds the
    call methods to its paired rounds and compares each with the baseline."""
    if not cpu_ops_work():
        pytest.skip("user ops on the CPU backend need a C compiler")
    from vyre.bench.runner import Context
    from vyre.bench.suites import latency
    from vyre.megakernel import Megakernel

    def call(self, opcode, args=()):
        t = self.submit(opcode, args)
        self.wait(t)
        return self.result(t)

    monkeypatch.setattr(Megakernel, "call", call, raising=False)
    ctx = Context(Options(backend="cpu", quick=True, min_time_s=0.0, warmup_s=0.0,
                          min_samples=3))
    ctx.suite = "latency"
    latency.run(ctx)
    assert ctx.errors == [], ctx.errors
    names = [r.name for r in ctx.results]
    assert names == ["megakernel", "call_nop", "call_atomic_add", "call_user_op",
                     "threadpool_roundtrip"]
    assert all(r.verified for r in ctx.results if r.name != "call_nop")
    assert {c.subject for c in ctx.comparisons} == {f"latency/{n}" for n in names[:4]}


def test_latency_without_a_call_path_says_so():
    from vyre.bench.runner import Context
    from vyre.bench.suites import latency
    from vyre.megakernel import Megakernel

    if hasattr(Megakernel, "call"):
        pytest.skip("this build has the call path")
    ctx = Context(Options(backend="cpu", quick=True, min_time_s=0.0, warmup_s=0.0,
                          min_samples=3))
    ctx.suite = "latency"
    latency.run(ctx)
    assert {"suite": "latency", "name": "call_*",
            "reason": "this build has no call path (Megakernel.call)"} in ctx.skipped


def test_the_bundled_sample_op_from_the_command_line(tmp_path):
    if not cpu_ops_work():
        pytest.skip("user ops on the CPU backend need a C compiler")
    import json

    out = tmp_path / "op.json"
    p = subprocess.run([sys.executable, "-m", "vyre.bench", "--op",
                        "vyre.bench.sample_op:bump", "--quick", "--backend", "cpu",
                        "--no-progress", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    assert [s["name"] for s in doc["suites"]] == ["op"] and doc["errors"] == []
    assert doc["options"]["op"] == "vyre.bench.sample_op:bump"
    assert doc["suites"][0]["info"]["op"]["arg_words"] == 2
