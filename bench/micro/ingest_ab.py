"""GpuStream.scan throughput over a grid of settings (the knobs behind `vyre-bench --suite
ingest`): assist part size, device copy, parallel reads, chunk size, depth. Files in page cache, every scan
checked against the reference count; median of --repeats.

    python bench/micro/ingest_ab.py [--mb 2048] [--parts 16384,65536] [--chunks 1,4]
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time

from vyre import Megakernel
from vyre.bench.suites.ingest import PATTERNS, write_input
from vyre.ingest.dfa import build_dfa, count_matches
from vyre.ingest.stream import GpuStream


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--mb", type=int, default=2048, help="total MiB over --files files")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--parts", type=ints, default=[16384, 65536], help="assist_part_bytes")
    ap.add_argument("--parallel", type=ints, default=[0, 1], help="parallel_reads off/on")
    ap.add_argument("--chunks", type=ints, default=[1, 4], help="chunk MiB")
    ap.add_argument("--depths", type=ints, default=[8, 16])
    ap.add_argument("--copy", type=ints, default=[0, 1], help="device_copy off/on")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    per_file = (a.mb << 20) // a.files
    dfa = build_dfa(list(PATTERNS))
    with tempfile.TemporaryDirectory(dir=os.environ.get("VYRE_BENCH_TMP")) as tmp:
        paths = [write_input(tmp, per_file, index=i) for i in range(a.files)]
        want = 0
        for p in paths:
            with open(p, "rb") as f:
                want += count_matches(PATTERNS, f.read())
        total = per_file * a.files
        parts = a.parts if a.backend == "cuda" else [None]
        for part in parts:
            opts = {} if part is None else {"assist_part_bytes": part}
            with Megakernel(a.backend, slot_count=1024, observable_slots=64, **opts) as mk:
                for copy, par, chunk, depth in itertools.product(a.copy, a.parallel, a.chunks,
                                                                       a.depths):
                    rates = []
                    with GpuStream(mk, chunk_bytes=chunk << 20, depth=depth,
                                   parallel_reads=bool(par),
                                   device_copy=bool(copy) if a.backend == "cuda" else None) as s:
                        for _ in range(a.repeats):
                            t0 = time.perf_counter()
                            got = sum(s.scan(paths, dfa).values())
                            rates.append(total / (time.perf_counter() - t0) / 1e9)
                            assert got == want, (got, want)
                        path = s.telemetry().get("path")
                    print(f"part={part} copy={copy} parallel={par} chunk={chunk}MiB depth={depth:2d} "
                          f"{path}: median {statistics.median(rates):6.2f} GB/s "
                          f"(min {min(rates):.2f} max {max(rates):.2f}, n={len(rates)})",
                          flush=True)


if __name__ == "__main__":
    main()
