"""Streaming ingest: ``GpuStream.scan`` (io_uring -> GPU-visible staging -> DFA_SCAN slots).

One input file of pseudo-random bytes with two literal patterns planted at random offsets
(256 MiB; 16 MiB in ``--quick``) is written once, outside timing, in a temporary directory
(``$VYRE_BENCH_TMP`` or the system default). Every sample scans the whole file to
completion; the rate is file bytes / host time (``B/s``). The file is read from the page
cache after the warm-up (dropping caches needs root), so this is the ingest pipeline's cost,
not the disk's.

Methods, same file, same run:
* ``gpustream_scan``: ``GpuStream(mk, chunk_bytes=1 MiB, depth=8).scan(path, dfa)`` on the
  selected backend; verified against the reference match count;
* ``read_only``: a plain ``readinto`` loop over the file in the same chunk size: the I/O
  ceiling of any reader (the ratio says how close the scan gets to it);
* ``python_count``: ``f.read()`` then ``bytes.count`` per pattern -- what Python code would
  write (exact here because neither pattern can overlap itself or end inside the other).
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
DEPTH = 8


def write_input(directory: str, size: int, every: int = 1 << 16) -> str:
    """A file of ``size`` pseudo-random bytes (fixed seed) with PATTERNS planted about every
    ``every`` bytes; returns its path."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, size, dtype=np.uint8)
    for i, off in enumerate(range(0, size - 64, every)):
        pat = np.frombuffer(PATTERNS[i % len(PATTERNS)], dtype=np.uint8)
        pos = off + int(rng.integers(0, every - len(pat)))
        if pos + len(pat) <= size:
            data[pos:pos + len(pat)] = pat
    path = os.path.join(directory, "vyre-bench-ingest.bin")
    data.tofile(path)
    return path


def run(ctx) -> None:
    """Scan the file with GpuStream and the two plain-Python baselines."""
    stream_mod = need("vyre.stream")
    dfa_mod = need("vyre.dfa")
    fx = facade()
    backend = resolve_backend(ctx)
    size = (16 if ctx.options.quick else 256) << 20
    ctx.note("file_bytes", size)
    now = time.perf_counter_ns
    with tempfile.TemporaryDirectory(dir=os.environ.get("VYRE_BENCH_TMP")) as tmp:
        path = write_input(tmp, size)
        with open(path, "rb") as f:
            expected = dfa_mod.count_matches(PATTERNS, f.read())
        ctx.note("matches", expected)
        dfa = dfa_mod.build_dfa(list(PATTERNS))
        params = {"bytes": size, "chunk_bytes": CHUNK, "depth": DEPTH, "backend": backend}
        mk = megakernel(fx, backend, slot_count=1024, observable_slots=64)
        got = [None]
        with mk, stream_mod.GpuStream(mk, chunk_bytes=CHUNK, depth=DEPTH) as s:
            ctx.note("read_path", s.path)

            def scan() -> float:
                t0 = now()
                counts = s.scan(path, dfa)
                t1 = now()
                got[0] = counts[path]
                return t1 - t0

            r_scan = ctx.bench("gpustream_scan", scan, unit="B/s", batch=size, params=params,
                               verify=lambda: (got[0] == expected,
                                               f"scan counted {got[0]}, expected {expected}"))

        buf = bytearray(CHUNK)

        def read_only() -> float:
            t0 = now()
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
            return now() - t0

        r_read = ctx.bench("read_only", read_only, unit="B/s", batch=size, params=params,
                           notes="readinto loop, 1 MiB chunks: the I/O ceiling (page cache)")

        def count() -> float:
            t0 = now()
            with open(path, "rb") as f:
                data = f.read()
            n = sum(data.count(p) for p in PATTERNS)
            t1 = now()
            got[0] = n
            return t1 - t0

        r_count = ctx.bench("python_count", count, unit="B/s", batch=size, params=params,
                            verify=lambda: (got[0] == expected,
                                            f"bytes.count found {got[0]}, expected {expected}"),
                            notes="f.read() + bytes.count per pattern")
    ctx.compare(r_scan, r_read)
    ctx.compare(r_scan, r_count)
