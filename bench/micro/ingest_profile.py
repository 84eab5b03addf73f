"""Where the stream thread's time goes in one GpuStream.scan: cProfile (top functions by own
time), the stream's telemetry (io/copy waits, stalls) and the process CPU time against wall
time (a thread near 100 % is the limit, not the reads or the copy engine).

    python bench/micro/ingest_profile.py [--mb 2048] [--chunk 4] [--depth 32]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

from vyre import Megakernel
from vyre.bench.suites.ingest import PATTERNS, write_input
from vyre.ingest.dfa import build_dfa
from vyre.ingest.stream import GpuStream


def stages(trace: list, wall: float, nbytes: int) -> None:
    """Per chunk, the time between successive stages, and how many chunks each stage held
    on average (time-weighted), from the stream's (stage, chunk, time) trace."""
    order = ["read", "landed", "copied", "published", "retired"]
    open_: dict[tuple, dict[str, float]] = {}
    spans: dict[str, list[float]] = {}
    for stage, chunk, at in trace:
        if stage == "read":
            open_[chunk] = {}
        open_[chunk][stage] = at
        if stage == "retired":
            marks = open_.pop(chunk)
            seen = [s for s in order if s in marks]
            for a, b in zip(seen, seen[1:]):
                spans.setdefault(f"{a} -> {b}", []).append(marks[b] - marks[a])
    print(f"traced run: {nbytes / wall / 1e9:.2f} GB/s, {wall * 1e3:.1f} ms")
    for name, xs in spans.items():
        xs.sort()
        q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))] * 1e6  # noqa: E731
        print(f"  {name:22s} n={len(xs):5d} us p10 {q(0.1):8.1f} p50 {q(0.5):8.1f} "
              f"p90 {q(0.9):8.1f}  mean chunks in stage {sum(xs) / wall:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--mb", type=int, default=2048)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=4, help="MiB")
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    dfa = build_dfa(list(PATTERNS))
    per_file = (a.mb << 20) // a.files
    with tempfile.TemporaryDirectory(dir=os.environ.get("VYRE_BENCH_TMP")) as tmp:
        paths = [write_input(tmp, per_file, index=i) for i in range(a.files)]
        with Megakernel(a.backend, slot_count=1024, observable_slots=max(64, a.depth)) as mk:
            with GpuStream(mk, chunk_bytes=a.chunk << 20, depth=a.depth) as s:
                s.scan(paths, dfa)  # warm: page cache, tables, first-call costs
                s._trace = []
                t0 = time.perf_counter()
                s.scan(paths, dfa)
                traced = time.perf_counter() - t0
                stages(s._trace, traced, per_file * a.files)
                s._trace = None
                # the same pipeline with parts taken out: reads only, reads + device copies
                # (nothing published), to see which stage holds the rate down
                from vyre.ingest.stream import _unique
                for name, copy in (("reads only", None), ("reads + device copy", s._copy_chunk)):
                    if copy is not None and not s.telemetry()["device_copy"]:
                        continue
                    t0 = time.perf_counter()
                    s._run(_unique(paths), dfa.context, lambda *_: [], None, copy)
                    dt = time.perf_counter() - t0
                    print(f"{name:22s}: {per_file * a.files / dt / 1e9:6.2f} GB/s")
                before = s.telemetry()
                prof = cProfile.Profile()
                w0, c0 = time.perf_counter(), time.thread_time()
                p0 = time.process_time()
                prof.enable()
                s.scan(paths, dfa)
                prof.disable()
                wall = time.perf_counter() - w0
                thread, proc = time.thread_time() - c0, time.process_time() - p0
                t = s.telemetry()
        print(f"{a.backend} chunk={a.chunk}MiB depth={a.depth}: {per_file * a.files / wall / 1e9:.2f} GB/s "
              f"under the profiler; wall {wall:.3f} s, stream thread CPU {thread:.3f} s "
              f"({100 * thread / wall:.0f} %), process CPU {proc:.3f} s")
        for k in ("chunks", "slots", "io_waits", "copy_waits", "stalls", "stall_s", "max_in_flight"):
            print(f"  {k}: {t[k] - before[k] if k != 'max_in_flight' else t[k]}")
        print(f"  path: {t['path']} parallel_reads: {t['parallel_reads']} device_copy: {t['device_copy']}")
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)


if __name__ == "__main__":
    main()
