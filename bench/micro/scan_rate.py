"""Kernel-only DFA_SCAN rate: k concurrent scans of one buffer, in host (mapped) or device memory.

Separates the megakernel's scan speed from the GpuStream pipeline around it, for each
assist part size (0: a scan stays on the warp that holds it):
    python bench/micro/scan_rate.py [--mb 64] [--parts 0,16384,65536] [--scans 1,8,32]
        [--where host,device] [--workers 1] [--repeats 3]
`--chunk-mb 4 --scans 16` scans 16 slices of 4 MiB at once (what GpuStream publishes) instead
of cutting the buffer into k slices. A/B a kernel variant with VYRE_PTX=other.ptx.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from vyre import Megakernel, Opcode
from vyre.ingest.dfa import build_dfa


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--parts", default="0,16384,65536", help="assist_part_bytes values")
    ap.add_argument("--scans", default="1,8,32", help="scans published together")
    ap.add_argument("--chunk-mb", type=int, default=0, help="each scan this long (0: mb / scans)")
    ap.add_argument("--where", default="host,device")
    ap.add_argument("--workers", type=int, default=1, help="blocks per SM")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    dfa = build_dfa([b"vyre", b"needle"])
    data = np.random.default_rng(1).integers(0, 256, args.mb << 20, dtype=np.uint8)
    for at in range(0, data.size - 16, 1 << 16):  # some matches, so a lost one shows
        data[at + 7:at + 11] = np.frombuffer(b"vyre", np.uint8)
    for part in (int(p) for p in args.parts.split(",")):
        run(dfa, data, part, args)


def run(dfa, data: np.ndarray, part: int, args) -> None:
    size = data.size
    with Megakernel("cuda", slot_count=256, observable_slots=64, assist_part_bytes=part,
                    workers=args.workers) as mk:
        h_tab, _ = mk.alloc_buffer(dfa.table, device=True)
        for where in args.where.split(","):
            h, _ = mk.alloc_buffer(data, device=where == "device")
            for k in (int(x) for x in args.scans.split(",")):
                seg = (args.chunk_mb << 20) or size // k
                jobs = [((i * seg) % (size - seg + 1), seg) for i in range(k)]
                want = sum(dfa.count_matches(data[lo:lo + n].tobytes()) for lo, n in jobs)
                rates = []
                for _ in range(args.repeats):
                    mk.observables[:k] = 0
                    t0 = time.perf_counter()
                    ts = [mk.submit(Opcode.DFA_SCAN, [h_tab, h, lo, n, 0xFFFFFFFF, i, dfa.context])
                          for i, (lo, n) in enumerate(jobs)]
                    mk.wait(ts, timeout=120)
                    rates.append(seg * k / (time.perf_counter() - t0) / 1e9)
                    got = int(mk.observables[:k].sum())
                    if got != want:
                        raise SystemExit(f"counted {got}, reference {want}: the scan is wrong")
                print(f"part={part:6d} {where:6s} workers={args.workers} scans={k:2d} x "
                      f"{seg >> 20:3d} MiB {statistics.median(rates):8.3f} GB/s "
                      f"(min {min(rates):.3f} max {max(rates):.3f}, n={len(rates)}; counted {want})",
                      flush=True)


if __name__ == "__main__":
    main()
