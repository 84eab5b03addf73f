"""Streaming ingest: ``GpuStream.scan`` (io_uring -> GPU-visible staging -> DFA_SCAN slots).

Input files of pseudo-random bytes with two literal patterns planted at random offsets
(8 files of 256 MiB = 2 GiB, or ``$VYRE_BENCH_INGEST_MIB`` MiB over the 8; one of 16 MiB in
``--quick``; ``$VYRE_BENCH_INGEST_METHODS``, comma-separated, measures only the methods named)
are written once, outside timing, in a temporary directory
(``$VYRE_BENCH_TMP`` or the system default). Every sample scans the whole file to
completion; the rate is file bytes / host time (``B/s``). The file is read from the page
cache after the warm-up (dropping caches needs root), so this is the ingest pipeline's cost,
not the disk's.

Methods, same file, same run:
* ``gpustream_scan``: ``GpuStream(mk, chunk_bytes=4 MiB, depth=20).scan(path, dfa)`` on the
  selected backend (its defaults otherwise: parallel reads, and on CUDA a device copy of each
  chunk); verified against the reference match count. Its geometry is its own best measured
  one (bench/RESULTS.md); the baselines keep 1 MiB chunks, their natural size;
* ``read_only``: a plain ``readinto`` loop over the file in 1 MiB chunks: the one-thread I/O
  ceiling of any reader (the ratio says how close the scan gets to it);
* ``python_count``: ``f.read()`` then ``bytes.count`` per pattern -- what Python code would
  write (exact here because neither pattern can overlap itself or end inside the other).
* CPU scanners counting every occurrence per pattern (vyre.bench.scanners), where
  installed: ``hyperscan`` (one block-mode database, a thread per host core over mmapped
  pieces), ``pyahocorasick`` (one thread), ``ripgrep`` (``rg -F --count-matches`` per
  pattern, its own threads; non-overlapping, so compared only on patterns that cannot
  overlap themselves). Each is verified against the per-pattern reference: a count that
  differs fails the method loudly (an error, never a number);
* ``gpustream_scan_per_pattern``: the same stream's ``scan(paths, dfa, per_pattern=True)``
  (DFA_MATCH: positions and a count per pattern in one pass), verified per pattern and in
  positions; its ratios to the CPU scanners are the ones issue-level targets quote;
* CUDA only, run after the megakernel stopped (module loads wait for an idle device):
  ``pinned_h2d``: ``memcpy_htod`` of the file's bytes in 1 MiB chunks from one pinned buffer
  (the host-to-device copy ceiling); ``python_gpu_loop``: ``readinto`` a pinned buffer +
  ``memcpy_htod`` + one scan-kernel launch per chunk (32 threads splitting the chunk exactly
  as the megakernel's warp does, the table in device memory), verified.

CUDA with CuPy, measured apart after the paired rounds: ``device_array_scan``, the scan of
a CuPy array already on the GPU (``$VYRE_BENCH_DEVICE_MIB`` MiB, default 4096; 64 with
``--quick``) in place, verified against a count of the same bytes on the host.

All methods are measured paired (``ctx.paired``, 3 rounds: a sample is a whole pass over the
input), the scan in a fresh megakernel + GpuStream per round. Cross-checks: ``read_only`` and
``python_count`` against the same calls on the first file timed by a bare loop;
``pinned_h2d`` against the same copies in a fresh process; ``python_gpu_loop`` against the
same loop over the first file in a fresh process (``_reference``).
"""
from __future__ import annotations

import inspect
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vyre.bench import scanners
from vyre.bench.checks import Check, loop_reference, standalone_reference
from vyre.bench.runner import Method
from vyre.bench.suites._common import facade, megakernel, need, resolve_backend

NAME = "ingest"
DESCRIPTION = "io_uring streaming ingest: GpuStream.scan vs a plain read loop and bytes.count"

PATTERNS = (b"vyre", b"needle")
CHUNK = 1 << 20
STREAM_CHUNK = 4 << 20
# bench/results/h100_s5_ingest_ab_depth.txt: depth 12 / 16 / 20 -> 36.6 / 35.7 / 40.3 GB/s
STREAM_DEPTH = 20
FILES = 8  # of 256 MiB each (one of 16 MiB in --quick)
#: rounds of the paired measurement (each sample is a pass over up to 2 GiB)
ROUNDS = 3

#: each method in words, for reports that speak to people
PHRASES = {
    "gpustream_scan": "GpuStream.scan of the files (read, stage, DFA scan)",
    "read_only": "a plain readinto loop over the files (the one-thread I/O ceiling)",
    "python_count": "f.read() + bytes.count per pattern",
    "pinned_h2d": "pinned host-to-device copies of the same bytes (the copy ceiling)",
    "python_gpu_loop": "readinto + memcpy_htod + one scan-kernel launch per chunk",
    "gpustream_scan_per_pattern": "GpuStream.scan with a count per pattern (one DFA_MATCH pass)",
    "hyperscan": "Hyperscan, one database, a thread per host core",
    "pyahocorasick": "pyahocorasick, every overlapping match, one thread",
    "ripgrep": "rg -F --count-matches per pattern",
    "device_array_scan": "GpuStream.scan of a CuPy array in place on the GPU",
}
#: the CPU scanners of the suite, in the order they are measured
BASELINE_SCANNERS = ("hyperscan", "pyahocorasick", "ripgrep")

SCAN_KERNEL = r"""
extern "C" __global__ void vyre_bench_scan(const unsigned int *tab, unsigned long long n,
                                           const unsigned char *data, unsigned int len,
                                           unsigned int start, unsigned int back,
                                           unsigned long long *accepts)
{
    /* data[start, len) counted in 32 parts; each part first re-reads up to `back` bytes
       (the DFA's context) from state 0, which is exact (docs/ingest.md) */
    const unsigned parts = blockDim.x, k = threadIdx.x;
    const unsigned long long L = len - start;
    unsigned long long from = start + L * k / parts, to = start + L * (k + 1) / parts;
    unsigned long long p = from >= back ? from - back : 0;
    unsigned st = 0, acc = 0;
    for (; p < to; ++p) {
        unsigned long long i = (unsigned long long)st * ALPHABET + data[p];
        unsigned e = i < n ? tab[i] : 0u;
        if (p >= from && (e & ACCEPT_BIT)) acc += 1;
        st = e & STATE_MASK;
    }
    if (acc) atomicAdd(accepts, (unsigned long long)acc);
}
"""


def write_input(directory: str, size: int, every: int = 1 << 16, index: int = 0) -> str:
    """A file of ``size`` pseudo-random bytes (seeded by ``index``) with PATTERNS planted
    about every ``every`` bytes; returns its path."""
    rng = np.random.default_rng(5 + index)
    data = rng.integers(0, 256, size, dtype=np.uint8)
    for i, off in enumerate(range(0, size - 64, every)):
        pat = np.frombuffer(PATTERNS[i % len(PATTERNS)], dtype=np.uint8)
        pos = off + int(rng.integers(0, every - len(pat)))
        if pos + len(pat) <= size:
            data[pos:pos + len(pat)] = pat
    path = os.path.join(directory, f"vyre-bench-ingest-{index}.bin")
    data.tofile(path)
    return path


def _total_mib() -> int:
    """The input's size in MiB: ``$VYRE_BENCH_INGEST_MIB`` (at least one per file), else 2048."""
    text = os.environ.get("VYRE_BENCH_INGEST_MIB", "2048")
    try:
        mib = int(text)
    except ValueError:
        raise ValueError(f"VYRE_BENCH_INGEST_MIB={text!r} is not a whole number of MiB") from None
    if mib < FILES:
        raise ValueError(f"VYRE_BENCH_INGEST_MIB={mib} is below one MiB per file ({FILES} files)")
    return mib


def read_files(paths: list[str], buf: bytearray) -> None:
    """The ``read_only`` method: a ``readinto`` loop over every file."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def count_files(paths: list[str]) -> int:
    """The ``python_count`` method: ``f.read()`` + ``bytes.count`` per pattern."""
    n = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        n += sum(data.count(p) for p in PATTERNS)
    return n


def mk_options(backend: str) -> dict[str, Any]:
    """The megakernel every ingest method scans with: on CUDA a GPU given to ingest, the
    whole GPU (``sm_share=1.0``), no yields (``yield_ms=0``) and no idle exits
    (``idle_exit_ms=0``): the defaults leave room for CuPy and PyTorch beside vyre (a quarter
    of the SMs; leave the GPU every 5 ms, and after 1 ms idle), which caps the DFA walk below
    the copy ceiling and costs each yield a drain and a relaunch, and each pause of the reads
    past 1 ms a relaunch (bench/gpu/ingest_ab.py measures the defaults beside this)."""
    opts: dict[str, Any] = {"slot_count": 1024, "observable_slots": 64}
    if backend == "cuda":
        opts["sm_share"] = 1.0
        opts["yield_ms"] = 0
        opts["idle_exit_ms"] = 0
    return opts


def count_per_pattern(patterns, data: bytes) -> np.ndarray:
    """Every occurrence of every pattern, overlapping ones included: the reference the
    per-pattern methods are checked against (``vyre.ingest.dfa.count_per_pattern``)."""
    from vyre.ingest import dfa as dfa_mod

    return np.asarray(dfa_mod.count_per_pattern(list(patterns), data), np.uint64)


def scan_has_per_pattern(stream_cls) -> bool:
    """Does this vyre's ``GpuStream.scan`` take ``per_pattern``?"""
    try:
        return "per_pattern" in inspect.signature(stream_cls.scan).parameters
    except (TypeError, ValueError):
        return False


def _scanner(name: str, patterns) -> Any:
    if name == "hyperscan":
        return scanners.HyperscanCounter(patterns)
    if name == "pyahocorasick":
        return scanners.AhoCorasickCounter(patterns)
    return scanners.RipgrepCounter(patterns)


def _scanner_methods(ctx, paths: list[str], per_pattern: np.ndarray, size: int,
                     first: int, params: dict) -> tuple[list[Method], list[Any]]:
    """The CPU scanner baselines that can run here (the others recorded as skipped),
    verified per pattern where their semantics agree with the reference."""
    why = scanners.available()
    methods, opened = [], []
    for name in BASELINE_SCANNERS:
        if why[name] is not None:
            ctx.skip(name, str(why[name]))
            continue
        counter = _scanner(name, PATTERNS)
        opened.append(counter)
        mask = getattr(counter, "comparable", np.ones(len(PATTERNS), bool))
        if not mask.any():
            ctx.skip(name, "no pattern of the suite has the same meaning for it")
            continue
        got: dict[str, Any] = {}

        def sample(counter=counter, got=got) -> float:
            t0 = time.perf_counter_ns()
            got["counts"] = counter.count_files(paths)
            return time.perf_counter_ns() - t0

        def verify(got=got, mask=mask, name=name) -> tuple[bool, str]:
            c = got.get("counts")
            ok = c is not None and c[mask].tolist() == per_pattern[mask].tolist()
            return ok, (f"{name} counted {None if c is None else c.tolist()} per pattern, "
                        f"expected {per_pattern.tolist()} (compared: {mask.tolist()})")

        def first_file(counter=counter) -> Any:
            return counter.count_files(paths[:1])

        threads = getattr(counter, "threads", 1)
        methods.append(Method(
            name, sample, unit="B/s", batch=size, params={**params, "threads": threads},
            verify=verify, notes=f"{PHRASES[name]}; {threads} thread(s); counts per pattern "
                                 f"checked on {int(mask.sum())} of {len(mask)} patterns",
            check=Check(f"the same {name} count of the first file, timed bare",
                        loop_reference(first_file, per_call=first, samples=3, unit="B/s",
                                       budget_s=0.1))))
    return methods, opened


def _selected() -> set[str]:
    """The methods to measure: ``$VYRE_BENCH_INGEST_METHODS`` (comma-separated method names),
    else all of them. The slow Python baselines make a 2 GiB run take minutes; a run that
    only needs the scans beside their ceilings and Hyperscan can name those. Checked before
    any input is written: an unknown name, or none at all, is refused with the choices."""
    text = os.environ.get("VYRE_BENCH_INGEST_METHODS")
    if text is None or not text.strip():
        return set(PHRASES)
    chosen = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(chosen - set(PHRASES))
    if unknown or not chosen:
        raise ValueError(f"VYRE_BENCH_INGEST_METHODS={text!r} names "
                         f"{', '.join(unknown) or 'no method'}; choose from "
                         f"{', '.join(PHRASES)} (comma-separated), or unset it for all")
    return chosen


def run(ctx) -> None:
    """Scan the files with GpuStream and the baselines, paired."""
    stream_mod = need("vyre.ingest.stream")
    dfa_mod = need("vyre.ingest.dfa")
    fx = facade()
    backend = resolve_backend(ctx)
    chosen = _selected()
    nfiles = 1 if ctx.options.quick else FILES
    per_file = 16 << 20 if ctx.options.quick else _total_mib() // nfiles << 20
    size = per_file * nfiles
    ctx.note("file_bytes", size)
    ctx.note("files", nfiles)
    now = time.perf_counter_ns
    with tempfile.TemporaryDirectory(dir=os.environ.get("VYRE_BENCH_TMP")) as tmp:
        paths = [write_input(tmp, per_file, index=i) for i in range(nfiles)]
        expected = 0
        per_pattern = np.zeros(len(PATTERNS), np.uint64)
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            expected += dfa_mod.count_matches(PATTERNS, data)
            per_pattern += count_per_pattern(PATTERNS, data)
            del data
        ctx.note("matches", expected)
        ctx.note("matches_per_pattern", per_pattern.tolist())
        ctx.note("host_cores", scanners.host_cores())
        dfa = dfa_mod.build_dfa(list(PATTERNS))
        params = {"bytes": size, "files": nfiles, "chunk_bytes": STREAM_CHUNK,
                  "depth": STREAM_DEPTH, "backend": backend,
                  "sm_share": mk_options(backend).get("sm_share"),
                  "yield_ms": mk_options(backend).get("yield_ms"),
                  "idle_exit_ms": mk_options(backend).get("idle_exit_ms")}
        megakernel(fx, backend, **mk_options(backend)).shutdown()  # or skip
        got: dict[str, Any] = {}

        @contextmanager
        def scan_session() -> Iterator[Any]:
            with megakernel(fx, backend, **mk_options(backend)) as mk, \
                    stream_mod.GpuStream(mk, chunk_bytes=STREAM_CHUNK, depth=STREAM_DEPTH) as s:
                ctx.note("read_path", s.path)

                def scan() -> float:
                    t0 = now()
                    counts = s.scan(paths, dfa)
                    t1 = now()
                    got["scan"] = sum(counts[p] for p in paths)
                    return t1 - t0
                yield scan

        @contextmanager
        def per_pattern_session() -> Iterator[Any]:
            with megakernel(fx, backend, **mk_options(backend)) as mk, \
                    stream_mod.GpuStream(mk, chunk_bytes=STREAM_CHUNK, depth=STREAM_DEPTH) as s:

                def scan() -> float:
                    t0 = now()
                    res = s.scan(paths, dfa, per_pattern=True)
                    t1 = now()
                    got["per_pattern"] = np.sum([np.asarray(res[p].per_pattern, np.uint64)
                                                 for p in paths], axis=0)
                    got["positions"] = sum(int(res[p].positions) for p in paths)
                    return t1 - t0
                yield scan

        buf = bytearray(CHUNK)

        def read_only() -> float:
            t0 = now()
            read_files(paths, buf)
            return now() - t0

        def count() -> float:
            t0 = now()
            got["count"] = count_files(paths)
            return now() - t0

        first = per_file  # the references time the first file only
        methods = [
            Method("gpustream_scan", session=scan_session, unit="B/s", batch=size,
                   params=params,
                   verify=lambda: (got.get("scan") == expected,
                                   f"scan counted {got.get('scan')}, expected {expected}")),
            Method("read_only", read_only, unit="B/s", batch=size, params=params,
                   notes="readinto loop, 1 MiB chunks: the I/O ceiling (page cache)",
                   check=Check("the same readinto loop over the first file, timed bare",
                               loop_reference(lambda: read_files(paths[:1], buf),
                                              per_call=first, samples=5, unit="B/s"))),
            Method("python_count", count, unit="B/s", batch=size, params=params,
                   verify=lambda: (got.get("count") == expected,
                                   f"bytes.count found {got.get('count')}, expected {expected}"),
                   notes="f.read() + bytes.count per pattern",
                   check=Check("the same read + count of the first file, timed bare",
                               loop_reference(lambda: count_files(paths[:1]), per_call=first,
                                              samples=3, unit="B/s", budget_s=0.1))),
        ]
        subjects = ["gpustream_scan"]
        if scan_has_per_pattern(stream_mod.GpuStream):
            subjects.append("gpustream_scan_per_pattern")

            def verify_per_pattern() -> tuple[bool, str]:
                pp = got.get("per_pattern")
                ok = pp is not None and pp.tolist() == per_pattern.tolist() \
                    and got.get("positions") == expected
                return ok, (f"per-pattern scan counted {None if pp is None else pp.tolist()} "
                            f"({got.get('positions')} positions), expected "
                            f"{per_pattern.tolist()} ({expected})")
            methods.append(Method("gpustream_scan_per_pattern", session=per_pattern_session,
                                  unit="B/s", batch=size, params=params,
                                  verify=verify_per_pattern))
        else:
            ctx.skip("gpustream_scan_per_pattern",
                     "this vyre's GpuStream.scan has no per_pattern option")
        more, opened = _scanner_methods(ctx, paths, per_pattern, size, first, params)
        methods += more
        if backend == "cuda":
            methods += _gpu_methods(ctx, paths, dfa, expected, size, params)
        for m in methods:
            if m.name not in chosen:
                ctx.skip(m.name, "not in $VYRE_BENCH_INGEST_METHODS")
        methods = [m for m in methods if m.name in chosen]
        try:
            res = ctx.paired(methods, rounds=ROUNDS)
        finally:
            for counter in opened:
                counter.close()
        for subject in subjects:
            for base in ("read_only", "python_count", *BASELINE_SCANNERS, "python_gpu_loop",
                         "pinned_h2d"):
                if subject in res and base in res:
                    ctx.compare(res[subject], res[base])
    if "device_array_scan" in chosen:
        _device_array(ctx, fx, backend, dfa_mod, stream_mod)
    else:
        ctx.skip("device_array_scan", "not in $VYRE_BENCH_INGEST_METHODS")


def _device_mib(quick: bool) -> int:
    """The device array's size in MiB: ``$VYRE_BENCH_DEVICE_MIB``, else 4096 (64 quick)."""
    text = os.environ.get("VYRE_BENCH_DEVICE_MIB", "64" if quick else "4096")
    try:
        mib = int(text)
    except ValueError:
        raise ValueError(f"VYRE_BENCH_DEVICE_MIB={text!r} is not a whole number of MiB") from None
    if mib < 1:
        raise ValueError(f"VYRE_BENCH_DEVICE_MIB={mib} must be at least 1")
    return mib


def device_input(cp, size: int, block: int = 64 << 20):
    """A CuPy array of ``size`` bytes: a block of pseudo-random bytes with PATTERNS planted
    about every 64 KiB (as :func:`write_input` makes files), repeated on the GPU."""
    n = min(size, block)
    rng = np.random.default_rng(7)
    host = rng.integers(0, 256, n, dtype=np.uint8)
    every = 1 << 16
    for i, off in enumerate(range(0, n - 64, every)):
        pat = np.frombuffer(PATTERNS[i % len(PATTERNS)], dtype=np.uint8)
        pos = off + int(rng.integers(0, every - len(pat)))
        if pos + len(pat) <= n:
            host[pos:pos + len(pat)] = pat
    dev_block = cp.asarray(host)
    arr = cp.empty(size, dtype=cp.uint8)
    for lo in range(0, size, n):
        arr[lo:lo + n] = dev_block[:min(n, size - lo)]
    return arr


def count_device(cp, arr, piece: int = 256 << 20) -> int:
    """The position count of PATTERNS in a CuPy array, counted on the host piece by piece
    (each piece re-reads the bytes a match ending in it may start in)."""
    from vyre.ingest.dfa import count_matches

    back = max(len(p) for p in PATTERNS) - 1
    total = 0
    for lo in range(0, int(arr.size), piece):
        c = min(back, lo)
        data = cp.asnumpy(arr[lo - c:lo + piece]).tobytes()
        total += count_matches(PATTERNS, data) - count_matches(PATTERNS, data[:c])
    return total


def _device_array(ctx, fx, backend: str, dfa_mod, stream_mod) -> None:
    """``device_array_scan``: GB/s of scanning a CuPy array in place (CUDA + CuPy only)."""
    name = "device_array_scan"
    if backend != "cuda":
        ctx.skip(name, f"scans device memory: needs the CUDA backend, not {backend}")
        return
    try:
        import cupy as cp
    except Exception as exc:  # noqa: BLE001  # ImportError, or CUDA libraries missing
        ctx.skip(name, f"cupy not importable ({type(exc).__name__}: {exc})")
        return
    size = _device_mib(ctx.options.quick) << 20
    hold: dict[str, Any] = {}  # the array, dropped at the end (4 GiB of device memory)
    try:
        hold["arr"] = device_input(cp, size)
        cp.cuda.Device().synchronize()
        expected = count_device(cp, hold["arr"])
    except Exception as exc:  # noqa: BLE001  # out of device memory, a CuPy without the API
        hold.clear()
        ctx.error(name, exc)
        return
    ctx.note("device_array_bytes", size)
    ctx.note("device_array_matches", expected)
    dfa = dfa_mod.build_dfa(list(PATTERNS))
    got: dict[str, Any] = {}
    now = time.perf_counter_ns

    @contextmanager
    def session() -> Iterator[Any]:
        with megakernel(fx, backend, **mk_options(backend)) as mk, \
                stream_mod.GpuStream(mk, chunk_bytes=STREAM_CHUNK, depth=STREAM_DEPTH) as s:

            def scan() -> float:
                t0 = now()
                got["count"] = s.scan([hold["arr"]], dfa)[0]
                return now() - t0
            yield scan

    try:
        ctx.paired([Method(name, session=session, unit="B/s", batch=size,
                           params={"bytes": size, "chunk_bytes": STREAM_CHUNK,
                                   "depth": STREAM_DEPTH, "backend": backend,
                                   "sm_share": mk_options(backend).get("sm_share")},
                           notes="a CuPy array already on the GPU, scanned in place (no copy)",
                           verify=lambda: (got.get("count") == expected,
                                           f"counted {got.get('count')}, expected {expected}"))],
                   rounds=ROUNDS)
    finally:
        hold.clear()
        cp.get_default_memory_pool().free_all_blocks()


def gpu_loop_sampler(drv, fn, paths: list[str], dfa, got: dict, stream, pinned, dev, tab,
                     acc):
    """The ``python_gpu_loop`` method: per 1 MiB chunk, ``readinto`` a pinned buffer +
    ``memcpy_htod`` + one 32-thread scan launch (context bytes re-read), then the count."""
    now = time.perf_counter_ns
    view = memoryview(pinned)
    ctxb = dfa.context

    def loop() -> float:
        t0 = now()
        drv.memset_d8(acc, 0, 8)
        for path in paths:
            keep = 0  # context bytes at the front of the pinned buffer
            with open(path, "rb", buffering=0) as f:
                while True:
                    n = f.readinto(view[keep:keep + CHUNK])
                    if not n:
                        break
                    drv.memcpy_htod_async(dev, pinned[:keep + n], stream)
                    fn.prepared_async_call((1, 1), (32, 1, 1), stream, np.intp(int(tab)),
                                           dfa.table.size, np.intp(int(dev)), keep + n,
                                           keep, ctxb, np.intp(int(acc)))
                    stream.synchronize()  # the pinned buffer is reused next
                    tail = min(ctxb, keep + n)
                    pinned[:tail] = pinned[keep + n - tail:keep + n]
                    keep = tail
        out = np.zeros(1, np.uint64)
        drv.memcpy_dtoh(out, acc)
        got["loop"] = int(out[0])
        return now() - t0

    return loop


def gpu_loop_resources(drv, dfa):
    """Compiled scan kernel and buffers of :func:`gpu_loop_sampler` (current context)."""
    from pycuda.compiler import SourceModule

    from vyre._wire import ABI

    # the table layout's constants come from csrc/vyre_abi.h, not from this file
    defines = "".join(f"#define {k} {ABI['DFA_' + k]}u\n"
                      for k in ("ALPHABET", "ACCEPT_BIT", "STATE_MASK"))
    fn = SourceModule(defines + SCAN_KERNEL, no_extern_c=True).get_function("vyre_bench_scan")
    fn.prepare("PQPIIIP")
    return {"fn": fn, "stream": drv.Stream(),
            "pinned": drv.pagelocked_empty(CHUNK + dfa.context, np.uint8),
            "dev": drv.mem_alloc(CHUNK + dfa.context), "tab": drv.to_device(dfa.table),
            "acc": drv.mem_alloc(8)}


def free_gpu_loop_resources(r: dict) -> None:
    """Free what :func:`gpu_loop_resources` allocated (its context must be current)."""
    r["stream"].synchronize()
    for key in ("dev", "tab", "acc"):
        r[key].free()
    r["pinned"].base.free()


@contextmanager
def _primary_context() -> Iterator[Any]:
    import pycuda.driver as drv

    drv.init()
    cuctx = drv.Device(0).retain_primary_context()
    cuctx.push()
    try:
        yield drv
    finally:
        cuctx.pop()


def _gpu_methods(ctx, paths, dfa, expected, size, params) -> list[Method]:
    """Pinned H2D bandwidth and the readinto + memcpy_htod + launch-per-chunk loop, each in
    the primary context, opened per round (module loads wait for an idle device)."""
    now = time.perf_counter_ns
    chunks = size // CHUNK
    got: dict[str, Any] = {}

    @contextmanager
    def h2d_session() -> Iterator[Any]:
        with _primary_context() as drv:
            pinned = drv.pagelocked_empty(CHUNK, np.uint8)
            dev = drv.mem_alloc(CHUNK)
            stream = drv.Stream()

            def h2d() -> float:
                t0 = now()
                for _ in range(chunks):
                    drv.memcpy_htod_async(dev, pinned, stream)
                stream.synchronize()
                return now() - t0
            try:
                yield h2d
            finally:  # freed while the context is current, not by a later collection
                stream.synchronize()
                dev.free()
                pinned.base.free()

    @contextmanager
    def loop_session() -> Iterator[Any]:
        with _primary_context() as drv:
            r = gpu_loop_resources(drv, dfa)
            try:
                yield gpu_loop_sampler(drv, r["fn"], paths, dfa, got, r["stream"],
                                       r["pinned"], r["dev"], r["tab"], r["acc"])
            finally:
                free_gpu_loop_resources(r)

    module = "vyre.bench.suites._reference"
    return [
        Method("pinned_h2d", session=h2d_session, unit="B/s", batch=size, params=params,
               notes="memcpy_htod_async of 1 MiB from one pinned buffer, per chunk of the "
                     "input, one synchronize: the copy ceiling",
               check=Check("256 async 1 MiB copies from one pinned buffer + synchronize, "
                           "timed alone in a fresh process",
                           standalone_reference(module, "pinned_h2d",
                                                {"chunk": CHUNK, "chunks": 256}))),
        Method("python_gpu_loop", session=loop_session, unit="B/s", batch=size, params=params,
               verify=lambda: (got.get("loop") == expected,
                               f"the launch loop counted {got.get('loop')}, expected {expected}"),
               notes="readinto pinned + memcpy_htod + one 32-thread scan launch per 1 MiB "
                     "chunk (context re-read), device table",
               check=Check("the same loop over the first file, alone in a fresh process",
                           standalone_reference(module, "python_gpu_loop",
                                                {"path": paths[0]}))),
    ]
