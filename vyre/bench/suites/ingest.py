"""Streaming ingest: ``GpuStream.scan`` (io_uring -> GPU-visible staging -> DFA_SCAN slots).

Input files of pseudo-random bytes with two literal patterns planted at random offsets
(8 files of 256 MiB = 2 GiB, or ``$VYRE_BENCH_INGEST_MIB`` MiB over the 8; one of 16 MiB in
``--quick``) are written once, outside timing, in a temporary directory
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
* CUDA only, run after the megakernel stopped (module loads wait for an idle device):
  ``pinned_h2d``: ``memcpy_htod`` of the file's bytes in 1 MiB chunks from one pinned buffer
  (the host-to-device copy ceiling); ``python_gpu_loop``: ``readinto`` a pinned buffer +
  ``memcpy_htod`` + one scan-kernel launch per chunk (32 threads splitting the chunk exactly
  as the megakernel's warp does, the table in device memory), verified.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from vyre.bench.suites._common import facade, megakernel, need, resolve_backend

NAME = "ingest"
DESCRIPTION = "io_uring streaming ingest: GpuStream.scan vs a plain read loop and bytes.count"

PATTERNS = (b"vyre", b"needle")
CHUNK = 1 << 20
STREAM_CHUNK = 4 << 20
STREAM_DEPTH = 20  # bench/results/h100_s5_ingest_ab_depth.txt: 12 / 16 / 20 -> 36.6 / 35.7 / 40.3 GB/s
FILES = 8  # of 256 MiB each (one of 16 MiB in --quick)

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


def run(ctx) -> None:
    """Scan the file with GpuStream and the two plain-Python baselines."""
    stream_mod = need("vyre.ingest.stream")
    dfa_mod = need("vyre.ingest.dfa")
    fx = facade()
    backend = resolve_backend(ctx)
    nfiles = 1 if ctx.options.quick else FILES
    per_file = 16 << 20 if ctx.options.quick else _total_mib() // nfiles << 20
    size = per_file * nfiles
    ctx.note("file_bytes", size)
    ctx.note("files", nfiles)
    now = time.perf_counter_ns
    with tempfile.TemporaryDirectory(dir=os.environ.get("VYRE_BENCH_TMP")) as tmp:
        paths = [write_input(tmp, per_file, index=i) for i in range(nfiles)]
        expected = 0
        for path in paths:
            with open(path, "rb") as f:
                expected += dfa_mod.count_matches(PATTERNS, f.read())
        ctx.note("matches", expected)
        dfa = dfa_mod.build_dfa(list(PATTERNS))
        params = {"bytes": size, "files": nfiles, "chunk_bytes": STREAM_CHUNK,
                  "depth": STREAM_DEPTH, "backend": backend}
        mk = megakernel(fx, backend, slot_count=1024, observable_slots=64)
        got = [None]
        with mk, stream_mod.GpuStream(mk, chunk_bytes=STREAM_CHUNK, depth=STREAM_DEPTH) as s:
            ctx.note("read_path", s.path)

            def scan() -> float:
                t0 = now()
                counts = s.scan(paths, dfa)
                t1 = now()
                got[0] = sum(counts[p] for p in paths)
                return t1 - t0

            r_scan = ctx.bench("gpustream_scan", scan, unit="B/s", batch=size, params=params,
                               verify=lambda: (got[0] == expected,
                                               f"scan counted {got[0]}, expected {expected}"))

        buf = bytearray(CHUNK)

        def read_only() -> float:
            t0 = now()
            for path in paths:
                with open(path, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            return now() - t0

        r_read = ctx.bench("read_only", read_only, unit="B/s", batch=size, params=params,
                           notes="readinto loop, 1 MiB chunks: the I/O ceiling (page cache)")

        def count() -> float:
            t0 = now()
            n = 0
            for path in paths:
                with open(path, "rb") as f:
                    data = f.read()
                n += sum(data.count(p) for p in PATTERNS)
            t1 = now()
            got[0] = n
            return t1 - t0

        r_count = ctx.bench("python_count", count, unit="B/s", batch=size, params=params,
                            verify=lambda: (got[0] == expected,
                                            f"bytes.count found {got[0]}, expected {expected}"),
                            notes="f.read() + bytes.count per pattern")
        ctx.compare(r_scan, r_read)
        ctx.compare(r_scan, r_count)
        if backend == "cuda":
            _gpu_baselines(ctx, paths, dfa, expected, size, params, r_scan)


def _gpu_baselines(ctx, paths, dfa, expected, size, params, r_scan) -> None:
    """Pinned H2D bandwidth and the readinto + memcpy_htod + launch-per-chunk loop."""
    import pycuda.driver as drv
    from pycuda.compiler import SourceModule

    now = time.perf_counter_ns
    drv.init()
    cuctx = drv.Device(0).retain_primary_context()
    cuctx.push()
    try:
        from vyre._wire import ABI

        # the table layout's constants come from csrc/vyre_abi.h, not from this file
        defines = "".join(f"#define {k} {ABI['DFA_' + k]}u\n"
                          for k in ("ALPHABET", "ACCEPT_BIT", "STATE_MASK"))
        fn = SourceModule(defines + SCAN_KERNEL, no_extern_c=True).get_function("vyre_bench_scan")
        fn.prepare("PQPIIIP")
        ctxb = dfa.context
        pinned = drv.pagelocked_empty(CHUNK + ctxb, np.uint8)
        dev = drv.mem_alloc(CHUNK + ctxb)
        tab = drv.to_device(dfa.table)
        acc = drv.mem_alloc(8)
        stream = drv.Stream()
        chunks = size // CHUNK

        def h2d() -> float:
            t0 = now()
            for _ in range(chunks):
                drv.memcpy_htod_async(dev, pinned[:CHUNK], stream)
            stream.synchronize()
            return now() - t0

        r_h2d = ctx.bench("pinned_h2d", h2d, unit="B/s", batch=size, params=params,
                          notes="memcpy_htod_async of 1 MiB from one pinned buffer, per chunk "
                                "of the input, one synchronize: the copy ceiling")
        got = [None]
        view = memoryview(pinned)

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
            got[0] = int(out[0])
            return now() - t0

        r_loop = ctx.bench("python_gpu_loop", loop, unit="B/s", batch=size, params=params,
                           verify=lambda: (got[0] == expected,
                                           f"the launch loop counted {got[0]}, expected {expected}"),
                           notes="readinto pinned + memcpy_htod + one 32-thread scan launch per "
                                 "1 MiB chunk (context re-read), device table")
        ctx.compare(r_scan, r_loop)
        ctx.compare(r_scan, r_h2d)
    finally:
        cuctx.pop()
