"""The GPU suites' real launchers and standalone references, on stand-in CUDA libraries.

CI has no GPU, and a Python slip in code that only runs on the GPU machine costs a device
run. Here small stand-ins for ``pycuda`` and ``cupy`` (written to a temporary directory and
put first on ``sys.path`` and ``PYTHONPATH``, so the standalone reference processes load them
too) execute "kernels" on the host: a launch of the baseline kernel adds ``a0`` to word
``idx`` of the mapped counter, graphs replay recorded launches. The real
``PyCudaLauncher``/``CuPyLauncher``, the latency and dispatch suites and
``vyre.bench.suites._reference`` then run end to end, checks included.
"""
import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

MEM = '''
import numpy as np

#: "device" address -> the numpy array that backs it (device pointer == host address)
REGISTRY = {}


def register(arr):
    REGISTRY[int(arr.ctypes.data)] = arr
    return int(arr.ctypes.data)


def atomic_add(ptr, a0, idx):
    REGISTRY[int(ptr)].view(np.uint32)[int(idx)] += np.uint32(int(a0))


#: launches of the --op suite's standalone kernel: (i, its argument row)
OP_LAUNCHES = []


def _words(ptr):
    """The u32 words from ``ptr`` to the end of its allocation (a pointer into one too)."""
    if isinstance(ptr, np.ndarray):
        return ptr.view(np.uint32)
    p = int(ptr)
    for base, arr in REGISTRY.items():
        if base <= p < base + arr.nbytes:
            return arr.view(np.uint8)[p - base:].view(np.uint32)
    raise AssertionError(f"address {p:#x} is in no allocation")


def op_kernel(control, control_words, observable_slots, args, nargs, i, faults):
    """vyre_bench_op running the sample op `bump` (obs[a1 % 64] += a0 from lane 0), with the
    bounds its accessors check: a word past control_words would fault."""
    from vyre.protocol import OBSERVABLE_BASE
    ctl, nargs, i = _words(control), int(nargs), int(i)
    row = [int(v) for v in _words(args)[i * nargs:(i + 1) * nargs]]
    OP_LAUNCHES.append((i, row))
    word = OBSERVABLE_BASE + row[1] % 64
    if word >= int(control_words) or row[1] % 64 >= int(observable_slots):
        _words(faults)[0] += 1
        return
    assert ctl.size >= int(control_words), "control words beyond the allocation"
    ctl[word] += row[0]


def _slot(cap, key):
    return ((int(key) * 2654435761) & 0xFFFFFFFF) & (int(cap) - 1)


def ht_insert(tab, cap, key, val):
    """The userops suite's CUDA probe (CUPY_SOURCE), one thread, on the host."""
    i, key = _slot(cap, key), int(key)
    for _ in range(int(cap)):
        seen = int(tab[2 * i])
        if seen == 0:
            tab[2 * i] = key
        if seen in (0, key):
            tab[2 * i + 1] = int(val)
            return
        i = (i + 1) & (int(cap) - 1)


def ht_lookup(tab, cap, key, val):
    i, key = _slot(cap, key), int(key)
    for _ in range(int(cap)):
        k = int(tab[2 * i])
        if k == 0:
            return False
        if k == key:
            return int(tab[2 * i + 1]) == int(val)
        i = (i + 1) & (int(cap) - 1)
    return False


def launch(name, args):
    if name == "vyre_bench_op":
        return op_kernel(*args)
    if name == "ht_insert1":
        return ht_insert(*args)
    if name == "ht_lookup1":
        tab, cap, key, val, found = args
        found[0] += ht_lookup(tab, cap, key, val)
        return None
    if name == "ht_insert_n":
        tab, cap, keys, vals, n = args
        for t in range(int(n)):
            ht_insert(tab, cap, keys[t], vals[t])
        return None
    if name == "ht_lookup_n":
        tab, cap, keys, vals, n, found = args
        found[0] += sum(ht_lookup(tab, cap, keys[t], vals[t]) for t in range(int(n)))
        return None
    assert name == "vyre_bench_atomic_add", name
    return atomic_add(*args)
'''

PYCUDA_INIT = ""
PYCUDA_DRIVER = '''
import types
import numpy as np
import _fakegpu_mem as mem

host_alloc_flags = types.SimpleNamespace(DEVICEMAP=2)


def init():
    pass


def get_version():
    return (13, 0, 0)


def get_driver_version():
    return 13000


class _Ctx:
    def push(self):
        pass

    def pop(self):
        pass


class Device:
    def __init__(self, i):
        self.i = i

    def retain_primary_context(self):
        return _Ctx()

    def name(self):
        return "Fake GPU"

    def compute_capability(self):
        return (9, 0)

    @staticmethod
    def count():
        return 1


class _HostAlloc:
    def __init__(self, arr):
        self.arr, self.freed = arr, False

    def get_device_pointer(self):
        return mem.register(self.arr)

    def free(self):
        assert not self.freed, "freed twice"
        self.freed = True


class HostArray(np.ndarray):
    @property
    def base(self):
        return getattr(self, "_alloc", None)


def _host(n, dtype):
    raw = np.zeros(n, dtype)
    arr = raw.view(HostArray)
    arr._alloc = _HostAlloc(raw)
    return arr


def pagelocked_zeros(n, dtype, mem_flags=0):
    return _host(n, dtype)


def pagelocked_empty(n, dtype, mem_flags=0):
    return _host(n, dtype)


class Stream:
    def synchronize(self):
        pass


class Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass

    def time_since(self, other):
        return 0.001


class _Dev:
    def __init__(self, n):
        self.arr = np.zeros(n, np.uint8)
        self.ptr = mem.register(self.arr)

    def __int__(self):
        return self.ptr

    def free(self):
        pass


def mem_alloc(n):
    return _Dev(n)


def memcpy_htod_async(dev, src, stream=None):
    b = np.asarray(src).view(np.uint8).ravel()
    dev.arr[:b.size] = b


def memset_d8(dev, value, n):
    dev.arr[:n] = value


def memcpy_dtoh(dst, dev):
    b = dst.view(np.uint8).ravel()
    b[:] = dev.arr[:b.size]


def to_device(arr):
    b = np.ascontiguousarray(arr).view(np.uint8).ravel()
    d = _Dev(b.size)
    d.arr[:] = b
    return d


def module_from_file(path):
    from pycuda.compiler import SourceModule
    with open(path, encoding="utf-8") as f:
        return SourceModule(f.read(), no_extern_c=True)
'''

PYCUDA_COMPILER = '''
import _fakegpu_mem as mem


class _Fn:
    def __init__(self, name):
        self.name = name

    def prepare(self, fmt):
        self.fmt = fmt

    def prepared_async_call(self, grid, block, stream, *args):
        # PyCUDA packs the arguments by the prepared format: one letter per argument
        assert len(args) == len(self.fmt), (self.fmt, args)
        for letter, a in zip(self.fmt, args):
            assert letter != "I" or 0 <= int(a) < 2**32, (letter, a)
        if self.name == "vyre_bench_scan":
            return self._scan(*args)
        mem.launch(self.name, args)

    def _scan(self, tab, n, data, length, start, back, acc):
        # the matches ending in data[start:length]: the ingest suite's two patterns, neither
        # of which can overlap itself, counted on the prefixes
        from vyre.bench.suites.ingest import PATTERNS
        buf = mem.REGISTRY[int(data)].tobytes()
        got = sum(buf[:length].count(p) - buf[:start].count(p) for p in PATTERNS)
        mem.REGISTRY[int(acc)].view("u8")[0] += got


class SourceModule:
    def __init__(self, source, no_extern_c=False):
        self.source = source

    def get_function(self, name):
        assert name in self.source
        return _Fn(name)
'''

CUPY = '''
import types
import numpy as np
import _fakegpu_mem as mem

_current = []


class _Stream:
    def __init__(self, non_blocking=False):
        self.recording = None

    def __enter__(self):
        _current.append(self)
        return self

    def __exit__(self, *exc):
        _current.pop()

    def use(self):
        _current.append(self)
        return self

    def synchronize(self):
        pass

    def begin_capture(self):
        self.recording = []

    def end_capture(self):
        rec, self.recording = self.recording, None
        return _Graph(rec)


class _Graph:
    def __init__(self, launches):
        self.launches = launches

    def launch(self, stream=None):
        for name, args in self.launches:
            mem.launch(name, args)


class RawKernel:
    def __init__(self, source, name):
        assert name in source
        self.name = name

    def __call__(self, grid, block, args):
        s = _current[-1] if _current else None
        if s is not None and s.recording is not None:
            s.recording.append((self.name, args))
        else:
            mem.launch(self.name, args)


class RawModule:
    def __init__(self, code=None, path=None):
        if path is not None:
            with open(path, encoding="utf-8") as f:
                code = f.read()
        self.code = code

    def get_function(self, name):
        return RawKernel(self.code, name)


class _DevArray(np.ndarray):
    def get(self):
        return np.array(self)


uint32 = np.uint32


def asarray(a):
    return np.array(a, copy=True).view(_DevArray)


def zeros(n, dtype=np.float64):
    return np.zeros(n, dtype).view(_DevArray)


class _Pinned:
    def __init__(self, nbytes, flags=0):
        self.arr = np.zeros(nbytes, np.uint8)
        self.ptr = mem.register(self.arr)


class _Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


runtime = types.SimpleNamespace(
    hostAllocMapped=2, runtimeGetVersion=lambda: 13000, deviceSynchronize=lambda: None,
    pointerGetAttributes=lambda ptr: types.SimpleNamespace(devicePointer=ptr))
cuda = types.SimpleNamespace(Stream=_Stream, PinnedMemory=_Pinned, runtime=runtime,
                             Event=_Event, get_elapsed_time=lambda a, b: 0.001)
'''

FILES = {"_fakegpu_mem.py": MEM, "pycuda/__init__.py": PYCUDA_INIT,
         "pycuda/driver.py": PYCUDA_DRIVER, "pycuda/compiler.py": PYCUDA_COMPILER,
         "cupy.py": CUPY}


@pytest.fixture
def fake_gpu_libs(tmp_path, monkeypatch):
    root = tmp_path / "fakegpu"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    for name in ("pycuda", "pycuda.driver", "pycuda.compiler", "cupy", "_fakegpu_mem"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    yield root
    for name in ("pycuda", "pycuda.driver", "pycuda.compiler", "cupy", "_fakegpu_mem"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("name, args, unit", [
    ("pycuda_launch_sync", {}, "ns"), ("cupy_launch_sync", {}, "ns"),
    ("pycuda_launch", {"ops": 64}, "ns/op"), ("cupy_launch", {"ops": 64}, "ns/op"),
    ("cuda_graph", {"ops": 64}, "ns/op"),
    ("pinned_h2d", {"chunk": 4096, "chunks": 4}, "B/s")])
def test_standalone_references_run_in_a_fresh_process(fake_gpu_libs, name, args, unit):
    p = subprocess.run([sys.executable, "-m", "vyre.bench.suites._reference", name,
                        json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["name"] == name and got["value"] > 0


def test_gpu_suites_end_to_end_with_their_real_launchers(fake_gpu_libs, monkeypatch):
    from vyre.bench.runner import Context, Options
    from vyre.bench.suites import _common, dispatch, latency

    try:
        fx = _common.facade()
        _common.megakernel(fx, "cpu", slot_count=16, observable_slots=4).shutdown()
    except Exception as exc:
        pytest.skip(f"CPU backend not usable here: {exc}")
    real = _common.megakernel
    for mod in (dispatch, latency):
        monkeypatch.setattr(mod, "resolve_backend", lambda ctx, allowed=None: "cuda")
    monkeypatch.setattr(_common, "megakernel", lambda fx, backend, **kw: real(fx, "cpu", **kw))
    for suite in (latency, dispatch):
        ctx = Context(Options(quick=True, min_time_s=0.0, warmup_s=0.0, min_samples=3))
        ctx.suite = suite.NAME
        suite.run(ctx)
        skipped = [s for s in ctx.skipped if s["name"] != "call_*"]  # no call path here
        assert ctx.errors == [] and skipped == [], (ctx.errors, skipped)
        assert all(r.verified for r in ctx.results)
        checks = {r.name: r.check for r in ctx.results if r.check}
        # each reference ran (in a fresh process); the fakes' timings are not the GPU's, so
        # only that each produced a value is asserted here
        assert checks and all(c["status"] in ("ok", "suspect") and c["reference"] > 0
                              for c in checks.values()), checks
    assert set(checks) == {"pycuda_launch", "cupy_launch", "cuda_graph"}


def test_ingest_gpu_baselines_with_their_real_code(fake_gpu_libs, monkeypatch):
    from vyre.bench.runner import Context, Options
    from vyre.bench.suites import _common, ingest

    try:
        importlib.import_module("vyre.ingest.stream")
        fx = _common.facade()
        _common.megakernel(fx, "cpu", slot_count=16, observable_slots=4).shutdown()
    except Exception as exc:
        pytest.skip(f"CPU backend or ingest not usable here: {exc}")
    real = _common.megakernel
    monkeypatch.setattr(ingest, "resolve_backend", lambda ctx, allowed=None: "cuda")
    shares = []  # what the suite asked the CUDA megakernel for; the CPU one takes neither
    yields = []
    exits = []

    def on_cpu(fx, backend, **kw):
        shares.append(kw.pop("sm_share", None))
        yields.append(kw.pop("yield_ms", None))
        exits.append(kw.pop("idle_exit_ms", None))
        return real(fx, "cpu", **kw)

    monkeypatch.setattr(ingest, "megakernel", on_cpu)
    device = []  # the device-array benchmark needs real CuPy arrays: only its call is seen
    monkeypatch.setattr(ingest, "_device_array", lambda ctx, *a: device.append(a[1]))
    ctx = Context(Options(quick=True, min_time_s=0.0, warmup_s=0.0, min_samples=2))
    ctx.suite = "ingest"
    ingest.run(ctx)
    assert ctx.errors == [], ctx.errors
    assert device == ["cuda"]
    assert shares and set(shares) == {1.0}  # ingest scans with the whole GPU
    assert set(yields) == {0}  # and never leaves it while busy
    assert set(exits) == {0}  # nor when idle
    by = {r.name: r for r in ctx.results}
    scanners = {n for n, why in ingest.scanners.available().items() if why is None}
    assert set(by) == {"gpustream_scan", "gpustream_scan_per_pattern", "read_only",
                       "python_count", "pinned_h2d", "python_gpu_loop"} | scanners
    assert by["python_gpu_loop"].verified  # the launch loop's count matched the reference
    assert by["pinned_h2d"].check["reference"] > 0
    assert by["python_gpu_loop"].check["reference"] > 0  # its fresh-process reference ran


def test_op_suite_launch_baselines_with_their_real_code(fake_gpu_libs, monkeypatch, tmp_path):
    """The --op suite's CUDA-only methods (the op's source as a standalone kernel, launched per
    op by PyCUDA and replayed as a CuPy graph) run their real code on the stand-ins: argument
    packing, the mapped control words, the fault counter, the floor cross-checks."""
    import shutil

    from vyre.bench.runner import Context, Options
    from vyre.bench.sample_op import bump, bump_args
    from vyre.bench.suites import _common, op

    try:
        fx = _common.facade()
        _common.megakernel(fx, "cpu", slot_count=16, observable_slots=4).shutdown()
    except Exception as exc:
        pytest.skip(f"CPU backend not usable here: {exc}")
    real = _common.megakernel
    monkeypatch.setattr(op, "resolve_backend", lambda ctx, allowed=None: "cuda")
    monkeypatch.setattr(_common, "megakernel", lambda fx, backend, **kw: real(fx, "cpu", **kw))
    if shutil.which("nvcc") is None:  # the stand-ins read the kernel's name from the PTX
        def fake_ptx(o, arch, out_dir):
            path = os.path.join(out_dir, "op.ptx")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f".visible .entry {op.KERNEL}(\n")
            return path
        monkeypatch.setattr(op, "compile_ptx", fake_ptx)
    import _fakegpu_mem as mem

    ctx = Context(Options(quick=True, min_time_s=0.0, warmup_s=0.0, min_samples=2))
    ctx.suite = "op"
    ctx.cache["user_op"], ctx.cache["user_op_args"] = bump, bump_args
    op.run(ctx)
    assert ctx.errors == [] and ctx.skipped == [], (ctx.errors, ctx.skipped)
    by = {r.name: r for r in ctx.results}
    assert set(by) == {"megakernel_submit_many", "megakernel_call", "op_kernel_launch",
                       "op_kernel_launch_sync", "op_cuda_graph"}
    assert all(r.verified for r in by.values())
    for name in ("op_kernel_launch", "op_kernel_launch_sync", "op_cuda_graph"):
        check = by[name].check
        assert check["kind"] == "floor" and check["reference"] > 0, check
    # every launch read its own argument row: bump_args(n)[i] == (1, i)
    n = by["op_kernel_launch"].batch
    assert n == 1000 and mem.OP_LAUNCHES
    assert all(row == [1, i] and 0 <= i < n for i, row in mem.OP_LAUNCHES)
    # the round-trip baseline makes as many ops per sample as the calls do
    assert by["op_kernel_launch_sync"].batch == by["megakernel_call"].batch == 1000
    pairs = {(c.subject, c.baseline) for c in ctx.comparisons}
    assert pairs == {("op/megakernel_submit_many", "op/op_kernel_launch"),
                     ("op/megakernel_submit_many", "op/op_cuda_graph"),
                     ("op/megakernel_call", "op/op_kernel_launch_sync")}


def test_userops_suite_paired_and_cross_checked_with_its_real_code(fake_gpu_libs, monkeypatch):
    """The userops suite's rounds (megakernel sessions with the ops registered, CuPy tables)
    and its cross-checks run their real code: the megakernel on the CPU backend, the CuPy
    kernels on the stand-ins (the suite's probe code, run on the host)."""
    from vyre.bench.runner import Context, Options
    from vyre.bench.suites import _common, userops

    try:
        fx = _common.facade()
        with _common.megakernel(fx, "cpu", slot_count=16, observable_slots=4) as mk:
            userops.register_all(mk)
    except Exception as exc:
        pytest.skip(f"CPU backend with user ops not usable here: {exc}")
    real = _common.megakernel

    def on_cpu(fx, backend, **kw):
        return real(fx, "cpu", **kw)

    monkeypatch.setattr(userops, "resolve_backend", lambda ctx, allowed=None: "cuda")
    monkeypatch.setattr(userops, "megakernel", on_cpu)
    monkeypatch.setattr(_common, "megakernel", on_cpu)
    monkeypatch.setattr(userops, "_start", lambda ctx: None)  # child processes on CUDA
    ctx = Context(Options(quick=True, min_time_s=0.0, warmup_s=0.0, min_samples=2))
    ctx.suite = "userops"
    userops.run(ctx)
    assert ctx.errors == [] and ctx.skipped == [], (ctx.errors, ctx.skipped)
    by = {r.name: r for r in ctx.results}
    assert set(by) == {"builtin_atomic_add", "user_add", "hashtable_megakernel",
                       "hashtable_cupy_per_op", "hashtable_cupy_batched"}
    assert all(r.verified and r.rounds == 2 for r in by.values())  # paired (quick: 2 rounds)
    per_op, batched = by["hashtable_cupy_per_op"].check, by["hashtable_cupy_batched"].check
    assert per_op["kind"] == "floor" and per_op["reference"] > 0, per_op
    assert batched["kind"] == "reference" and batched["reference"] > 0, batched
    assert by["builtin_atomic_add"].check is None  # vyre's own path, not an outside baseline
    pairs = {(c.subject, c.baseline) for c in ctx.comparisons}
    assert pairs == {("userops/user_add", "userops/builtin_atomic_add"),
                     ("userops/hashtable_megakernel", "userops/hashtable_cupy_per_op"),
                     ("userops/hashtable_megakernel", "userops/hashtable_cupy_batched")}
    assert all(c.paired for c in ctx.comparisons)
    user = next(c for c in ctx.comparisons if c.subject == "userops/user_add")
    assert user.target["ratio"] == pytest.approx(1 / 1.2)  # at most 20 % above the built-in
    assert "target 0.833x: " in user.text
