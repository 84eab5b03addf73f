"""Host-to-device copy rate by source memory: is the staging ring (anonymous mmap registered
with cuMemHostRegister) as fast a DMA source as the harness's pinned_h2d baseline (one 1 MiB
cuMemHostAlloc buffer copied again and again, which may be served from the CPU caches)?

    python bench/micro/h2d_sources.py [--gib 2] [--ring-mib 128] [--chunk-mib 4]

Each source: --gib of copies on one stream (all enqueued, then one synchronize), median of 5.
"""
from __future__ import annotations

import argparse
import mmap
import os
import statistics
import tempfile
import threading
import time

import numpy as np
import pycuda.autoinit  # noqa: F401
import pycuda.driver as cuda

from vyre.backends.cuda.host import HostRegistration


def rate(src: np.ndarray, dst: int, chunk: int, total: int, stream) -> float:
    n = total // chunk
    spans = src.nbytes // chunk
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            off = (i % spans) * chunk
            cuda.memcpy_htod_async(dst + off % (64 << 20), src[off:off + chunk], stream)
        stream.synchronize()
        runs.append(n * chunk / (time.perf_counter() - t0) / 1e9)
    return statistics.median(runs)


def anon(nbytes: int, huge: bool) -> tuple[mmap.mmap, np.ndarray]:
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge:
        mm.madvise(mmap.MADV_HUGEPAGE)
    a = np.frombuffer(mm, np.uint8)
    a[:] = 7  # fault every page in (huge pages where granted)
    return mm, a


class reading:
    """Threads doing os.preadv of a 1 GiB page-cached file into private buffers."""

    def __init__(self, threads: int, into: np.ndarray | None = None) -> None:
        self.threads, self.into = threads, into
        self.stop = threading.Event()
        self.got = [0.0]

    def __enter__(self) -> list:
        self.dir = tempfile.TemporaryDirectory()
        path = os.path.join(self.dir.name, "f")
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).integers(0, 256, 1 << 30, np.uint8).tobytes())
        self.fd = os.open(path, os.O_RDONLY)
        self.count = [0] * self.threads

        def run(i: int) -> None:
            off = i * (64 << 20)
            k = i
            while not self.stop.is_set():
                if self.into is None:
                    buf = bytearray(4 << 20) if k == i else buf
                else:  # into the DMA source itself, as the stream's reads land in staging
                    at = (k * (4 << 20)) % (self.into.nbytes - (4 << 20))
                    buf = self.into[at:at + (4 << 20)]
                self.count[i] += os.preadv(self.fd, [buf], off % (1 << 30))
                off += 4 << 20
                k += self.threads

        self.pool = [threading.Thread(target=run, args=(i,)) for i in range(self.threads)]
        self.t0 = time.perf_counter()
        for t in self.pool:
            t.start()
        return self.got

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.pool:
            t.join()
        self.got[0] = sum(self.count) / (time.perf_counter() - self.t0)
        os.close(self.fd)
        self.dir.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--ring-mib", type=int, default=128)
    ap.add_argument("--chunk-mib", type=int, default=4)
    ap.add_argument("--readers", type=int, default=8,
                    help="then again with this many threads reading the page cache meanwhile")
    a = ap.parse_args()
    total, ring, chunk = int(a.gib * (1 << 30)), a.ring_mib << 20, a.chunk_mib << 20
    dst = cuda.mem_alloc(64 << 20)
    stream = cuda.Stream(flags=1)
    small = cuda.pagelocked_empty(1 << 20, np.uint8)
    print(f"pinned 1 MiB reused, 1 MiB copies (the harness baseline): "
          f"{rate(small, int(dst), 1 << 20, total, stream):6.2f} GB/s")
    big = cuda.pagelocked_empty(ring, np.uint8)
    big[:] = 1
    print(f"pinned {a.ring_mib} MiB cycled, {a.chunk_mib} MiB copies:              "
          f"{rate(big, int(dst), chunk, total, stream):6.2f} GB/s")
    for huge in (False, True):
        mm, arr = anon(ring, huge)
        reg = HostRegistration(arr)
        thp = "?"
        try:
            with open("/proc/self/smaps_rollup") as f:
                thp = next((ln.split()[1] + " kB" for ln in f if ln.startswith("AnonHugePages")), "?")
        except OSError:
            pass
        print(f"registered anon mmap {a.ring_mib} MiB huge={huge!s:5s} (AnonHugePages {thp}): "
              f"{rate(arr, int(dst), chunk, total, stream):6.2f} GB/s")
        if a.readers:
            with reading(a.readers) as got:
                r = rate(arr, int(dst), chunk, total, stream)
            print(f"  ... while {a.readers} threads read the page cache ({got[0] / 1e9:5.1f} GB/s): "
                  f"{r:6.2f} GB/s")
            with reading(a.readers, into=arr) as got:
                r = rate(arr, int(dst), chunk, total, stream)
            print(f"  ... while {a.readers} threads read into this memory ({got[0] / 1e9:5.1f} GB/s): "
                  f"{r:6.2f} GB/s")
        reg.unregister()


if __name__ == "__main__":
    main()
