"""Ingest read rate from the page cache: io_uring inline vs IOSQE_ASYNC (parallel_reads).

A page-cache read through io_uring completes inline in the submitting thread, so one CPU
copies every byte however many reads are in flight; with parallel_reads the reads go to
io-wq workers. This measures the reader alone (open_reader + plain-memory StagingRing,
driven as GpuStream drives it: whole files in chunk-sized reads, `depth` in flight), next to
a single-thread readinto loop and N Python threads doing os.preadv. CPU only.

    python bench/micro/read_parallel.py --bytes 2GiB --files 8 --depth 8,16,32
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections import deque

import numpy as np

from vyre.ingest.readers import open_reader
from vyre.ingest.staging import StagingRing

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2GiB, 256MiB, 4096)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def write_files(d: str, total: int, files: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths, per = [], total // files
    for i in range(files):
        p = os.path.join(d, f"read_parallel_{i:03d}.bin")
        with open(p, "wb") as f:
            left = per
            while left:
                n = min(left, 64 << 20)
                f.write(rng.bytes(n))
                left -= n
        paths.append(p)
    for p in paths:  # warm the page cache: every run below reads cached pages
        with open(p, "rb", buffering=0) as f:
            while f.read(64 << 20):
                pass
    return paths


def reader_pass(reader, st, jobs, depth: int) -> int:
    free, todo, inflight, total = list(range(depth)), deque(jobs), {}, 0
    while todo or inflight:
        while todo and free:
            handle, fixed, off, n = todo.popleft()
            slot = free.pop()
            reader.read(handle, st.read_target(slot, 0, n), off, slot, fixed_file=fixed)
            inflight[slot] = n
        reader.submit()
        for tag, nbytes, err, _ in reader.poll(1):
            if err or nbytes != inflight[tag]:
                raise OSError(err, f"read returned {nbytes} of {inflight[tag]} bytes")
            total += nbytes
            del inflight[tag]
            free.append(tag)
    return total


def bench_reader(paths, chunk: int, depth: int, repeats: int, parallel: bool, mode=None):
    st = StagingRing(chunk, depth)
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    reader = open_reader(depth, [st.array], mode=mode, file_slots=len(fds),
                         parallel_reads=parallel)
    try:
        handles = [reader.attach_file(fd) for fd in fds]
        jobs = [(h, fixed, off, min(chunk, os.fstat(fd).st_size - off))
                for fd, (h, fixed) in zip(fds, handles)
                for off in range(0, os.fstat(fd).st_size, chunk)]
        want = sum(n for *_, n in jobs)
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            got = reader_pass(reader, st, jobs, depth)
            rates.append(got / (time.perf_counter() - t0) / 1e9)
            assert got == want, (got, want)
        return rates, reader.path, reader.parallel_reads
    finally:
        reader.close()
        for fd in fds:
            os.close(fd)
        st.close()


def bench_readinto(paths, chunk: int, repeats: int) -> list[float]:
    buf = bytearray(chunk)
    rates = []
    for _ in range(repeats):
        t0, total = time.perf_counter(), 0
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    total += n
        rates.append(total / (time.perf_counter() - t0) / 1e9)
    return rates


def bench_preadv_threads(paths, chunk: int, threads: int, repeats: int) -> list[float]:
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    jobs = [(fd, off) for fd in fds for off in range(0, os.fstat(fd).st_size, chunk)]
    rates = []

    def work(k: int, counts: list) -> None:
        buf, n = bytearray(chunk), 0
        for fd, off in jobs[k::threads]:
            n += os.preadv(fd, [buf], off)
        counts[k] = n

    try:
        for _ in range(repeats):
            counts = [0] * threads
            ts = [threading.Thread(target=work, args=(k, counts)) for k in range(threads)]
            t0 = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            rates.append(sum(counts) / (time.perf_counter() - t0) / 1e9)
    finally:
        for fd in fds:
            os.close(fd)
    return rates


def show(label: str, rates: list[float], extra: str = "") -> None:
    runs = ", ".join(f"{r:.2f}" for r in rates)
    print(f"{label:38s} {statistics.median(rates):7.2f} GB/s  (runs {runs}){extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bytes", type=size, default=2 << 30, help="total over all files (2GiB)")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--chunk", type=size, default=1 << 20, help="bytes per read (1MiB)")
    ap.add_argument("--depth", default="8,16,32", help="reads in flight, comma separated")
    ap.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    depths = [int(x) for x in a.depth.split(",") if x.strip()]
    d = a.dir or tempfile.mkdtemp(prefix="vyre_read_parallel_")
    os.makedirs(d, exist_ok=True)
    try:
        paths = write_files(d, a.bytes, a.files)
        total = sum(os.path.getsize(p) for p in paths)
        print(f"{a.files} files, {total / 2**20:.0f} MiB in {d}, chunk {a.chunk} B, "
              f"{os.cpu_count()} CPUs, kernel {os.uname().release}", flush=True)
        show("readinto, 1 thread", bench_readinto(paths, a.chunk, a.repeats))
        for n in (4, 8):
            show(f"os.preadv, {n} threads", bench_preadv_threads(paths, a.chunk, n, a.repeats))
        for depth in depths:
            for parallel in (False, True):
                rates, path, par = bench_reader(paths, a.chunk, depth, a.repeats, parallel)
                show(f"reader depth={depth} parallel_reads={parallel!s:5s}", rates,
                     f"  path={path} parallel={par}")
            rates, path, par = bench_reader(paths, a.chunk, depth, a.repeats, False, "fallback")
            show(f"reader depth={depth} fallback pool", rates, f"  path={path} parallel={par}")
    finally:
        if a.dir is None:
            shutil.rmtree(d, ignore_errors=True)
        else:
            for p in [os.path.join(d, f"read_parallel_{i:03d}.bin") for i in range(a.files)]:
                if os.path.exists(p):
                    os.remove(p)


if __name__ == "__main__":
    main()
